//! The operator's side of the store beyond the admin conformance suite: who holds a lease, what
//! a check reports, and which names under the prefix count as keys.

use std::time::Duration;

use kigo_core::codec::{Keyring, SealingKey};
use kigo_core::store::{HolderId, StoreAdmin};
use kigo_core::{TokenKey, TokenStore};
use kigo_store_redis::redis;
use kigo_testkit::conformance::{commit_token, fresh_key, test_keyring};

use super::support::{RedisHarness, acquire, token_valid_for};

const TTL: Duration = Duration::from_secs(30);

async fn holder(store: &dyn TokenStore, key: &TokenKey) -> Option<(HolderId, Option<Duration>)> {
    store.lease_holder(key).await.unwrap()
}

/// `lease_holder` names the holder of a running lease and the time left on it, on a server and
/// on a Cluster; no lease (never taken, released, ended by a commit, or a value that is no
/// lease) is `None`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lease_holder_is_named_with_the_time_left_while_the_lease_runs() {
    for harness in [
        RedisHarness::standalone().await,
        RedisHarness::cluster().await,
    ] {
        let store = harness.store();
        let key = fresh_key();
        assert_eq!(holder(&store, &key).await, None, "never leased");

        let lease = acquire(&store, &key, TTL).await;
        let (named, left) = holder(&store, &key).await.expect("a lease runs");
        assert_eq!(&named, lease.holder());
        let left = left.expect("time left");
        assert!(
            left <= TTL && left > TTL - Duration::from_secs(10),
            "{left:?}"
        );
        store.release_lease(&lease).await.unwrap();
        assert_eq!(holder(&store, &key).await, None, "released");

        let lease = acquire(&store, &key, TTL).await;
        let token = token_valid_for("holder", Duration::from_secs(1800));
        store.commit(&lease, &token).await.unwrap();
        assert_eq!(holder(&store, &key).await, None, "ended by the commit");

        let lease_key = store.key_names(&key).lease;
        let () = harness
            .raw(redis::cmd("SET").arg(&lease_key).arg("7:by-hand"))
            .await;
        assert_eq!(holder(&store, &key).await, None, "no TTL: no lease");
        let () = harness
            .raw(
                redis::cmd("SET")
                    .arg(&lease_key)
                    .arg("7:by-hand")
                    .arg("PX")
                    .arg(30_000),
            )
            .await;
        let (named, _) = holder(&store, &key).await.expect("a lease with a TTL");
        assert_eq!(named.as_str(), "by-hand");
    }
}

/// On a Redis of its own (whose clock is this machine's), the check reads every stored entry:
/// those sealed with a key this keyring lacks are unreadable, those under an older key of it
/// are counted for a rotation; a key without a token is not an entry. It reports where it
/// connected and how, a clock offset within the round trip, and leaves no key behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_check_counts_entries_sealed_with_another_keyring_as_unreadable() {
    let harness = RedisHarness::private().await;
    for _ in 0..2 {
        commit_token(&harness, &fresh_key(), "own").await;
    }
    let stranger = harness.store_with(test_keyring());
    let lease = acquire(&stranger, &fresh_key(), TTL).await;
    let token = token_valid_for("stranger", Duration::from_secs(1800));
    stranger.commit(&lease, &token).await.unwrap();
    let invalidated = fresh_key();
    let token = commit_token(&harness, &invalidated, "invalidated").await;
    harness
        .store()
        .invalidate(&invalidated, &token.fingerprint())
        .await
        .unwrap();
    let keys = harness.store().keys(None, 100).await.unwrap();
    assert_eq!(keys.len(), 4, "{keys:?}");

    let check = harness.store().check().await.unwrap();
    assert_eq!(
        (check.entries_read, check.entries_unreadable),
        (3, 1),
        "{check:?}"
    );
    assert_eq!(check.entries_under_older_keys, 0);
    assert!(
        check.permissions_ok && check.permission_problem.is_none(),
        "{check:?}"
    );
    let port = harness.single_node().port();
    assert_eq!(
        check.store,
        format!(
            "redis redis://127.0.0.1:{port} (prefix {})",
            harness.builder_prefix()
        )
    );
    assert!(check.transport.contains("loopback"), "{check:?}");
    let offset = check.clock_offset_ms.expect("Redis has a clock");
    assert!(offset.abs() < 1000, "the same machine's clock: {offset} ms");
    assert_eq!(
        harness.store().keys(None, 100).await.unwrap(),
        keys,
        "nothing left"
    );

    let new = SealingKey::from_bytes([9; 32]);
    let rotating = Keyring::new(new)
        .with_older_key(harness.keyring().current().clone())
        .unwrap();
    let check = harness.store_with(rotating).check().await.unwrap();
    assert_eq!(
        (
            check.entries_read,
            check.entries_unreadable,
            check.entries_under_older_keys
        ),
        (3, 1, 2),
        "{check:?}"
    );
}

/// Names under the prefix that the store did not write are not keys, and do not stop a listing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_leave_out_names_the_store_did_not_write() {
    let harness = RedisHarness::standalone().await;
    let key = fresh_key();
    commit_token(&harness, &key, "listed").await;
    let prefix = harness.builder_prefix();
    for foreign in ["{garbage}:state", "{p/%61cme}:state", "unrelated"] {
        let () = harness
            .raw(redis::cmd("SET").arg(format!("{prefix}{foreign}")).arg("x"))
            .await;
    }
    assert_eq!(harness.store().keys(None, 100).await.unwrap(), vec![key]);
}
