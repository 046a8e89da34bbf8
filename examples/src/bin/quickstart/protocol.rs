//! What a quickstart replica is started with and reports (the commands and answers are
//! [`examples::replicas`]').

use serde::{Deserialize, Serialize};

/// The hidden first argument that makes the quickstart a replica process:
/// `quickstart replica <name> <SQLite file>`.
pub(crate) const REPLICA_ARG: &str = "replica";

/// What one replica process saw, from its own counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ReplicaReport {
    /// Requests its workers sent through the authenticated client.
    pub(crate) requests: u64,
    /// Requests that did not end in a success, after the client's one retry on a 401.
    pub(crate) failures: u64,
    /// 401 answers the client received.
    pub(crate) unauthorized: u64,
    /// Requests the client sent again after a 401 that then succeeded.
    pub(crate) recovered: u64,
    /// Tokens this replica's manager created itself.
    pub(crate) created: u64,
    /// Fingerprints of the tokens it used, never the tokens.
    pub(crate) tokens: Vec<String>,
}
