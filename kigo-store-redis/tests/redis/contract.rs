//! Lines of the store contract that the conformance suite cannot reach through the trait
//! alone: a fence against a generation written behind the store's back, generations that
//! outlive an invalidation, fences above those of the earlier layout (an upgrade on a live
//! Redis), one persistent key per token key, and how long it lives.

use std::time::Duration;

use kigo_core::TokenStore;
use kigo_core::store::{CommitOutcome, Entry, InvalidateOutcome};
use kigo_store_redis::redis;
use kigo_testkit::conformance::fresh_key;

use super::support::{Edit, RedisHarness, acquire, edit_record, token_valid_for};

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
    let record = store.key_names(&key).record;
    let () = harness
        .raw(&edit_record(&record, Edit::Generation(lease.fence() + 5)))
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
async fn generations_outlive_an_invalidation_and_a_fence_written_back() {
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
    // The fence is written back (by hand, or by a bug): the generation kept by the
    // invalidation still puts the next fence above every one granted.
    let record = store.key_names(&key).record;
    let () = harness.raw(&edit_record(&record, Edit::Fence(0))).await;

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

/// After a commit, the lease and the cool-down are gone: the record is the one key left, and
/// it goes one retention later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_committed_key_leaves_one_record_that_expires_after_the_retention() {
    let harness = RedisHarness::standalone().await;
    let store = harness.store();
    let key = fresh_key();
    store.set_cooldown(&key, TTL).await.unwrap();
    let lease = acquire(&store, &key, TTL).await;
    let record = store.key_names(&key).record;
    assert!(
        pttl(&harness, &record).await <= RETENTION,
        "after the grant"
    );
    store
        .commit(&lease, &token_valid_for("kept", LIFETIME))
        .await
        .unwrap();
    let names = store.key_names(&key);
    let left: u64 = harness
        .raw(
            redis::cmd("EXISTS")
                .arg(&names.record)
                .arg(&names.lease)
                .arg(&names.cooldown),
        )
        .await;
    assert_eq!(left, 1, "the record alone");
    let kept = pttl(&harness, &record).await;
    assert!(
        kept <= RETENTION && kept > RETENTION - Duration::from_secs(60),
        "{kept:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_generation_is_kept_as_long_as_a_token_that_outlives_the_retention() {
    let harness = RedisHarness::standalone().await;
    let store = harness.store();
    let key = fresh_key();
    let lease = acquire(&store, &key, TTL).await;
    let long_lived = token_valid_for("long-lived", 3 * RETENTION);
    store.commit(&lease, &long_lived).await.unwrap();

    let record = store.key_names(&key).record;
    let kept = pttl(&harness, &record).await;
    assert!(kept > 2 * RETENTION, "the record goes after {kept:?}");
    // A lease granted later keeps it as long.
    let lease = acquire(&store, &key, TTL).await;
    store.release_lease(&lease).await.unwrap();
    assert!(pttl(&harness, &record).await > 2 * RETENTION);
    // Invalidating it later still finds its fingerprint.
    assert_eq!(
        store
            .invalidate(&key, &long_lived.fingerprint())
            .await
            .unwrap(),
        InvalidateOutcome::Removed
    );
}

/// A fleet upgraded on a live Redis finds the fence counter and the state hash of the earlier
/// layout (`…:fence`, `…:state`): the fences it grants go on above them, never back. Its old
/// `…:token` entry is not read: the key's next token is created anew.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fences_go_on_above_the_earlier_layout_after_an_upgrade() {
    let harness = RedisHarness::standalone().await;
    let store = harness.store();
    let key = fresh_key();
    let names = store.key_names(&key);
    let old_token = format!("{}:token", names.record);
    let () = harness
        .raw(
            redis::cmd("HSET")
                .arg(&names.legacy_state)
                .arg("gen")
                .arg(41)
                .arg("fp")
                .arg("0123"),
        )
        .await;
    let () = harness
        .raw(redis::cmd("SET").arg(&names.legacy_fence).arg(40))
        .await;
    let () = harness
        .raw(
            redis::cmd("SET")
                .arg(&old_token)
                .arg("an entry of the earlier layout"),
        )
        .await;
    assert!(matches!(
        store.load(&key).await.unwrap().entry,
        Entry::Absent
    ));

    let lease = acquire(&store, &key, TTL).await;
    assert_eq!(lease.fence(), 42, "above the earlier generation");
    store.release_lease(&lease).await.unwrap();
    // A replica of the earlier version still granting fences meanwhile.
    let () = harness
        .raw(redis::cmd("SET").arg(&names.legacy_fence).arg(50))
        .await;
    let lease = acquire(&store, &key, TTL).await;
    assert_eq!(lease.fence(), 51, "above the earlier counter");
    let token = token_valid_for("upgraded", LIFETIME);
    assert_eq!(
        store.commit(&lease, &token).await.unwrap(),
        CommitOutcome::Committed
    );
    let loaded = store.load(&key).await.unwrap();
    assert_eq!(loaded.token().unwrap().generation(), 51);
    let () = harness
        .raw(
            redis::cmd("DEL")
                .arg(&names.legacy_state)
                .arg(&names.legacy_fence)
                .arg(&old_token),
        )
        .await;
}

/// A record holds fences below 2^40: at the limit, `acquire_lease` fails rather than wrap
/// around to a fence already granted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fences_at_the_records_limit_fail_rather_than_wrap() {
    let harness = RedisHarness::standalone().await;
    let store = harness.store();
    let key = fresh_key();
    let record = store.key_names(&key).record;
    let () = harness
        .raw(&edit_record(&record, Edit::Fence((1 << 40) - 2)))
        .await;
    let lease = acquire(&store, &key, TTL).await;
    assert_eq!(lease.fence(), (1 << 40) - 1, "the last fence");
    store.release_lease(&lease).await.unwrap();
    let refused = store
        .acquire_lease(&key, &kigo_core::store::HolderId::random(), TTL)
        .await;
    assert!(refused.is_err(), "{refused:?}");
    let () = harness.raw(redis::cmd("DEL").arg(&record)).await;
}
