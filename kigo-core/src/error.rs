//! The one error type callers of the manager see.

use std::time::Duration;

use crate::source::SourceError;
use crate::store::StoreError;
use crate::{KeyScope, TokenKey};

/// Why no token could be handed out.
///
/// Cloneable, because one refresh's outcome is shared by every caller that waited for it.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The token source refused for good (bad credentials, bad request): retrying will not help.
    #[error("creating a token for {key} failed permanently")]
    Permanent {
        /// Which token.
        key: TokenKey,
        /// The source's error.
        #[source]
        source: SourceError,
    },
    /// No valid token, and the token endpoint is failing for now or the fleet is cooling down
    /// after failures.
    #[error("no valid token for {key}: the token endpoint is unavailable for now")]
    Unavailable {
        /// Which token.
        key: TokenKey,
        /// When it is worth asking again.
        retry_after: Option<Duration>,
        /// The last failure seen by this process; `None` when the cool-down was set by another
        /// replica.
        #[source]
        source: Option<SourceError>,
    },
    /// No valid token, the store is unreachable, and the store-failure policy forbids (or has
    /// used up) creating one locally.
    #[error("no valid token for {key}: the token store is unreachable")]
    StoreUnavailable {
        /// Which token.
        key: TokenKey,
        /// When it is worth asking again.
        retry_after: Option<Duration>,
        /// The store's error.
        #[source]
        source: StoreError,
    },
    /// Another replica held the refresh lease for longer than the configured maximum wait.
    #[error("no valid token for {key} after waiting {waited:?} for another replica's refresh")]
    WaitTimedOut {
        /// Which token.
        key: TokenKey,
        /// How long this caller waited.
        waited: Duration,
    },
    /// No valid token, and the store is misconfigured for this replica (its entries are sealed
    /// with a key this replica lacks, the schema is missing, a permission is denied): nothing is
    /// created until an operator fixes it, and the fleet's entries are left as they are.
    #[error("no valid token for {key}: the token store is misconfigured for this replica")]
    StoreMisconfigured {
        /// Which token.
        key: TokenKey,
        /// The store's error, with a hint saying what to do.
        #[source]
        source: StoreError,
    },
    /// The key is not one this manager serves (a user-level manager asked for the partner-level
    /// token, or for another partner's users).
    #[error("this manager serves {scope}, not the token of {key}")]
    ForeignKey {
        /// The key asked for.
        key: TokenKey,
        /// What the manager serves.
        scope: KeyScope,
    },
    /// The manager has been shut down.
    #[error("the token manager is shut down")]
    ShutDown,
}

impl Error {
    /// The typed error behind this one, if one of the errors that caused it is a `T`: the token
    /// source's own (`kigo_http::CreateError`, say), the store's, or one of their causes.
    ///
    /// ```
    /// # fn demo(error: &kigo_core::Error) {
    /// if let Some(timeout) = error.cause::<kigo_core::CreateTimedOut>() {
    ///     eprintln!("the token endpoint took longer than {:?}", timeout.0);
    /// }
    /// # }
    /// ```
    pub fn cause<T: std::error::Error + 'static>(&self) -> Option<&T> {
        let first: &(dyn std::error::Error + 'static) = match self {
            Self::Permanent { source, .. }
            | Self::Unavailable {
                source: Some(source),
                ..
            } => source.cause(),
            Self::StoreUnavailable { source, .. } | Self::StoreMisconfigured { source, .. } => {
                source.cause()
            }
            _ => return None,
        };
        std::iter::successors(Some(first), |error| error.source())
            .find_map(|error| error.downcast_ref::<T>())
    }

    /// A short, stable name of the kind of error, for status pages and metrics:
    /// `endpoint_permanent`, `endpoint_unavailable`, `store_unavailable`, `store_misconfigured`,
    /// `wait_timed_out`, `foreign_key` or `shut_down`.
    pub fn class(&self) -> &'static str {
        match self {
            Self::Permanent { .. } => "endpoint_permanent",
            Self::Unavailable { .. } => "endpoint_unavailable",
            Self::StoreUnavailable { .. } => "store_unavailable",
            Self::StoreMisconfigured { .. } => "store_misconfigured",
            Self::WaitTimedOut { .. } => "wait_timed_out",
            Self::ForeignKey { .. } => "foreign_key",
            Self::ShutDown => "shut_down",
        }
    }

    /// Whether asking again later may succeed.
    pub fn is_transient(&self) -> bool {
        !matches!(
            self,
            Self::Permanent { .. }
                | Self::ShutDown
                | Self::ForeignKey { .. }
                | Self::StoreMisconfigured { .. }
        )
    }

    /// When it is worth asking again, if known.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Unavailable { retry_after, .. } | Self::StoreUnavailable { retry_after, .. } => {
                *retry_after
            }
            _ => None,
        }
    }
}
