//! What this crate assumes about the Kigo API (paths, field names, where credentials go) and how
//! it talks HTTP (timeouts, TLS, plain-http opt-in). Every assumption can be changed.

use std::fmt;
use std::time::Duration;

use http::HeaderName;

use crate::error::ConfigError;

/// Where the API key and partner ID travel in the partner-token request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CredentialPlacement {
    /// In the JSON body, under these field names.
    Body {
        /// The field holding the API key.
        api_key_field: String,
        /// The field holding the partner ID.
        partner_id_field: String,
    },
    /// In request headers (the API key header is marked sensitive).
    Headers {
        /// The header holding the API key.
        api_key_header: HeaderName,
        /// The header holding the partner ID.
        partner_id_header: HeaderName,
    },
}

impl Default for CredentialPlacement {
    /// A JSON body `{"api_key": ..., "partner_id": ...}` (an assumption about the API).
    fn default() -> Self {
        Self::Body {
            api_key_field: "api_key".to_owned(),
            partner_id_field: "partner_id".to_owned(),
        }
    }
}

/// Where a token answer keeps its fields, as JSON pointers (`/session_token`, `/data/token`);
/// the first pointer that is present wins.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResponseFields {
    /// The session token.
    pub token: Vec<String>,
    /// The lifetime in seconds (a number or a numeric string).
    pub expires_in: Vec<String>,
    /// The absolute expiry: an RFC 3339 time, or seconds since the epoch.
    pub expires_at: Vec<String>,
    /// The refresh token that comes with a user-level token.
    pub refresh_token: Vec<String>,
    /// The session ID of an SSO session.
    pub session_id: Vec<String>,
}

impl Default for ResponseFields {
    fn default() -> Self {
        let pointers = |names: &[&str]| names.iter().map(|name| format!("/{name}")).collect();
        Self {
            token: pointers(&["session_token", "access_token", "token"]),
            expires_in: pointers(&["expires_in"]),
            expires_at: pointers(&["expires_at"]),
            refresh_token: pointers(&["refresh_token"]),
            session_id: pointers(&["session_id"]),
        }
    }
}

impl ResponseFields {
    /// Every pointer starts with `/`: one that does not would silently never match.
    pub(crate) fn check(&self) -> Result<(), ConfigError> {
        let fields = [
            (&self.token, "response.token"),
            (&self.expires_in, "response.expires_in"),
            (&self.expires_at, "response.expires_at"),
            (&self.refresh_token, "response.refresh_token"),
            (&self.session_id, "response.session_id"),
        ];
        for (pointers, setting) in fields {
            if pointers.iter().any(|pointer| !pointer.starts_with('/')) {
                return Err(ConfigError::invalid(
                    setting,
                    "a JSON pointer starts with '/', e.g. /data/token",
                ));
            }
        }
        Ok(())
    }
}

/// The Kigo API as this crate assumes it. The defaults follow Kigo's public guides and API
/// reference where they are explicit (Bearer header, 30-minute partner tokens, 1-hour user tokens
/// with 1-year refresh tokens, 30-minute SSO sessions, the SSO request's fields); the paths and
/// the other field names are assumptions, listed in the crate's README.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ApiConfig {
    /// `POST` here creates a partner-level session token.
    pub partner_session_path: String,
    /// `POST` here (with a partner bearer) creates a user-level session token.
    pub user_session_path: String,
    /// `POST` here renews a user-level token with its refresh token.
    pub user_refresh_path: String,
    /// `POST` here (with a partner bearer) creates an SSO session for a Kigo-hosted page.
    pub sso_session_path: String,
    /// Where the API key and partner ID go.
    pub credentials: CredentialPlacement,
    /// The JSON field naming the user in a user-token request.
    pub user_id_field: String,
    /// The JSON field carrying the refresh token in a refresh request.
    pub refresh_token_field: String,
    /// Where the answers keep their fields.
    pub response: ResponseFields,
    /// The lifetime of a partner-level token whose answer gives none: Kigo's documented 30
    /// minutes.
    pub default_lifetime: Duration,
    /// The lifetime of a user-level token whose answer gives none: Kigo's documented 1 hour.
    pub user_default_lifetime: Duration,
    /// The lifetime of an SSO session whose answer gives none: Kigo's documented 30 minutes.
    pub sso_default_lifetime: Duration,
    /// How long a refresh token is valid after the token it came with was issued: Kigo's
    /// documented 1 year. An older one is not tried; a new token is created instead.
    pub refresh_token_lifetime: Duration,
    /// Longer lifetimes are refused as absurd (default 24 hours).
    pub max_lifetime: Duration,
    /// Shorter lifetimes are refused (default 1 s): a token that expires almost at once would
    /// have the manager renew without pause.
    pub min_lifetime: Duration,
    /// A longer `Retry-After` is cut to this (default 1 hour), so that one bad header cannot
    /// stop renewals for days.
    pub max_retry_after: Duration,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            partner_session_path: "/api/v1/auth/session".to_owned(),
            user_session_path: "/api/v1/auth/account-space/session".to_owned(),
            user_refresh_path: "/api/v1/auth/account-space/session/refresh".to_owned(),
            sso_session_path: "/api/v1/auth/sso/session".to_owned(),
            credentials: CredentialPlacement::default(),
            user_id_field: "external_user_id".to_owned(),
            refresh_token_field: "refresh_token".to_owned(),
            response: ResponseFields::default(),
            default_lifetime: Duration::from_secs(30 * 60),
            user_default_lifetime: Duration::from_secs(60 * 60),
            sso_default_lifetime: Duration::from_secs(30 * 60),
            refresh_token_lifetime: Duration::from_secs(365 * 24 * 60 * 60),
            max_lifetime: Duration::from_secs(24 * 60 * 60),
            min_lifetime: Duration::from_secs(1),
            max_retry_after: Duration::from_secs(60 * 60),
        }
    }
}

/// How this crate talks HTTP when it builds its own `reqwest::Client`; set through
/// [`crate::KigoApiBuilder`]'s methods (the defaults are documented there).
#[derive(Clone)]
pub(crate) struct HttpSettings {
    pub(crate) connect_timeout: Duration,
    pub(crate) timeout: Duration,
    pub(crate) allow_insecure_http: bool,
    pub(crate) root_certificates: Vec<reqwest::Certificate>,
    pub(crate) max_body_bytes: usize,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(8),
            allow_insecure_http: false,
            root_certificates: Vec::new(),
            max_body_bytes: 64 * 1024,
        }
    }
}

impl fmt::Debug for HttpSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpSettings")
            .field("connect_timeout", &self.connect_timeout)
            .field("timeout", &self.timeout)
            .field("allow_insecure_http", &self.allow_insecure_http)
            .field("root_certificates", &self.root_certificates.len())
            .field("max_body_bytes", &self.max_body_bytes)
            .finish()
    }
}

/// The user agent of every request: this crate and its version.
pub const USER_AGENT: &str = concat!("kigo-http/", env!("CARGO_PKG_VERSION"));
