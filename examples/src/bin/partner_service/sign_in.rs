//! Demo sign-in: who the user is, from the `X-Demo-User` header or the `demo_user` cookie.
//!
//! A stand-in for the team's own authentication (a session cookie, an OIDC login): replace
//! [`SignedIn`]'s extractor with one that reads the user from it. Anyone can claim any user
//! here, so never run demo sign-in in production.

use axum::extract::FromRequestParts;
use axum::http::header::COOKIE;
use axum::http::request::Parts;
use kigo_core::UserId;

use crate::error::ApiError;

/// The header naming the signed-in user.
const USER_HEADER: &str = "x-demo-user";
/// The cookie naming the signed-in user (what the front-end page sets).
const USER_COOKIE: &str = "demo_user";

/// The signed-in user of a request.
pub(crate) struct SignedIn(pub(crate) UserId);

impl<S: Send + Sync> FromRequestParts<S> for SignedIn {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let name = header_user(parts)
            .or_else(|| cookie_user(parts))
            .ok_or(ApiError::SignedOut)?;
        let user = UserId::new(name).map_err(|_| ApiError::InvalidInput { what: "user ID" })?;
        Ok(Self(user))
    }
}

fn header_user(parts: &Parts) -> Option<String> {
    let value = parts.headers.get(USER_HEADER)?.to_str().ok()?.trim();
    (!value.is_empty()).then(|| value.to_owned())
}

fn cookie_user(parts: &Parts) -> Option<String> {
    parts
        .headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|cookies| cookies.split(';'))
        .filter_map(|cookie| cookie.trim().split_once('='))
        .find(|(name, value)| *name == USER_COOKIE && !value.is_empty())
        .map(|(_, value)| value.to_owned())
}

#[cfg(test)]
mod tests {
    use axum::http::Request;

    use super::*;

    async fn signed_in(headers: &[(&str, &str)]) -> Result<String, ApiError> {
        let mut request = Request::builder();
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let (mut parts, ()) = request.body(()).unwrap().into_parts();
        let SignedIn(user) = SignedIn::from_request_parts(&mut parts, &()).await?;
        Ok(user.as_str().to_owned())
    }

    #[tokio::test]
    async fn the_header_names_the_user_before_the_cookie() {
        let cookie = ("cookie", "theme=dark; demo_user=bob");
        assert_eq!(signed_in(&[cookie]).await.unwrap(), "bob");
        let header = ("x-demo-user", "alice");
        assert_eq!(signed_in(&[header, cookie]).await.unwrap(), "alice");
    }

    #[tokio::test]
    async fn no_or_empty_names_mean_signed_out() {
        for headers in [
            &[][..],
            &[("x-demo-user", "  ")],
            &[("cookie", "demo_user=; other=1")],
            &[("cookie", "not-a-pair")],
        ] {
            let outcome = signed_in(headers).await;
            assert!(matches!(outcome, Err(ApiError::SignedOut)), "{headers:?}");
        }
    }
}
