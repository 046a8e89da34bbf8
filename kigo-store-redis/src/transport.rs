//! Which connections may go without TLS: the store sends the Redis password and every token, so
//! a Redis on another host needs TLS with certificate checks unless the builder was told
//! otherwise by name ([`crate::RedisStoreBuilder::allow_insecure_transport`]).

use std::net::IpAddr;

use kigo_core::StoreError;
use redis::{Client, ConnectionAddr};

use crate::connection::Target;
use crate::error::{RedisStoreError, config_error};

/// Refuses a target that would reach a remote Redis in plain text (or over TLS without
/// certificate checks) unless `allowed`; with `allowed`, says so at warn level.
pub(crate) fn check_transport(target: &Target, allowed: bool) -> Result<(), StoreError> {
    let Some(address) = target.clients().iter().find_map(exposed_address) else {
        return Ok(());
    };
    if allowed {
        tracing::warn!(
            %address,
            "the Redis store talks to a remote Redis without TLS (allow_insecure_transport): \
             its password and tokens can be read and changed on the network"
        );
        return Ok(());
    }
    Err(config_error(
        "a Redis on another host needs TLS: use a rediss:// URL (without #insecure), or accept \
         plain text by name with RedisStoreBuilder::allow_insecure_transport",
        RedisStoreError::InsecureTransport { address },
    ))
}

/// How one connection reaches Redis, from the safest to the least safe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Transport {
    Tls,
    UnixSocket,
    /// To this host, in plain text or over TLS without certificate checks.
    Loopback,
    /// To another host, in plain text or over TLS without certificate checks (or an address
    /// kind of a newer redis crate, not known to be safe).
    Exposed,
}

impl Transport {
    fn of(addr: &ConnectionAddr) -> Self {
        match addr {
            ConnectionAddr::TcpTls {
                insecure: false, ..
            } => Self::Tls,
            ConnectionAddr::Unix(_) => Self::UnixSocket,
            ConnectionAddr::Tcp(host, _) | ConnectionAddr::TcpTls { host, .. }
                if is_loopback(host) =>
            {
                Self::Loopback
            }
            _ => Self::Exposed,
        }
    }
}

/// The address (`host:port`) of `client` if what it sends could be read or changed on the way:
/// TCP to a host other than this one, without TLS or without checking the server's certificate.
fn exposed_address(client: &Client) -> Option<String> {
    let addr = client.get_connection_info().addr();
    (Transport::of(addr) == Transport::Exposed).then(|| addr.to_string())
}

/// How the store reaches Redis, for an operator: the least safe of its connections (those the
/// rule above reads).
pub(crate) fn describe(target: &Target) -> &'static str {
    let least_safe = target
        .clients()
        .iter()
        .map(|client| Transport::of(client.get_connection_info().addr()))
        .max();
    match least_safe {
        Some(Transport::Tls) | None => "TLS with certificate checks",
        Some(Transport::UnixSocket) => "a Unix socket on this host",
        Some(Transport::Loopback) => "this host (loopback), without TLS or certificate checks",
        Some(Transport::Exposed) => {
            "another host without TLS or certificate checks, allowed by allow_insecure_transport"
        }
    }
}

/// 127.0.0.0/8, `::1` (also IPv4-mapped) and `localhost`.
fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<IpAddr>() {
        Ok(ip) => ip.to_canonical().is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "tls-rustls")]
    #[test]
    fn the_least_safe_connection_describes_the_transport() {
        // `describe` reads the node clients only.
        let target = |urls: &[&str]| Target::Cluster {
            client: Box::new(redis::cluster::ClusterClient::new(urls[..1].to_vec()).unwrap()),
            nodes: urls.iter().map(|url| Client::open(*url).unwrap()).collect(),
        };
        let described = |urls: &[&str]| describe(&target(urls));
        assert!(described(&["rediss://redis.internal:6380"]).starts_with("TLS"));
        assert!(described(&["rediss://a:6380", "redis://127.0.0.1:7000"]).contains("loopback"));
        assert!(
            described(&["redis://127.0.0.1:7000", "redis://10.0.0.1:7000"])
                .contains("allow_insecure_transport")
        );
    }

    #[test]
    fn only_loopback_hosts_count_as_this_host() {
        for local in [
            "127.0.0.1",
            "127.8.9.10",
            "::1",
            "[::1]",
            "::ffff:127.0.0.1",
            "localhost",
            "LocalHost",
        ] {
            assert!(is_loopback(local), "{local}");
        }
        for remote in [
            "10.0.0.1",
            "0.0.0.1",
            "::2",
            "[2001:db8::1]",
            "redis.internal",
            "localhost.example.com",
            "128.0.0.1",
        ] {
            assert!(!is_loopback(remote), "{remote}");
        }
    }
}
