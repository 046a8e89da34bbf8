//! Waiters are woken by pub/sub, and a lost notification costs at most one poll interval; a
//! subscription that is killed or falls silent ends the feed, and the manager subscribes again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use kigo_core::{TokenKey, TokenManager, TokenStore};
use kigo_store_redis::{RedisStore, redis};
use kigo_testkit::conformance::fresh_key;
use kigo_testkit::{FakeSource, FaultyStore};
use tokio::task::JoinHandle;

use super::proxy::{Cut, CuttingProxy};
use super::support::{RedisHarness, replica, slow_source, within};

const POLL_INTERVAL: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_whose_notification_is_lost_finishes_within_one_poll_interval() {
    let harness = RedisHarness::standalone().await;
    let key = fresh_key();
    let source = slow_source(Duration::from_millis(300));
    let holder = replica(&source, Arc::new(harness.store()), "holder")
        .poll_interval(POLL_INTERVAL)
        .build()
        .unwrap();
    let deaf_store = FaultyStore::new(Arc::new(harness.store()));
    deaf_store.mute_changes(true);
    let waiter = replica(&source, Arc::new(deaf_store), "waiter")
        .poll_interval(POLL_INTERVAL)
        .build()
        .unwrap();

    let holder_handle = holder.handle(key.clone()).unwrap();
    let holding = tokio::spawn(async move {
        let token = holder_handle.token().await.unwrap();
        (token.fingerprint(), Instant::now())
    });
    within("the holder creates", source.wait_for_calls(1)).await;
    let waiting = waiter.handle(key.clone()).unwrap();
    let waited = waiting.token().await.unwrap();
    let waiter_done = Instant::now();
    let (committed, holder_done) = holding.await.unwrap();

    assert_eq!(waited.fingerprint(), committed);
    assert_eq!(source.creations(), 1);
    assert_eq!(waiter.metrics().lease_waits, 1);
    let late = waiter_done.saturating_duration_since(holder_done);
    assert!(
        late <= POLL_INTERVAL + Duration::from_millis(250),
        "the waiter finished {late:?} after the commit"
    );
    holder.shutdown().await;
    waiter.shutdown().await;
}

/// A holder about to create a token, and a subscribed waiter whose poll interval is `poll`.
struct Waiting {
    key: TokenKey,
    source: FakeSource,
    holder: TokenManager,
    waiter: TokenManager,
    poll: Duration,
}

impl Waiting {
    async fn start(harness: &RedisHarness, poll: Duration) -> Self {
        let key = fresh_key();
        let source = slow_source(Duration::from_millis(300));
        let holder = replica(&source, Arc::new(harness.store()), "holder")
            .build()
            .unwrap();
        let waiter = replica(&source, Arc::new(harness.store()), "waiter")
            .poll_interval(poll)
            .max_wait(Duration::from_secs(60))
            .lease_ttl(Duration::from_secs(60))
            .build()
            .unwrap();
        // The waiter's manager subscribes when it gets its first key; wait until Redis has it.
        drop(waiter.handle(key.clone()).unwrap());
        harness.subscribed().await;
        Self {
            key,
            source,
            holder,
            waiter,
            poll,
        }
    }

    /// The holder creates a token while the waiter waits; the waiter gets it within half its
    /// poll interval, before its first poll could come: woken by the change notice.
    async fn woken_by_a_notice(self) {
        let holder_handle = self.holder.handle(self.key.clone()).unwrap();
        let holding =
            tokio::spawn(async move { holder_handle.token().await.unwrap().fingerprint() });
        within("the holder creates", self.source.wait_for_calls(1)).await;
        let started = Instant::now();
        let waited = within("the waiter is woken", self.waiter.token(&self.key))
            .await
            .unwrap();
        assert_eq!(waited.fingerprint(), holding.await.unwrap());
        assert!(
            started.elapsed() < self.poll / 2,
            "woken after {:?}: by a poll, not a notice",
            started.elapsed()
        );
        self.holder.shutdown().await;
        self.waiter.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notified_waiter_finishes_long_before_its_poll_interval() {
    let harness = RedisHarness::standalone().await;
    Waiting::start(&harness, Duration::from_secs(30))
        .await
        .woken_by_a_notice()
        .await;
}

/// Drains the change feed of `store` until it ends.
fn follow(store: &RedisStore) -> JoinHandle<()> {
    let mut feed = store.changes().unwrap();
    tokio::spawn(async move { while feed.next().await.is_some() {} })
}

async fn kill_subscriptions(harness: &RedisHarness) {
    let killed: u64 = harness
        .raw(redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("pubsub"))
        .await;
    assert!(killed >= 1, "no subscription to kill");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_subscription_ends_the_feed() {
    let harness = RedisHarness::private().await;
    let feed = follow(&harness.store());
    harness.subscribed().await;
    kill_subscriptions(&harness).await;
    within("the feed ends", feed).await.unwrap();
}

/// A connection that goes silent (a network failure leaves it half-open) fails the store's
/// `PING`, which ends the feed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_that_falls_silent_ends_the_feed() {
    let harness = RedisHarness::private().await;
    let proxy = CuttingProxy::start(harness.single_node().port()).await;
    let store = RedisStore::builder()
        .url(proxy.url())
        .prefix(harness.builder_prefix())
        .keyring(harness.keyring())
        .heartbeat(Duration::from_millis(200))
        .response_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let feed = follow(&store);
    harness.subscribed().await;
    proxy.arm(Cut::Silence);
    within("the silent feed ends", feed).await.unwrap();
}

/// After its subscription is killed, a manager subscribes again (after one poll interval) and
/// its waiters are woken by notices again, long before they would poll.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_killed_subscription_waiters_are_woken_by_notices_again() {
    let harness = RedisHarness::private().await;
    // Short enough for the manager's pause before it subscribes again.
    let waiting = Waiting::start(&harness, Duration::from_secs(8)).await;
    kill_subscriptions(&harness).await;
    harness
        .subscribers_until("the subscription is gone", |count| count == 0)
        .await;
    harness
        .subscribers_until("the waiter subscribes again", |count| count == 1)
        .await;
    waiting.woken_by_a_notice().await;
}
