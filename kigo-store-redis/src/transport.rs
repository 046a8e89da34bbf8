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

/// The address (`host:port`) of `client` if what it sends could be read or changed on the way:
/// TCP to a host other than this one, without TLS or without checking the server's certificate.
fn exposed_address(client: &Client) -> Option<String> {
    let addr = client.get_connection_info().addr();
    let exposed = match addr {
        ConnectionAddr::TcpTls {
            insecure: false, ..
        }
        | ConnectionAddr::Unix(_) => false,
        ConnectionAddr::Tcp(host, _) | ConnectionAddr::TcpTls { host, .. } => !is_loopback(host),
        // An address kind of a newer redis crate: not known to be safe.
        _ => true,
    };
    exposed.then(|| addr.to_string())
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
