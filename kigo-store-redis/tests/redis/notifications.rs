//! Waiters are woken by pub/sub, and a lost notification costs at most one poll interval.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kigo_testkit::FaultyStore;
use kigo_testkit::conformance::fresh_key;

use super::support::{RedisHarness, replica, slow_source};

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

    let holder_handle = holder.handle(key.clone());
    let holding = tokio::spawn(async move {
        let token = holder_handle.token().await.unwrap();
        (token.fingerprint(), Instant::now())
    });
    source.wait_for_calls(1).await;
    let waiting = waiter.handle(key.clone());
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notified_waiter_finishes_long_before_its_poll_interval() {
    let harness = RedisHarness::standalone().await;
    let key = fresh_key();
    let source = slow_source(Duration::from_millis(300));
    // A poll interval far beyond the test's patience: only the notification can wake the waiter.
    let slow_poll = Duration::from_secs(30);
    let holder = replica(&source, Arc::new(harness.store()), "holder")
        .build()
        .unwrap();
    let waiter = replica(&source, Arc::new(harness.store()), "waiter")
        .poll_interval(slow_poll)
        .max_wait(Duration::from_secs(60))
        .lease_ttl(Duration::from_secs(60))
        .build()
        .unwrap();
    // The waiter's manager subscribes when it gets its first key; wait until Redis has it.
    let waiting = waiter.handle(key.clone());
    harness.subscribed().await;

    let holder_handle = holder.handle(key.clone());
    let holding = tokio::spawn(async move { holder_handle.token().await.unwrap().fingerprint() });
    source.wait_for_calls(1).await;
    let started = Instant::now();
    let waited = tokio::time::timeout(Duration::from_secs(10), waiting.token())
        .await
        .expect("woken by the change notice")
        .unwrap();
    assert_eq!(waited.fingerprint(), holding.await.unwrap());
    assert!(started.elapsed() < Duration::from_secs(10));
    holder.shutdown().await;
    waiter.shutdown().await;
}
