//! Property 6: failures of the token endpoint. Transient ones keep the valid token, back off with
//! jitter, honour Retry-After and start a cool-down the fleet shares; permanent ones surface typed.

mod common;

use std::time::Duration;

use common::{World, partner, reach_refresh_point, warm, without_waiting};
use kigo_core::{BackoffPolicy, Error};
use kigo_testkit::{FakeFailure, Scripted};

const SECOND: Duration = Duration::from_secs(1);

#[tokio::test(start_paused = true)]
async fn transient_failures_keep_the_valid_token_and_back_off_with_jitter() {
    let world = World::new();
    let manager = world.manager(11);
    let handle = manager.handle(partner("acme")).unwrap();
    let valid = warm(&handle).await;
    world
        .source
        .script(std::iter::repeat_n(Scripted::Transient(None), 5).chain([Scripted::Token]));

    reach_refresh_point(&world, &manager, &handle).await;
    // Seconds pass; callers keep getting the still-valid token while retries back off.
    for _ in 0..60 {
        let served = without_waiting(&handle).expect("never waits");
        if world.source.creations() == 1 {
            assert_eq!(served, valid);
        }
        world.run_for(SECOND, SECOND).await;
    }
    let calls = world.source.calls();
    assert_eq!(
        calls.len(),
        1 + 5 + 1,
        "the first creation, five failures, one success"
    );
    let backoff = BackoffPolicy::default();
    for (failures, pair) in calls[1..].windows(2).enumerate() {
        let gap = pair[1].at.duration_since(pair[0].at).unwrap();
        let ceiling = backoff.delay(failures as u32 + 1, 1.0, None);
        // Equal jitter: between half and all of the doubled delay, give or take a clock step.
        assert!(
            gap + SECOND >= ceiling / 2 && gap <= ceiling + SECOND,
            "retry {failures}: {gap:?} vs {ceiling:?}"
        );
    }
    let renewed = without_waiting(&handle).expect("renewed without waiting");
    assert_ne!(renewed, valid);
    assert_eq!(manager.metrics().creation_failures, 5);
}

#[tokio::test(start_paused = true)]
async fn a_server_given_delay_is_honoured() {
    let world = World::new();
    let manager = world.manager(12);
    let handle = manager.handle(partner("acme")).unwrap();
    warm(&handle).await;
    let retry_after = Duration::from_secs(120);
    world
        .source
        .script([Scripted::Transient(Some(retry_after))]);

    reach_refresh_point(&world, &manager, &handle).await;
    world.run_for(Duration::from_secs(119), SECOND).await;
    assert_eq!(world.source.calls().len(), 2, "no retry before Retry-After");
    world.run_for(Duration::from_secs(10), SECOND).await;
    let calls = world.source.calls();
    assert_eq!(calls.len(), 3);
    assert!(calls[2].at.duration_since(calls[1].at).unwrap() >= retry_after);
}

#[tokio::test(start_paused = true)]
async fn a_permanent_error_surfaces_at_once_typed_and_is_not_retried_by_every_caller() {
    let world = World::new();
    let manager = world.manager(13);
    let handle = manager.handle(partner("acme")).unwrap();
    world.source.script([Scripted::Permanent]);

    let error = handle.token().await.expect_err("bad credentials");
    let Error::Permanent { key, source } = &error else {
        panic!("expected a permanent error, got {error:?}");
    };
    assert_eq!(key, &partner("acme"));
    assert!(!source.is_transient());
    assert!(matches!(
        source.cause().downcast_ref::<FakeFailure>(),
        Some(FakeFailure::Permanent)
    ));
    assert!(!error.is_transient());

    // Callers right after get the same answer without another call to the endpoint.
    for _ in 0..10 {
        assert!(matches!(handle.token().await, Err(Error::Permanent { .. })));
    }
    assert_eq!(world.source.calls().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn without_a_valid_token_a_transient_failure_is_a_typed_error_with_a_retry_hint() {
    let world = World::new();
    let manager = world.manager(14);
    let handle = manager.handle(partner("acme")).unwrap();
    world
        .source
        .script([Scripted::Transient(Some(Duration::from_secs(30)))]);

    let error = handle.token().await.expect_err("endpoint down");
    assert!(
        matches!(
            error,
            Error::Unavailable {
                source: Some(_),
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.is_transient());
    assert!(error.retry_after().unwrap() >= Duration::from_secs(30));

    // The background retries once the delay has passed: a caller then finds a token.
    world.run_for(Duration::from_secs(31), SECOND).await;
    assert!(without_waiting(&handle).is_some());
}

#[tokio::test(start_paused = true)]
async fn the_cool_down_after_a_failure_is_shared_by_all_managers() {
    let world = World::new();
    let managers: Vec<_> = (0..3).map(|seed| world.manager(20 + seed)).collect();
    let handles: Vec<_> = managers
        .iter()
        .map(|m| m.handle(partner("acme")).unwrap())
        .collect();
    for handle in &handles {
        warm(handle).await;
    }
    let cool_down = Duration::from_secs(300);
    world.source.script([Scripted::Transient(Some(cool_down))]);

    // The whole refresh window and the cool-down pass: every replica reaches its refresh point.
    world
        .run_for(
            Duration::from_secs(1350) + cool_down + Duration::from_secs(60),
            SECOND,
        )
        .await;
    let calls = world.source.calls();
    assert!(
        calls.len() >= 3,
        "the failure and, after the cool-down, one renewal"
    );
    let failed_at = calls[1].at;
    assert!(
        calls[2].at.duration_since(failed_at).unwrap() >= cool_down,
        "no replica called the endpoint during the shared cool-down"
    );
    assert_eq!(
        calls.len(),
        3,
        "one renewal after the cool-down, for the whole fleet"
    );
    for handle in &handles {
        assert!(without_waiting(handle).is_some());
    }
}

#[tokio::test(start_paused = true)]
async fn a_hanging_endpoint_is_cut_off_by_the_creation_timeout() {
    let world = World::new();
    let manager = world
        .builder(15)
        .create_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let handle = manager.handle(partner("acme")).unwrap();
    world.source.script([Scripted::Hang]);

    let caller = tokio::spawn({
        let handle = handle.clone();
        async move { handle.token().await }
    });
    world.source.wait_for_calls(1).await;
    world.run_for(Duration::from_secs(5), SECOND).await;
    let error = caller.await.unwrap().expect_err("timed out");
    let Error::Unavailable {
        source: Some(source),
        ..
    } = &error
    else {
        panic!("expected a transient error, got {error:?}");
    };
    assert!(
        source
            .cause()
            .downcast_ref::<kigo_core::manager::CreateTimedOut>()
            .is_some()
    );
}
