//! `KigoAuth`, the `reqwest-middleware` middleware (feature `reqwest-middleware`), against the
//! mock Kigo server: a client of your own authenticated and renewed on 401, with the opt-out,
//! and other origins left untouched.

mod common;

use kigo_http::RetryOn401;
use kigo_http::reqwest::StatusCode;
use kigo_testkit::mock::{MockKigo, PROTECTED_PATH};

use common::{api, manager, sent_with};

/// A plain reqwest client of one's own, with `auth` as its middleware.
fn with_middleware(
    auth: kigo_http::KigoAuth,
) -> kigo_http::reqwest_middleware::ClientWithMiddleware {
    kigo_http::reqwest_middleware::ClientBuilder::new(kigo_http::reqwest::Client::new())
        .with(auth)
        .build()
}

#[tokio::test]
async fn the_middleware_authenticates_a_client_of_your_own() {
    let mock = MockKigo::start().await.unwrap();
    let api = api(&mock);
    let tokens = manager(api.partner_source());
    let auth = api.middleware(tokens.handle(api.partner_key()).unwrap());
    let client = with_middleware(auth.clone());
    let url = format!("{}{PROTECTED_PATH}", mock.base_url());
    let response = client.get(&url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let handle = tokens.handle(api.partner_key()).unwrap();
    assert_eq!(
        Some(sent_with(response.extensions())),
        handle.cached().map(|token| token.fingerprint())
    );

    mock.revoke_all();
    assert_eq!(
        client.get(&url).send().await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(auth.metrics().recovered, 1);

    mock.revoke_all();
    let opted_out = client
        .get(&url)
        .with_extension(RetryOn401::Never)
        .send()
        .await
        .unwrap();
    assert_eq!(opted_out.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(mock.creations(&mock.partner_key()), 2);
}

#[tokio::test]
async fn the_middleware_leaves_other_origins_untouched() {
    let mock = MockKigo::start().await.unwrap();
    let foreign = MockKigo::start().await.unwrap();
    let api = api(&mock);
    let tokens = manager(api.partner_source());
    let client = with_middleware(api.middleware(tokens.handle(api.partner_key()).unwrap()));
    let url = format!("{}{PROTECTED_PATH}", foreign.base_url());
    let response = client.get(&url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let seen = foreign.seen();
    assert_eq!(seen.len(), 1);
    assert!(
        !seen[0].authorization,
        "no bearer token reaches another origin"
    );
    assert_eq!(mock.creations(&mock.partner_key()), 0);
}
