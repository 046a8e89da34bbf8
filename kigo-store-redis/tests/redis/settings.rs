//! Settings that cannot work are reported as misconfigurations (an operator must act), not as
//! an unavailable Redis (which the manager waits out); durations beyond Redis's range work.

use std::time::Duration;

use kigo_core::store::{HolderId, LeaseAttempt};
use kigo_core::{StoreError, TokenStore};
use kigo_store_redis::RedisStore;
use kigo_store_redis::redis;
use kigo_testkit::conformance::fresh_key;

use super::support::RedisHarness;

fn store_at(harness: &RedisHarness, url: &str) -> RedisStore {
    RedisStore::builder()
        .url(url)
        .keyring(harness.keyring())
        .build()
        .unwrap()
}

async fn misconfiguration_hint(store: &RedisStore) -> &'static str {
    match store.load(&fresh_key()).await {
        Err(StoreError::Misconfigured { hint, .. }) => hint,
        other => panic!("expected a misconfiguration, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_wrong_password_is_a_misconfiguration() {
    let harness = RedisHarness::private().await;
    let () = harness
        .raw(
            redis::cmd("CONFIG")
                .arg("SET")
                .arg("requirepass")
                .arg("the-password"),
        )
        .await;
    let port = harness.single_node().port();

    let without = store_at(&harness, &format!("redis://127.0.0.1:{port}"));
    let hint = misconfiguration_hint(&without).await;
    assert!(hint.contains("password"), "{hint}");
    let wrong = store_at(
        &harness,
        &format!("redis://:not-the-password@127.0.0.1:{port}"),
    );
    let hint = misconfiguration_hint(&wrong).await;
    assert!(hint.contains("password"), "{hint}");

    let right = store_at(&harness, &format!("redis://:the-password@127.0.0.1:{port}"));
    right.load(&fresh_key()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_node_behind_a_server_url_is_a_misconfiguration() {
    let harness = RedisHarness::cluster().await;
    let node = harness.cluster_urls()[0].clone();
    let store = RedisStore::builder()
        .url(node)
        .allow_insecure_transport() // as for the harness's own stores
        .prefix(harness.builder_prefix())
        .keyring(harness.keyring())
        .build()
        .unwrap();
    // Keys are spread over the nodes: soon one lives on another node than this one (MOVED).
    for _ in 0..64 {
        match store.load(&fresh_key()).await {
            Ok(_) => continue,
            Err(StoreError::Misconfigured { hint, .. }) => {
                assert!(hint.contains("RedisStoreBuilder::cluster_nodes"), "{hint}");
                return;
            }
            Err(error) => panic!("a key on another node gave {error:?}"),
        }
    }
    panic!("64 keys all lived on the first node; is it a cluster of one?");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durations_beyond_what_redis_accepts_work() {
    let harness = RedisHarness::standalone().await;
    let store = harness.store();
    let key = fresh_key();

    store.set_cooldown(&key, Duration::MAX).await.unwrap();
    let cooldown = store.load(&key).await.unwrap().cooldown.unwrap();
    assert!(cooldown > Duration::from_secs(10 * 365 * 24 * 3600));

    let attempt = store
        .acquire_lease(&key, &HolderId::random(), Duration::MAX)
        .await
        .unwrap();
    assert!(matches!(attempt, LeaseAttempt::Acquired(_)), "{attempt:?}");
    assert!(harness.lease_pttl(&key).await > 0);
    // Keys left with such expiries on a shared server go now.
    let names = store.key_names(&key);
    let () = harness
        .raw(redis::cmd("DEL").arg(&names.cooldown).arg(&names.lease))
        .await;
}
