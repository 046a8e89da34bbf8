//! Property 11: a bug in a source or a store (a panic), or an absurd value from either, fails one
//! refresh, never a key for the life of the process.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use common::{MIN_TOKEN_AGE, World, partner, reach_refresh_point, warm, without_waiting};
use kigo_core::manager::RefreshPanicked;
use kigo_core::{Error, KeyScope, Token, TokenManager, TokenSecret};
use kigo_testkit::{FaultyStore, MockRespond, MockTokenSource, Scripted, settle};

/// The manager's default poll interval: the longest a key may take to serve again.
const POLL_INTERVAL: Duration = Duration::from_millis(500);

fn panicked(error: &Error) -> bool {
    matches!(error, Error::Unavailable { source: Some(source), .. }
        if source.cause().downcast_ref::<RefreshPanicked>().is_some())
}

#[tokio::test(start_paused = true)]
async fn a_source_that_panics_once_fails_that_refresh_and_the_next_call_is_served() {
    let world = World::new();
    world.source.script([Scripted::Panic]);
    let manager = world.manager(90);
    let handle = manager.handle(partner("acme")).unwrap();

    let error = handle.token().await.unwrap_err();
    assert!(panicked(&error), "{error:?}");
    assert!(error.is_transient());
    assert!(
        error
            .retry_after()
            .is_some_and(|after| after <= POLL_INTERVAL)
    );
    handle.token().await.expect("served again at once");
    assert_eq!(manager.metrics().panics, 1);
}

#[tokio::test(start_paused = true)]
async fn a_renewal_that_panics_is_retried_by_the_refresher_within_a_poll_interval() {
    let world = World::new();
    let manager = world.manager(91);
    let handle = manager.handle(partner("acme")).unwrap();
    let first = warm(&handle).await;
    world.source.script([Scripted::Panic]);
    reach_refresh_point(&world, &manager, &handle).await;
    assert_eq!(
        world.source.calls().len(),
        2,
        "the renewal ran, and panicked"
    );
    assert_eq!(
        without_waiting(&handle),
        Some(first),
        "still served meanwhile"
    );

    world.run_for(POLL_INTERVAL, POLL_INTERVAL).await;
    let renewed = without_waiting(&handle).expect("served without waiting");
    assert_ne!(
        renewed, first,
        "renewed by the refresher, no caller involved"
    );
    assert_eq!(world.source.creations(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_store_that_panics_once_fails_that_refresh_and_the_next_call_is_served() {
    let world = World::new();
    let store = FaultyStore::new(Arc::new(world.store.clone()));
    let manager = world
        .builder_on(92, Arc::new(store.clone()))
        .build()
        .unwrap();
    let handle = manager.handle(partner("acme")).unwrap();
    settle().await; // the change feed is subscribed to: the next operation is the flight's
    store.panic_next(1);

    let error = handle.token().await.unwrap_err();
    assert!(panicked(&error), "{error:?}");
    handle.token().await.expect("served again at once");
    assert_eq!(world.source.creations(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_store_whose_change_feed_panics_is_followed_again() {
    let world = World::new();
    let store = FaultyStore::new(Arc::new(world.store.clone()));
    let manager = world
        .builder_on(93, Arc::new(store.clone()))
        .build()
        .unwrap();
    let handle = manager.handle(partner("acme")).unwrap();
    warm(&handle).await;
    let subscribed = store.subscriptions();
    // The next operation panics: let it be the feed's restart after a cut.
    store.panic_next(1);
    store.cut_changes();
    world.run_for(POLL_INTERVAL * 4, POLL_INTERVAL).await;
    assert!(store.subscriptions() > subscribed, "subscribed again");
    assert_eq!(without_waiting(&handle).map(|_| ()), Some(()));
}

#[tokio::test(start_paused = true)]
async fn an_absurd_retry_after_never_breaks_the_key() {
    let world = World::new();
    let manager = world.manager(94);
    let handle = manager.handle(partner("acme")).unwrap();
    let valid = warm(&handle).await;
    world
        .source
        .script([Scripted::Transient(Some(Duration::MAX))]);
    reach_refresh_point(&world, &manager, &handle).await;
    assert_eq!(
        without_waiting(&handle),
        Some(valid),
        "the valid token is still served"
    );

    // Past its stale point, callers are told when to come back: within the hour honoured.
    world
        .run_for(Duration::from_secs(10 * 60), Duration::from_secs(60))
        .await;
    let error = handle.token().await.unwrap_err();
    assert!(
        matches!(error, Error::Unavailable { retry_after: Some(after), .. } if after <= Duration::from_secs(3600)),
        "{error:?}"
    );
    world
        .run_for(Duration::from_secs(3600), Duration::from_secs(60))
        .await;
    settle().await;
    world.run_for(POLL_INTERVAL, POLL_INTERVAL).await;
    handle
        .token()
        .await
        .expect("served again once the pause ends");
}

#[tokio::test(start_paused = true)]
async fn a_token_that_expires_at_the_end_of_time_is_served_renewed_and_stored() {
    let world = World::new();
    let far = SystemTime::UNIX_EPOCH
        .checked_add(Duration::from_secs(i64::MAX as u64 / 4))
        .unwrap_or(SystemTime::UNIX_EPOCH + Duration::from_secs(1 << 40));
    let created = AtomicU64::new(0);
    let mut respond = MockRespond::new();
    respond.expect_respond().returning(move |_, _, at| {
        let n = created.fetch_add(1, Ordering::SeqCst);
        Ok(Token::new(TokenSecret::new(format!("forever-{n}")), at, far).unwrap())
    });
    let manager = TokenManager::builder(MockTokenSource(respond))
        .store(world.store.clone())
        .runtime(kigo_core::runtime::RuntimeEnv::manual(&world.clock).unwrap())
        .scope(KeyScope::AnyPartner)
        .build()
        .unwrap();
    let handle = manager.handle(partner("acme")).unwrap();
    let first = warm(&handle).await;
    assert!(manager.refresh_at(&handle.cached().unwrap()) > world.now());

    // Another replica reads it back from the store; a 401 renews it.
    let other = world.manager(95);
    assert_eq!(
        other.token(&partner("acme")).await.unwrap().fingerprint(),
        first
    );
    world.clock.advance(MIN_TOKEN_AGE);
    assert!(handle.invalidate(&first));
    assert_ne!(warm(&handle).await, first);
}
