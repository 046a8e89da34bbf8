//! The HTTP token source under a kigo-core manager on the manual clock: the server's
//! `Retry-After` holds back every caller until it has passed.

mod common;

use std::time::Duration;

use kigo_core::runtime::ManualClock;
use kigo_http::{CreateError, ErrorKind};
use kigo_testkit::mock::{Endpoint, Fault, RetryAfter};

use common::{api, manual_manager, mock_on};

#[tokio::test]
async fn retry_after_is_honoured_on_the_manual_clock() {
    let clock = ManualClock::new();
    let mock = mock_on(&clock).start().await.unwrap();
    let api = api(&mock);
    let manager = manual_manager(api.partner_source(), &clock);
    let handle = manager.handle(api.partner_key()).unwrap();
    mock.inject(
        Endpoint::PartnerSession,
        [Fault::TooManyRequests(Some(RetryAfter::Seconds(120)))],
    );

    let error = handle.token().await.unwrap_err();
    assert!(error.is_transient());
    let cause = error
        .cause::<CreateError>()
        .expect("the HTTP source's own error");
    assert_eq!(cause.kind(), ErrorKind::RateLimited);
    assert!(
        error.retry_after() >= Some(Duration::from_secs(120)),
        "{:?}",
        error.retry_after()
    );

    clock.advance(Duration::from_secs(119));
    for _ in 0..3 {
        assert!(handle.token().await.is_err());
    }
    assert_eq!(mock.counters().requests_to(Endpoint::PartnerSession), 1);

    clock.advance(Duration::from_secs(2));
    handle.token().await.unwrap();
    assert_eq!(mock.counters().requests_to(Endpoint::PartnerSession), 2);
    assert_eq!(mock.creations(&mock.partner_key()), 1);
}

#[tokio::test]
async fn a_failing_endpoint_keeps_the_valid_token_in_service() {
    let clock = ManualClock::new();
    let mock = mock_on(&clock).start().await.unwrap();
    let api = api(&mock);
    let manager = manual_manager(api.partner_source(), &clock);
    let handle = manager.handle(api.partner_key()).unwrap();
    let first = handle.token().await.unwrap().fingerprint();

    mock.inject_always(Endpoint::PartnerSession, Some(Fault::Status(503)));
    // Past the refresh point (22.5 min), before the stale point (28.5 min).
    clock.advance(Duration::from_secs(25 * 60));
    kigo_testkit::eventually("a failed renewal", common::WAIT, || async {
        manager.metrics().creation_failures >= 1
    })
    .await;
    assert_eq!(handle.token().await.unwrap().fingerprint(), first);

    mock.inject_always(Endpoint::PartnerSession, None);
    clock.advance(Duration::from_secs(60));
    kigo_testkit::eventually("the renewal", common::WAIT, || async {
        mock.creations(&mock.partner_key()) == 2
    })
    .await;
    kigo_testkit::eventually("the new token", common::WAIT, || async {
        handle
            .cached()
            .is_some_and(|token| token.fingerprint() != first)
    })
    .await;
}
