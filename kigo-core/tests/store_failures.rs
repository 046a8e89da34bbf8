//! Properties 4 and 7: a lease holder that vanishes, lost notices, corrupt entries, and a store
//! that fails: the valid token keeps being served, the policy decides, and the manager rejoins.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{MIN_TOKEN_AGE, World, partner, spawn_caller, warm, without_waiting};
use kigo_core::manager::StoreTimedOut;
use kigo_core::store::{Entry, HolderId, LeaseAttempt};
use kigo_core::{Error, StoreError, StoreFailurePolicy, Token, TokenKey, TokenManager, TokenStore};
use kigo_testkit::{FaultyStore, Gate, settle};

const SECOND: Duration = Duration::from_secs(1);
const LEASE_TTL: Duration = Duration::from_secs(30);

#[tokio::test(start_paused = true)]
async fn a_vanished_lease_holder_is_replaced_once_its_lease_lapses() {
    let world = World::new();
    let key = partner("acme");
    // A replica claimed the lease and died before committing.
    let claim = world
        .store
        .acquire_lease(&key, &HolderId::random(), LEASE_TTL)
        .await
        .unwrap();
    assert!(matches!(claim, LeaseAttempt::Acquired(_)));
    let claimed_at = world.now();

    let manager = world.builder(30).lease_ttl(LEASE_TTL).build().unwrap();
    let caller = spawn_caller(manager.handle(key.clone()).unwrap());
    world.run_for(LEASE_TTL - SECOND, SECOND / 2).await;
    assert_eq!(
        world.source.creations(),
        0,
        "nobody creates while the lease is held"
    );
    assert!(!caller.is_finished());
    world.run_for(2 * SECOND, SECOND / 2).await;
    caller
        .await
        .unwrap()
        .expect("the waiting caller gets the new token");
    let calls = world.source.calls();
    assert_eq!(calls.len(), 1);
    assert!(calls[0].at.duration_since(claimed_at).unwrap() >= LEASE_TTL);
}

#[tokio::test(start_paused = true)]
async fn while_a_vanished_holder_blocks_renewal_the_old_token_is_served() {
    let world = World::new();
    let key = partner("acme");
    let manager = world.builder(31).lease_ttl(LEASE_TTL).build().unwrap();
    let handle = manager.handle(key.clone()).unwrap();
    let old = warm(&handle).await;
    let token = handle.cached().unwrap();
    let refresh_in = manager
        .refresh_at(&token)
        .duration_since(world.now())
        .unwrap();
    drop(token);
    world.clock.advance(refresh_in - SECOND);
    // Just before this replica's refresh point, another replica claims and dies.
    world
        .store
        .acquire_lease(&key, &HolderId::random(), LEASE_TTL)
        .await
        .unwrap();

    for _ in 0..(LEASE_TTL.as_secs() - 2) {
        world.run_for(SECOND, SECOND).await;
        assert_eq!(
            without_waiting(&handle),
            Some(old),
            "the old token is served meanwhile"
        );
    }
    world.run_for(LEASE_TTL, SECOND).await;
    let renewed = without_waiting(&handle).expect("renewed without waiting");
    assert_ne!(renewed, old);
    assert_eq!(world.source.creations(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_lost_change_notice_costs_at_most_one_poll_interval() {
    let world = World::with_latency(2 * SECOND);
    let poll = Duration::from_millis(500);
    let faulty = FaultyStore::new(Arc::new(world.store.clone()));
    faulty.mute_changes(true);
    let holder = world
        .builder_on(40, Arc::new(faulty.clone()))
        .poll_interval(poll)
        .build()
        .unwrap();
    let waiter = world
        .builder_on(41, Arc::new(faulty.clone()))
        .poll_interval(poll)
        .build()
        .unwrap();

    let first = spawn_caller(holder.handle(partner("acme")).unwrap());
    world.source.wait_for_calls(1).await;
    let second = spawn_caller(waiter.handle(partner("acme")).unwrap());
    settle().await;
    assert_eq!(
        waiter.metrics().lease_waits,
        1,
        "the second replica waits for the holder"
    );

    world.clock.advance(2 * SECOND);
    settle().await;
    let committed = first.await.unwrap().unwrap();
    // No notice reaches the waiter; it must find the token by polling within one interval.
    let step = Duration::from_millis(50);
    let mut waited = Duration::ZERO;
    while !second.is_finished() {
        assert!(
            waited < poll,
            "the waiter was still waiting after a whole poll interval"
        );
        world.clock.advance(step);
        settle().await;
        waited += step;
    }
    assert_eq!(second.await.unwrap().unwrap(), committed);
    assert_eq!(world.source.creations(), 1);
}

#[tokio::test(start_paused = true)]
async fn corrupt_store_entries_are_replaced_by_a_fresh_token() {
    let world = World::new();
    let key = partner("acme");
    world
        .store
        .write_raw(&key, b"\x00\x01 definitely not a token");
    let manager = world.manager(50);
    let handle = manager.handle(key.clone()).unwrap();
    let token = handle
        .token()
        .await
        .expect("a fresh token replaces the corrupt entry");
    let stored = world.store.load(&key).await.unwrap();
    let Entry::Present(stored) = stored.entry else {
        panic!("the store still holds {:?}", stored.entry);
    };
    assert_eq!(stored.fingerprint(), token.fingerprint());
    assert!(!format!("{token:?}").contains(token.secret().expose()));
}

struct Outage {
    world: World,
    faulty: FaultyStore,
    manager: kigo_core::TokenManager,
    handle: kigo_core::TokenHandle,
}

/// How the store breaks.
#[derive(Clone, Copy)]
enum Fault {
    /// Every operation fails at once.
    Fails,
    /// Every operation hangs (a black-holed connection).
    Hangs,
}

/// A warm manager whose store then breaks, with the clock just past the token's stale point.
async fn outage_until_stale(
    policy: StoreFailurePolicy,
    fault: Fault,
) -> (Outage, kigo_core::Fingerprint) {
    let world = World::new();
    let faulty = FaultyStore::new(Arc::new(world.store.clone()));
    let manager = world
        .builder_on(60, Arc::new(faulty.clone()))
        .store_failure(policy)
        .build()
        .unwrap();
    let handle = manager.handle(partner("acme")).unwrap();
    let valid = warm(&handle).await;
    match fault {
        Fault::Fails => faulty.set_failing(true),
        Fault::Hangs => faulty.set_hanging(true),
    }
    // Through the refresh window the cached token is served while the store is down.
    for _ in 0..(1700 / 10) {
        world.run_for(10 * SECOND, 10 * SECOND).await;
        assert_eq!(without_waiting(&handle), Some(valid));
    }
    world.run_for(20 * SECOND, 10 * SECOND).await;
    (
        Outage {
            world,
            faulty,
            manager,
            handle,
        },
        valid,
    )
}

#[tokio::test(start_paused = true)]
async fn store_down_and_fail_closed_refuses_once_the_token_is_stale_then_recovers() {
    let (outage, _) = outage_until_stale(StoreFailurePolicy::FailClosed, Fault::Fails).await;
    let error = outage.handle.token().await.expect_err("fail closed");
    assert!(matches!(error, Error::StoreUnavailable { .. }), "{error:?}");
    assert_eq!(
        outage.world.source.creations(),
        1,
        "nothing created without the store"
    );

    outage.faulty.set_failing(false);
    outage.world.run_for(60 * SECOND, SECOND).await;
    let token = outage.handle.token().await.expect("recovered by itself");
    let stored = outage.world.store.load(&partner("acme")).await.unwrap();
    assert_eq!(
        stored.token().map(|t| t.fingerprint()),
        Some(token.fingerprint()),
        "rejoined the store"
    );
}

#[tokio::test(start_paused = true)]
async fn store_down_and_create_locally_creates_under_a_rate_limit_then_rejoins() {
    let min_interval = Duration::from_secs(30);
    let (outage, _) = outage_until_stale(
        StoreFailurePolicy::CreateLocally { min_interval },
        Fault::Fails,
    )
    .await;
    let local = outage
        .handle
        .token()
        .await
        .expect("created locally")
        .fingerprint();
    assert_eq!(outage.manager.metrics().local_creations, 1);

    // Needed again soon (say the API rejected it): the local rate limit holds.
    outage.world.clock.advance(MIN_TOKEN_AGE);
    assert!(outage.handle.invalidate(&local));
    let error = outage.handle.token().await.expect_err("rate limited");
    let Error::StoreUnavailable {
        retry_after: Some(retry_after),
        ..
    } = error
    else {
        panic!("expected a store error with a retry hint, got {error:?}");
    };
    assert!(retry_after <= min_interval);
    outage.world.run_for(min_interval, SECOND).await;
    outage
        .handle
        .token()
        .await
        .expect("allowed again after the interval");
    assert_eq!(outage.manager.metrics().local_creations, 2);

    // The store comes back: the next renewal goes through it again.
    outage.faulty.set_failing(false);
    outage
        .world
        .run_for(Duration::from_secs(30 * 60), 10 * SECOND)
        .await;
    let token = without_waiting(&outage.handle).expect("served");
    let stored = outage.world.store.load(&partner("acme")).await.unwrap();
    assert_eq!(
        stored.token().map(|t| t.fingerprint()),
        Some(token),
        "rejoined the store"
    );
    assert_eq!(outage.manager.metrics().local_creations, 2);
}

#[tokio::test(start_paused = true)]
async fn a_store_that_stops_answering_counts_as_down_after_the_store_timeout() {
    let (outage, _) = outage_until_stale(StoreFailurePolicy::FailClosed, Fault::Hangs).await;
    let caller = spawn_caller(outage.handle.clone());
    // The default store timeout is 5 s: by then the caller has its answer.
    outage.world.run_for(5 * SECOND, SECOND).await;
    assert!(
        caller.is_finished(),
        "a caller hung on a store that never answers"
    );
    let error = caller.await.unwrap().expect_err("fail closed");
    let Error::StoreUnavailable { source, .. } = &error else {
        panic!("expected a store error, got {error:?}");
    };
    let StoreError::Unavailable { source } = source else {
        panic!("expected an unavailable store, got {source:?}");
    };
    assert!(
        source.downcast_ref::<StoreTimedOut>().is_some(),
        "{source:?}"
    );
    assert!(outage.manager.metrics().store_errors > 0);
}

#[tokio::test(start_paused = true)]
async fn a_lost_change_feed_is_followed_again_within_milliseconds() {
    let world = World::new();
    let faulty = FaultyStore::new(Arc::new(world.store.clone()));
    let manager = world
        .builder_on(43, Arc::new(faulty.clone()))
        .poll_interval(Duration::from_secs(30))
        .build()
        .unwrap();
    warm(&manager.handle(partner("acme")).unwrap()).await;
    settle().await;
    assert_eq!(faulty.subscriptions(), 1);

    let millis = Duration::from_millis;
    faulty.cut_changes();
    settle().await;
    world.clock.advance(millis(10));
    settle().await;
    assert_eq!(
        faulty.subscriptions(),
        2,
        "subscribed again after 10 ms, not a poll interval"
    );

    // A feed that ends again without a notice: the pause doubles.
    faulty.cut_changes();
    settle().await;
    world.clock.advance(millis(10));
    settle().await;
    assert_eq!(faulty.subscriptions(), 2);
    world.clock.advance(millis(10));
    settle().await;
    assert_eq!(faulty.subscriptions(), 3);
}

/// A manager on `world`'s store behind a [`FaultyStore`] that the test steers.
fn on_faulty_store(world: &World, seed: u64) -> (FaultyStore, TokenManager) {
    let faulty = FaultyStore::new(Arc::new(world.store.clone()));
    let manager = world
        .builder_on(seed, Arc::new(faulty.clone()))
        .build()
        .unwrap();
    (faulty, manager)
}

/// Whether another holder can claim `key`'s lease now.
async fn lease_is_free(world: &World, key: &TokenKey) -> bool {
    let holder = HolderId::random();
    let attempt = world.store.acquire_lease(key, &holder, LEASE_TTL).await;
    matches!(attempt.unwrap(), LeaseAttempt::Acquired(_))
}

#[tokio::test(start_paused = true)]
async fn a_commit_whose_answer_is_lost_commits_the_same_token_under_a_new_lease() {
    let world = World::new();
    let (faulty, manager) = on_faulty_store(&world, 44);
    let key = partner("acme");
    faulty.fail_commits(1);

    let served = warm(&manager.handle(key.clone()).unwrap()).await;
    assert_eq!(
        world.source.creations(),
        1,
        "the token is not created twice"
    );
    let stored = world.store.load(&key).await.unwrap();
    assert_eq!(stored.token().map(Token::fingerprint), Some(served));
}

#[tokio::test(start_paused = true)]
async fn a_store_that_takes_no_commits_costs_one_creation_and_serves_the_token() {
    let world = World::new();
    let (faulty, manager) = on_faulty_store(&world, 45);
    let key = partner("acme");
    faulty.fail_commits(u64::MAX);

    // Loads and leases work, every commit fails: the flight gives up on the store after two
    // commits of the same token instead of creating a token per attempt for ever.
    let caller = spawn_caller(manager.handle(key.clone()).unwrap());
    settle().await;
    assert!(caller.is_finished(), "the caller still waits");
    caller.await.unwrap().expect("the created token is served");
    assert_eq!(world.source.creations(), 1);
    assert!(
        manager.metrics().store_errors > 0,
        "counted as a store failure"
    );
    assert!(world.store.load(&key).await.unwrap().token().is_none());
    assert!(lease_is_free(&world, &key).await, "no lease left behind");
}

#[tokio::test(start_paused = true)]
async fn shutdown_waits_for_the_release_of_a_lease_its_flight_held() {
    let world = World::new();
    let (faulty, manager) = on_faulty_store(&world, 46);
    let key = partner("acme");
    faulty.hold(Gate::BeforeCommit);
    let caller = spawn_caller(manager.handle(key.clone()).unwrap());
    assert!(faulty.reached(Gate::BeforeCommit, SECOND).await);

    // Shutdown cancels the flight, whose lease is released in the background: shutdown waits
    // for that release, so that a process exiting right after it leaves no lease behind.
    faulty.hold(Gate::BeforeRelease);
    let shutdown = tokio::spawn({
        let manager = manager.clone();
        async move { manager.shutdown().await }
    });
    assert!(faulty.reached(Gate::BeforeRelease, SECOND).await);
    settle().await;
    assert!(
        !shutdown.is_finished(),
        "shutdown returned before the release"
    );
    faulty.open(Gate::BeforeRelease);
    shutdown.await.unwrap();
    assert!(
        lease_is_free(&world, &key).await,
        "released before shutdown returned"
    );
    assert!(matches!(caller.await.unwrap(), Err(Error::ShutDown)));
}

#[tokio::test(start_paused = true)]
async fn entries_this_replica_cannot_open_are_left_alone_and_reported() {
    use kigo_core::codec::{EntryCodec, Keyring, SealingKey};

    let world = World::new();
    let sealed = |byte| EntryCodec::sealed(Keyring::new(SealingKey::from_bytes([byte; 32])));
    let store = kigo_core::MemoryStore::with_codec(Arc::new(world.clock.clone()), sealed(1));
    let key = partner("acme");
    // The fleet's entry, sealed with a key this replica lacks.
    let fleet_token = Token::new(
        kigo_core::TokenSecret::new("the-fleets-token"),
        world.now(),
        world.now() + common::LIFETIME,
    )
    .unwrap();
    let entry = sealed(2).encode(&key, 0, &fleet_token);
    store.write_raw(&key, &entry);

    let manager = world
        .builder_on(79, Arc::new(store.clone()))
        .build()
        .unwrap();
    let error = manager.token(&key).await.unwrap_err();
    assert!(
        matches!(error, Error::StoreMisconfigured { .. }),
        "{error:?}"
    );
    assert!(!error.is_transient());
    assert_eq!(
        world.source.creations(),
        0,
        "nothing created without the store"
    );
    assert_eq!(
        store.read_raw(&key).as_deref(),
        Some(&entry[..]),
        "left as it was"
    );
    // Asked again later: still reported, still untouched.
    world
        .run_for(Duration::from_secs(60), Duration::from_secs(1))
        .await;
    assert!(matches!(
        manager.token(&key).await,
        Err(Error::StoreMisconfigured { .. })
    ));
    assert_eq!(store.read_raw(&key).as_deref(), Some(&entry[..]));
}
