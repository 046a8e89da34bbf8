//! `KigoLayer` around a real tower HTTP client (hyper-util's legacy client) against the mock Kigo
//! server: the bearer, one renewal and retry on 401, the opt-out, bodies that cannot be replayed,
//! and requests for other origins refused before they are sent.

mod common;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use kigo_http::{KigoApi, KigoLayer, KigoService, KigoServiceError, Replay, RetryOn401};
use kigo_testkit::mock::{Endpoint, MockKigo, PROTECTED_PATH};
use tower::{Layer, Service, ServiceExt};

use common::{api, manager, sent_with};

/// hyper-util's client for bodies of type `B`, behind `layer`.
fn client<B>(layer: &KigoLayer<B>) -> KigoService<Client<HttpConnector, B>, B>
where
    B: BodyExt + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    layer.layer(Client::builder(TokioExecutor::new()).build_http())
}

/// A mock, its API, a partner token manager and a layer of its handle that replays by clone.
struct Setup {
    mock: MockKigo,
    api: KigoApi,
    layer: KigoLayer<Full<Bytes>>,
    tokens: kigo_core::TokenManager,
}

impl Setup {
    async fn start() -> Self {
        let mock = MockKigo::start().await.unwrap();
        let api = api(&mock);
        let tokens = manager(api.partner_source());
        let layer = api.layer(tokens.handle(api.partner_key()).unwrap());
        Self {
            mock,
            api,
            layer,
            tokens,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.mock.base_url())
    }
}

/// Sends `request` through `kigo`, which must answer.
async fn send<S, B>(kigo: &mut S, request: Request<B>) -> S::Response
where
    S: Service<Request<B>>,
    S::Error: std::fmt::Debug,
{
    kigo.ready().await.unwrap().call(request).await.unwrap()
}

fn request<B>(method: Method, url: &str, body: B) -> Request<B> {
    Request::builder()
        .method(method)
        .uri(url)
        .body(body)
        .unwrap()
}

fn full(text: &'static str) -> Full<Bytes> {
    Full::new(Bytes::from_static(text.as_bytes()))
}

async fn text<B>(response: http::Response<B>) -> String
where
    B: BodyExt<Data = Bytes>,
    B::Error: std::fmt::Debug,
{
    let body = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(body.to_vec()).unwrap()
}

#[tokio::test]
async fn a_revoked_token_is_renewed_once_and_the_request_retried() {
    let setup = Setup::start().await;
    let mut kigo = client(&setup.layer);
    let url = setup.url(PROTECTED_PATH);

    let first = send(&mut kigo, request(Method::GET, &url, full(""))).await;
    assert_eq!(first.status(), StatusCode::OK);
    let first = sent_with(first.extensions());

    assert_eq!(setup.mock.revoke_all(), 1);
    let response = send(&mut kigo, request(Method::POST, &url, full("replayable"))).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_ne!(sent_with(response.extensions()), first);
    assert_eq!(
        text(response).await,
        r#"{"key":"p/acme","received_bytes":10}"#
    );
    assert_eq!(setup.mock.creations(&setup.mock.partner_key()), 2);
    assert_eq!(common::counts(setup.layer.metrics()), (3, 1, 1, 1));
}

#[tokio::test]
async fn a_request_can_opt_out_of_the_retry_with_an_extension() {
    let setup = Setup::start().await;
    let mut kigo = client(&setup.layer);
    let url = setup.url(PROTECTED_PATH);
    let ok = send(&mut kigo, request(Method::GET, &url, full(""))).await;
    assert_eq!(ok.status(), StatusCode::OK);
    setup.mock.revoke_all();

    let mut opted_out = request(Method::GET, &url, full(""));
    opted_out.extensions_mut().insert(RetryOn401::Never);
    let response = send(&mut kigo, opted_out).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(setup.mock.counters().requests_to(Endpoint::Protected), 2);
    // The rejected token was still invalidated: the next request carries a renewed one.
    let next = send(&mut kigo, request(Method::GET, &url, full(""))).await;
    assert_eq!(next.status(), StatusCode::OK);
    assert_eq!(setup.mock.creations(&setup.mock.partner_key()), 2);
}

#[tokio::test]
async fn a_body_that_cannot_be_replayed_is_not_retried() {
    let setup = Setup::start().await;
    let handle = setup.tokens.handle(setup.api.partner_key()).unwrap();
    // reqwest's body: bytes can be copied, a stream cannot.
    let replay =
        Replay::with(|body: &kigo_http::reqwest::Body| Some(body.as_bytes()?.to_vec().into()));
    let layer = setup.api.layer_with(handle, replay);
    let mut kigo = client(&layer);
    let url = setup.url(PROTECTED_PATH);
    let call = |body| request(Method::POST, &url, body);

    send(&mut kigo, call("warm".into())).await;
    setup.mock.revoke_all();
    let streamed = kigo_http::reqwest::Body::wrap(full("streamed"));
    let response = send(&mut kigo, call(streamed)).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(layer.metrics().retried, 0);
    assert_eq!(setup.mock.counters().requests_to(Endpoint::Protected), 2);

    // With a renewed token revoked in turn, the same body as bytes is replayed.
    let renewed = send(&mut kigo, call("new".into())).await;
    assert_eq!(renewed.status(), StatusCode::OK);
    setup.mock.revoke_all();
    let response = send(&mut kigo, call("bytes".into())).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(layer.metrics().retried, 1);
    assert_eq!(setup.mock.counters().requests_to(Endpoint::Protected), 5);
}

#[tokio::test]
async fn requests_for_another_origin_are_refused_before_they_are_sent() {
    let setup = Setup::start().await;
    let foreign = MockKigo::start().await.unwrap();
    let mut kigo = client(&setup.layer);
    let elsewhere = format!("{}{PROTECTED_PATH}", foreign.base_url());
    for uri in [elsewhere.as_str(), PROTECTED_PATH] {
        let refused = kigo
            .ready()
            .await
            .unwrap()
            .call(request(Method::GET, uri, full("")))
            .await;
        assert!(
            matches!(refused, Err(KigoServiceError::ForeignOrigin)),
            "{uri}: {refused:?}"
        );
    }
    assert!(
        foreign.seen().is_empty(),
        "nothing reached the other origin"
    );
    assert_eq!(setup.layer.metrics().requests, 0);
    assert_eq!(setup.mock.creations(&setup.mock.partner_key()), 0);
}
