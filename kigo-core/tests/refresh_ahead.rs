//! Properties 2 (refresh ahead with jitter and a stale threshold), 4 (one creation per renewal
//! across a fleet) and 9 (skew-robust expiry), over simulated days of 30-minute tokens.

mod common;

use std::time::{Duration, SystemTime};

use common::{LIFETIME, World, partner, serve_through, user, warm_all};
use kigo_core::{ExpiryPolicy, KeyScope, Token, TokenHandle, TokenKey, TokenManager, TokenSecret};
use kigo_testkit::FakeSource;

const SECOND: Duration = Duration::from_secs(1);
const STEP: Duration = Duration::from_secs(10);
const DAY: Duration = Duration::from_secs(24 * 3600);
/// Creation takes this long, so renewals overlap with callers.
const LATENCY: Duration = Duration::from_secs(2);

/// Renewals that `span` of 30-minute tokens needs, renewed between 65 % and 75 % of their life.
fn renewals_in(span: Duration) -> std::ops::RangeInclusive<u64> {
    let at_most = span.as_secs_f64() / (LIFETIME.as_secs_f64() * 0.65);
    let at_least = span.as_secs_f64() / (LIFETIME.as_secs_f64() * 0.75 + LATENCY.as_secs_f64());
    (at_least.floor() as u64)..=(at_most.ceil() as u64 + 1)
}

fn handles(managers: &[TokenManager]) -> Vec<TokenHandle> {
    managers
        .iter()
        .map(|m| m.handle(partner("acme")).unwrap())
        .collect()
}

#[tokio::test(start_paused = true)]
async fn over_a_day_no_caller_waits_and_creations_equal_renewals() {
    let world = World::with_latency(LATENCY);
    let manager = world.manager(7);
    let callers = vec![manager.handle(partner("acme")).unwrap(); 3];
    warm_all(&world, &callers, LATENCY).await;
    let waits_after_warm_up = manager.metrics().waits;

    let policy = ExpiryPolicy::default();
    let handed_out = serve_through(&world, &callers, DAY, STEP, |token| {
        assert!(world.now() < policy.stale_at(token), "never a stale token");
    })
    .await;

    assert_eq!(
        manager.metrics().waits,
        waits_after_warm_up,
        "no caller waited"
    );
    let creations = world.source.creations();
    assert_eq!(
        creations,
        handed_out.len() as u64,
        "every creation was used"
    );
    assert!(
        renewals_in(DAY).contains(&creations),
        "{creations} renewals in a day"
    );
    for pair in world.source.calls().windows(2) {
        let gap = pair[1].at.duration_since(pair[0].at).unwrap();
        let window = LIFETIME.mul_f64(0.65)..=LIFETIME.mul_f64(0.75) + LATENCY + STEP;
        assert!(
            window.contains(&gap),
            "renewed {gap:?} after the previous one"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_user_token_in_use_is_renewed_ahead_and_an_unused_one_lapses() {
    let world = World::with_latency(LATENCY);
    let manager = world.builder(8).scope(KeyScope::AnyUser).build().unwrap();
    let (alice, bob) = (user("acme", "alice"), user("acme", "bob"));
    let (active, idle) = (
        manager.handle(alice.clone()).unwrap(),
        manager.handle(bob.clone()).unwrap(),
    );
    warm_all(&world, &[active.clone(), idle.clone()], LATENCY).await;
    let waits_after_warm_up = manager.metrics().waits;

    // Alice makes a request a minute; Bob, whose first token was taken, never comes back.
    let span = 3 * LIFETIME;
    let handed_out = serve_through(
        &world,
        std::slice::from_ref(&active),
        span,
        60 * SECOND,
        |_| {},
    )
    .await;
    assert_eq!(
        manager.metrics().waits,
        waits_after_warm_up,
        "alice never waited"
    );
    let calls_for = |key: &TokenKey| {
        world
            .source
            .calls()
            .iter()
            .filter(|call| call.key == *key)
            .count()
    };
    assert_eq!(
        calls_for(&alice),
        handed_out.len(),
        "every token alice got was used"
    );
    assert!(renewals_in(span).contains(&(handed_out.len() as u64)));
    assert_eq!(
        calls_for(&bob),
        2,
        "bob's taken token renewed once, the untaken one never"
    );
    assert!(idle.cached().is_none(), "bob's untaken token lapsed");
}

#[tokio::test(start_paused = true)]
async fn eight_managers_sharing_a_store_create_once_per_renewal() {
    let world = World::with_latency(LATENCY);
    let managers: Vec<_> = (0..8).map(|seed| world.manager(100 + seed)).collect();
    let handles = handles(&managers);
    warm_all(&world, &handles, LATENCY).await;
    assert_eq!(
        world.source.creations(),
        1,
        "the fleet shares its first token"
    );

    let span = DAY / 2;
    let handed_out = serve_through(&world, &handles, span, STEP, |_| {}).await;

    let renewals = world.source.creations() - 1;
    assert!(
        renewals_in(span).contains(&renewals),
        "{renewals} renewals for 8 replicas in 12 h"
    );
    assert_eq!(
        renewals + 1,
        handed_out.len() as u64,
        "every creation served the fleet"
    );
    let adopted: u64 = managers.iter().map(|m| m.metrics().adoptions).sum();
    assert!(
        adopted >= 7 * renewals,
        "the other replicas took renewals from the store: {adopted}"
    );
}

#[tokio::test(start_paused = true)]
async fn replicas_with_clocks_a_minute_apart_still_renew_once_and_never_hand_out_expired_tokens() {
    let world = World::with_latency(LATENCY);
    let managers: Vec<_> = [-60_000, -20_000, 0, 20_000, 60_000]
        .into_iter()
        .zip(0..)
        .map(|(skew_ms, seed)| world.skewed_manager(seed, skew_ms))
        .collect();
    let handles = handles(&managers);
    warm_all(&world, &handles, LATENCY).await;

    let span = DAY / 2;
    let handed_out = serve_through(&world, &handles, span, STEP, |token| {
        // Judged by the true (unskewed) time: never expired.
        assert!(
            world.now() < token.expires_at(),
            "an expired token was handed out"
        );
    })
    .await;
    let renewals = world.source.creations() - 1;
    assert!(
        renewals_in(span).contains(&renewals),
        "{renewals} renewals in 12 h"
    );
    assert_eq!(renewals + 1, handed_out.len() as u64);
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
        let manager = TokenManager::builder(FakeSource::new())
            .local_only()
            .scope(KeyScope::AnyPartner)
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
