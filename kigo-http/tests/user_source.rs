//! The user-level token source against the mock Kigo server: created with the partner token,
//! renewed with refresh tokens, and recovering from a rejected partner token.

mod common;

use std::time::Duration;

use kigo_core::runtime::ManualClock;
use kigo_core::{CreateRequest, KeyScope, TokenKey, TokenSource, UserId};
use kigo_http::{ConfigError, CreateError, ErrorKind};
use kigo_testkit::mock::{Endpoint, Fault, MockKigo, PROTECTED_PATH};

use common::{api, manager, manager_with_scope, manual_manager, mock_on};

/// A partner token manager on real time, and a user-level source taking its tokens.
fn partner_and_user_sources(
    api: &kigo_http::KigoApi,
) -> (kigo_core::TokenManager, kigo_http::UserTokenSource) {
    let partners = manager(api.partner_source());
    let source = api
        .user_source(partners.handle(api.partner_key()).unwrap())
        .unwrap();
    (partners, source)
}

/// A partner token manager and a user token manager taking its tokens, both on `clock`.
fn manual_managers(
    api: &kigo_http::KigoApi,
    clock: &ManualClock,
) -> (kigo_core::TokenManager, kigo_core::TokenManager) {
    let partners = manual_manager(api.partner_source(), clock);
    let partner = partners.handle(api.partner_key()).unwrap();
    let users = manual_manager(api.user_source(partner).unwrap(), clock);
    (partners, users)
}

/// The requests to the user-token refresh and creation endpoints so far.
fn refreshes_and_creations(mock: &MockKigo) -> (u64, u64) {
    let counters = mock.counters();
    (
        counters.requests_to(Endpoint::UserRefresh),
        counters.requests_to(Endpoint::UserSession),
    )
}

fn user(id: &str) -> UserId {
    UserId::new(id).unwrap()
}

#[tokio::test]
async fn user_tokens_are_created_with_the_partner_token_and_work() {
    let mock = MockKigo::start().await.unwrap();
    let api = api(&mock);
    let partners = manager(api.partner_source());
    let users = manager(
        api.user_source(partners.handle(api.partner_key()).unwrap())
            .unwrap(),
    );
    let alice = api.user_key(user("alice"));

    let token = users.token(&alice).await.unwrap();
    assert!(token.refresh_token().is_some());
    assert_eq!(mock.creations(&alice), 1);
    assert_eq!(mock.creations(&mock.partner_key()), 1);

    let client = api.client(users.handle(alice.clone()).unwrap());
    let answer = client
        .send(client.get(PROTECTED_PATH).unwrap())
        .await
        .unwrap();
    assert_eq!(
        answer.text().await.unwrap(),
        r#"{"key":"u/acme/alice","received_bytes":0}"#
    );
}

#[tokio::test]
async fn a_rejected_partner_token_is_invalidated_and_the_creation_retried_once() {
    let mock = MockKigo::start().await.unwrap();
    let api = api(&mock);
    let partners = manager(api.partner_source());
    let users = manager(
        api.user_source(partners.handle(api.partner_key()).unwrap())
            .unwrap(),
    );
    partners.token(&api.partner_key()).await.unwrap();
    mock.revoke_all();

    users.token(&api.user_key(user("bob"))).await.unwrap();
    assert_eq!(mock.creations(&mock.partner_key()), 2);
    assert_eq!(mock.counters().requests_to(Endpoint::UserSession), 2);
    assert_eq!(partners.metrics().invalidations, 1);
}

#[tokio::test]
async fn a_user_token_rejected_twice_is_a_permanent_error() {
    let mock = MockKigo::start().await.unwrap();
    let api = api(&mock);
    let (_partners, source) = partner_and_user_sources(&api);
    mock.inject(
        Endpoint::UserSession,
        [Fault::Status(401), Fault::Status(401)],
    );
    let key = api.user_key(user("carol"));
    let clock = ManualClock::new();
    let error = source
        .create(CreateRequest::new(&key, None, &clock))
        .await
        .unwrap_err();
    assert!(!error.is_transient());
    let cause = error.cause().downcast_ref::<CreateError>().unwrap();
    assert_eq!(cause.kind(), ErrorKind::Unauthorized);
    assert_eq!(mock.counters().requests_to(Endpoint::UserSession), 2);
}

#[tokio::test]
async fn renewals_use_the_refresh_token_and_fall_back_to_creation() {
    let clock = ManualClock::new();
    let mock = mock_on(&clock)
        .lifetime(Duration::from_secs(100))
        .start()
        .await
        .unwrap();
    let api = api(&mock);
    let (partners, users) = manual_managers(&api, &clock);
    let dave = api.user_key(user("dave"));
    let handle = users.handle(dave.clone()).unwrap();

    let first = handle.token().await.unwrap().fingerprint();
    // Past the stale point: the next call renews, with the refresh token.
    clock.advance(Duration::from_secs(85));
    let second = handle.token().await.unwrap().fingerprint();
    assert_ne!(first, second);
    assert_eq!(refreshes_and_creations(&mock), (1, 1));

    // The partner token renews ahead in the background; let that finish before time jumps again.
    kigo_testkit::eventually("the partner token's renewal", common::WAIT, || async {
        partners.metrics().creations == 2
    })
    .await;

    // A refused refresh token falls back to creating a new token.
    mock.inject(Endpoint::UserRefresh, [Fault::Status(401)]);
    clock.advance(Duration::from_secs(85));
    handle.token().await.unwrap();
    assert_eq!(refreshes_and_creations(&mock), (2, 2));
    assert_eq!(mock.creations(&dave), 3);
}

#[tokio::test]
async fn a_refresh_token_is_used_while_valid_however_long_ago_the_access_token_expired() {
    let clock = ManualClock::new();
    let mock = mock_on(&clock).start().await.unwrap();
    let api = api(&mock);
    let (partners, users) = manual_managers(&api, &clock);
    let handle = users.handle(api.user_key(user("ines"))).unwrap();
    let first = handle.token().await.unwrap();
    assert_eq!(
        first.lifetime(),
        Duration::from_secs(60 * 60),
        "Kigo's 1 hour"
    );
    drop(first);

    // Nobody used the token for a day: it expired long ago, its refresh token (1 year) did not.
    clock.advance(Duration::from_secs(24 * 60 * 60));
    handle.token().await.unwrap();
    assert_eq!(refreshes_and_creations(&mock), (1, 1));
    // The partner token, expired too, renews in the background; let that finish first.
    kigo_testkit::eventually("the partner token's renewal", common::WAIT, || async {
        partners.metrics().creations == 2
    })
    .await;

    // A year later the refresh token has expired too: it is not tried, a new token is created.
    clock.advance(Duration::from_secs(366 * 24 * 60 * 60));
    handle.token().await.unwrap();
    assert_eq!(refreshes_and_creations(&mock), (1, 2));
}

#[tokio::test]
async fn user_keys_are_bounded_in_memory() {
    let mock = MockKigo::start().await.unwrap();
    let api = api(&mock);
    let partners = manager(api.partner_source());
    let users = api
        .user_manager(&partners)
        .unwrap()
        .local_only()
        .user_key_capacity(8)
        .build()
        .unwrap();
    for n in 0..40 {
        users
            .token(&api.user_key(user(&format!("u{n}"))))
            .await
            .unwrap();
    }
    assert!(
        users.user_keys() <= 8,
        "{} user keys kept",
        users.user_keys()
    );
    assert_eq!(mock.creations(&mock.partner_key()), 1);
}

/// A user-level source for `mock`'s partner, and a user token created with it (with a refresh
/// token), ready to be renewed.
async fn source_with_a_user_token(
    mock: &MockKigo,
    clock: &ManualClock,
) -> (
    kigo_http::UserTokenSource,
    kigo_core::TokenManager,
    kigo_core::TokenKey,
    kigo_core::Token,
) {
    let api = api(mock);
    let (partners, source) = partner_and_user_sources(&api);
    let key = api.user_key(user("erin"));
    let token = source
        .create(CreateRequest::new(&key, None, clock))
        .await
        .unwrap();
    assert!(token.refresh_token().is_some());
    (source, partners, key, token)
}

#[tokio::test]
async fn a_transient_refresh_failure_does_not_fall_back_to_creation() {
    let mock = MockKigo::start().await.unwrap();
    let clock = ManualClock::new();
    let (source, _partners, key, token) = source_with_a_user_token(&mock, &clock).await;
    mock.inject(Endpoint::UserRefresh, [Fault::Status(503)]);
    let error = source
        .create(CreateRequest::new(&key, Some(&token), &clock))
        .await
        .unwrap_err();
    assert!(error.is_transient());
    let counters = mock.counters();
    assert_eq!(counters.requests_to(Endpoint::UserRefresh), 1);
    assert_eq!(
        counters.requests_to(Endpoint::UserSession),
        1,
        "no new creation"
    );
}

#[tokio::test]
async fn a_refresh_answer_without_a_refresh_token_keeps_the_one_used() {
    let mock = MockKigo::start().await.unwrap();
    let clock = ManualClock::new();
    let (source, _partners, key, token) = source_with_a_user_token(&mock, &clock).await;
    mock.inject(
        Endpoint::UserRefresh,
        [Fault::RawBody(
            r#"{"session_token":"renewed","expires_in":3600}"#.into(),
        )],
    );
    let renewed = source
        .create(CreateRequest::new(&key, Some(&token), &clock))
        .await
        .unwrap();
    assert_eq!(renewed.secret().expose(), "renewed");
    assert_eq!(
        renewed.refresh_token().map(|refresh| refresh.expose()),
        token.refresh_token().map(|refresh| refresh.expose()),
        "an API that does not rotate refresh tokens leaves the old one valid"
    );
}

#[tokio::test]
async fn a_partner_token_echoed_in_a_bad_request_is_scrubbed() {
    let mock = MockKigo::start().await.unwrap();
    let api = api(&mock);
    let (partners, source) = partner_and_user_sources(&api);
    let partner_token = partners.token(&api.partner_key()).await.unwrap();
    let body = format!(
        r#"{{"message":"bearer {} may not do this"}}"#,
        partner_token.secret().expose()
    );
    mock.inject(
        Endpoint::UserSession,
        [Fault::StatusWithBody { status: 400, body }],
    );
    let key = api.user_key(user("frank"));
    let error = source
        .create(CreateRequest::new(&key, None, &ManualClock::new()))
        .await
        .unwrap_err();
    let cause = error.cause().downcast_ref::<CreateError>().unwrap();
    assert_eq!(cause.kind(), ErrorKind::BadRequest);
    assert_eq!(
        cause.server_message(),
        Some("bearer [redacted] may not do this")
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_refresh_token_echoed_in_a_bad_request_is_scrubbed_from_the_logs() {
    let capture = kigo_testkit::logs::Capture::default();
    let _logs = tracing::subscriber::set_default(capture.subscriber());
    let mock = MockKigo::start().await.unwrap();
    let clock = ManualClock::new();
    let (source, _partners, key, token) = source_with_a_user_token(&mock, &clock).await;
    let refresh = token.refresh_token().unwrap().expose().to_owned();
    mock.inject(
        Endpoint::UserRefresh,
        [Fault::StatusWithBody {
            status: 400,
            body: format!(r#"{{"message":"refresh token {refresh} is malformed"}}"#),
        }],
    );
    // The refused refresh falls back to a new token; the refusal is logged.
    source
        .create(CreateRequest::new(&key, Some(&token), &clock))
        .await
        .unwrap();
    let logs = capture.text();
    assert!(
        logs.contains("refresh token [redacted] is malformed"),
        "the refusal is logged, scrubbed"
    );
    kigo_testkit::logs::assert_no_secret(&logs, &[("the refresh token", &refresh)]);
}

#[tokio::test]
async fn only_this_partners_partner_level_handle_makes_a_user_source() {
    let mock = MockKigo::start().await.unwrap();
    let api = api(&mock);
    let partners = manager(api.partner_source());
    // Managers of other keys (this API's partner manager refuses to hand out any).
    let other = |scope| manager_with_scope(kigo_testkit::FakeSource::new(), scope);
    let handles = [
        other(KeyScope::AnyUser).handle(api.user_key(user("grace"))),
        other(KeyScope::AnyPartner).handle(TokenKey::partner(common::partner("someone-else"))),
    ];
    for handle in handles {
        let handle = handle.unwrap();
        assert!(
            matches!(
                api.user_source(handle.clone()),
                Err(ConfigError::Invalid {
                    setting: "partner handle",
                    ..
                })
            ),
            "{}",
            handle.key()
        );
    }
    api.user_source(partners.handle(api.partner_key()).unwrap())
        .expect("the partner-level handle");
}

#[tokio::test]
async fn a_user_endpoint_rejecting_every_partner_token_renews_it_at_most_once_per_minimum_age() {
    let clock = ManualClock::new();
    let mock = mock_on(&clock).start().await.unwrap();
    let api = api(&mock);
    let (partners, users) = manual_managers(&api, &clock);
    partners.token(&api.partner_key()).await.unwrap();
    mock.inject_always(Endpoint::UserSession, Some(Fault::Status(401)));

    // A new user every second for a minute: every user call is rejected.
    let minute = 60;
    for second in 0..minute {
        let key = api.user_key(user(&format!("user-{second}")));
        let error = users.token(&key).await.unwrap_err();
        assert!(!error.is_transient(), "{error}");
        clock.advance(Duration::from_secs(1));
    }
    let renewed = mock.creations(&mock.partner_key()) - 1;
    // Once per 5 s minimum age at most; each creation renews it at most once (60 without it).
    assert!(
        (1..=minute / 5).contains(&renewed),
        "the partner token was renewed {renewed} times"
    );

    // Twenty users at once, the partner token old enough: one renewal for all of them.
    clock.advance(Duration::from_secs(10));
    let before = mock.creations(&mock.partner_key());
    let callers: Vec<_> = (0..20)
        .map(|n| {
            let (users, key) = (users.clone(), api.user_key(user(&format!("burst-{n}"))));
            tokio::spawn(async move { users.token(&key).await.map(|_| ()) })
        })
        .collect();
    for caller in callers {
        assert!(caller.await.unwrap().is_err());
    }
    assert_eq!(mock.creations(&mock.partner_key()), before + 1);
}
