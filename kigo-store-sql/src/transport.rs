//! Whether a store's connections may cross the network in the clear. A database on another host
//! is reached over TLS, required by its connect options, unless the builder opts out with
//! [`SqlStoreBuilder::allow_insecure_transport`](crate::SqlStoreBuilder::allow_insecure_transport),
//! as kigo-http does for the API: the connections carry the tokens and the database password.

use std::net::IpAddr;

use kigo_core::StoreError;

use crate::BackendKind;
use crate::error::{SqlError, TLS_FEATURE_HINT, TRANSPORT_HINT};

/// How one set of connect options reaches its database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    /// A Unix socket, a loopback address or `localhost`: the traffic stays on this machine.
    Local,
    /// Another host, over TLS that the options require (a connection without it fails).
    Encrypted,
    /// Another host, with TLS optional or off.
    Plain {
        /// The host, to name it in errors and logs (never the URL: it may hold a password).
        host: String,
    },
}

impl Route {
    /// How a store check names it.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Encrypted => "tls",
            Self::Plain { .. } => "unencrypted",
        }
    }
}

/// Whether `host` is this machine: a loopback address (IPv6 in brackets or not, IPv4-mapped
/// included) or `localhost`.
fn is_local_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<IpAddr>() {
        Ok(ip) => ip.to_canonical().is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    }
}

/// The route of a host (or a socket), given whether the options require TLS.
fn route(socket: bool, host: &str, tls_required: bool) -> Route {
    if socket || is_local_host(host) {
        Route::Local
    } else if tls_required {
        Route::Encrypted
    } else {
        Route::Plain {
            host: host.to_owned(),
        }
    }
}

/// The route of PostgreSQL connect options: a socket directory (set as such, or as a host that
/// is a path), else the host, with `sslmode` `require`, `verify-ca` or `verify-full`.
#[cfg(feature = "postgres")]
pub(crate) fn postgres_route(options: &sqlx::postgres::PgConnectOptions) -> Route {
    use sqlx::postgres::PgSslMode;
    let host = options.get_host();
    let socket = options.get_socket().is_some() || host.starts_with('/');
    let tls = matches!(
        options.get_ssl_mode(),
        PgSslMode::Require | PgSslMode::VerifyCa | PgSslMode::VerifyFull
    );
    route(socket, host, tls)
}

/// The route of MySQL/MariaDB connect options: a socket, else the host, with `ssl-mode`
/// `REQUIRED`, `VERIFY_CA` or `VERIFY_IDENTITY`.
#[cfg(feature = "mysql")]
pub(crate) fn mysql_route(options: &sqlx::mysql::MySqlConnectOptions) -> Route {
    use sqlx::mysql::MySqlSslMode;
    let tls = matches!(
        options.get_ssl_mode(),
        MySqlSslMode::Required | MySqlSslMode::VerifyCa | MySqlSslMode::VerifyIdentity
    );
    route(options.get_socket().is_some(), options.get_host(), tls)
}

/// The transport rule of a store: TLS to another host unless `allow_insecure`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TransportRule {
    pub(crate) allow_insecure: bool,
}

impl TransportRule {
    /// Checks PostgreSQL connect options; `what` names them in errors and logs.
    #[cfg(feature = "postgres")]
    pub(crate) fn check_postgres(
        self,
        options: &sqlx::postgres::PgConnectOptions,
        what: &'static str,
    ) -> Result<(), StoreError> {
        self.check(postgres_route(options), BackendKind::Postgres, what)
    }

    /// Checks MySQL/MariaDB connect options; `what` names them in errors and logs.
    #[cfg(feature = "mysql")]
    pub(crate) fn check_mysql(
        self,
        options: &sqlx::mysql::MySqlConnectOptions,
        what: &'static str,
    ) -> Result<(), StoreError> {
        self.check(mysql_route(options), BackendKind::MySql, what)
    }

    /// Refuses a plain route unless opted out (then warns), and a required TLS that this build
    /// cannot speak.
    fn check(self, route: Route, kind: BackendKind, what: &'static str) -> Result<(), StoreError> {
        match route {
            Route::Local => Ok(()),
            Route::Encrypted if cfg!(any(feature = "tls-rustls", feature = "tls-native-tls")) => {
                Ok(())
            }
            Route::Encrypted => Err(StoreError::misconfigured(
                TLS_FEATURE_HINT,
                SqlError::NoTls { what },
            )),
            Route::Plain { host } if self.allow_insecure => {
                tracing::warn!(
                    database = ?kind,
                    %host,
                    what,
                    "the store's connections to a remote database are not encrypted \
                     (allow_insecure_transport)"
                );
                Ok(())
            }
            Route::Plain { host } => Err(StoreError::misconfigured(
                TRANSPORT_HINT,
                SqlError::InsecureTransport { what, host },
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_hosts() {
        for local in [
            "localhost",
            "LOCALHOST",
            "127.0.0.1",
            "127.8.9.10",
            "::1",
            "[::1]",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_local_host(local), "{local}");
        }
        for remote in [
            "db.internal",
            "10.0.0.5",
            "0.0.0.0",
            "[2001:db8::1]",
            "localhost.example.com",
        ] {
            assert!(!is_local_host(remote), "{remote}");
        }
    }

    /// A URL that requires TLS is refused by a build without it (a connection would fail
    /// later), accepted by one with it.
    #[test]
    fn required_tls_needs_tls_support() {
        let rule = TransportRule {
            allow_insecure: false,
        };
        let checked = rule.check(Route::Encrypted, BackendKind::Postgres, "the connections");
        let built_with_tls = cfg!(any(feature = "tls-rustls", feature = "tls-native-tls"));
        match checked {
            Ok(()) => assert!(built_with_tls),
            Err(StoreError::Misconfigured { hint, .. }) => {
                assert!(!built_with_tls);
                assert!(hint.contains("tls-rustls"), "{hint}");
            }
            Err(other) => panic!("{other:?}"),
        }
    }

    #[test]
    fn routes() {
        assert_eq!(route(true, "db.internal", false), Route::Local);
        assert_eq!(route(false, "127.0.0.1", false), Route::Local);
        assert_eq!(route(false, "db.internal", true), Route::Encrypted);
        assert_eq!(
            route(false, "db.internal", false),
            Route::Plain {
                host: "db.internal".to_owned()
            }
        );
    }
}
