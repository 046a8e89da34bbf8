//! Property 12: the fleet never hammers the token endpoint. 401s cannot force renewals faster
//! than once per minimum token age; a 429 or 5xx pauses the whole partner, fleet-wide; permanent
//! failures pause the fleet for longer; creations run at most a few at a time.

mod common;

use std::time::Duration;

use common::{MIN_TOKEN_AGE, World, partner, user, warm, without_waiting};
use kigo_core::{Error, KeyScope, TokenManager};
use kigo_testkit::{Scripted, settle};

const SECOND: Duration = Duration::from_secs(1);

fn user_manager(world: &World, seed: u64) -> TokenManager {
    world
        .builder(seed)
        .scope(KeyScope::AnyUser)
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_401_for_a_token_younger_than_the_minimum_age_keeps_it() {
    let world = World::new();
    let manager = world.manager(100);
    let handle = manager.handle(partner("acme")).unwrap();
    let token = warm(&handle).await;

    assert!(!handle.invalidate(&token), "too young to drop");
    assert_eq!(without_waiting(&handle), Some(token));
    assert_eq!(manager.metrics().ignored_rejections, 1);

    world.clock.advance(MIN_TOKEN_AGE);
    assert!(handle.invalidate(&token), "old enough: dropped");
    assert_ne!(warm(&handle).await, token);
}

#[tokio::test(start_paused = true)]
async fn an_api_rejecting_every_token_cannot_make_the_fleet_renew_faster_than_the_minimum_age() {
    let world = World::new();
    let managers: Vec<_> = (0..8).map(|seed| world.manager(110 + seed)).collect();
    let handles: Vec<_> = managers
        .iter()
        .map(|manager| manager.handle(partner("acme")).unwrap())
        .collect();
    // For a minute, every replica sends a request a second, and the API rejects every token.
    let minute = 60;
    for _ in 0..minute {
        for handle in &handles {
            let rejected = handle.token().await.unwrap().fingerprint();
            handle.invalidate(&rejected);
        }
        world.run_for(SECOND, SECOND).await;
    }
    let creations = world.source.creations();
    // The first token, then at most one renewal per minimum age (5 s): 13. Without the minimum
    // age, every second's first 401 would renew: 61.
    assert!(
        (2..=1 + minute / 5).contains(&creations),
        "{creations} creations"
    );
}

#[tokio::test(start_paused = true)]
async fn a_429_for_one_user_pauses_every_user_of_the_partner_across_the_fleet() {
    let world = World::new();
    let (here, elsewhere) = (user_manager(&world, 120), user_manager(&world, 121));
    let partners = world.manager(122);
    world
        .source
        .script([Scripted::Transient(Some(Duration::from_secs(60)))]);

    let error = here.token(&user("acme", "alice")).await.unwrap_err();
    assert!(matches!(error, Error::Unavailable { .. }), "{error:?}");
    // Another replica's user, and the partner-level token: paused, without calling the endpoint.
    for result in [
        elsewhere.token(&user("acme", "bob")).await.map(|_| ()),
        partners.token(&partner("acme")).await.map(|_| ()),
    ] {
        let error = result.unwrap_err();
        assert!(matches!(error, Error::Unavailable { .. }), "{error:?}");
    }
    assert_eq!(world.source.calls().len(), 1, "one call, for alice");
    // Another partner's users are not paused.
    elsewhere.token(&user("globex", "carol")).await.unwrap();

    world.run_for(Duration::from_secs(62), SECOND).await;
    elsewhere.token(&user("acme", "bob")).await.unwrap();
    here.token(&user("acme", "alice")).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_permanent_failure_pauses_the_fleet_and_is_retried_slowly() {
    let world = World::new();
    let managers: Vec<_> = (0..4).map(|seed| world.manager(130 + seed)).collect();
    world
        .source
        .script(std::iter::repeat_n(Scripted::Permanent, 1000));

    // For an hour, every replica is asked for the token every 10 s.
    let hour = Duration::from_secs(3600);
    let mut elapsed = Duration::ZERO;
    while elapsed < hour {
        for manager in &managers {
            let error = manager.token(&partner("acme")).await.unwrap_err();
            assert!(!matches!(error, Error::ShutDown), "{error:?}");
        }
        world
            .run_for(Duration::from_secs(10), Duration::from_secs(10))
            .await;
        elapsed += Duration::from_secs(10);
    }
    // Backing off from 1 to 10 minutes with the pause shared: about ten calls in an hour.
    // Each replica on its own, every 30 s at most, would have made 480 or more.
    let calls = world.source.calls().len();
    assert!((5..=15).contains(&calls), "{calls} calls in an hour");
}

#[tokio::test(start_paused = true)]
async fn ten_thousand_user_keys_expiring_at_once_queue_for_creation() {
    let latency = Duration::from_millis(10);
    let world = World::with_latency(latency);
    let manager = user_manager(&world, 140);
    let callers: Vec<_> = (0..10_000)
        .map(|n| {
            let handle = manager.handle(user("acme", &format!("user-{n}"))).unwrap();
            tokio::spawn(async move { handle.token().await.map(|_| ()) })
        })
        .collect();
    settle().await;
    while !callers.iter().all(tokio::task::JoinHandle::is_finished) {
        world.clock.advance(latency);
        settle().await;
    }
    for caller in callers {
        caller.await.unwrap().expect("every user is served");
    }
    assert_eq!(world.source.creations(), 10_000);
    let peak = world.source.peak_concurrency();
    assert!((2..=16).contains(&peak), "{peak} creations at once");
}
