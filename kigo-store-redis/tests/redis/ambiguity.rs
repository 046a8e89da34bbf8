//! Results the store cannot know directly: a connection cut before or after a script ran, a
//! script cache flushed, a lease lost in a failover.

use std::time::Duration;

use kigo_core::store::{CommitOutcome, HolderId, LeaseAttempt};
use kigo_core::{TokenKey, TokenStore};
use kigo_store_redis::RedisStore;
use kigo_store_redis::redis;
use kigo_testkit::conformance::fresh_key;

use super::proxy::{Cut, CuttingProxy};
use super::support::{Edit, RedisHarness, acquire, edit_record, token_valid_for};

const TTL: Duration = Duration::from_secs(30);
const LIFETIME: Duration = Duration::from_secs(1800);

/// A store whose connections to a private server (or the node of a private one-node cluster)
/// go through a cutting proxy, with every script already loaded.
///
/// The cluster node announces the proxy's port, so that the cluster client, which connects to
/// the nodes the cluster names, connects through the proxy too. That client sends a request
/// again by itself when its connection drops, so there the store sees no error at all: only
/// scripts whose repetition is harmless give the right result.
async fn behind_proxy(harness: &RedisHarness) -> (CuttingProxy, RedisStore) {
    let proxy = CuttingProxy::start(harness.single_node().port()).await;
    let builder = if harness.is_cluster() {
        let () = harness
            .raw(
                redis::cmd("CONFIG")
                    .arg("SET")
                    .arg("cluster-announce-port")
                    .arg(proxy.port()),
            )
            .await;
        RedisStore::builder().cluster_nodes([proxy.url()])
    } else {
        RedisStore::builder().url(proxy.url())
    };
    let store = builder
        .prefix(harness.builder_prefix())
        .keyring(harness.keyring())
        .build()
        .unwrap();
    let warm_up = fresh_key();
    let lease = acquire(&store, &warm_up, TTL).await;
    store
        .commit(&lease, &token_valid_for("warm-up", LIFETIME))
        .await
        .unwrap();
    store.load(&warm_up).await.unwrap();
    (proxy, store)
}

async fn lease_value(harness: &RedisHarness, key: &TokenKey) -> Option<String> {
    let lease = harness.store().key_names(key).lease;
    harness.raw(redis::cmd("GET").arg(lease)).await
}

async fn cut_acquire(harness: RedisHarness, cut: Cut) {
    let (proxy, store) = behind_proxy(&harness).await;
    let key = fresh_key();
    // A holder ID with the separator of the lease value in it.
    let holder = HolderId::new(format!("replica:{}", HolderId::random()));
    proxy.arm(cut);
    let attempt = store.acquire_lease(&key, &holder, TTL).await.unwrap();
    assert!(proxy.has_cut());
    let LeaseAttempt::Acquired(lease) = attempt else {
        panic!("{cut:?}: the acquire was not settled as granted: {attempt:?}");
    };
    assert_eq!(
        lease_value(&harness, &key).await,
        Some(format!("{}:{holder}", lease.fence())),
        "{cut:?}: the lease in Redis is the one reported"
    );
    assert_eq!(lease.fence(), 1, "{cut:?}: granted once, not twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acquire_cut_before_it_ran_is_run_again() {
    cut_acquire(RedisHarness::private().await, Cut::BeforeCommand).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acquire_cut_after_it_ran_is_found_granted() {
    cut_acquire(RedisHarness::private().await, Cut::AfterReply).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acquire_cut_before_it_ran_on_a_cluster_is_run_again() {
    cut_acquire(RedisHarness::private_cluster().await, Cut::BeforeCommand).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acquire_cut_after_it_ran_on_a_cluster_is_found_granted() {
    cut_acquire(RedisHarness::private_cluster().await, Cut::AfterReply).await;
}

async fn cut_commit(harness: RedisHarness, cut: Cut) {
    let (proxy, store) = behind_proxy(&harness).await;
    let key = fresh_key();
    let lease = acquire(&store, &key, TTL).await;
    let token = token_valid_for("cut", LIFETIME);
    proxy.arm(cut);
    let outcome = store.commit(&lease, &token).await.unwrap();
    assert!(proxy.has_cut());
    assert_eq!(outcome, CommitOutcome::Committed, "{cut:?}");
    let stored = harness.store().load(&key).await.unwrap();
    let stored = stored.token().unwrap();
    assert_eq!(stored.fingerprint(), token.fingerprint());
    assert_eq!(stored.generation(), lease.fence());
    assert_eq!(
        lease_value(&harness, &key).await,
        None,
        "{cut:?}: lease released"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_cut_before_it_ran_is_run_again() {
    cut_commit(RedisHarness::private().await, Cut::BeforeCommand).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_cut_after_it_ran_is_found_committed() {
    cut_commit(RedisHarness::private().await, Cut::AfterReply).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_cut_before_it_ran_on_a_cluster_is_run_again() {
    cut_commit(RedisHarness::private_cluster().await, Cut::BeforeCommand).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_cut_after_it_ran_on_a_cluster_is_found_committed() {
    cut_commit(RedisHarness::private_cluster().await, Cut::AfterReply).await;
}

/// A reconnect attempt that fails (Redis restarting, a network hiccup) is tried once more
/// within the same call, so that the call still succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_reconnect_is_tried_again_within_the_call() {
    let harness = RedisHarness::private().await;
    let (proxy, store) = behind_proxy(&harness).await;
    proxy.refuse_next(1);
    proxy.arm(Cut::BeforeCommand);
    store.load(&fresh_key()).await.unwrap();
    assert!(proxy.has_cut() && proxy.has_refused());
}

async fn scripts_survive_a_script_flush(harness: RedisHarness) {
    let store = harness.store();
    let key = fresh_key();
    let lease = acquire(&store, &key, TTL).await;
    let first = token_valid_for("before-flush", LIFETIME);
    assert_eq!(
        store.commit(&lease, &first).await.unwrap(),
        CommitOutcome::Committed
    );

    let () = harness.raw(redis::cmd("SCRIPT").arg("FLUSH")).await;

    let loaded = store.load(&key).await.unwrap();
    assert_eq!(loaded.token().unwrap().fingerprint(), first.fingerprint());
    let next = acquire(&store, &key, TTL).await;
    assert!(next.fence() > lease.fence());
    let second = token_valid_for("after-flush", LIFETIME);
    assert_eq!(
        store.commit(&next, &second).await.unwrap(),
        CommitOutcome::Committed
    );
    assert_eq!(
        store
            .load(&key)
            .await
            .unwrap()
            .token()
            .unwrap()
            .fingerprint(),
        second.fingerprint()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_survive_a_script_flush_on_a_server() {
    // A server of its own: the flush must not touch servers other tests (or people) use.
    scripts_survive_a_script_flush(RedisHarness::private().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_survive_a_script_flush_on_a_cluster() {
    scripts_survive_a_script_flush(RedisHarness::private_cluster().await).await;
}

/// The failover worst case: a replica promoted without the last writes has lost the lease (and
/// the fence step) of holder A, so B is granted the same fence while A still works. Both may
/// create a token; fencing lets only one be stored, and A learns it lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_lost_in_a_failover_gives_two_holders_but_one_stored_token() {
    let harness = RedisHarness::standalone().await;
    let (a, b) = (harness.store(), harness.store());
    let key = fresh_key();
    let names = a.key_names(&key);
    let lease_a = acquire(&a, &key, TTL).await;

    // The promoted replica never saw A's grant.
    let () = harness.raw(redis::cmd("DEL").arg(&names.lease)).await;
    let () = harness
        .raw(&edit_record(
            &names.record,
            Edit::Fence(lease_a.fence() - 1),
        ))
        .await;

    let lease_b = acquire(&b, &key, TTL).await;
    assert_eq!(
        lease_b.fence(),
        lease_a.fence(),
        "two holders of one generation"
    );
    let (token_a, token_b) = (
        token_valid_for("a", LIFETIME),
        token_valid_for("b", LIFETIME),
    );
    assert_eq!(
        b.commit(&lease_b, &token_b).await.unwrap(),
        CommitOutcome::Committed
    );
    assert_eq!(
        a.commit(&lease_a, &token_a).await.unwrap(),
        CommitOutcome::Rejected
    );
    for store in [&a, &b] {
        let stored = store.load(&key).await.unwrap();
        assert_eq!(stored.token().unwrap().fingerprint(), token_b.fingerprint());
    }
}
