//! Creating SSO sessions: a `POST` with the partner-level token as bearer, for the manager of
//! reusable sessions (a [`TokenSource`]) and for single-use ones, which are never cached.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use kigo_core::runtime::TimeSource;
use kigo_core::{CreateRequest, KeyScope, SourceError, Token, TokenHandle, TokenSource, UserId};
use serde_json::{Map, Value};

use super::key::{ProgramId, SsoKeys};
use crate::api::ApiInner;
use crate::config::ApiConfig;
use crate::error::{CreateError, ErrorKind};
use crate::parse::Issued;

/// What an SSO session is asked for: a user (required), and optionally a program, an email and
/// attributes. Kigo creates the user's account if it is missing.
///
/// Only single-use sessions ([`crate::SsoSessions::single_use`]) carry an email and attributes: a
/// reusable session is created whenever the fleet's cached one runs out, on any replica and in
/// the background, where no request is at hand.
#[derive(Clone)]
pub struct SsoRequest {
    user: UserId,
    program: Option<ProgramId>,
    email: Option<String>,
    attributes: Map<String, Value>,
}

impl SsoRequest {
    /// A session for `user` (`external_user_id`).
    pub fn new(user: UserId) -> Self {
        Self {
            user,
            program: None,
            email: None,
            attributes: Map::new(),
        }
    }

    /// In `program` (`external_program_id`).
    #[must_use]
    pub fn program(mut self, program: ProgramId) -> Self {
        self.program = Some(program);
        self
    }

    /// With the user's email, for the account Kigo creates if it is missing.
    #[must_use]
    pub fn email(mut self, email: impl Into<String>) -> Self {
        self.email = Some(email.into());
        self
    }

    /// With the attribute `name` set to `value` (`attributes`).
    #[must_use]
    pub fn attribute(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.attributes.insert(name.into(), value.into());
        self
    }

    /// The JSON body of its `POST`.
    fn body(&self, config: &ApiConfig, single_use: bool) -> String {
        let mut body = Map::new();
        body.insert(config.user_id_field.clone(), self.user.as_str().into());
        if let Some(program) = &self.program {
            body.insert("external_program_id".into(), program.as_str().into());
        }
        body.insert("single_use".into(), single_use.into());
        if let Some(email) = &self.email {
            body.insert("email".into(), email.as_str().into());
        }
        if !self.attributes.is_empty() {
            body.insert("attributes".into(), Value::Object(self.attributes.clone()));
        }
        Value::Object(body).to_string()
    }
}

/// Personal data stays out of logs: the user and the email are not shown, the attributes by
/// name only.
impl fmt::Debug for SsoRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SsoRequest")
            .field("program", &self.program)
            .field("email", &self.email.as_ref().map(|_| "[personal]"))
            .field("attributes", &self.attributes.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Creates SSO sessions for the users of one partner, with its partner-level token.
#[derive(Debug, Clone)]
pub(crate) struct SsoSessionSource {
    api: Arc<ApiInner>,
    partner: TokenHandle,
    keys: SsoKeys,
}

impl SsoSessionSource {
    pub(crate) fn new(api: Arc<ApiInner>, partner: TokenHandle, keys: SsoKeys) -> Self {
        Self { api, partner, keys }
    }

    pub(crate) fn keys(&self) -> &SsoKeys {
        &self.keys
    }

    /// Creates a session for `request`, valid from the send time on `clock`.
    pub(crate) async fn create_session(
        &self,
        request: &SsoRequest,
        single_use: bool,
        clock: &dyn TimeSource,
    ) -> Result<Token, CreateError> {
        let body = request.body(&self.api.config, single_use);
        let url = &self.api.sso_session_url;
        let issued = Issued::SsoSession;
        let session = self
            .api
            .post_with_partner_token(&self.partner, url, &body, issued, clock)
            .await?;
        tracing::debug!(single_use, fingerprint = %session.fingerprint(), "created an SSO session");
        Ok(session)
    }
}

#[async_trait]
impl TokenSource for SsoSessionSource {
    /// A reusable session for the program and user its key names.
    async fn create(&self, request: CreateRequest<'_>) -> Result<Token, SourceError> {
        let (program, user) = self
            .keys
            .decode(request.key)
            .ok_or_else(|| CreateError::new(ErrorKind::WrongKey))?;
        let mut session = SsoRequest::new(user);
        session.program = program;
        Ok(self.create_session(&session, false, request.clock).await?)
    }

    /// This partner's SSO sessions: never a user token, never the partner-level token.
    fn scope(&self) -> Option<KeyScope> {
        Some(self.keys.scope())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_carries_the_fields_of_kigos_reference() {
        let config = ApiConfig::default();
        let user = UserId::new("alice").unwrap();
        let plain: Value =
            serde_json::from_str(&SsoRequest::new(user.clone()).body(&config, false)).unwrap();
        assert_eq!(
            plain,
            serde_json::json!({"external_user_id": "alice", "single_use": false})
        );
        let full = SsoRequest::new(user)
            .program(ProgramId::new("spring").unwrap())
            .email("alice@example.com")
            .attribute("tier", "gold");
        let full: Value = serde_json::from_str(&full.body(&config, true)).unwrap();
        assert_eq!(
            full,
            serde_json::json!({
                "external_user_id": "alice",
                "external_program_id": "spring",
                "single_use": true,
                "email": "alice@example.com",
                "attributes": {"tier": "gold"},
            })
        );
    }

    #[test]
    fn a_request_shows_no_user_and_no_email() {
        let request = SsoRequest::new(UserId::new("alice-4711").unwrap())
            .email("alice@example.com")
            .attribute("tier", "gold");
        let shown = format!("{request:?}");
        assert!(!shown.contains("alice"), "{shown}");
        assert!(!shown.contains("gold"), "{shown}");
        assert!(shown.contains("tier"), "{shown}");
    }
}
