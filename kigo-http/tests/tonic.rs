//! `KigoLayer` under a tonic gRPC client: tonic's body type (neither `Clone` nor made from bytes)
//! goes through with `Replay::never`, the bearer reaches the service below, the request's origin
//! comes from the client's `with_origin`, and the answer comes back.

mod common;

use std::convert::Infallible;
use std::future::Future;
use std::sync::{Arc, Mutex};

use http::header::AUTHORIZATION;
use http::uri::PathAndQuery;
use http::{HeaderValue, Request, Response, Uri};
use kigo_http::Replay;
use kigo_testkit::mock::MockKigo;
use tonic::body::Body;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::{Code, Status};
use tower::Layer;

use common::{api, manager};

/// A codec of empty messages: the test is about the transport, not protobuf.
#[derive(Debug, Clone, Copy)]
struct Empty;

impl Codec for Empty {
    type Encode = ();
    type Decode = ();
    type Encoder = Empty;
    type Decoder = Empty;

    fn encoder(&mut self) -> Empty {
        Empty
    }

    fn decoder(&mut self) -> Empty {
        Empty
    }
}

impl Encoder for Empty {
    type Item = ();
    type Error = Status;

    fn encode(&mut self, (): (), _: &mut EncodeBuf<'_>) -> Result<(), Status> {
        Ok(())
    }
}

impl Decoder for Empty {
    type Item = ();
    type Error = Status;

    fn decode(&mut self, _: &mut DecodeBuf<'_>) -> Result<Option<()>, Status> {
        Ok(Some(()))
    }
}

/// What the gRPC server below the layer saw: the URI and whether a bearer came with it.
type Seen = Arc<Mutex<Vec<(Uri, bool)>>>;

/// A gRPC server that notes each call in `seen` and refuses it with `PERMISSION_DENIED`.
fn server(
    seen: &Seen,
) -> impl tower::Service<
    Request<Body>,
    Response = Response<Body>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<Body>, Infallible>> + Send,
> + Clone
+ Send
+ 'static {
    let seen = Arc::clone(seen);
    tower::service_fn(move |request: Request<Body>| {
        let bearer = request
            .headers()
            .get(AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.starts_with("Bearer kigo_partner_"));
        seen.lock().unwrap().push((request.uri().clone(), bearer));
        // A trailers-only answer: the call is refused with a status of the server's own.
        let mut response = Response::new(Body::empty());
        let headers = response.headers_mut();
        headers.insert("content-type", HeaderValue::from_static("application/grpc"));
        headers.insert("grpc-status", HeaderValue::from_static("7"));
        async move { Ok::<_, Infallible>(response) }
    })
}

/// One unary call of `/kigo.Test/Call` through `grpc`.
async fn call<T>(grpc: &mut tonic::client::Grpc<T>) -> Status
where
    T: tonic::client::GrpcService<Body, ResponseBody = Body>,
    T::Error: std::fmt::Debug,
{
    grpc.ready().await.unwrap();
    grpc.unary::<(), (), _>(
        tonic::Request::new(()),
        PathAndQuery::from_static("/kigo.Test/Call"),
        Empty,
    )
    .await
    .unwrap_err()
}

#[tokio::test]
async fn a_tonic_client_sends_through_the_layer_to_the_origin_it_names() {
    let mock = MockKigo::start().await.unwrap();
    let api = api(&mock);
    let tokens = manager(api.partner_source());
    let handle = tokens.handle(api.partner_key()).unwrap();
    let layer = api.layer_with(handle, Replay::<Body>::never());
    let seen = Seen::default();

    let origin: Uri = mock.base_url().parse().unwrap();
    let mut grpc = tonic::client::Grpc::with_origin(layer.layer(server(&seen)), origin);
    assert_eq!(call(&mut grpc).await.code(), Code::PermissionDenied);

    let calls = seen.lock().unwrap().clone();
    assert_eq!(calls.len(), 1);
    let (uri, bearer) = &calls[0];
    assert_eq!(
        uri.to_string(),
        format!("{}/kigo.Test/Call", mock.base_url())
    );
    assert!(bearer, "the partner token went with the call");
    assert_eq!(mock.creations(&mock.partner_key()), 1);

    // Without an origin the calls are relative: where they go is up to the client below.
    let mut relative = tonic::client::Grpc::new(layer.layer(server(&seen)));
    assert_ne!(call(&mut relative).await.code(), Code::PermissionDenied);
    assert_eq!(seen.lock().unwrap().len(), 1, "the call was not sent");
}
