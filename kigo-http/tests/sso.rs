//! SSO sessions for Kigo-hosted pages against the mock Kigo server: reusable sessions cached and
//! shared by the fleet per (partner, program, user), single-use ones never cached, a manager that
//! hands out nothing else, and the session ID that opens the hosted page.

mod common;

use std::sync::Arc;

use kigo_core::runtime::{ManualClock, RuntimeEnv};
use kigo_core::{Error, MemoryStore, TokenManager, UserId};
use kigo_http::reqwest::{StatusCode, Url};
use kigo_http::{KigoApi, ProgramId, SsoRequest, SsoSessions};
use kigo_testkit::mock::{Endpoint, MockKigo};
use serde_json::{Value, json};

use common::{api, manager, manual_manager, mock_on};

fn user(id: &str) -> UserId {
    UserId::new(id).unwrap()
}

fn program(id: &str) -> ProgramId {
    ProgramId::new(id).unwrap()
}

/// One replica's SSO sessions on `store`, with a partner manager of its own on the same store.
fn replica(api: &KigoApi, store: &MemoryStore) -> (TokenManager, SsoSessions) {
    let partners = api.partner_manager().store(store.clone()).build().unwrap();
    let sso = api
        .sso_sessions(&partners, |manager| manager.store(store.clone()))
        .unwrap();
    (partners, sso)
}

/// SSO sessions on a store of their own, with a partner manager of their own.
fn local(api: &KigoApi) -> (TokenManager, SsoSessions) {
    let partners = manager(api.partner_source());
    let sso = api
        .sso_sessions(&partners, |manager| manager.local_only())
        .unwrap();
    (partners, sso)
}

/// What the mock's hosted page says when opened at `url`.
async fn open(url: Url) -> (StatusCode, Value) {
    let response = kigo_http::reqwest::get(url).await.unwrap();
    let status = response.status();
    (
        status,
        serde_json::from_str(&response.text().await.unwrap()).unwrap(),
    )
}

#[tokio::test]
async fn a_reusable_session_is_created_once_for_the_fleet_per_program_and_user() {
    let mock = MockKigo::start().await.unwrap();
    let api = api(&mock);
    let store = MemoryStore::new();
    let (_a_partners, a) = replica(&api, &store);
    let (_b_partners, b) = replica(&api, &store);

    let first = a
        .session(user("alice"), Some(program("spring")))
        .await
        .unwrap();
    let again = b
        .session(user("alice"), Some(program("spring")))
        .await
        .unwrap();
    assert_eq!(first.session_id().expose(), again.session_id().expose());
    assert_eq!(mock.sso_creations(Some("spring"), &user("alice")), 1);

    let other_program = b.session(user("alice"), None).await.unwrap();
    let other_user = a
        .session(user("bob"), Some(program("spring")))
        .await
        .unwrap();
    assert_ne!(
        other_program.session_id().expose(),
        first.session_id().expose()
    );
    assert_ne!(
        other_user.session_id().expose(),
        first.session_id().expose()
    );
    assert_eq!(mock.sso_creations(None, &user("alice")), 1);
    assert_eq!(mock.sso_creations(Some("spring"), &user("bob")), 1);
    assert_eq!(
        mock.creations(&mock.partner_key()),
        1,
        "one partner token for the fleet"
    );
    assert!(mock.sso_sessions().iter().all(|seen| !seen.single_use));

    // The session ID opens the hosted page for alice in spring, again and again.
    let page = Url::parse(&mock.sso_page_url()).unwrap();
    let opened = json!({"partner": "acme", "program": "spring", "user": "alice"});
    for _ in 0..2 {
        assert_eq!(
            open(first.page_url(&page)).await,
            (StatusCode::OK, opened.clone())
        );
    }
}

#[tokio::test]
async fn single_use_sessions_are_never_cached_and_carry_the_email_and_attributes() {
    let mock = MockKigo::start().await.unwrap();
    let api = api(&mock);
    let (_partners, sso) = local(&api);
    let request = SsoRequest::new(user("carol"))
        .program(program("spring"))
        .email("carol@example.com")
        .attribute("tier", "gold");

    let first = sso.single_use(request.clone()).await.unwrap();
    let second = sso.single_use(request).await.unwrap();
    assert_ne!(first.session_id().expose(), second.session_id().expose());
    assert_eq!(mock.sso_creations(Some("spring"), &user("carol")), 2);
    assert_eq!(sso.manager().user_keys(), 0, "nothing cached");
    let seen = &mock.sso_sessions()[0];
    assert!(seen.single_use);
    assert_eq!(seen.email.as_deref(), Some("carol@example.com"));
    assert_eq!(seen.attributes, json!({"tier": "gold"}));

    let page = Url::parse(&mock.sso_page_url()).unwrap();
    assert_eq!(open(first.page_url(&page)).await.0, StatusCode::OK);
    assert_eq!(
        open(first.page_url(&page)).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn an_sso_manager_hands_out_neither_user_tokens_nor_the_partner_token() {
    let mock = MockKigo::start().await.unwrap();
    let api = api(&mock);
    let store = MemoryStore::new();
    let (partners, sso) = replica(&api, &store);
    // Alice's user token and the partner token are in the store the SSO manager shares.
    let users = api
        .user_tokens(&partners, |manager| manager.store(store.clone()))
        .unwrap();
    users.session(user("alice")).await.unwrap();

    for key in [api.user_key(user("alice")), api.partner_key()] {
        let refused = sso.manager().token(&key).await;
        assert!(
            matches!(refused, Err(Error::ForeignKey { .. })),
            "{key}: {refused:?}"
        );
    }
    assert_eq!(mock.counters().requests_to(Endpoint::SsoSession), 0);
}

#[tokio::test]
async fn a_rejected_partner_token_is_renewed_once_for_a_session() {
    let mock = MockKigo::start().await.unwrap();
    let api = api(&mock);
    let (partners, sso) = local(&api);
    partners.token(&api.partner_key()).await.unwrap();
    mock.revoke_all();

    sso.session(user("dave"), None).await.unwrap();
    assert_eq!(mock.counters().requests_to(Endpoint::SsoSession), 2);
    assert_eq!(mock.creations(&mock.partner_key()), 2);
    assert_eq!(mock.sso_creations(None, &user("dave")), 1);
}

#[tokio::test]
async fn a_session_as_json_names_its_expiry_and_the_seconds_left() {
    let clock = ManualClock::new(); // 2030-01-01T00:00:00Z
    let mock = mock_on(&clock).start().await.unwrap();
    let api = api(&mock);
    let partners = manual_manager(api.partner_source(), &clock);
    let sso = api
        .sso_sessions(&partners, |manager| {
            manager
                .runtime(RuntimeEnv::manual(&clock).unwrap())
                .local_only()
        })
        .unwrap()
        .with_clock(Arc::new(clock.clone()));

    let session = sso.session(user("erin"), None).await.unwrap();
    let id = session.session_id().expose().to_owned();
    assert_eq!(
        serde_json::to_value(&session).unwrap(),
        json!({
            "session_id": id,
            "expires_at": "2030-01-01T00:30:00Z",
            "expires_in_seconds": 1800,
        })
    );
    assert!(!format!("{session:?}").contains(&id));
    let page = session.page_url(&Url::parse("https://acme.kigo.example/rewards?lang=en").unwrap());
    assert_eq!(
        page.as_str(),
        format!("https://acme.kigo.example/rewards?lang=en&session-id={id}")
    );
}
