//! [`KigoClient`]: any Kigo API request, sent with the current bearer token.

use std::sync::Arc;

use kigo_core::TokenHandle;
use reqwest::{Method, Request, RequestBuilder, Response, Url};

use crate::auth::{AuthError, Authenticator, ClientMetrics, RetryOn401, Sender};
use crate::error::ConfigError;
use crate::origin::{join_path, same_origin};

/// Sends requests to the Kigo API with the token of one [`TokenHandle`] (partner- or user-level).
///
/// - The token comes from the manager's hot path: no request waits while a valid token exists.
/// - On `401` the client invalidates exactly the token it sent (by fingerprint, so a burst of
///   rejections causes one renewal) and, if the body can be replayed, sends the request once more
///   with the next token. [`RetryOn401::Never`] opts a request out; nothing ever loops.
/// - Requests go only to the API's own origin: the token never leaves for another host.
///
/// Cheap to clone. Only [`crate::KigoApi::client`] makes one, so the base URL's scheme is always
/// checked first:
///
/// ```compile_fail
/// # fn bypass(http: kigo_http::reqwest::Client, handle: kigo_core::TokenHandle) {
/// let insecure = kigo_http::reqwest::Url::parse("http://kigo.example.com").unwrap();
/// let client = kigo_http::KigoClient::new(http, insecure, handle); // private
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct KigoClient {
    http: reqwest::Client,
    auth: Arc<Authenticator>,
}

/// Why an authenticated request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// No valid token could be had (see the manager's error for why).
    #[error("no Kigo session token available")]
    Token(#[source] kigo_core::Error),
    /// The request could not be built or sent. The error carries no URL (which may name users).
    #[error("the request to the Kigo API failed")]
    Request(#[source] reqwest::Error),
    /// The session token cannot be sent in a header.
    #[error("the session token cannot be sent in a header")]
    UnusableToken,
    /// The request is not for the API's origin; the token is not sent elsewhere.
    #[error("the request is not for the Kigo API's origin; no token was sent")]
    ForeignOrigin,
    /// The path given to [`KigoClient::request`] does not start with `/`, or leads away from
    /// the API's origin.
    #[error("the request path is not usable")]
    InvalidPath(#[source] ConfigError),
}

impl KigoClient {
    /// A client sending with `http` to the API at `base`, authenticated by `handle`. Only
    /// [`crate::KigoApi::client`] makes one, after checking the base URL's scheme.
    pub(crate) fn new(http: reqwest::Client, base: Url, handle: TokenHandle) -> Self {
        Self {
            http,
            auth: Arc::new(Authenticator::new(handle, base)),
        }
    }

    /// Starts a request to `path` under the base URL. `path` starts with `/` (e.g.
    /// `/api/v1/...`) and may carry a query; a path that does not, or that would lead to another
    /// origin, is refused.
    pub fn request(&self, method: Method, path: &str) -> Result<RequestBuilder, ClientError> {
        let url = join_path(self.auth.base(), path, "path").map_err(ClientError::InvalidPath)?;
        Ok(self.http.request(method, url))
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> Result<RequestBuilder, ClientError> {
        self.request(Method::GET, path)
    }

    /// `POST path`.
    pub fn post(&self, path: &str) -> Result<RequestBuilder, ClientError> {
        self.request(Method::POST, path)
    }

    /// Sends the request with the current token, retrying once on `401` if the body allows.
    pub async fn send(&self, request: RequestBuilder) -> Result<Response, ClientError> {
        self.send_with(request, RetryOn401::Once).await
    }

    /// Sends the request with the current token, retrying on `401` as `retry` says.
    pub async fn send_with(
        &self,
        request: RequestBuilder,
        retry: RetryOn401,
    ) -> Result<Response, ClientError> {
        let request = request.build().map_err(request_failed)?;
        if !same_origin(request.url(), self.auth.base()) {
            return Err(ClientError::ForeignOrigin);
        }
        let mut sender = Direct(&self.http);
        let sent = self
            .auth
            .send(request, retry, Request::try_clone, &mut sender);
        sent.await.map_err(|error| match error {
            AuthError::Token(error) => ClientError::Token(error),
            AuthError::Header(_) => ClientError::UnusableToken,
            AuthError::Send(error) => request_failed(error),
        })
    }

    /// The handle whose token this client sends.
    pub fn handle(&self) -> &TokenHandle {
        self.auth.handle()
    }

    /// This client's counters (shared by its clones).
    pub fn metrics(&self) -> ClientMetrics {
        self.auth.metrics()
    }
}

fn request_failed(error: reqwest::Error) -> ClientError {
    ClientError::Request(error.without_url())
}

/// Sends straight through a `reqwest::Client`.
struct Direct<'a>(&'a reqwest::Client);

impl Sender<Request> for Direct<'_> {
    type Response = Response;
    type Error = reqwest::Error;

    fn send(
        &mut self,
        request: Request,
    ) -> impl Future<Output = Result<Response, reqwest::Error>> + Send {
        self.0.execute(request)
    }
}
