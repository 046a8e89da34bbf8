//! Properties 2 (refresh ahead with jitter and a stale threshold), 4 (one creation per renewal
//! across a fleet) and 9 (skew-robust expiry), over simulated days of 30-minute tokens.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::{LIFETIME, World, partner, warm, without_waiting};
use kigo_core::runtime::{RuntimeEnv, TimeSource};
use kigo_core::{ExpiryPolicy, Token, TokenManager, TokenSecret};
use kigo_testkit::{FakeSource, ManualClock};

const STEP: Duration = Duration::from_secs(10);
const DAY: Duration = Duration::from_secs(24 * 3600);
/// Creation takes this long, so renewals overlap with callers.
const LATENCY: Duration = Duration::from_secs(2);

/// Renewals a day of 30-minute tokens needs, renewed between 65 % and 75 % of their life.
fn renewals_in(span: Duration) -> std::ops::RangeInclusive<u64> {
    let at_most = span.as_secs_f64() / (LIFETIME.as_secs_f64() * 0.65);
    let at_least = span.as_secs_f64() / (LIFETIME.as_secs_f64() * 0.75 + LATENCY.as_secs_f64());
    (at_least.floor() as u64)..=(at_most.ceil() as u64 + 1)
}

#[tokio::test(start_paused = true)]
async fn over_a_day_no_caller_waits_and_creations_equal_renewals() {
    let world = World::with_latency(LATENCY);
    let manager = world.manager(7);
    let handle = manager.handle(partner("acme"));
    let first = tokio::spawn({
        let handle = handle.clone();
        async move { warm(&handle).await }
    });
    world.source.wait_for_calls(1).await;
    world.clock.advance(LATENCY);
    first.await.unwrap();
    let waits_after_warm_up = manager.metrics().waits;

    let policy = ExpiryPolicy::default();
    let mut handed_out = HashSet::new();
    let mut elapsed = Duration::ZERO;
    while elapsed < DAY {
        world.run_for(STEP, STEP).await;
        elapsed += STEP;
        for _ in 0..3 {
            let token = handle.token();
            let token = futures_util::FutureExt::now_or_never(token)
                .expect("a caller never waits while a valid token exists")
                .expect("a token");
            assert!(world.now() < policy.stale_at(&token), "never a stale token");
            handed_out.insert(token.fingerprint());
        }
    }

    assert_eq!(
        manager.metrics().waits,
        waits_after_warm_up,
        "no caller waited"
    );
    let creations = world.source.creations();
    assert_eq!(
        creations,
        handed_out.len() as u64,
        "every creation was a renewal that was used"
    );
    assert!(
        renewals_in(DAY).contains(&creations),
        "{creations} renewals in a day"
    );
    for pair in world.source.calls().windows(2) {
        let gap = pair[1].at.duration_since(pair[0].at).unwrap();
        assert!(
            gap >= LIFETIME.mul_f64(0.65) && gap <= LIFETIME.mul_f64(0.75) + LATENCY + STEP,
            "{gap:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn eight_managers_sharing_a_store_create_once_per_renewal() {
    let world = World::with_latency(LATENCY);
    let managers: Vec<_> = (0..8).map(|seed| world.manager(100 + seed)).collect();
    let handles: Vec<_> = managers.iter().map(|m| m.handle(partner("acme"))).collect();
    let warming = tokio::spawn({
        let handles = handles.clone();
        async move {
            for handle in &handles {
                warm(handle).await;
            }
        }
    });
    world.source.wait_for_calls(1).await;
    world.clock.advance(LATENCY);
    warming.await.unwrap();
    assert_eq!(
        world.source.creations(),
        1,
        "the fleet shares its first token"
    );

    let span = 12 * 3600;
    let mut handed_out = HashSet::new();
    for _ in 0..span / STEP.as_secs() {
        world.run_for(STEP, STEP).await;
        for handle in &handles {
            handed_out.insert(without_waiting(handle).expect("no replica waits"));
        }
    }

    let creations = world.source.creations();
    let span = Duration::from_secs(span);
    assert!(
        renewals_in(span).contains(&(creations - 1)),
        "{creations} creations for 8 replicas in 12 h"
    );
    assert_eq!(
        creations,
        handed_out.len() as u64,
        "every creation served the fleet"
    );
    let adopted: u64 = managers.iter().map(|m| m.metrics().adoptions).sum();
    assert!(
        adopted >= 7 * (creations - 1),
        "the other replicas took renewals from the store: {adopted}"
    );
}

#[tokio::test(start_paused = true)]
async fn replicas_with_clocks_a_minute_apart_still_renew_once_and_never_hand_out_expired_tokens() {
    let clock = ManualClock::new();
    let store = kigo_core::MemoryStore::with_clock(Arc::new(clock.clone()));
    let source = FakeSource::new().with_latency(LATENCY, Arc::new(clock.clone()));
    let managers: Vec<TokenManager> = [-60_000, -20_000, 0, 20_000, 60_000]
        .into_iter()
        .enumerate()
        .map(|(seed, skew)| {
            let local = clock.skewed(skew);
            let env = RuntimeEnv::new(
                Arc::new(local.clone()),
                Arc::new(local),
                Arc::new(kigo_core::runtime::TokioSpawn::current().unwrap()),
            );
            TokenManager::builder(Arc::new(source.clone()))
                .store(Arc::new(store.clone()))
                .runtime(env)
                .seed(seed as u64)
                .build()
                .unwrap()
        })
        .collect();
    let handles: Vec<_> = managers.iter().map(|m| m.handle(partner("acme"))).collect();
    let warming = tokio::spawn({
        let handles = handles.clone();
        async move {
            for handle in &handles {
                warm(handle).await;
            }
        }
    });
    source.wait_for_calls(1).await;
    clock.advance(LATENCY);
    warming.await.unwrap();

    let span = Duration::from_secs(12 * 3600);
    let mut elapsed = Duration::ZERO;
    let mut expiries = HashMap::new();
    while elapsed < span {
        clock.advance(STEP);
        kigo_testkit::settle().await;
        elapsed += STEP;
        for handle in &handles {
            let token = futures_util::FutureExt::now_or_never(handle.token())
                .expect("no replica waits")
                .expect("a token");
            // Judged by the true (unskewed) time: never expired.
            assert!(
                clock.now() < token.expires_at(),
                "an expired token was handed out"
            );
            expiries.insert(token.fingerprint(), token.expires_at());
        }
    }
    let creations = source.creations();
    assert!(
        renewals_in(span).contains(&(creations - 1)),
        "{creations} creations in 12 h"
    );
    assert_eq!(creations, expiries.len() as u64);
}

#[test]
fn refresh_points_of_a_thousand_managers_spread_over_the_window() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _entered = runtime.enter();
    let issued = SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_000);
    let token = Token::new(TokenSecret::new("t"), issued, issued + LIFETIME).unwrap();
    let window_start = issued + LIFETIME.mul_f64(0.65);
    let window_end = issued + LIFETIME.mul_f64(0.75);
    let window = window_end.duration_since(window_start).unwrap();

    let mut deciles = [0u32; 10];
    for seed in 0..1000 {
        let manager = TokenManager::builder(Arc::new(FakeSource::new()))
            .seed(seed)
            .build()
            .unwrap();
        let point = manager.refresh_at(&token);
        assert!(
            point >= window_start && point <= window_end,
            "seed {seed}: outside the window"
        );
        let offset = point.duration_since(window_start).unwrap();
        let decile = ((offset.as_secs_f64() / window.as_secs_f64()) * 10.0).min(9.0) as usize;
        deciles[decile] += 1;
    }
    // Uniform draws put about 100 in each tenth of the window.
    assert!(
        deciles.iter().all(|&n| (60..=140).contains(&n)),
        "{deciles:?}"
    );
}
