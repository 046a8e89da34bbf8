//! Property 3 (single flight in a process) and property 5 (a 401 storm costs one renewal).

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{World, partner, warm};
use kigo_testkit::settle;

const LATENCY: Duration = Duration::from_secs(2);

#[tokio::test(start_paused = true)]
async fn a_thousand_concurrent_callers_on_an_empty_cache_cause_one_creation() {
    let world = World::with_latency(LATENCY);
    let manager = world.manager(1);
    let handle = manager.handle(partner("acme"));

    let callers: Vec<_> = (0..1000)
        .map(|_| {
            let handle = handle.clone();
            tokio::spawn(async move { handle.token().await.map(|token| token.fingerprint()) })
        })
        .collect();
    world.source.wait_for_calls(1).await;
    settle().await;
    world.clock.advance(LATENCY);

    let mut seen = HashSet::new();
    for caller in callers {
        seen.insert(caller.await.unwrap().expect("every caller gets a token"));
    }
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
        let handle = manager.handle(partner("acme"));
        let callers: Vec<_> = (0..1000)
            .map(|_| {
                let handle = handle.clone();
                tokio::spawn(async move { handle.token().await.map(|t| t.fingerprint()) })
            })
            .collect();
        world.source.wait_for_calls(1).await;
        world.clock.advance(LATENCY);
        let mut seen = HashSet::new();
        for caller in callers {
            seen.insert(caller.await.unwrap().expect("every caller gets a token"));
        }
        (seen.len(), world.source.creations())
    });
    assert_eq!(creations, 1);
    assert_eq!(seen, 1);
}

#[tokio::test(start_paused = true)]
async fn a_401_storm_of_500_callers_causes_one_renewal() {
    let world = World::with_latency(LATENCY);
    let manager = world.manager(3);
    let handle = manager.handle(partner("acme"));
    let warming = tokio::spawn({
        let handle = handle.clone();
        async move { warm(&handle).await }
    });
    world.source.wait_for_calls(1).await;
    world.clock.advance(LATENCY);
    let rejected = warming.await.unwrap();

    // 500 requests all got a 401 with the same token: each reports it and asks again.
    let callers: Vec<_> = (0..500)
        .map(|_| {
            let handle = handle.clone();
            tokio::spawn(async move {
                handle.invalidate(&rejected);
                handle.token().await.map(|token| token.fingerprint())
            })
        })
        .collect();
    world.source.wait_for_calls(2).await;
    settle().await;
    world.clock.advance(LATENCY);

    let mut seen = HashSet::new();
    for caller in callers {
        seen.insert(
            caller
                .await
                .unwrap()
                .expect("every caller gets the new token"),
        );
    }
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
    let handles: Vec<_> = managers.iter().map(|m| m.handle(partner("acme"))).collect();
    let first = tokio::spawn({
        let handles = handles.clone();
        async move {
            let mut seen = HashSet::new();
            for handle in &handles {
                seen.insert(warm(handle).await);
            }
            seen
        }
    });
    world.source.wait_for_calls(1).await;
    world.clock.advance(LATENCY);
    let first = first.await.unwrap();
    assert_eq!(first.len(), 1, "the fleet shares its first token");
    let rejected = *first.iter().next().unwrap();

    let callers: Vec<_> = handles
        .iter()
        .flat_map(|handle| (0..64).map(move |_| handle.clone()))
        .map(|handle| {
            tokio::spawn(async move {
                handle.invalidate(&rejected);
                handle.token().await.map(|token| token.fingerprint())
            })
        })
        .collect();
    world.source.wait_for_calls(2).await;
    settle().await;
    world.clock.advance(LATENCY);
    settle().await;

    let mut seen = HashSet::new();
    for caller in callers {
        seen.insert(
            caller
                .await
                .unwrap()
                .expect("every caller gets the new token"),
        );
    }
    assert_eq!(world.source.creations(), 2);
    assert_eq!(seen.len(), 1);
    assert!(!seen.contains(&rejected));
}

#[tokio::test(start_paused = true)]
async fn invalidating_an_older_token_leaves_the_current_one_alone() {
    let world = World::new();
    let manager = world.manager(4);
    let handle = manager.handle(partner("acme"));
    let old = warm(&handle).await;
    assert!(handle.invalidate(&old));
    let new = warm(&handle).await;
    assert_ne!(old, new);

    // A late 401 for the old token must not drop the new one.
    assert!(!handle.invalidate(&old));
    assert_eq!(common::without_waiting(&handle), Some(new));
    assert_eq!(world.source.creations(), 2);
}
