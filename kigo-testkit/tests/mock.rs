//! The mock Kigo server in-process: what tests and the quickstart rely on, each feature once.

use std::sync::Arc;
use std::time::Duration;

use kigo_core::runtime::ManualClock;
use kigo_testkit::mock::{MockKigo, PARTNER_SESSION_PATH, USER_SESSION_PATH};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// A plain client with a deadline on every request.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn post(mock: &MockKigo, path: &str, body: Value) -> (StatusCode, Value) {
    let response = client()
        .post(format!("{}{path}", mock.base_url()))
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
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
    let mock = MockKigo::builder()
        .clock(Arc::new(clock.clone()))
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
    let bearer = format!(
        "Bearer {}",
        partner_token["session_token"].as_str().unwrap()
    );
    let response = client()
        .post(format!("{}{USER_SESSION_PATH}", mock.base_url()))
        .header("authorization", bearer)
        .body(json!({"external_user_id": "u1"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let shown = format!("{builder_shown} {mock:?}");
    assert!(shown.contains(mock.base_url()) && shown.contains("acme"));
    for (name, secret) in [
        ("the API key", "mock-secret-key"),
        ("a partner-level token", "kigo_partner_"),
        ("a user-level token", "kigo_user_"),
        ("a refresh token", "kigo_refresh_"),
    ] {
        if let Some(at) = shown.find(secret) {
            panic!("{name} shown at byte {at} of the Debug output");
        }
    }
}
