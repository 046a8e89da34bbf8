//! [`KigoAuth`]: the authenticated client's behaviour as a `reqwest-middleware` middleware, for
//! users with a client of their own.

use std::sync::Arc;

use http::Extensions;
use kigo_core::TokenHandle;
use reqwest::{Request, Response, Url};
use reqwest_middleware::{Middleware, Next};

use crate::auth::{AuthError, Authenticator, ClientMetrics, RetryOn401, Sender};
use crate::origin::same_origin;

/// Adds the current bearer token to requests for the Kigo API's origin and renews on `401`,
/// like [`crate::KigoClient`]. Requests for other origins pass through untouched.
///
/// Opt a request out of the retry with `.with_extension(RetryOn401::Never)` on the
/// `reqwest_middleware::RequestBuilder`. Only [`crate::KigoApi::middleware`] makes one, so the
/// base URL's scheme is always checked first:
///
/// ```compile_fail
/// # fn bypass(handle: kigo_core::TokenHandle) {
/// let insecure = kigo_http::reqwest::Url::parse("http://kigo.example.com").unwrap();
/// let auth = kigo_http::KigoAuth::new(handle, &insecure); // private
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct KigoAuth {
    auth: Arc<Authenticator>,
}

impl KigoAuth {
    /// A middleware for the API at `base`, authenticated by `handle`. Only
    /// [`crate::KigoApi::middleware`] makes one, after checking the base URL's scheme.
    pub(crate) fn new(handle: TokenHandle, base: &Url) -> Self {
        Self {
            auth: Arc::new(Authenticator::new(handle, base.clone())),
        }
    }

    /// This middleware's counters.
    pub fn metrics(&self) -> ClientMetrics {
        self.auth.metrics()
    }
}

/// The rest of the middleware stack.
struct Rest<'a, 'e> {
    next: Next<'a>,
    extensions: &'e mut Extensions,
}

impl Sender<Request> for Rest<'_, '_> {
    type Response = Response;
    type Error = reqwest_middleware::Error;

    fn send(
        &mut self,
        request: Request,
    ) -> impl Future<Output = Result<Response, Self::Error>> + Send {
        self.next.clone().run(request, self.extensions)
    }
}

#[async_trait::async_trait]
impl Middleware for KigoAuth {
    async fn handle(
        &self,
        request: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        if !same_origin(request.url(), self.auth.base()) {
            return next.run(request, extensions).await;
        }
        let retry = extensions.get::<RetryOn401>().copied().unwrap_or_default();
        let mut rest = Rest { next, extensions };
        let sent = self
            .auth
            .send(request, retry, Request::try_clone, &mut rest);
        sent.await.map_err(|error| match error {
            AuthError::Token(error) => reqwest_middleware::Error::middleware(error),
            AuthError::Header(error) => reqwest_middleware::Error::middleware(error),
            AuthError::Send(error) => error,
        })
    }
}
