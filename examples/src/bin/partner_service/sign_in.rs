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
