//! What the quickstart and its replica processes say to each other: commands as lines on a
//! replica's standard input, answers as JSON lines on its standard output. The end of a
//! replica's input means "stop and exit", so a replica never outlives the quickstart.

use serde::{Deserialize, Serialize};

/// The hidden first argument that makes the quickstart a replica process:
/// `quickstart replica <name> <SQLite file>`.
pub(crate) const REPLICA_ARG: &str = "replica";

/// A command from the quickstart to a replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Command {
    /// Start sending requests.
    Go,
    /// Stop sending requests (if still sending), ask for the current token, and report.
    Report,
}

impl Command {
    const GO: &str = "go";
    const REPORT: &str = "report";

    /// The command as sent, without the newline.
    pub(crate) fn line(self) -> &'static str {
        match self {
            Self::Go => Self::GO,
            Self::Report => Self::REPORT,
        }
    }

    /// The command on `line`, if it is one.
    pub(crate) fn parse(line: &str) -> Option<Self> {
        match line.trim() {
            Self::GO => Some(Self::Go),
            Self::REPORT => Some(Self::Report),
            _ => None,
        }
    }
}

/// An answer from a replica.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "message", rename_all = "snake_case")]
pub(crate) enum Answer {
    /// The store is open and the manager built: waiting for [`Command::Go`].
    Ready,
    /// Everything the replica saw so far.
    Report(ReplicaReport),
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_read_back_as_sent() {
        for command in [Command::Go, Command::Report] {
            assert_eq!(
                Command::parse(&format!("{}\n", command.line())),
                Some(command)
            );
        }
        assert_eq!(Command::parse("stop"), None);
    }

    #[test]
    fn answers_read_back_as_sent() {
        let report = Answer::Report(ReplicaReport {
            requests: 3,
            tokens: vec!["00ff".into()],
            ..ReplicaReport::default()
        });
        for answer in [Answer::Ready, report] {
            let line = serde_json::to_string(&answer).unwrap();
            assert!(!line.contains('\n'));
            assert_eq!(serde_json::from_str::<Answer>(&line).unwrap(), answer);
        }
    }
}
