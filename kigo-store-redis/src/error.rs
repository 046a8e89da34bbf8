//! How Redis failures become [`StoreError`]s: classified by error kind, never by message text.

use kigo_core::StoreError;
use redis::{ErrorKind, RedisError, ServerErrorKind};

use crate::keys::InvalidPrefix;

/// What went wrong inside the Redis store; the source of the [`StoreError`] callers see.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RedisStoreError {
    /// A command or script failed, or the connection did.
    #[error("Redis command failed")]
    Command(#[source] RedisError),
    /// The connection settings (URL, TLS, credentials) are not usable.
    #[error("the Redis connection settings are invalid")]
    Config(#[source] RedisError),
    /// The key prefix would break the key layout.
    #[error("invalid key prefix")]
    Prefix(#[source] InvalidPrefix),
    /// The retention is too short to outlive leases and tokens.
    #[error("the retention of fence counters is too short")]
    Retention,
}

/// Whether `error` leaves open if the command ran: the connection broke or timed out after it
/// may have been sent. Such results are settled by reading the state again.
pub(crate) fn is_ambiguous(error: &RedisError) -> bool {
    error.is_io_error() || error.is_connection_dropped() || error.is_timeout()
}

/// The [`StoreError`] for a failed command.
pub(crate) fn store_error(error: RedisError) -> StoreError {
    let hint = match error.kind() {
        ErrorKind::AuthenticationFailed => Some("Redis refused the credentials"),
        ErrorKind::Server(ServerErrorKind::NoPerm) => Some(
            "the Redis user lacks a command or key the store needs (see the crate docs on ACLs)",
        ),
        ErrorKind::InvalidClientConfig => Some("the Redis connection settings are invalid"),
        ErrorKind::Client => Some(
            "the Redis client refused the request (the store must be used inside a tokio runtime)",
        ),
        _ => None,
    };
    match hint {
        Some(hint) => StoreError::misconfigured(hint, RedisStoreError::Command(error)),
        None => StoreError::unavailable(RedisStoreError::Command(error)),
    }
}

/// The [`StoreError`] for settings that cannot work.
pub(crate) fn config_error(hint: &'static str, error: RedisStoreError) -> StoreError {
    StoreError::misconfigured(hint, error)
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::*;

    #[test]
    fn errors_are_classified_by_kind() {
        let dropped = RedisError::from(io::Error::from(io::ErrorKind::ConnectionReset));
        assert!(is_ambiguous(&dropped));
        assert!(matches!(
            store_error(dropped),
            StoreError::Unavailable { .. }
        ));
        let auth = RedisError::from((ErrorKind::AuthenticationFailed, "denied"));
        assert!(!is_ambiguous(&auth));
        assert!(matches!(
            store_error(auth),
            StoreError::Misconfigured { .. }
        ));
    }
}
