//! This crate's errors: a configuration that cannot work, and why a token could not be created.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use kigo_core::{SharedError, SourceError};

/// A configuration that cannot work. Names the setting or variable, never a secret's value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A required environment variable is not set (or empty).
    #[error("the environment variable {variable} is not set")]
    MissingVariable {
        /// The variable's name.
        variable: &'static str,
    },
    /// A setting has a value that cannot be used.
    #[error("{setting} is invalid: {reason}")]
    Invalid {
        /// The setting or environment variable.
        setting: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The base URL is plain `http://` for a host that is not loopback, without the opt-in.
    #[error(
        "the base URL uses plain http for a host that is not loopback; use https, or opt in with \
         KigoApiBuilder::allow_insecure_http"
    )]
    InsecureBaseUrl,
    /// The HTTP client could not be built.
    #[error("the HTTP client could not be built")]
    HttpClient(#[source] reqwest::Error),
    /// A token manager's settings cannot work.
    #[error("the token manager could not be built")]
    Manager(#[source] kigo_core::BuildError),
}

impl ConfigError {
    pub(crate) fn invalid(setting: &'static str, reason: &'static str) -> Self {
        Self::Invalid { setting, reason }
    }
}

/// What went wrong creating a token: the class of a [`CreateError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// `401`: the API key or partner ID (or, for user tokens, the partner token) was refused.
    Unauthorized,
    /// `403`: the credentials are valid but not allowed to do this.
    Forbidden,
    /// `400`: the API refused the request; [`CreateError::server_message`] says why.
    BadRequest,
    /// Another status that retrying will not fix (404, 405, 3xx, ...): usually a wrong path.
    UnexpectedStatus,
    /// `408`: the server timed out waiting for the request.
    RequestTimeout,
    /// `429`: rate limited.
    RateLimited,
    /// A `5xx` answer.
    ServerError,
    /// No answer within the configured timeout.
    Timeout,
    /// The server could not be reached.
    Connect,
    /// The connection failed while sending or reading.
    Transport,
    /// The request could not be built (for example a custom client refused its URL).
    InvalidRequest,
    /// The answer's body exceeded the size limit.
    BodyTooLarge,
    /// The answer's body is not JSON.
    NotJson,
    /// The answer has no token field.
    MissingToken,
    /// The token field is an empty string.
    EmptyToken,
    /// The token is not a string, or holds characters that cannot travel in a header.
    InvalidToken,
    /// The lifetime is zero or negative, or the expiry is not after the send time.
    NonPositiveLifetime,
    /// The lifetime is longer than the configured maximum.
    AbsurdLifetime,
    /// The lifetime is positive but shorter than the configured minimum.
    ShortLifetime,
    /// The expiry field is neither seconds, an RFC 3339 time nor epoch seconds.
    InvalidExpiry,
    /// The source was asked for a key it does not serve (another partner, or the wrong level).
    WrongKey,
    /// A user token needs a partner token, and none is available for now.
    PartnerTokenUnavailable,
    /// A user token needs a partner token, and creating one failed for good.
    PartnerTokenRefused,
}

impl ErrorKind {
    /// Whether trying again later may succeed.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            Self::RequestTimeout
                | Self::RateLimited
                | Self::ServerError
                | Self::Timeout
                | Self::Connect
                | Self::Transport
                | Self::PartnerTokenUnavailable
        )
    }

    fn describe(self) -> &'static str {
        match self {
            Self::Unauthorized => "the Kigo API refused the credentials",
            Self::Forbidden => "the Kigo API forbade the request",
            Self::BadRequest => "the Kigo API refused the request as bad",
            Self::UnexpectedStatus => "the Kigo API answered with an unexpected status",
            Self::RequestTimeout => "the Kigo API timed out waiting for the request",
            Self::RateLimited => "the Kigo API is rate limiting",
            Self::ServerError => "the Kigo API failed",
            Self::Timeout => "the Kigo API did not answer in time",
            Self::Connect => "the Kigo API could not be reached",
            Self::Transport => "the connection to the Kigo API failed",
            Self::InvalidRequest => "the request to the Kigo API could not be built",
            Self::BodyTooLarge => "the token answer is larger than allowed",
            Self::NotJson => "the token answer is not JSON",
            Self::MissingToken => "the token answer has no token",
            Self::EmptyToken => "the token answer has an empty token",
            Self::InvalidToken => "the token answer has a token that cannot be used",
            Self::NonPositiveLifetime => "the token answer has a zero or negative lifetime",
            Self::AbsurdLifetime => "the token answer has a lifetime beyond the allowed maximum",
            Self::ShortLifetime => "the token answer has a lifetime below the allowed minimum",
            Self::InvalidExpiry => "the token answer has an expiry that cannot be read",
            Self::WrongKey => "the token source does not serve this key",
            Self::PartnerTokenUnavailable => "no partner token is available for now",
            Self::PartnerTokenRefused => "no partner token can be created",
        }
    }
}

/// Why a token could not be created: the cause inside the [`SourceError`] this crate's sources
/// return (downcast [`SourceError::cause`] to it). Never holds a secret.
#[derive(Debug, Clone)]
pub struct CreateError {
    kind: ErrorKind,
    status: Option<StatusCode>,
    server_message: Option<String>,
    retry_after: Option<Duration>,
    source: Option<SharedError>,
}

impl CreateError {
    pub(crate) fn new(kind: ErrorKind) -> Self {
        Self {
            kind,
            status: None,
            server_message: None,
            retry_after: None,
            source: None,
        }
    }

    pub(crate) fn with_status(mut self, status: StatusCode) -> Self {
        self.status = Some(status);
        self
    }

    pub(crate) fn with_server_message(mut self, message: Option<String>) -> Self {
        self.server_message = message;
        self
    }

    pub(crate) fn with_retry_after(mut self, delay: Option<Duration>) -> Self {
        self.retry_after = delay;
        self
    }

    pub(crate) fn with_source(
        mut self,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        self.source = Some(Arc::new(source));
        self
    }

    /// The class of failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The HTTP status, if the API answered.
    pub fn status(&self) -> Option<StatusCode> {
        self.status
    }

    /// The API's own explanation (for `400`s), truncated and with known secrets scrubbed.
    pub fn server_message(&self) -> Option<&str> {
        self.server_message.as_deref()
    }

    /// The delay the API asked for (`Retry-After`).
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// Whether trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        self.kind.is_transient()
    }
}

impl fmt::Display for CreateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind.describe())?;
        if let Some(status) = self.status {
            write!(f, " (HTTP {})", status.as_u16())?;
        }
        if let Some(message) = &self.server_message {
            write!(f, ": {message}")?;
        }
        Ok(())
    }
}

impl std::error::Error for CreateError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|source| source as &(dyn std::error::Error + 'static))
    }
}

impl From<CreateError> for SourceError {
    fn from(error: CreateError) -> Self {
        if !error.is_transient() {
            return SourceError::permanent(error);
        }
        let retry_after = error.retry_after;
        let transient = SourceError::transient(error);
        match retry_after {
            Some(delay) => transient.with_retry_after(delay),
            None => transient,
        }
    }
}
