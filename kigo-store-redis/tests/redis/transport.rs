//! A Redis on another host needs TLS with certificate checks, unless the builder is told
//! otherwise by name; checked at `build()`, before anything connects (the hosts below do not
//! exist).

use kigo_core::StoreError;
use kigo_store_redis::redis::Client;
use kigo_store_redis::redis::cluster::ClusterClient;
use kigo_store_redis::{RedisStore, RedisStoreBuilder};

use kigo_testkit::conformance::test_keyring;

use super::support::{Capture, misconfiguration};

/// A builder with a keyring, so that only the transport can refuse it.
fn server(url: &str) -> RedisStoreBuilder {
    RedisStore::builder().url(url).keyring(test_keyring())
}

fn cluster(nodes: &[&str]) -> RedisStoreBuilder {
    RedisStore::builder()
        .cluster_nodes(nodes.iter().copied())
        .keyring(test_keyring())
}

/// The whole error chain of a refused build, whose hint must name the way out.
fn refusal(built: Result<RedisStore, StoreError>) -> String {
    let (hint, shown) = misconfiguration(&built.expect_err("the build is refused"));
    assert!(
        hint.contains("rediss://") && hint.contains("allow_insecure_transport"),
        "{hint}"
    );
    shown
}

#[test]
fn a_remote_redis_without_tls_is_refused_at_build() {
    for url in [
        "redis://redis.internal:6379",
        "redis://10.0.0.1:6379/2",
        "redis://[2001:db8::1]:6379",
        "redis://localhost.example.com",
    ] {
        refusal(server(url).build());
    }
    refusal(RedisStore::open("redis://redis.internal"));
    refusal(
        RedisStore::builder()
            .client(Client::open("redis://10.0.0.1").unwrap())
            .keyring(test_keyring())
            .build(),
    );
}

#[test]
fn a_refusal_names_the_address_but_not_the_password() {
    let shown = refusal(server("redis://app:hunter2-secret@10.0.0.1:6379").build());
    assert!(shown.contains("10.0.0.1:6379"), "{shown}");
    assert!(!shown.contains("hunter2"), "{shown}");
}

#[test]
fn a_redis_on_this_host_needs_no_tls() {
    for url in [
        "redis://127.0.0.1:6379",
        "redis://127.0.0.2:6379",
        "redis://[::1]:6379",
        "redis://localhost:6379",
        "redis+unix:///run/redis/redis.sock",
    ] {
        server(url).build().unwrap();
    }
    cluster(&["redis://127.0.0.1:7000", "redis://localhost:7001"])
        .build()
        .unwrap();
}

#[cfg(feature = "tls-rustls")]
#[test]
fn a_remote_redis_over_tls_is_accepted() {
    server("rediss://app:password@redis.internal:6380")
        .build()
        .unwrap();
    cluster(&["rediss://10.0.0.1:6380", "rediss://10.0.0.2:6380"])
        .build()
        .unwrap();
}

#[cfg(feature = "tls-rustls")]
#[test]
fn tls_without_certificate_checks_counts_as_plain_text() {
    refusal(server("rediss://redis.internal:6380/#insecure").build());
    server("rediss://127.0.0.1:6380/#insecure").build().unwrap();
}

#[test]
fn every_cluster_node_is_checked() {
    refusal(cluster(&["redis://127.0.0.1:7000", "redis://10.0.0.2:7000"]).build());
    refusal(cluster(&["redis://10.0.0.1:7000", "redis://127.0.0.1:7001"]).build());

    // A client of your own: the node clients it subscribes through are checked.
    let client = ClusterClient::new(["redis://127.0.0.1:7000"]).unwrap();
    let nodes = vec![
        Client::open("redis://127.0.0.1:7000").unwrap(),
        Client::open("redis://10.0.0.2:7000").unwrap(),
    ];
    refusal(
        RedisStore::builder()
            .cluster_client(client, nodes)
            .keyring(test_keyring())
            .build(),
    );
}

#[test]
fn the_opt_out_accepts_a_remote_redis_and_says_so_at_warn_level() {
    let logged = Capture::while_running(|| {
        server("redis://app:hunter2-secret@10.0.0.1:6379")
            .allow_insecure_transport()
            .build()
            .unwrap();
        cluster(&["redis://10.0.0.1:7000", "redis://10.0.0.2:7000"])
            .allow_insecure_transport()
            .build()
            .unwrap();
    });
    let warnings: Vec<&str> = logged
        .lines()
        .filter(|line| line.contains("WARN") && line.contains("allow_insecure_transport"))
        .collect();
    assert_eq!(warnings.len(), 2, "{logged}");
    assert!(warnings[0].contains("10.0.0.1:6379"), "{logged}");
    assert!(!logged.contains("hunter2"), "{logged}");

    // On this host the opt-out changes nothing and warns of nothing.
    let logged = Capture::while_running(|| {
        server("redis://127.0.0.1:6379")
            .allow_insecure_transport()
            .build()
            .unwrap();
    });
    assert_eq!(logged, "");
}
