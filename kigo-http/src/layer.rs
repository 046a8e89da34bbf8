//! [`KigoLayer`]: the authenticated client's behaviour as a tower layer, for any tower HTTP client
//! (hyper-util's client, tonic's channels, a stack of your own).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use kigo_core::TokenHandle;
use reqwest::Url;
use tower_layer::Layer;
use tower_service::Service;

use crate::auth::{AuthError, Authenticator, ClientMetrics, RetryOn401, Sender};
use crate::origin::same_origin_uri;

/// How [`KigoLayer`] copies a request body for the one retry after a `401`: the copy is made
/// before the first send, so a body is replayed only if it can be copied whole.
///
/// Bodies are cloned, never buffered: buffering would have to build a body of the client's own
/// type from bytes, which no trait offers (tonic's `Body`, for one, is neither `Clone` nor made
/// from bytes), and would hold a copy of every request in memory. Cloning a `Full<Bytes>`, an
/// `Empty`, a `String` or `Bytes` costs a reference count or a small copy.
pub struct Replay<B>(Option<fn(&B) -> Option<B>>);

impl<B: Clone> Replay<B> {
    /// Replays every body by cloning it (`Full<Bytes>`, `Empty<Bytes>`, `String`, ...).
    pub fn by_clone() -> Self {
        Self(Some(|body| Some(body.clone())))
    }
}

impl<B> Replay<B> {
    /// Never replays: a `401` is returned as is (the token is still invalidated, so the next
    /// request gets a renewed one). For streaming bodies, and tonic's.
    pub fn never() -> Self {
        Self(None)
    }

    /// Replays with `copy`, which returns `None` for a body it cannot copy (a stream). For
    /// `reqwest::Body`: `Replay::with(|body| Some(body.as_bytes()?.to_vec().into()))`.
    pub fn with(copy: fn(&B) -> Option<B>) -> Self {
        Self(Some(copy))
    }

    /// A copy of `request` to send again, if its body can be copied.
    fn copy(self, request: &Request<B>) -> Option<Request<B>> {
        let body = (self.0?)(request.body())?;
        let mut copy = Request::new(body);
        *copy.method_mut() = request.method().clone();
        *copy.uri_mut() = request.uri().clone();
        *copy.version_mut() = request.version();
        *copy.headers_mut() = request.headers().clone();
        *copy.extensions_mut() = request.extensions().clone();
        Some(copy)
    }
}

impl<B> Clone for Replay<B> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<B> Copy for Replay<B> {}

impl<B> fmt::Debug for Replay<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.0 {
            Some(_) => "Replay::Copy",
            None => "Replay::Never",
        })
    }
}

/// A tower [`Layer`] that adds the current bearer token to each request for the Kigo API and
/// renews on `401`, like [`crate::KigoClient`], around any tower HTTP client taking
/// `http::Request<B>`:
///
/// - The token comes from the manager's hot path: no request waits while a valid token exists.
/// - On `401` it invalidates exactly the token it sent (by fingerprint: a burst of rejections
///   causes one renewal) and sends the request once more with the next token, if its body can be
///   copied (see [`Replay`]) and the request does not carry [`RetryOn401::Never`] in its
///   extensions. Nothing ever loops.
/// - Requests must be absolute and for the API's origin (scheme, host, port); any other request
///   fails with [`KigoServiceError::ForeignOrigin`] before it reaches the client: the token never
///   leaves for another host. A relative URI is refused too: where it would go is up to the
///   client below. (With tonic, give the generated client the API's origin: `with_origin`.)
/// - Every response carries [`crate::SentWith`] in its extensions.
///
/// Cheap to clone; the services it makes share its counters ([`KigoLayer::metrics`]).
///
/// ```no_run
/// # async fn demo(api: kigo_http::KigoApi, partner: kigo_core::TokenHandle) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// use bytes::Bytes;
/// use http_body_util::Full;
/// use hyper_util::client::legacy::Client;
/// use hyper_util::rt::TokioExecutor;
/// use tower::{Service, ServiceBuilder, ServiceExt};
///
/// // For HTTPS, build the client with a TLS connector (hyper-rustls).
/// let http = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
/// let mut kigo = ServiceBuilder::new().layer(api.layer(partner)).service(http);
/// let uri = api.base_url().join("api/v1/some/endpoint")?;
/// let request = http::Request::get(uri.as_str()).body(Full::new(Bytes::new()))?;
/// let response = kigo.ready().await?.call(request).await?;
/// # Ok(()) }
/// ```
///
/// Only [`crate::KigoApi::layer`] and [`crate::KigoApi::layer_with`] make one, so the base URL's
/// scheme is always checked first:
///
/// ```compile_fail
/// # fn bypass(handle: kigo_core::TokenHandle) {
/// let insecure = kigo_http::reqwest::Url::parse("http://kigo.example.com").unwrap();
/// let layer = kigo_http::KigoLayer::<String>::new(handle, &insecure, kigo_http::Replay::never()); // private
/// # }
/// ```
pub struct KigoLayer<B> {
    auth: Arc<Authenticator>,
    replay: Replay<B>,
}

impl<B> KigoLayer<B> {
    /// A layer for the API at `base`, authenticated by `handle`. Only [`crate::KigoApi`] makes
    /// one, after checking the base URL's scheme.
    pub(crate) fn new(handle: TokenHandle, base: &Url, replay: Replay<B>) -> Self {
        Self {
            auth: Arc::new(Authenticator::new(handle, base.clone())),
            replay,
        }
    }

    /// The counters of this layer and every service it made.
    pub fn metrics(&self) -> ClientMetrics {
        self.auth.metrics()
    }
}

impl<B> Clone for KigoLayer<B> {
    fn clone(&self) -> Self {
        Self {
            auth: Arc::clone(&self.auth),
            replay: self.replay,
        }
    }
}

impl<B> fmt::Debug for KigoLayer<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KigoLayer")
            .field("key", self.auth.handle().key())
            .field("base", &self.auth.base().as_str())
            .field("replay", &self.replay)
            .finish()
    }
}

impl<S, B> Layer<S> for KigoLayer<B> {
    type Service = KigoService<S, B>;

    fn layer(&self, inner: S) -> KigoService<S, B> {
        KigoService {
            inner,
            auth: Arc::clone(&self.auth),
            replay: self.replay,
        }
    }
}

/// The service [`KigoLayer`] wraps around a client: see there.
pub struct KigoService<S, B> {
    inner: S,
    auth: Arc<Authenticator>,
    replay: Replay<B>,
}

impl<S: Clone, B> Clone for KigoService<S, B> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            auth: Arc::clone(&self.auth),
            replay: self.replay,
        }
    }
}

impl<S: fmt::Debug, B> fmt::Debug for KigoService<S, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KigoService")
            .field("inner", &self.inner)
            .field("key", self.auth.handle().key())
            .field("replay", &self.replay)
            .finish()
    }
}

/// Why a request through [`KigoLayer`] got no response.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KigoServiceError<E> {
    /// No valid token could be had (see the manager's error for why).
    #[error("no Kigo session token available")]
    Token(#[source] kigo_core::Error),
    /// The session token cannot be sent in a header.
    #[error("the session token cannot be sent in a header")]
    UnusableToken,
    /// The request is not absolute, or not for the API's origin; it was not sent.
    #[error("the request is not for the Kigo API's origin; it was not sent")]
    ForeignOrigin,
    /// The service below the layer failed.
    #[error("the request to the Kigo API failed")]
    Service(#[source] E),
}

impl<E> From<AuthError<E>> for KigoServiceError<E> {
    fn from(error: AuthError<E>) -> Self {
        match error {
            AuthError::Token(error) => Self::Token(error),
            AuthError::Header(_) => Self::UnusableToken,
            AuthError::Send(error) => Self::Service(error),
        }
    }
}

impl<S, B, ResBody> Service<Request<B>> for KigoService<S, B>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send,
    B: Send + 'static,
    ResBody: Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = KigoServiceError<S::Error>;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(KigoServiceError::Service)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // The service made ready by `poll_ready` takes this request; a clone stays for the next.
        let clone = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, clone);
        let auth = Arc::clone(&self.auth);
        let replay = self.replay;
        Box::pin(async move {
            if !same_origin_uri(request.uri(), auth.base()) {
                return Err(KigoServiceError::ForeignOrigin);
            }
            let retry = request
                .extensions()
                .get::<RetryOn401>()
                .copied()
                .unwrap_or_default();
            let copy = |request: &Request<B>| replay.copy(request);
            let mut below = Below(ready);
            let sent = auth.send(request, retry, copy, &mut below);
            sent.await.map_err(KigoServiceError::from)
        })
    }
}

/// The rest of the tower stack, made ready before each request it takes.
struct Below<S>(S);

impl<S, B, ResBody> Sender<Request<B>> for Below<S>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Send,
    S::Future: Send,
    S::Error: Send,
    B: Send,
    ResBody: Send,
{
    type Response = Response<ResBody>;
    type Error = S::Error;

    async fn send(&mut self, request: Request<B>) -> Result<Self::Response, S::Error> {
        std::future::poll_fn(|cx| self.0.poll_ready(cx)).await?;
        self.0.call(request).await
    }
}
