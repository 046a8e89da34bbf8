//! Neither the API key nor any token appears in logs (captured at TRACE), errors or Debug output,
//! across creations, renewals on 401, user tokens with refresh tokens, SSO sessions, and failures.

mod common;

use kigo_core::{CreateRequest, TokenSource, UserId};
use kigo_http::{ApiKey, Credentials, KigoApi, SsoRequest};
use kigo_testkit::mock::{Endpoint, Fault, MockKigo, PROTECTED_PATH};

use kigo_testkit::logs::Capture;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_logs_errors_or_debug_output() {
    let capture = Capture::default();
    tracing::subscriber::set_global_default(capture.subscriber()).unwrap();

    let mock = MockKigo::builder().https().start().await.unwrap();
    let api = common::api(&mock);
    let partners = common::manager(api.partner_source());
    let partner = partners.handle(api.partner_key()).unwrap();
    let users = common::manager(api.user_source(partner.clone()).unwrap());
    let client = api.client(partner.clone());
    let mut shown = Vec::new();

    // Creation, a protected call, a revocation and the renewal on 401.
    client
        .send(client.get(PROTECTED_PATH).unwrap())
        .await
        .unwrap();
    mock.revoke_all();
    client
        .send(client.post(PROTECTED_PATH).unwrap().body("payload"))
        .await
        .unwrap();
    // User tokens with refresh tokens, and Debug output of the tokens themselves.
    let alice = users
        .token(&api.user_key(UserId::new("alice").unwrap()))
        .await
        .unwrap();
    shown.push(format!("{alice:?} {:?}", partner.cached()));
    drop(alice);
    // SSO sessions, reusable and single-use with an email (personal data stays out too).
    let sso = api
        .sso_sessions(&partners, |manager| manager.local_only())
        .unwrap();
    let reusable = sso
        .session(UserId::new("alice").unwrap(), None)
        .await
        .unwrap();
    let request = SsoRequest::new(UserId::new("alice").unwrap()).email("alice@example.com");
    let single = sso.single_use(request.clone()).await.unwrap();
    shown.push(format!("{reusable:?} {single:?} {sso:?} {request:?}"));
    // Failures: a 400 echoing the key, wrong credentials, and a manager error.
    let body = format!(r#"{{"message":"bad key {}"}}"#, mock.api_key());
    mock.inject(
        Endpoint::PartnerSession,
        [Fault::StatusWithBody { status: 400, body }],
    );
    let key = api.partner_key();
    let clock = kigo_core::runtime::SystemClock::new();
    let error = api
        .partner_source()
        .create(CreateRequest::new(&key, None, &clock))
        .await
        .unwrap_err();
    shown.push(format!("{error} {error:?} {}", error.cause()));
    let wrong = KigoApi::builder(
        Credentials::new(
            ApiKey::new(format!("{}x", mock.api_key())).unwrap(),
            mock.partner_id().clone(),
            mock.base_url(),
        )
        .unwrap(),
    )
    .build()
    .unwrap();
    let failing = common::manager(wrong.partner_source());
    let error = failing.token(&key).await.unwrap_err();
    tracing::error!(%error, ?error, "the manager's error, logged as an application would");
    shown.push(format!("{api:?} {client:?} {:?}", wrong));

    let logs = capture.text();
    assert!(
        logs.contains("created a partner-level session token") && logs.contains("TRACE"),
        "the capture works and includes TRACE output"
    );
    shown.push(logs);
    for text in &shown {
        kigo_testkit::logs::assert_no_secret(
            text,
            &[
                ("the API key", mock.api_key()),
                ("a partner-level token", "kigo_partner_"),
                ("a user-level token", "kigo_user_"),
                ("a refresh token", "kigo_refresh_"),
                ("an SSO session", "kigo_sso_"),
                ("an email", "alice@example.com"),
            ],
        );
    }
}
