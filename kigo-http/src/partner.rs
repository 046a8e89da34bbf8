//! The partner-level [`TokenSource`]: a session token from the API key and partner ID.

use std::sync::Arc;

use async_trait::async_trait;
use http::HeaderValue;
use http::header::CONTENT_TYPE;
use kigo_core::{CreateRequest, KeyScope, SourceError, Token, TokenKey, TokenSource};
use serde_json::json;

use crate::api::ApiInner;
use crate::config::CredentialPlacement;
use crate::error::{CreateError, ErrorKind};
use crate::parse::Issued;

/// Creates partner-level session tokens for the partner of its [`crate::KigoApi`].
///
/// Failures are classified for the manager: `401`/`403`/`400` and unusable answers are permanent
/// (bad credentials will not fix themselves), timeouts, connection errors, `408`, `429` and `5xx`
/// transient with the server's `Retry-After`. The cause is a [`CreateError`].
#[derive(Debug, Clone)]
pub struct PartnerTokenSource {
    api: Arc<ApiInner>,
}

impl PartnerTokenSource {
    pub(crate) fn new(api: Arc<ApiInner>) -> Self {
        Self { api }
    }

    async fn create_token(&self, request: CreateRequest<'_>) -> Result<Token, CreateError> {
        let credentials = &self.api.credentials;
        if request.key != &TokenKey::partner(credentials.partner_id().clone()) {
            return Err(CreateError::new(ErrorKind::WrongKey));
        }
        let api_key = credentials.api_key().expose();
        let partner_id = credentials.partner_id().as_str();
        let mut builder = self.api.http.post(self.api.partner_session_url.clone());
        builder = match &self.api.config.credentials {
            CredentialPlacement::Body {
                api_key_field,
                partner_id_field,
            } => builder
                .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                .body(json!({ api_key_field: api_key, partner_id_field: partner_id }).to_string()),
            CredentialPlacement::Headers {
                api_key_header,
                partner_id_header,
            } => builder
                .header(api_key_header.clone(), credentials.api_key().header())
                .header(partner_id_header.clone(), partner_id),
        };
        tracing::debug!(partner = %partner_id, "creating a partner-level session token");
        let token = self
            .api
            .exchange(builder, Issued::PartnerToken, request.clock, &[api_key])
            .await?;
        tracing::debug!(
            partner = %partner_id,
            fingerprint = %token.fingerprint(),
            lifetime = ?token.lifetime(),
            "created a partner-level session token"
        );
        Ok(token)
    }
}

#[async_trait]
impl TokenSource for PartnerTokenSource {
    async fn create(&self, request: CreateRequest<'_>) -> Result<Token, SourceError> {
        self.create_token(request).await.map_err(SourceError::from)
    }

    /// The partner-level token of the API's partner, and nothing else.
    fn scope(&self) -> Option<KeyScope> {
        Some(KeyScope::Partner(self.api.credentials.partner_id().clone()))
    }
}
