//! Sending one request with the current bearer token, shared by [`crate::KigoClient`], the
//! `reqwest-middleware` middleware and the tower layer: on a `401`, invalidate exactly that token
//! and, if the body can be replayed and the caller allows it, send once more with the next token.
//! Never more than twice.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};

use http::header::AUTHORIZATION;
use http::{Extensions, HeaderMap, HeaderValue, StatusCode};
use kigo_core::{Fingerprint, Token, TokenHandle};
use reqwest::Url;

/// Whether a request rejected with `401` is sent again with a renewed token. The default for
/// every request; [`crate::KigoClient::send_with`] takes it, and [`crate::KigoLayer`] and
/// `KigoAuth` read it from the request's extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RetryOn401 {
    /// Once, if the body can be replayed (the default).
    #[default]
    Once,
    /// Never: the `401` response is returned as is (the token is still invalidated).
    Never,
}

/// Which token a response's request carried: in every response of [`crate::KigoClient`],
/// [`crate::KigoLayer`] and `KigoAuth` (feature `reqwest-middleware`), as
/// `response.extensions().get::<SentWith>()`. Compare it with a later token, or report a
/// rejection yourself with `TokenHandle::invalidate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SentWith(pub Fingerprint);

/// Counters of an authenticated client.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientMetrics {
    /// Requests sent, retries included.
    pub requests: u64,
    /// `401` answers received.
    pub unauthorized: u64,
    /// Requests sent again after a `401`.
    pub retried: u64,
    /// Retries that were not rejected again.
    pub recovered: u64,
}

#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    unauthorized: AtomicU64,
    retried: AtomicU64,
    recovered: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> ClientMetrics {
        ClientMetrics {
            requests: self.requests.load(Ordering::Relaxed),
            unauthorized: self.unauthorized.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
            recovered: self.recovered.load(Ordering::Relaxed),
        }
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Why an authenticated request was not sent.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AuthError<E> {
    /// No valid token could be had.
    #[error(transparent)]
    Token(kigo_core::Error),
    /// The token cannot travel in a header.
    #[error(transparent)]
    Header(UnusableToken),
    /// The transport failed.
    #[error(transparent)]
    Send(E),
}

/// The token cannot travel in a header (`Token::new` refuses such tokens; this is never papered
/// over by sending an empty header).
#[derive(Debug, thiserror::Error)]
#[error("the session token cannot be sent in a header")]
pub(crate) struct UnusableToken;

/// A request whose headers can carry the bearer token: reqwest's and `http`'s.
pub(crate) trait Outgoing: Send {
    fn headers_mut(&mut self) -> &mut HeaderMap;
}

impl Outgoing for reqwest::Request {
    fn headers_mut(&mut self) -> &mut HeaderMap {
        reqwest::Request::headers_mut(self)
    }
}

impl<B: Send> Outgoing for http::Request<B> {
    fn headers_mut(&mut self) -> &mut HeaderMap {
        http::Request::headers_mut(self)
    }
}

/// A response whose status tells a `401` and whose extensions take [`SentWith`].
pub(crate) trait Answer: Send {
    fn status(&self) -> StatusCode;
    fn extensions_mut(&mut self) -> &mut Extensions;
}

impl Answer for reqwest::Response {
    fn status(&self) -> StatusCode {
        reqwest::Response::status(self)
    }

    fn extensions_mut(&mut self) -> &mut Extensions {
        reqwest::Response::extensions_mut(self)
    }
}

impl<B: Send> Answer for http::Response<B> {
    fn status(&self) -> StatusCode {
        http::Response::status(self)
    }

    fn extensions_mut(&mut self) -> &mut Extensions {
        http::Response::extensions_mut(self)
    }
}

/// Sends a request down the rest of a stack: a `reqwest::Client`, the rest of a
/// `reqwest-middleware` stack, or a tower service.
pub(crate) trait Sender<R> {
    type Response: Answer;
    type Error;

    fn send(
        &mut self,
        request: R,
    ) -> impl Future<Output = Result<Self::Response, Self::Error>> + Send;
}

/// What an authenticated client keeps: whose token it sends, to which origin, and its counters.
/// [`Authenticator::send`] is the one place that decides, for `KigoClient`, `KigoAuth` and
/// `KigoLayer`, which only adapt their request and response types to it.
#[derive(Debug)]
pub(crate) struct Authenticator {
    handle: TokenHandle,
    base: Url,
    counters: Counters,
}

impl Authenticator {
    /// Sends with the token of `handle`, to the origin of `base` only.
    pub(crate) fn new(handle: TokenHandle, base: Url) -> Self {
        Self {
            handle,
            base,
            counters: Counters::default(),
        }
    }

    pub(crate) fn handle(&self) -> &TokenHandle {
        &self.handle
    }

    /// The API's base URL: the one origin its token goes to.
    pub(crate) fn base(&self) -> &Url {
        &self.base
    }

    pub(crate) fn metrics(&self) -> ClientMetrics {
        self.counters.snapshot()
    }

    /// Sends `request` with the current token, renewing and retrying once on `401`.
    ///
    /// `copy` makes the request to send again, before the first is sent; `None` (a body that
    /// cannot be replayed) means no retry, and so does [`RetryOn401::Never`].
    pub(crate) async fn send<R: Outgoing, S: Sender<R>>(
        &self,
        mut request: R,
        retry: RetryOn401,
        copy: impl FnOnce(&R) -> Option<R>,
        sender: &mut S,
    ) -> Result<S::Response, AuthError<S::Error>> {
        let (handle, counters) = (&self.handle, &self.counters);
        let replay = match retry {
            RetryOn401::Once => copy(&request),
            RetryOn401::Never => None,
        };
        let rejected = authorize(handle, &mut request).await?;
        bump(&counters.requests);
        let response = sent_with(
            rejected,
            sender.send(request).await.map_err(AuthError::Send)?,
        );
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        bump(&counters.unauthorized);
        let dropped = handle.invalidate(&rejected);
        tracing::debug!(key = %handle.key(), fingerprint = %rejected, dropped, "request rejected with 401");
        let Some(mut replay) = replay else {
            return Ok(response);
        };
        drop(response);
        let retried_with = authorize(handle, &mut replay).await?;
        bump(&counters.requests);
        bump(&counters.retried);
        let response = sender.send(replay).await.map_err(AuthError::Send)?;
        let response = sent_with(retried_with, response);
        if response.status() == StatusCode::UNAUTHORIZED {
            bump(&counters.unauthorized);
        } else {
            bump(&counters.recovered);
        }
        Ok(response)
    }
}

/// `response`, noting which token its request carried.
fn sent_with<A: Answer>(fingerprint: Fingerprint, mut response: A) -> A {
    response.extensions_mut().insert(SentWith(fingerprint));
    response
}

/// Puts the current token in `request`'s `Authorization` header (marked sensitive); returns its
/// fingerprint. Waits only if no valid token is cached.
async fn authorize<E>(
    handle: &TokenHandle,
    request: &mut impl Outgoing,
) -> Result<Fingerprint, AuthError<E>> {
    let token = handle.token().await.map_err(AuthError::Token)?;
    let header = bearer_header(&token).ok_or(AuthError::Header(UnusableToken))?;
    request.headers_mut().insert(AUTHORIZATION, header);
    Ok(token.fingerprint())
}

/// `Bearer <token>` as a header value marked sensitive (hidden from `Debug` and HTTP/2 tables);
/// `None` if the token cannot travel in a header (which `Token::new` already refuses).
pub(crate) fn bearer_header(token: &Token) -> Option<HeaderValue> {
    let mut value = HeaderValue::from_str(token.bearer().expose()).ok()?;
    value.set_sensitive(true);
    Some(value)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use kigo_core::TokenSecret;

    use super::*;

    #[test]
    fn the_authorization_header_is_marked_sensitive() {
        let now = SystemTime::now();
        let token =
            Token::new(TokenSecret::new("abc"), now, now + Duration::from_secs(60)).unwrap();
        let header = bearer_header(&token).unwrap();
        assert!(header.is_sensitive());
        assert_eq!(header, "Bearer abc");
        assert!(!format!("{header:?}").contains("abc"));
    }
}
