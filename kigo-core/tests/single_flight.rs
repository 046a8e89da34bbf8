//! Property 3 (single flight in a process) and property 5 (a 401 storm costs one renewal).

mod common;

use std::iter::repeat_n;
use std::time::Duration;

use common::{
    MIN_TOKEN_AGE, World, callers_meet, partner, spawn_callers, tokens_of, warm, warm_all,
    without_waiting,
};

const LATENCY: Duration = Duration::from_secs(2);
/// Real time after which callers on a manual clock are taken to be stuck.
const WATCHDOG: Duration = Duration::from_secs(30);

#[tokio::test(start_paused = true)]
async fn a_thousand_concurrent_callers_on_an_empty_cache_cause_one_creation() {
    let world = World::with_latency(LATENCY);
    let manager = world.manager(1);
    let handle = manager.handle(partner("acme")).unwrap();

    let seen = warm_all(&world, &vec![handle; 1000], LATENCY).await;
    assert_eq!(world.source.creations(), 1);
    assert_eq!(world.source.calls().len(), 1);
    assert_eq!(seen.len(), 1, "all callers share one token");
}

#[test]
fn a_thousand_callers_on_several_threads_cause_one_creation() {
    // Real parallelism: a multi-thread runtime, so the single flight is raced across threads.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    let world = World::with_latency(LATENCY);
    let (seen, creations) = runtime.block_on(async move {
        let manager = world.manager(2);
        let callers = spawn_callers(
            repeat_n(manager.handle(partner("acme")).unwrap(), 1000),
            None,
        );
        world.source.wait_for_calls(1).await;
        world.clock.advance(LATENCY);
        // A watchdog, not a timing assumption: a second creation would wait for manual time
        // that never comes, and the test must fail rather than hang.
        let seen = tokio::time::timeout(WATCHDOG, tokens_of(callers))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "callers still waiting after {WATCHDOG:?}: {:?}",
                    world.source.calls()
                )
            });
        (seen, world.source.creations())
    });
    assert_eq!(creations, 1);
    assert_eq!(seen.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_401_storm_of_500_callers_causes_one_renewal() {
    let world = World::with_latency(LATENCY);
    let manager = world.manager(3);
    let handle = manager.handle(partner("acme")).unwrap();
    let rejected = *warm_all(&world, std::slice::from_ref(&handle), LATENCY)
        .await
        .iter()
        .next()
        .unwrap();

    // 500 requests all got a 401 with the same token: each reports it and asks again.
    let seen = callers_meet(&world, &vec![handle; 500], LATENCY, Some(rejected)).await;
    assert_eq!(
        world.source.creations(),
        2,
        "the first token and one renewal"
    );
    assert_eq!(seen.len(), 1);
    assert!(!seen.contains(&rejected));
    assert_eq!(
        manager.metrics().invalidations,
        1,
        "only the first report drops the token"
    );
}

#[tokio::test(start_paused = true)]
async fn a_401_storm_across_eight_managers_causes_one_renewal() {
    let world = World::with_latency(LATENCY);
    let managers: Vec<_> = (0..8).map(|seed| world.manager(seed)).collect();
    let handles: Vec<_> = managers
        .iter()
        .map(|m| m.handle(partner("acme")).unwrap())
        .collect();
    let first = warm_all(&world, &handles, LATENCY).await;
    assert_eq!(first.len(), 1, "the fleet shares its first token");
    let rejected = *first.iter().next().unwrap();

    // Every replica sees 64 requests rejected with that token.
    let callers: Vec<_> = handles
        .iter()
        .flat_map(|handle| repeat_n(handle.clone(), 64))
        .collect();
    let seen = callers_meet(&world, &callers, LATENCY, Some(rejected)).await;
    assert_eq!(world.source.creations(), 2);
    assert_eq!(seen.len(), 1);
    assert!(!seen.contains(&rejected));
}

#[tokio::test(start_paused = true)]
async fn invalidating_an_older_token_leaves_the_current_one_alone() {
    let world = World::new();
    let manager = world.manager(4);
    let handle = manager.handle(partner("acme")).unwrap();
    let old = warm(&handle).await;
    world.clock.advance(MIN_TOKEN_AGE);
    assert!(handle.invalidate(&old));
    let new = warm(&handle).await;
    assert_ne!(old, new);

    // A late 401 for the old token must not drop the new one.
    assert!(!handle.invalidate(&old));
    assert_eq!(without_waiting(&handle), Some(new));
    assert_eq!(world.source.creations(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_late_401_for_an_older_token_does_not_bring_back_a_newer_rejected_one() {
    let world = World::new();
    let manager = world.manager(5);
    let handle = manager.handle(partner("acme")).unwrap();
    let first = warm(&handle).await;
    world.clock.advance(MIN_TOKEN_AGE);
    assert!(handle.invalidate(&first));
    let second = warm(&handle).await;

    // The second token is rejected, then a request that still carried the first one reports it.
    world.clock.advance(MIN_TOKEN_AGE);
    assert!(handle.invalidate(&second));
    assert!(!handle.invalidate(&first));
    let third = warm(&handle).await;
    assert_ne!(third, second, "a rejected token handed out again");
    assert_ne!(third, first);
    assert_eq!(world.source.creations(), 3);
}

#[tokio::test(start_paused = true)]
async fn an_operators_renewal_replaces_the_fleets_token_with_one_creation() {
    let world = World::new();
    let managers: Vec<_> = (0..4).map(|seed| world.manager(180 + seed)).collect();
    let handles: Vec<_> = managers
        .iter()
        .map(|manager| manager.handle(partner("acme")).unwrap())
        .collect();
    let old = warm_all(&world, &handles, Duration::ZERO).await;
    assert_eq!(old.len(), 1);

    // A tool's manager on the same store, which never used the token: no minimum age applies.
    let tool = world.manager(190).handle(partner("acme")).unwrap();
    let renewed = tool.renew().await.unwrap().fingerprint();
    assert!(!old.contains(&renewed));
    assert_eq!(world.source.creations(), 2, "one creation for the fleet");
    kigo_testkit::settle().await; // the store's change notices reach the replicas
    for handle in &handles {
        assert_eq!(without_waiting(handle), Some(renewed));
    }
}
