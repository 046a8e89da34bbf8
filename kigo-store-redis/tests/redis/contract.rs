//! Lines of the store contract that the conformance suite cannot reach through the trait
//! alone: a fence against a generation written behind the store's back, generations that
//! outlive an invalidation and a lost fence counter, and how long the bookkeeping keys live.

use std::time::Duration;

use kigo_core::TokenStore;
use kigo_core::store::{CommitOutcome, Entry, InvalidateOutcome};
use kigo_store_redis::redis;
use kigo_testkit::conformance::fresh_key;

use super::support::{RedisHarness, acquire, token_valid_for};

const TTL: Duration = Duration::from_secs(30);
const LIFETIME: Duration = Duration::from_secs(1800);
/// The retention of the harness's stores.
const RETENTION: Duration = Duration::from_secs(3600);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_whose_fence_is_not_above_the_stored_generation_is_rejected() {
    let harness = RedisHarness::standalone().await;
    let store = harness.store();
    let key = fresh_key();
    let lease = acquire(&store, &key, TTL).await;
    // A newer generation stored meanwhile, as by a holder that got the lease in a failover.
    let state = store.key_names(&key).state;
    let () = harness
        .raw(
            redis::cmd("HSET")
                .arg(state)
                .arg("gen")
                .arg(lease.fence() + 5),
        )
        .await;

    let outcome = store
        .commit(&lease, &token_valid_for("stale", LIFETIME))
        .await
        .unwrap();
    assert_eq!(outcome, CommitOutcome::Rejected);
    assert!(
        matches!(store.load(&key).await.unwrap().entry, Entry::Absent),
        "nothing was written"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generations_outlive_an_invalidation_and_a_lost_fence_counter() {
    let harness = RedisHarness::standalone().await;
    let store = harness.store();
    let key = fresh_key();
    let mut last = None;
    for round in 0..3 {
        let lease = acquire(&store, &key, TTL).await;
        let token = token_valid_for(&format!("round-{round}"), LIFETIME);
        assert_eq!(
            store.commit(&lease, &token).await.unwrap(),
            CommitOutcome::Committed
        );
        last = Some((lease.fence(), token));
    }
    let (generation, token) = last.unwrap();
    assert_eq!(
        store.invalidate(&key, &token.fingerprint()).await.unwrap(),
        InvalidateOutcome::Removed
    );
    // The counter is lost (evicted under memory pressure, deleted by hand): the generation kept
    // by the invalidation still puts the next fence above every one granted.
    let () = harness
        .raw(redis::cmd("DEL").arg(store.key_names(&key).fence))
        .await;

    let next = acquire(&store, &key, TTL).await;
    assert!(
        next.fence() > generation,
        "fence {} after generation {generation}",
        next.fence()
    );
}

async fn pttl(harness: &RedisHarness, key: &str) -> Duration {
    let ms: i64 = harness.raw(redis::cmd("PTTL").arg(key)).await;
    assert!(ms > 0, "{key} has no expiry (PTTL {ms})");
    Duration::from_millis(ms.unsigned_abs())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fence_counter_and_the_generation_expire_after_the_retention() {
    let harness = RedisHarness::standalone().await;
    let store = harness.store();
    let key = fresh_key();
    let lease = acquire(&store, &key, TTL).await;
    store
        .commit(&lease, &token_valid_for("kept", LIFETIME))
        .await
        .unwrap();
    let names = store.key_names(&key);
    for name in [&names.fence, &names.state] {
        assert!(pttl(&harness, name).await <= RETENTION, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_generation_is_kept_as_long_as_a_token_that_outlives_the_retention() {
    let harness = RedisHarness::standalone().await;
    let store = harness.store();
    let key = fresh_key();
    let lease = acquire(&store, &key, TTL).await;
    let long_lived = token_valid_for("long-lived", 3 * RETENTION);
    store.commit(&lease, &long_lived).await.unwrap();

    let names = store.key_names(&key);
    let state = pttl(&harness, &names.state).await;
    assert!(state > 2 * RETENTION, "the state goes after {state:?}");
    // Invalidating it later still finds its fingerprint.
    assert_eq!(
        store
            .invalidate(&key, &long_lived.fingerprint())
            .await
            .unwrap(),
        InvalidateOutcome::Removed
    );
}
