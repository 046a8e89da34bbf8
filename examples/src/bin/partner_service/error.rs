//! What a handler answers when it cannot serve: a status code and a JSON body
//! `{"error": "<code>", "message": "<what happened>"}`, never a token, key or user ID.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kigo_http::{ClientError, SsoError};
use serde_json::json;

/// Why a request failed, by what the caller can do about it.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    /// No such route.
    #[error("no such page")]
    NotFound,
    /// No signed-in user.
    #[error("sign in first: send the X-Demo-User header or the demo_user cookie")]
    SignedOut,
    /// The request names an ID Kigo cannot take.
    #[error("invalid {what}")]
    InvalidInput { what: &'static str },
    /// Kigo is failing for now (or the fleet is cooling down): ask again later.
    #[error("the Kigo API is unavailable for now")]
    Unavailable { retry_after_seconds: Option<u64> },
    /// Kigo refused, or the service is misconfigured: retrying will not help.
    #[error("the Kigo API refused the request")]
    Refused,
}

impl ApiError {
    fn code(&self) -> &'static str {
        match self {
            Self::NotFound => "not_found",
            Self::SignedOut => "signed_out",
            Self::InvalidInput { .. } => "invalid_input",
            Self::Unavailable { .. } => "kigo_unavailable",
            Self::Refused => "kigo_refused",
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::SignedOut => StatusCode::UNAUTHORIZED,
            Self::InvalidInput { .. } => StatusCode::BAD_REQUEST,
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Refused => StatusCode::BAD_GATEWAY,
        }
    }

    /// Logs why (the error chains carry no secret) and classifies.
    fn upstream(
        transient: bool,
        retry_after_seconds: Option<u64>,
        error: &(dyn std::error::Error + 'static),
    ) -> Self {
        tracing::warn!(error = %chain(error), "a Kigo call failed");
        if transient {
            Self::Unavailable {
                retry_after_seconds,
            }
        } else {
            Self::Refused
        }
    }
}

impl From<kigo_core::Error> for ApiError {
    fn from(error: kigo_core::Error) -> Self {
        let retry = error.retry_after().map(|after| after.as_secs().max(1));
        Self::upstream(error.is_transient(), retry, &error)
    }
}

impl From<SsoError> for ApiError {
    fn from(error: SsoError) -> Self {
        match error {
            SsoError::InvalidKey(_) => Self::InvalidInput {
                what: "program and user IDs",
            },
            other => Self::upstream(other.is_transient(), None, &other),
        }
    }
}

impl From<ClientError> for ApiError {
    fn from(error: ClientError) -> Self {
        match error {
            ClientError::Token(error) => error.into(),
            ClientError::Request(error) => {
                let transient = error.is_timeout() || error.is_connect();
                Self::upstream(transient, None, &error)
            }
            other => Self::upstream(false, None, &other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(json!({"error": self.code(), "message": self.to_string()}));
        let mut response = (self.status(), body).into_response();
        if let Self::Unavailable {
            retry_after_seconds: Some(seconds),
        } = self
        {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// An error and its causes on one line (none holds a secret: the workspace's errors keep
/// tokens and keys out). A manager's error names its key, and a user's key names the user,
/// who is personal data: it is written as its class.
pub(crate) fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    std::iter::successors(Some(error), |error| error.source())
        .map(|error| match error.downcast_ref::<kigo_core::Error>() {
            Some(error) => format!("no token ({})", error.class()),
            None => error.to_string(),
        })
        .collect::<Vec<_>>()
        .join(": ")
}
