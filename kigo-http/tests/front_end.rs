//! Front-end sessions: the user-level token as JSON a handler returns as is, from a manager that
//! can only hold user-level tokens.

mod common;

use std::sync::Arc;
use std::time::Duration;

use kigo_core::runtime::{ManualClock, RuntimeEnv};
use kigo_core::{KeyScope, UserId};
use kigo_http::{ConfigError, UserTokens};
use kigo_testkit::mock::{MockKigo, PROTECTED_PATH};
use serde_json::{Value, json};

use common::{api, manager, manual_manager, mock_on};

/// This partner's user tokens on `clock`, created with the partner tokens of `partners`.
fn user_tokens(
    api: &kigo_http::KigoApi,
    partners: &kigo_core::TokenManager,
    clock: &ManualClock,
) -> UserTokens {
    api.user_tokens(partners, |manager| {
        manager
            .runtime(RuntimeEnv::manual(clock).unwrap())
            .local_only()
    })
    .unwrap()
    .with_clock(Arc::new(clock.clone()))
}

#[tokio::test]
async fn a_front_end_session_is_the_users_token_its_expiry_and_the_seconds_left() {
    let clock = ManualClock::new(); // 2030-01-01T00:00:00Z
    let mock = mock_on(&clock).start().await.unwrap();
    let api = api(&mock);
    let partners = manual_manager(api.partner_source(), &clock);
    let users = user_tokens(&api, &partners, &clock);
    let alice = UserId::new("alice").unwrap();

    let session = serde_json::to_value(users.session(alice.clone()).await.unwrap()).unwrap();
    let token = session["token"].as_str().unwrap().to_owned();
    assert_eq!(
        session,
        json!({
            "token": token,
            "expires_at": "2030-01-01T01:00:00Z",
            "expires_in_seconds": 3600,
        })
    );
    // The token is alice's user-level token: the API knows it as hers.
    let answer = kigo_http::reqwest::Client::new()
        .get(format!("{}{PROTECTED_PATH}", mock.base_url()))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let answer: Value = serde_json::from_str(&answer.text().await.unwrap()).unwrap();
    assert_eq!(answer["key"], "u/acme/alice");

    clock.advance(Duration::from_secs(10 * 60));
    let later = users.session(alice).await.unwrap();
    assert_eq!(later.token().expose(), token, "the cached token");
    assert_eq!(later.expires_in_seconds(), 3000);
    assert_eq!(
        mock.creations(&api.user_key(UserId::new("alice").unwrap())),
        1
    );
}

#[tokio::test]
async fn a_front_end_session_shows_no_token_in_debug_and_no_refresh_token_in_json() {
    let clock = ManualClock::new();
    let mock = mock_on(&clock).start().await.unwrap();
    let api = api(&mock);
    let partners = manual_manager(api.partner_source(), &clock);
    let users = user_tokens(&api, &partners, &clock);
    let handle = users.handle(UserId::new("bob").unwrap()).unwrap();
    let token = handle.token().await.unwrap();
    let refresh = token
        .refresh_token()
        .expect("Kigo sends one")
        .expose()
        .to_owned();
    let session = handle.session().await.unwrap();

    let json = serde_json::to_string(&session).unwrap();
    assert!(json.contains(token.secret().expose()));
    let partner = partners.token(&api.partner_key()).await.unwrap();
    kigo_testkit::logs::assert_no_secret(
        &json,
        &[
            ("the refresh token", &refresh),
            ("the partner token", partner.secret().expose()),
        ],
    );
    let shown = format!("{session:?} {token:?} {handle:?} {users:?}");
    kigo_testkit::logs::assert_no_secret(
        &shown,
        &[
            ("the user token", token.secret().expose()),
            ("the refresh token", &refresh),
        ],
    );
}

#[tokio::test]
async fn user_tokens_are_made_only_from_this_partners_user_level_manager() {
    let mock = MockKigo::start().await.unwrap();
    let api = api(&mock);
    let partners = manager(api.partner_source());
    // A manager told to serve the partner-level token instead is refused when built.
    let partner_scope = KeyScope::Partner(mock.partner_id().clone());
    let refused = api.user_tokens(&partners, |manager| {
        manager.local_only().scope(partner_scope)
    });
    assert!(
        matches!(refused, Err(ConfigError::Manager(_))),
        "{refused:?}"
    );
    // Another partner's partner-level manager gives no user tokens of this partner.
    let other = MockKigo::builder()
        .partner("globex", "globex-key")
        .start()
        .await
        .unwrap();
    let globex = common::api(&other);
    let globex_partners = manager(globex.partner_source());
    let refused = api.user_tokens(&globex_partners, |manager| manager.local_only());
    assert!(
        matches!(refused, Err(ConfigError::Invalid { .. })),
        "{refused:?}"
    );
}
