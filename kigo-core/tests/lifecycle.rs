//! The manager's life: many keys, bounded user-level keys, renewal with the previous token, and
//! a clean shutdown.

mod common;

use std::time::Duration;

use common::{MIN_TOKEN_AGE, World, partner, user, warm};
use kigo_core::manager::BuildError;
use kigo_core::runtime::RuntimeEnv;
use kigo_core::{Error, Fingerprint, KeyScope, PartnerId, Token, TokenManager, TokenSecret};
use kigo_testkit::{ManualClock, MockRespond, MockTokenSource, settle};

#[tokio::test(start_paused = true)]
async fn each_key_has_its_own_token() {
    let world = World::new();
    let partners = world.manager(70);
    let users = world.builder(69).scope(KeyScope::AnyUser).build().unwrap();
    let acme = partner("acme");
    let mut seen = std::collections::HashSet::new();
    for key in [acme.clone(), partner("globex")] {
        seen.insert(partners.token(&key).await.unwrap().fingerprint());
    }
    for key in [user("acme", "alice"), user("acme", "bob")] {
        seen.insert(users.token(&key).await.unwrap().fingerprint());
    }
    assert_eq!(seen.len(), 4);
    assert_eq!(world.source.creations(), 4);
    // Asking again is served from each key's cache.
    partners.token(&acme).await.unwrap();
    users.token(&user("acme", "alice")).await.unwrap();
    assert_eq!(world.source.creations(), 4);
}

#[tokio::test(start_paused = true)]
async fn a_manager_refuses_keys_outside_its_scope_before_touching_store_or_source() {
    let world = World::new();
    let partners = world.manager(76);
    let acme = PartnerId::new("acme").unwrap();
    let users = world
        .builder(77)
        .scope(KeyScope::UsersOf(acme.clone()))
        .build()
        .unwrap();
    // The partner-level token is in the store the user-level manager shares.
    partners.token(&partner("acme")).await.unwrap();
    let store_before = format!("{:?}", world.store);
    for key in [partner("acme"), user("globex", "alice")] {
        match users.token(&key).await {
            Err(Error::ForeignKey {
                key: refused,
                scope,
            }) => {
                assert_eq!(refused, key);
                assert_eq!(scope, KeyScope::UsersOf(acme.clone()));
            }
            other => panic!("{key} was not refused: {other:?}"),
        }
        assert!(users.handle(key.clone()).is_err());
        assert!(!users.invalidate(&key, &Fingerprint::of("anything")));
    }
    assert_eq!(world.source.creations(), 1, "the source was not asked");
    assert_eq!(users.metrics().flights, 0, "the store was not asked");
    assert_eq!(format!("{:?}", world.store), store_before);
    assert_eq!(users.user_keys(), 0);
    users.token(&user("acme", "alice")).await.unwrap();
    assert_eq!(world.source.creations(), 2);
}

#[tokio::test(start_paused = true)]
async fn user_level_keys_stay_within_the_capacity() {
    let world = World::new();
    let manager = world
        .builder(71)
        .scope(KeyScope::AnyUser)
        .user_key_capacity(100)
        .build()
        .unwrap();
    for n in 0..1000 {
        manager
            .token(&user("acme", &format!("user-{n}")))
            .await
            .unwrap();
    }
    assert!(
        manager.user_keys() <= 100,
        "{} user keys kept",
        manager.user_keys()
    );
    assert_eq!(world.source.creations(), 1000);
}

#[tokio::test(start_paused = true)]
async fn a_user_token_dropped_by_a_401_is_no_longer_handed_out_by_key() {
    let world = World::new();
    let manager = world.builder(186).scope(KeyScope::AnyUser).build().unwrap();
    let alice = user("acme", "alice");
    let first = manager.token(&alice).await.unwrap().fingerprint();
    world.clock.advance(MIN_TOKEN_AGE);

    // Rejected through a handle: the lookup by key sees it.
    let handle = manager.handle(alice.clone()).unwrap();
    assert!(handle.invalidate(&first));
    let second = manager.token(&alice).await.unwrap().fingerprint();
    assert_ne!(second, first);
    assert_eq!(
        handle.cached().map(|token| token.fingerprint()),
        Some(second)
    );
    world.clock.advance(MIN_TOKEN_AGE);

    // Rejected by key: the handle sees it.
    assert!(manager.invalidate(&alice, &second));
    let third = warm(&handle).await;
    assert!(third != first && third != second);
    assert_eq!(manager.token(&alice).await.unwrap().fingerprint(), third);
    assert_eq!(world.source.creations(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_renewal_hands_the_previous_token_to_the_source() {
    let clock = ManualClock::new();
    let mut respond = MockRespond::new();
    let mut sequence = mockall::Sequence::new();
    let token_at = |secret: &str, at| {
        Token::new(TokenSecret::new(secret), at, at + Duration::from_secs(1800)).unwrap()
    };
    respond
        .expect_respond()
        .withf(|_, previous, _| previous.is_none())
        .times(1)
        .in_sequence(&mut sequence)
        .returning(move |_, _, at| Ok(token_at("first", at)));
    let first = Fingerprint::of("first");
    respond
        .expect_respond()
        .withf(move |_, previous, _| *previous == Some(first))
        .times(1)
        .in_sequence(&mut sequence)
        .returning(move |_, _, at| Ok(token_at("second", at)));

    let manager = TokenManager::builder(MockTokenSource(respond))
        .runtime(RuntimeEnv::manual(&clock).unwrap())
        .local_only()
        .scope(KeyScope::AnyPartner)
        .seed(72)
        .build()
        .unwrap();
    let handle = manager.handle(partner("acme")).unwrap();
    assert_eq!(handle.token().await.unwrap().fingerprint(), first);
    clock.advance(Duration::from_secs(1400));
    settle().await;
    assert_eq!(
        handle.cached().unwrap().fingerprint(),
        Fingerprint::of("second")
    );
}

#[tokio::test(start_paused = true)]
async fn shutdown_stops_background_work_and_fails_waiting_callers() {
    let world = World::with_latency(Duration::from_secs(5));
    let manager = world.manager(73);
    let handle = manager.handle(partner("acme")).unwrap();
    let waiting = tokio::spawn({
        let handle = handle.clone();
        async move { handle.token().await }
    });
    world.source.wait_for_calls(1).await;

    manager.shutdown().await;
    assert!(matches!(waiting.await.unwrap(), Err(Error::ShutDown)));
    world
        .run_for(Duration::from_secs(24 * 3600), Duration::from_secs(600))
        .await;
    assert_eq!(world.source.creations(), 0, "no work after shutdown");
    assert!(matches!(handle.token().await, Err(Error::ShutDown)));
}

#[tokio::test(start_paused = true)]
async fn dropping_every_clone_of_a_manager_ends_its_background_work() {
    let world = World::new();
    let manager = world.manager(74);
    let handle = manager.handle(partner("acme")).unwrap();
    warm(&handle).await;
    drop(handle);
    drop(manager);
    world
        .run_for(Duration::from_secs(24 * 3600), Duration::from_secs(60))
        .await;
    assert_eq!(
        world.source.creations(),
        1,
        "no renewals for a dropped manager"
    );
}

#[tokio::test(start_paused = true)]
async fn debug_output_never_shows_a_token() {
    let world = World::new();
    let manager = world.manager(75);
    let handle = manager.handle(partner("acme")).unwrap();
    let token = handle.token().await.unwrap();
    let secret = token.secret().expose().to_owned();
    for shown in [
        format!("{token:?}"),
        format!("{handle:?}"),
        format!("{manager:?}"),
        format!("{:?}", manager.metrics()),
    ] {
        assert!(!shown.contains(&secret), "{shown}");
    }
}

#[tokio::test(start_paused = true)]
async fn settings_that_cannot_work_are_refused_when_building() {
    let world = World::new();
    let zero = Duration::ZERO;
    let refused = [
        (
            "creation outlasting the lease",
            world
                .builder(80)
                .create_timeout(Duration::from_secs(30))
                .lease_ttl(Duration::from_secs(30)),
        ),
        ("no poll interval", world.builder(81).poll_interval(zero)),
        ("no lease", world.builder(82).lease_ttl(zero)),
        ("no creation time", world.builder(83).create_timeout(zero)),
        ("no store time", world.builder(84).store_timeout(zero)),
        ("no user keys", world.builder(85).user_key_capacity(0)),
        ("no wait", world.builder(87).max_wait(zero)),
        (
            "no creations",
            world.builder(88).max_concurrent_creations(0),
        ),
        (
            "no time to re-read and commit under the lease",
            world
                .builder(89)
                .create_timeout(Duration::from_secs(10))
                .store_timeout(Duration::from_secs(5))
                .lease_ttl(Duration::from_secs(20)),
        ),
    ];
    for (what, builder) in refused {
        match builder.build() {
            Err(BuildError::Invalid(reason)) => assert!(!reason.is_empty()),
            other => panic!("{what}: expected a refusal, got {other:?}"),
        }
    }
    assert!(world.builder(86).build().is_ok(), "the defaults work");
    let unscoped = TokenManager::builder(world.source.clone())
        .runtime(RuntimeEnv::manual(&world.clock).unwrap())
        .local_only()
        .build();
    assert!(matches!(unscoped, Err(BuildError::NoScope)), "{unscoped:?}");
}

#[tokio::test(start_paused = true)]
async fn a_callers_whole_wait_is_bounded_by_max_wait_while_the_refresh_goes_on() {
    // A store that never answers (each operation ends at the 5 s store timeout) and a slow
    // endpoint: the refresh takes 5 s + 9 s, creating locally.
    let world = World::with_latency(Duration::from_secs(9));
    let store = kigo_testkit::FaultyStore::new(std::sync::Arc::new(world.store.clone()));
    store.set_hanging(true);
    let max_wait = Duration::from_secs(3);
    let manager = world
        .builder_on(78, std::sync::Arc::new(store))
        .max_wait(max_wait)
        .build()
        .unwrap();
    let handle = manager.handle(partner("acme")).unwrap();
    let caller = tokio::spawn({
        let handle = handle.clone();
        async move { handle.token().await.map(|token| token.fingerprint()) }
    });
    settle().await;
    world.run_for(max_wait, Duration::from_secs(1)).await;
    assert!(
        caller.is_finished(),
        "the caller is answered at its deadline"
    );
    match caller.await.unwrap() {
        Err(Error::WaitTimedOut { waited, .. }) => assert_eq!(waited, max_wait),
        other => panic!("expected the deadline, got {other:?}"),
    }
    world
        .run_for(Duration::from_secs(11), Duration::from_secs(1))
        .await;
    assert!(
        handle.cached().is_some(),
        "the refresh went on and installed a token"
    );
}

#[tokio::test(start_paused = true)]
async fn a_thousand_cached_user_keys_cost_no_task_of_their_own() {
    let world = World::new();
    let manager = world.builder(79).scope(KeyScope::AnyUser).build().unwrap();
    manager.token(&user("acme", "first")).await.unwrap();
    settle().await;
    let runtime = tokio::runtime::Handle::current().metrics();
    let tasks_with_one_key = runtime.num_alive_tasks();
    for n in 0..1000 {
        manager
            .token(&user("acme", &format!("user-{n}")))
            .await
            .unwrap();
    }
    settle().await;
    assert_eq!(
        runtime.num_alive_tasks(),
        tasks_with_one_key,
        "one scheduler for all keys"
    );
    // And each is still renewed ahead, by that scheduler.
    world
        .run_for(Duration::from_secs(30 * 60), Duration::from_secs(60))
        .await;
    assert!(world.source.creations() > 1001);
}
