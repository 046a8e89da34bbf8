//! The user-level [`TokenSource`]: a session token for one user, created with the partner-level
//! token as bearer, or renewed with the refresh token that came with the previous one.

use std::sync::Arc;

use async_trait::async_trait;
use http::HeaderValue;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use kigo_core::runtime::TimeSource;
use kigo_core::{
    CreateRequest, KeyScope, SourceError, Token, TokenHandle, TokenKey, TokenSecret, TokenSource,
    UserId,
};
use serde_json::json;

use crate::api::ApiInner;
use crate::auth::bearer_header;
use crate::error::{CreateError, ErrorKind};

/// Creates user-level session tokens (what a front end may receive) for users of the partner of
/// its [`crate::KigoApi`].
///
/// Its logs never name the user (personal data): they happen inside the manager's refresh span,
/// which names the user by a keyed hash (see `kigo_core::manager::UserIdLogging`).
///
/// - The partner-level token comes from a manager's [`TokenHandle`], so it is shared and renewed
///   like any other call's. If the API rejects it (`401`), it is invalidated by fingerprint and
///   the creation retried once with a fresh one.
/// - When the token being replaced came with a refresh token, renewing with it is tried first;
///   if the API refuses it, a new token is created.
///
/// Keys are `TokenKey::User { partner, user }`; the manager keeps a bounded number of them.
///
/// # Timeouts
///
/// One creation may make several HTTP calls in a row, each bounded by the HTTP timeout: a
/// partner-token creation when none is cached, then the user call; after a `401`, a second
/// partner-token creation and a second user call. [`crate::KigoApi::user_manager`] gives the
/// user-level manager a creation timeout that covers that path.
#[derive(Debug, Clone)]
pub struct UserTokenSource {
    api: Arc<ApiInner>,
    partner: TokenHandle,
}

impl UserTokenSource {
    pub(crate) fn new(api: Arc<ApiInner>, partner: TokenHandle) -> Self {
        Self { api, partner }
    }

    async fn create_token(&self, request: CreateRequest<'_>) -> Result<Token, CreateError> {
        let user = match request.key {
            TokenKey::User { partner, user } if partner == self.api.credentials.partner_id() => {
                user
            }
            _ => return Err(CreateError::new(ErrorKind::WrongKey)),
        };
        if let Some(refresh) = request.previous.and_then(Token::refresh_token) {
            match self.refresh(refresh, request.clock).await {
                Ok(token) => return Ok(token),
                Err(error) if error.is_transient() => return Err(error),
                Err(error) => {
                    tracing::debug!(%error, "refresh token refused; creating a new user token");
                }
            }
        }
        self.create_with_partner_token(user, request.clock).await
    }

    async fn refresh(
        &self,
        refresh: &TokenSecret,
        clock: &dyn TimeSource,
    ) -> Result<Token, CreateError> {
        let body = json!({ &self.api.config.refresh_token_field: refresh.expose() });
        let builder = self
            .api
            .http
            .post(self.api.user_refresh_url.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(body.to_string());
        self.api.exchange(builder, clock, &[refresh.expose()]).await
    }

    /// Creates the token with the partner token as bearer; on a `401`, invalidates that exact
    /// partner token and tries once more with the next one.
    async fn create_with_partner_token(
        &self,
        user: &UserId,
        clock: &dyn TimeSource,
    ) -> Result<Token, CreateError> {
        let body = json!({ &self.api.config.user_id_field: user.as_str() }).to_string();
        let mut rejected_once = false;
        loop {
            // An owned copy: the manager's guard is not held across the request.
            let partner = Token::clone(&*self.partner.token().await.map_err(partner_unavailable)?);
            let fingerprint = partner.fingerprint();
            let bearer = bearer_header(&partner)
                .ok_or_else(|| CreateError::new(ErrorKind::PartnerTokenRefused))?;
            let builder = self
                .api
                .http
                .post(self.api.user_session_url.clone())
                .header(AUTHORIZATION, bearer)
                .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                .body(body.clone());
            let answer = self
                .api
                .exchange(builder, clock, &[partner.secret().expose()])
                .await;
            match answer {
                Err(error) if error.kind() == ErrorKind::Unauthorized && !rejected_once => {
                    tracing::info!(partner_token = %fingerprint, "partner token rejected while creating a user token; renewing it");
                    self.partner.invalidate(&fingerprint);
                    rejected_once = true;
                }
                Ok(token) => {
                    tracing::debug!(fingerprint = %token.fingerprint(), "created a user-level session token");
                    return Ok(token);
                }
                Err(error) => return Err(error),
            }
        }
    }
}

/// The partner manager could not hand out a token.
fn partner_unavailable(error: kigo_core::Error) -> CreateError {
    let kind = if error.is_transient() {
        ErrorKind::PartnerTokenUnavailable
    } else {
        ErrorKind::PartnerTokenRefused
    };
    CreateError::new(kind)
        .with_retry_after(error.retry_after())
        .with_source(error)
}

#[async_trait]
impl TokenSource for UserTokenSource {
    async fn create(&self, request: CreateRequest<'_>) -> Result<Token, SourceError> {
        self.create_token(request).await.map_err(SourceError::from)
    }

    /// User-level tokens of the API's partner's users: never the partner-level token.
    fn scope(&self) -> Option<KeyScope> {
        Some(KeyScope::UsersOf(self.api.credentials.partner_id().clone()))
    }
}
