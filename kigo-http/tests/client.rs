//! The authenticated client against the mock Kigo server: bearer tokens, renewal on 401,
//! replayable bodies, opt-out, and one creation for a storm of 401s.

mod common;

use std::time::Duration;

use kigo_core::runtime::ManualClock;
use kigo_http::reqwest::{Body, StatusCode};
use kigo_http::{ClientError, RetryOn401};
use kigo_testkit::mock::{Endpoint, Fault, MockKigo, PROTECTED_PATH};

use common::{api, manager, manual_manager, mock_on, sent_with};

/// A mock, an API for it, a partner token manager on real time, and a client using it.
struct Setup {
    mock: MockKigo,
    api: kigo_http::KigoApi,
    tokens: kigo_core::TokenManager,
    client: kigo_http::KigoClient,
}

impl Setup {
    async fn start() -> Self {
        let mock = MockKigo::start().await.unwrap();
        let api = api(&mock);
        let tokens = manager(api.partner_source());
        Self::with(mock, api, tokens)
    }

    /// The mock and the manager on `clock`.
    async fn on(clock: &ManualClock) -> Self {
        let mock = mock_on(clock).start().await.unwrap();
        let api = api(&mock);
        let tokens = manual_manager(api.partner_source(), clock);
        Self::with(mock, api, tokens)
    }

    fn with(mock: MockKigo, api: kigo_http::KigoApi, tokens: kigo_core::TokenManager) -> Self {
        let client = api.client(tokens.handle(api.partner_key()).unwrap());
        Self {
            mock,
            api,
            tokens,
            client,
        }
    }

    /// After one successful call, every token issued so far is revoked.
    async fn with_revoked_token() -> Self {
        let setup = Self::start().await;
        let client = &setup.client;
        client
            .send(client.get(PROTECTED_PATH).unwrap())
            .await
            .unwrap();
        setup.mock.revoke_all();
        setup
    }
}

#[tokio::test]
async fn requests_carry_the_token_and_a_revoked_one_is_renewed_once() {
    let Setup { mock, client, .. } = Setup::start().await;

    let response = client
        .send(client.get(PROTECTED_PATH).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(mock.creations(&mock.partner_key()), 1);
    let first = sent_with(response.extensions());
    assert_eq!(
        Some(first),
        client.handle().cached().map(|t| t.fingerprint())
    );

    assert_eq!(mock.revoke_all(), 1);
    let response = client
        .send(client.post(PROTECTED_PATH).unwrap().body("replayable"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // The response names the renewed token its (retried) request carried.
    let second = sent_with(response.extensions());
    assert_ne!(second, first);
    assert_eq!(
        Some(second),
        client.handle().cached().map(|t| t.fingerprint())
    );
    assert_eq!(
        response.text().await.unwrap(),
        r#"{"key":"p/acme","received_bytes":10}"#
    );
    assert_eq!(mock.creations(&mock.partner_key()), 2);
    assert_eq!(common::counts(client.metrics()), (3, 1, 1, 1));
}

#[tokio::test]
async fn a_token_that_expires_earlier_than_announced_is_renewed_on_401() {
    let clock = ManualClock::new();
    let Setup { mock, client, .. } = Setup::on(&clock).await;
    mock.inject(
        Endpoint::PartnerSession,
        [Fault::ExpiresEarly(Duration::from_secs(10))],
    );
    assert!(
        client
            .send(client.get(PROTECTED_PATH).unwrap())
            .await
            .unwrap()
            .status()
            .is_success()
    );
    clock.advance(Duration::from_secs(11));
    let response = client
        .send(client.get(PROTECTED_PATH).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(mock.creations(&mock.partner_key()), 2);
    assert_eq!(client.metrics().recovered, 1);
}

#[tokio::test]
async fn a_body_that_cannot_be_replayed_is_not_retried() {
    let Setup { mock, client, .. } = Setup::with_revoked_token().await;

    let streamed = http_body_util::Full::new(bytes::Bytes::from_static(b"streamed"));
    let response = client
        .send(
            client
                .post(PROTECTED_PATH)
                .unwrap()
                .body(Body::wrap(streamed)),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(client.metrics().retried, 0);
    // The rejected token was still invalidated: the next request renews and succeeds.
    let response = client
        .send(client.get(PROTECTED_PATH).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(mock.creations(&mock.partner_key()), 2);
    assert_eq!(mock.counters().requests_to(Endpoint::Protected), 3);
}

#[tokio::test]
async fn a_request_can_opt_out_of_the_retry() {
    let Setup { mock, client, .. } = Setup::with_revoked_token().await;
    let response = client
        .send_with(client.get(PROTECTED_PATH).unwrap(), RetryOn401::Never)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(mock.counters().requests_to(Endpoint::Protected), 2);
}

#[tokio::test]
async fn a_second_401_is_returned_without_looping() {
    let Setup { mock, client, .. } = Setup::start().await;
    mock.inject_always(Endpoint::Protected, Some(Fault::Status(401)));
    let response = client
        .send(client.get(PROTECTED_PATH).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(mock.counters().requests_to(Endpoint::Protected), 2);
    assert_eq!(mock.creations(&mock.partner_key()), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_hundred_concurrent_calls_with_a_revoked_token_cause_one_creation() {
    let Setup {
        mock,
        tokens,
        client,
        ..
    } = Setup::with_revoked_token().await;

    let calls: Vec<_> = (0..500)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.send(client.get(PROTECTED_PATH).unwrap()).await })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap().status(), StatusCode::OK);
    }
    assert_eq!(
        mock.creations(&mock.partner_key()),
        2,
        "one initial, one renewal"
    );
    assert_eq!(tokens.metrics().creations, 2);
    assert!(client.metrics().unauthorized >= 1);
}

#[tokio::test]
async fn requests_for_other_origins_get_no_token() {
    let Setup {
        mock, api, client, ..
    } = Setup::start().await;
    let foreign = api.http_client().get("http://127.0.0.1:9/steal");
    assert!(matches!(
        client.send(foreign).await,
        Err(ClientError::ForeignOrigin)
    ));
    assert_eq!(mock.creations(&mock.partner_key()), 0);
}

#[tokio::test]
async fn a_path_cannot_lead_the_token_to_another_host() {
    let Setup { mock, client, .. } = Setup::start().await;
    for path in [
        "@evil.example/collect",
        "api/v1/protected",
        ".evil.example/",
    ] {
        assert!(
            matches!(client.get(path), Err(ClientError::InvalidPath(_))),
            "{path}"
        );
    }
    let odd = client
        .get("/@evil.example/collect")
        .unwrap()
        .build()
        .unwrap();
    assert_eq!(odd.url().host_str(), Some("127.0.0.1"));
    assert_eq!(mock.creations(&mock.partner_key()), 0);
}

#[tokio::test]
async fn no_request_waits_for_a_renewal_while_the_token_is_valid() {
    let clock = ManualClock::new();
    let Setup { mock, client, .. } = Setup::on(&clock).await;
    client
        .send(client.get(PROTECTED_PATH).unwrap())
        .await
        .unwrap();

    // Past the refresh point (22.5 of 30 minutes), before the stale point; renewals hang.
    mock.inject_always(Endpoint::PartnerSession, Some(Fault::Hang));
    clock.advance(Duration::from_secs(25 * 60));
    for _ in 0..3 {
        let response = tokio::time::timeout(
            Duration::from_secs(1),
            client.send(client.get(PROTECTED_PATH).unwrap()),
        )
        .await
        .expect("the request does not wait for the hanging renewal")
        .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    kigo_testkit::eventually("the renewal to be under way", common::WAIT, || async {
        mock.counters().requests_to(Endpoint::PartnerSession) == 2
    })
    .await;
    assert_eq!(mock.creations(&mock.partner_key()), 1);
}

#[tokio::test]
async fn a_failed_request_does_not_repeat_its_url() {
    let Setup { mock, client, .. } = Setup::start().await;
    client
        .send(client.get(PROTECTED_PATH).unwrap())
        .await
        .unwrap();
    mock.shutdown();
    let path = "/api/v1/users/user-4711/orders";
    let error = client
        .send(client.get(path).unwrap())
        .await
        .expect_err("the server is gone");
    assert!(matches!(error, ClientError::Request(_)), "{error:?}");
    let mut shown = format!("{error} {error:?}");
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        shown.push_str(&format!(" {cause} {cause:?}"));
        source = cause.source();
    }
    assert!(!shown.contains("user-4711"), "{shown}");
}
