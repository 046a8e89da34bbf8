//! The user-level [`TokenSource`]: a session token for one user, created with the partner-level
//! token as bearer, or renewed with the refresh token that came with the previous one.

use std::sync::Arc;

use async_trait::async_trait;
use http::HeaderValue;
use http::header::CONTENT_TYPE;
use kigo_core::runtime::TimeSource;
use kigo_core::{
    CreateRequest, KeyScope, SourceError, Token, TokenHandle, TokenKey, TokenSecret, TokenSource,
};
use serde_json::json;

use crate::api::ApiInner;
use crate::error::{CreateError, ErrorKind};
use crate::parse::Issued;

/// Creates user-level session tokens (what a front end may receive) for users of the partner of
/// its [`crate::KigoApi`].
///
/// Its logs never name the user (personal data): they happen inside the manager's refresh span,
/// which names the user by a keyed hash (see `kigo_core::manager::UserIdLogging`).
///
/// - The partner-level token comes from a manager's [`TokenHandle`], so it is shared and renewed
///   like any other call's. If the API rejects it (`401`), it is invalidated by fingerprint and
///   the creation retried once with a fresh one.
/// - When the token being replaced came with a refresh token that is still valid (Kigo's
///   refresh tokens live a year, [`crate::ApiConfig::refresh_token_lifetime`]), renewing with it
///   is tried first, even long after the access token (1 hour) expired; if the API refuses it, a
///   new token is created. Refresh tokens travel inside the token, so shared stores seal them
///   with it.
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
        let refresh = request
            .previous
            .and_then(|previous| self.valid_refresh_token(previous, request.clock));
        if let Some(refresh) = refresh {
            match self.refresh(refresh, request.clock).await {
                Ok(token) => return Ok(token),
                Err(error) if error.is_transient() => return Err(error),
                Err(error) => {
                    tracing::debug!(%error, "refresh token refused; creating a new user token");
                }
            }
        }
        let body = json!({ &self.api.config.user_id_field: user.as_str() }).to_string();
        let token = self
            .api
            .post_with_partner_token(
                &self.partner,
                &self.api.user_session_url,
                &body,
                Issued::UserToken,
                request.clock,
            )
            .await?;
        tracing::debug!(fingerprint = %token.fingerprint(), "created a user-level session token");
        Ok(token)
    }

    /// The refresh token of `previous`, while it is valid: for
    /// [`crate::ApiConfig::refresh_token_lifetime`] after `previous` was issued.
    fn valid_refresh_token<'t>(
        &self,
        previous: &'t Token,
        clock: &dyn TimeSource,
    ) -> Option<&'t TokenSecret> {
        let refresh = previous.refresh_token()?;
        let valid_until = previous
            .issued_at()
            .checked_add(self.api.config.refresh_token_lifetime)?;
        if clock.now() >= valid_until {
            tracing::debug!("the refresh token has expired; creating a new user token");
            return None;
        }
        Some(refresh)
    }

    /// A new token from `refresh`. An answer without a refresh token keeps `refresh`: an API
    /// that does not rotate them leaves it valid.
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
        let token = self
            .api
            .exchange(builder, Issued::UserToken, clock, &[refresh.expose()])
            .await?;
        Ok(match token.refresh_token() {
            Some(_) => token,
            None => token.with_refresh_token(refresh.clone()),
        })
    }
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
