//! The manager's life: many keys, bounded user-level keys, renewal with the previous token, and
//! a clean shutdown.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{World, partner, warm};
use kigo_core::manager::BuildError;
use kigo_core::runtime::RuntimeEnv;
use kigo_core::{Error, PartnerId, Token, TokenKey, TokenManager, TokenSecret, UserId};
use kigo_testkit::{ManualClock, MockRespond, MockTokenSource, settle};

#[tokio::test(start_paused = true)]
async fn each_key_has_its_own_token() {
    let world = World::new();
    let manager = world.manager(70);
    let acme = partner("acme");
    let user = |id: &str| TokenKey::user(PartnerId::new("acme").unwrap(), UserId::new(id).unwrap());
    let mut seen = std::collections::HashSet::new();
    for key in [acme.clone(), partner("globex"), user("alice"), user("bob")] {
        seen.insert(manager.token(&key).await.unwrap().fingerprint());
    }
    assert_eq!(seen.len(), 4);
    assert_eq!(world.source.creations(), 4);
    // Asking again is served from each key's cache.
    manager.token(&acme).await.unwrap();
    manager.token(&user("alice")).await.unwrap();
    assert_eq!(world.source.creations(), 4);
}

#[tokio::test(start_paused = true)]
async fn user_level_keys_stay_within_the_capacity() {
    let world = World::new();
    let manager = world.builder(71).user_key_capacity(100).build().unwrap();
    for n in 0..1000 {
        let key = TokenKey::user(
            PartnerId::new("acme").unwrap(),
            UserId::new(format!("user-{n}")).unwrap(),
        );
        manager.token(&key).await.unwrap();
    }
    assert!(
        manager.user_keys() <= 100,
        "{} user keys kept",
        manager.user_keys()
    );
    assert_eq!(world.source.creations(), 1000);
    // Partner keys are never evicted.
    let acme = partner("acme");
    manager.token(&acme).await.unwrap();
    for n in 0..1000 {
        let key = TokenKey::user(
            PartnerId::new("acme").unwrap(),
            UserId::new(format!("late-{n}")).unwrap(),
        );
        manager.token(&key).await.unwrap();
    }
    manager.token(&acme).await.unwrap();
    assert_eq!(world.source.creations(), 2001);
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
    let first = kigo_core::Fingerprint::of("first");
    respond
        .expect_respond()
        .withf(move |_, previous, _| *previous == Some(first))
        .times(1)
        .in_sequence(&mut sequence)
        .returning(move |_, _, at| Ok(token_at("second", at)));

    let manager = TokenManager::builder(Arc::new(MockTokenSource(respond)))
        .runtime(RuntimeEnv::manual(&clock).unwrap())
        .seed(72)
        .build()
        .unwrap();
    let handle = manager.handle(partner("acme"));
    assert_eq!(handle.token().await.unwrap().fingerprint(), first);
    clock.advance(Duration::from_secs(1400));
    settle().await;
    assert_eq!(
        handle.cached().unwrap().fingerprint(),
        kigo_core::Fingerprint::of("second")
    );
}

#[tokio::test(start_paused = true)]
async fn shutdown_stops_background_work_and_fails_waiting_callers() {
    let world = World::with_latency(Duration::from_secs(5));
    let manager = world.manager(73);
    let handle = manager.handle(partner("acme"));
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
    let handle = manager.handle(partner("acme"));
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
    let handle = manager.handle(partner("acme"));
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
            world.builder(80).create_timeout(Duration::from_secs(30)),
        ),
        ("no poll interval", world.builder(81).poll_interval(zero)),
        ("no lease", world.builder(82).lease_ttl(zero)),
        ("no creation time", world.builder(83).create_timeout(zero)),
        ("no store time", world.builder(84).store_timeout(zero)),
        ("no user keys", world.builder(85).user_key_capacity(0)),
    ];
    for (what, builder) in refused {
        match builder.build() {
            Err(BuildError::Invalid(reason)) => assert!(!reason.is_empty()),
            other => panic!("{what}: expected a refusal, got {other:?}"),
        }
    }
    assert!(world.builder(86).build().is_ok(), "the defaults work");
}
