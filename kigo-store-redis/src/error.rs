//! How Redis failures become [`StoreError`]s: classified by error kind and code, never by message
//! text.

use kigo_core::StoreError;
use redis::{ErrorKind, RedisError, ServerErrorKind};

use crate::keys::InvalidPrefix;
use crate::scripts::UNSUPPORTED_SERVER;

/// What went wrong inside the Redis store; the source of the [`StoreError`] callers see.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RedisStoreError {
    /// A command or script failed, or the connection did.
    #[error("Redis command failed")]
    Command(#[source] RedisError),
    /// The builder was given no Redis to connect to.
    #[error("no Redis server or Cluster was given")]
    NoTarget,
    /// [`crate::RedisStore::from_env`] found no URL in its variable.
    #[error("{} is not set", crate::STORE_URL_VAR)]
    NoUrlInEnv,
    /// The connection settings (URL, TLS, credentials) are not usable.
    #[error("the Redis connection settings are invalid")]
    Config(#[source] RedisError),
    /// The key prefix would break the key layout.
    #[error("invalid key prefix")]
    Prefix(#[source] InvalidPrefix),
    /// A timeout or the heartbeat is zero: every command would time out, or the subscription's
    /// checks would never pause.
    #[error("a timeout or the heartbeat is zero")]
    ZeroDuration,
    /// The retention is too short to outlive leases and tokens, or too long for Redis.
    #[error("the retention of fence counters is out of range")]
    Retention,
    /// A Redis on another host, reached without TLS (or without certificate checks), and no
    /// opt-out. The address is `host:port`, which holds no secret.
    #[error(
        "the Redis at {address} is not on this host and the connection has no TLS with certificate checks"
    )]
    InsecureTransport { address: String },
    /// A cluster store without a node to subscribe to change notices through.
    #[error("no Redis Cluster nodes to subscribe through")]
    NoNodes,
    /// Used outside a tokio runtime, on which the redis crate runs its connections.
    #[error("the Redis store must be used inside a tokio runtime")]
    NoRuntime,
}

/// Whether `error` leaves open if the command ran: the connection broke or timed out after it
/// may have been sent. Such results are settled by running the script again.
pub(crate) fn is_ambiguous(error: &RedisError) -> bool {
    error.is_io_error() || error.is_connection_dropped() || error.is_timeout()
}

/// The [`StoreError`] for a failed command.
pub(crate) fn store_error(error: RedisError) -> StoreError {
    match misconfiguration(&error) {
        Some(hint) => StoreError::misconfigured(hint, RedisStoreError::Command(error)),
        None => StoreError::unavailable(RedisStoreError::Command(error)),
    }
}

/// What Redis said when it refused the store's user a command or key (`NOPERM`), if that is
/// what `error` is. Classified by kind; the text is only shown.
pub(crate) fn refusal(error: &StoreError) -> Option<&str> {
    match error.cause().downcast_ref::<RedisStoreError>()? {
        RedisStoreError::Command(error)
            if error.kind() == ErrorKind::Server(ServerErrorKind::NoPerm) =>
        {
            Some(error.detail().unwrap_or("NOPERM"))
        }
        _ => None,
    }
}

/// What an operator must fix, if `error` says the store cannot work as set up (rather than
/// that Redis is unreachable or busy for now).
fn misconfiguration(error: &RedisError) -> Option<&'static str> {
    match error.code() {
        Some("NOAUTH") => return Some("Redis requires a password: put it in the URL"),
        Some("WRONGPASS") => return Some("Redis refused the user name or password"),
        Some(UNSUPPORTED_SERVER) => return Some("the Redis token store needs Redis 7 or newer"),
        _ => {}
    }
    match error.kind() {
        ErrorKind::AuthenticationFailed => Some("Redis refused the user name or password"),
        ErrorKind::Server(ServerErrorKind::NoPerm) => Some(
            "the Redis user lacks a command or key the store needs (see the crate docs on ACLs)",
        ),
        ErrorKind::Server(ServerErrorKind::Moved | ServerErrorKind::Ask) => Some(
            "the Redis URL names a node of a Redis Cluster: use RedisStoreBuilder::cluster_nodes",
        ),
        ErrorKind::InvalidClientConfig => Some("the Redis connection settings are invalid"),
        _ => None,
    }
}

/// The [`StoreError`] for settings that cannot work.
pub(crate) fn config_error(hint: &'static str, error: RedisStoreError) -> StoreError {
    StoreError::misconfigured(hint, error)
}

/// The redis crate spawns its connection tasks on tokio: fail with an error, not its panic.
pub(crate) fn require_tokio() -> Result<(), StoreError> {
    match tokio::runtime::Handle::try_current() {
        Ok(_) => Ok(()),
        Err(_) => Err(config_error(
            "the Redis store must be used inside a tokio runtime",
            RedisStoreError::NoRuntime,
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::*;

    fn server_error(reply: &str) -> RedisError {
        let value = redis::parse_redis_value(reply.as_bytes()).unwrap();
        value.extract_error().unwrap_err()
    }

    fn is_misconfigured(error: RedisError) -> bool {
        matches!(store_error(error), StoreError::Misconfigured { .. })
    }

    #[test]
    fn errors_are_classified_by_kind_and_code() {
        let dropped = RedisError::from(io::Error::from(io::ErrorKind::ConnectionReset));
        assert!(is_ambiguous(&dropped));
        assert!(!is_misconfigured(dropped));
        let auth = RedisError::from((ErrorKind::AuthenticationFailed, "denied"));
        assert!(!is_ambiguous(&auth));
        assert!(is_misconfigured(auth));

        for misconfigured in [
            "-NOAUTH Authentication required.\r\n",
            "-WRONGPASS invalid username-password pair\r\n",
            "-NOPERM no permission\r\n",
            "-MOVED 1234 127.0.0.1:7001\r\n",
            "-KIGO_UNSUPPORTED_SERVER the token store needs Redis 7 or newer\r\n",
        ] {
            assert!(
                is_misconfigured(server_error(misconfigured)),
                "{misconfigured}"
            );
        }
        for unavailable in [
            "-LOADING Redis is loading the dataset in memory\r\n",
            "-BUSY Redis is busy running a script\r\n",
            "-OOM command not allowed when used memory > 'maxmemory'\r\n",
            "-ERR max number of clients reached\r\n",
            "-TRYAGAIN Multiple keys request during rehashing of slot\r\n",
        ] {
            assert!(
                !is_misconfigured(server_error(unavailable)),
                "{unavailable}"
            );
        }
        let refused = store_error(server_error("-NOPERM no permissions to run 'scan'\r\n"));
        assert_eq!(refusal(&refused), Some("no permissions to run 'scan'"));
        assert_eq!(refusal(&store_error(server_error("-BUSY busy\r\n"))), None);

        // The redis crate reports rustls failures and a cluster's internal hiccups as `Client`.
        assert!(!is_misconfigured(RedisError::from((
            ErrorKind::Client,
            "request wasn't handled due to internal failure"
        ))));
    }
}
