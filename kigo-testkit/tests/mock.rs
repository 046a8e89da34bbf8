//! The mock Kigo server in-process: what tests and the quickstart rely on, each feature once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kigo_core::runtime::ManualClock;
use kigo_core::{PartnerId, TokenKey};
use kigo_testkit::mock::{
    Endpoint, Fault, MockKigo, PARTNER_SESSION_PATH, SSO_SESSION_PATH, USER_REFRESH_PATH,
    USER_SESSION_PATH,
};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// A mock whose tokens are issued and judged on `clock`.
fn on(clock: &ManualClock) -> kigo_testkit::mock::MockKigoBuilder {
    MockKigo::builder().clock(Arc::new(clock.clone()))
}

/// A plain client with a deadline on every request.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// The status and JSON answer (`null` if none) of `request`.
async fn answer(request: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let response = request.send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn post(mock: &MockKigo, path: &str, body: Value) -> (StatusCode, Value) {
    answer(post_request(mock, path, body)).await
}

/// `post` with `token`'s `session_token` as bearer.
async fn post_as(mock: &MockKigo, token: &Value, path: &str, body: Value) -> (StatusCode, Value) {
    let bearer = token["session_token"].as_str().unwrap();
    answer(post_request(mock, path, body).bearer_auth(bearer)).await
}

fn post_request(mock: &MockKigo, path: &str, body: Value) -> reqwest::RequestBuilder {
    client()
        .post(format!("{}{path}", mock.base_url()))
        .body(body.to_string())
}

/// Creates a partner-level token with the mock's own credentials; its answer.
async fn create_partner_token(mock: &MockKigo) -> Value {
    let credentials = json!({"api_key": mock.api_key(), "partner_id": mock.partner_id().as_str()});
    let (status, answer) = post(mock, PARTNER_SESSION_PATH, credentials).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer
}

#[tokio::test]
async fn revoking_counts_only_tokens_still_valid() {
    let clock = ManualClock::new();
    let mock = on(&clock)
        .lifetime(Duration::from_secs(10))
        .start()
        .await
        .unwrap();
    create_partner_token(&mock).await;
    clock.advance(Duration::from_secs(11));
    assert_eq!(mock.revoke_all(), 0, "the expired token is not counted");
    create_partner_token(&mock).await;
    create_partner_token(&mock).await;
    clock.advance(Duration::from_secs(5));
    assert_eq!(mock.revoke_all(), 2);
    assert_eq!(mock.revoke_all(), 0);
}

#[tokio::test]
async fn debug_output_shows_no_key_and_no_token() {
    let builder = MockKigo::builder().partner("acme", "mock-secret-key");
    let builder_shown = format!("{builder:?}");
    let mock = builder.start().await.unwrap();
    let partner_token = create_partner_token(&mock).await;
    let (status, _) = create_user_token(&mock, &partner_token, "u1").await;
    assert_eq!(status, StatusCode::OK);
    let user = json!({"external_user_id": "u1"});
    let (status, _) = create_sso_session(&mock, &partner_token, user).await;
    assert_eq!(status, StatusCode::OK);
    let shown = format!("{builder_shown} {mock:?}");
    assert!(shown.contains(mock.base_url()) && shown.contains("acme"));
    for (name, secret) in [
        ("the API key", "mock-secret-key"),
        ("a partner-level token", "kigo_partner_"),
        ("a user-level token", "kigo_user_"),
        ("a refresh token", "kigo_refresh_"),
        ("an SSO session", "kigo_sso_"),
    ] {
        if let Some(at) = shown.find(secret) {
            panic!("{name} shown at byte {at} of the Debug output");
        }
    }
}

#[tokio::test]
async fn latency_delays_a_normal_answer() {
    let mock = MockKigo::start().await.unwrap();
    let delay = Duration::from_millis(300);
    mock.inject(Endpoint::PartnerSession, [Fault::Latency(delay)]);
    let started = Instant::now();
    let answer = create_partner_token(&mock).await;
    assert!(started.elapsed() >= delay, "{:?}", started.elapsed());
    assert!(answer["session_token"].is_string());
}

#[tokio::test]
async fn faults_can_be_cleared_in_process_and_over_http() {
    let mock = MockKigo::start().await.unwrap();
    let credentials = json!({"api_key": mock.api_key(), "partner_id": mock.partner_id().as_str()});
    let attempt = || post(&mock, PARTNER_SESSION_PATH, credentials.clone());

    mock.inject_always(Endpoint::PartnerSession, Some(Fault::Status(503)));
    assert_eq!(attempt().await.0, StatusCode::SERVICE_UNAVAILABLE);
    mock.clear_faults();
    assert_eq!(attempt().await.0, StatusCode::OK);

    mock.inject_always(Endpoint::PartnerSession, Some(Fault::Status(503)));
    mock.inject(Endpoint::PartnerSession, [Fault::Status(500)]);
    let cleared = client()
        .delete(format!("{}/_mock/faults", mock.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(cleared.status(), StatusCode::OK);
    assert_eq!(attempt().await.0, StatusCode::OK);
}

#[tokio::test]
async fn user_tokens_come_with_refresh_tokens_unless_turned_off() {
    for enabled in [true, false] {
        let mock = MockKigo::builder()
            .refresh_tokens(enabled)
            .start()
            .await
            .unwrap();
        let partner = create_partner_token(&mock).await;
        let (_, answer) = create_user_token(&mock, &partner, "u1").await;
        assert!(answer["session_token"].is_string());
        assert_eq!(answer["refresh_token"].is_string(), enabled, "{enabled}");
    }
}

/// Creates a user-level token for `user` with `partner`'s token; the status and answer.
async fn create_user_token(mock: &MockKigo, partner: &Value, user: &str) -> (StatusCode, Value) {
    let fields = json!({ "external_user_id": user });
    post_as(mock, partner, USER_SESSION_PATH, fields).await
}

#[tokio::test]
async fn tokens_live_as_kigo_documents_and_refresh_tokens_expire_after_a_year() {
    let clock = ManualClock::new();
    let mock = on(&clock).start().await.unwrap();
    let partner = create_partner_token(&mock).await;
    assert_eq!(partner["expires_in"], 30 * 60);
    let (_, user) = create_user_token(&mock, &partner, "u1").await;
    assert_eq!(user["expires_in"], 60 * 60);

    let refresh = |user: &Value| json!({ "refresh_token": user["refresh_token"] });
    clock.advance(Duration::from_secs(364 * 24 * 60 * 60));
    let (status, renewed) = post(&mock, USER_REFRESH_PATH, refresh(&user)).await;
    assert_eq!(status, StatusCode::OK, "valid for a year");
    let (status, _) = post(&mock, USER_REFRESH_PATH, refresh(&user)).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "used up: refresh tokens rotate"
    );

    clock.advance(Duration::from_secs(366 * 24 * 60 * 60));
    let (status, _) = post(&mock, USER_REFRESH_PATH, refresh(&renewed)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "expired");
}

/// Creates an SSO session with `bearer` and `fields`; the status and answer.
async fn create_sso_session(mock: &MockKigo, bearer: &Value, fields: Value) -> (StatusCode, Value) {
    post_as(mock, bearer, SSO_SESSION_PATH, fields).await
}

/// Opens the hosted page with `session`; the status and answer.
async fn open_page(mock: &MockKigo, session: &Value) -> (StatusCode, Value) {
    let id = session["session_id"].as_str().unwrap();
    answer(client().get(format!("{}?session-id={id}", mock.sso_page_url()))).await
}

#[tokio::test]
async fn sso_sessions_open_the_hosted_page_until_they_expire_or_once_if_single_use() {
    let clock = ManualClock::new();
    let mock = on(&clock).start().await.unwrap();
    let partner = create_partner_token(&mock).await;
    let fields = json!({
        "external_user_id": "u1",
        "external_program_id": "spring",
        "email": "u1@example.com",
        "attributes": {"tier": "gold"},
    });
    let (status, reusable) = create_sso_session(&mock, &partner, fields.clone()).await;
    assert_eq!(status, StatusCode::OK, "{reusable}");
    assert_eq!(reusable["expires_in"], 30 * 60, "Kigo's 30 minutes");
    let opened = json!({"partner": "acme", "program": "spring", "user": "u1"});
    for _ in 0..2 {
        assert_eq!(
            open_page(&mock, &reusable).await,
            (StatusCode::OK, opened.clone())
        );
    }

    let mut single = fields;
    single["single_use"] = json!(true);
    let (_, single_use) = create_sso_session(&mock, &partner, single).await;
    assert_eq!(open_page(&mock, &single_use).await.0, StatusCode::OK);
    assert_eq!(
        open_page(&mock, &single_use).await.0,
        StatusCode::UNAUTHORIZED
    );

    clock.advance(Duration::from_secs(30 * 60));
    assert_eq!(
        open_page(&mock, &reusable).await.0,
        StatusCode::UNAUTHORIZED
    );

    let user = kigo_core::UserId::new("u1").unwrap();
    assert_eq!(mock.sso_creations(Some("spring"), &user), 2);
    assert_eq!(mock.sso_creations(None, &user), 0);
    let seen = mock.sso_sessions();
    assert_eq!(
        seen.iter().map(|seen| seen.single_use).collect::<Vec<_>>(),
        [false, true]
    );
    assert_eq!(seen[0].email.as_deref(), Some("u1@example.com"));
    assert_eq!(seen[0].attributes, json!({"tier": "gold"}));
    assert_eq!(mock.counters().requests_to(Endpoint::SsoPage), 5);
}

#[tokio::test]
async fn sso_sessions_need_a_partner_token_and_a_well_formed_request() {
    let mock = MockKigo::start().await.unwrap();
    let partner = create_partner_token(&mock).await;
    let (_, user_token) = create_user_token(&mock, &partner, "u1").await;
    let user = json!({"external_user_id": "u1"});
    assert_eq!(
        create_sso_session(&mock, &user_token, user.clone()).await.0,
        StatusCode::FORBIDDEN
    );
    let unknown = json!({"session_token": "kigo_partner_forged"});
    assert_eq!(
        create_sso_session(&mock, &unknown, user).await.0,
        StatusCode::UNAUTHORIZED
    );
    for fields in [
        json!({}),
        json!({"external_user_id": ""}),
        json!({"external_user_id": "u1", "single_use": "yes"}),
        json!({"external_user_id": "u1", "attributes": ["tier"]}),
        json!({"external_user_id": "u1", "external_program_id": 7}),
    ] {
        let (status, _) = create_sso_session(&mock, &partner, fields.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{fields}");
    }
    assert!(mock.counters().sso_sessions.is_empty());
}

#[tokio::test]
async fn it_listens_on_the_port_asked_for() {
    // A port free a moment ago (the mock takes it at once).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .unwrap()
        .port();
    let mock = MockKigo::builder().port(port).start().await.unwrap();
    assert_eq!(mock.base_url(), format!("http://127.0.0.1:{port}"));
    create_partner_token(&mock).await;
}

#[tokio::test]
async fn creations_are_counted_per_key_and_in_total() {
    let mock = MockKigo::builder()
        .partner("north", "north-key")
        .partner("south", "south-key")
        .start()
        .await
        .unwrap();
    for (partner, key, times) in [("north", "north-key", 2), ("south", "south-key", 1)] {
        for _ in 0..times {
            let credentials = json!({"api_key": key, "partner_id": partner});
            let (status, _) = post(&mock, PARTNER_SESSION_PATH, credentials).await;
            assert_eq!(status, StatusCode::OK);
        }
    }
    let counters = mock.counters();
    let key = |id| TokenKey::partner(PartnerId::new(id).unwrap());
    assert_eq!(counters.creations_for(&key("north")), 2);
    assert_eq!(counters.creations_for(&key("south")), 1);
    assert_eq!(counters.total_creations(), 3);
    assert_eq!(counters.requests_to(Endpoint::PartnerSession), 3);
}
