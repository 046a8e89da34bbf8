//! One token request and its answer: sending it, reading a capped body, and classifying every
//! failure for the manager (transient or permanent, with the server's `Retry-After`).

use http::header::{DATE, RETRY_AFTER};
use kigo_core::Token;
use kigo_core::runtime::TimeSource;
use reqwest::{RequestBuilder, Response, StatusCode};

use crate::api::ApiInner;
use crate::error::{CreateError, ErrorKind};
use crate::parse::{self, Issued, Timing};

impl ApiInner {
    /// Sends a token request and reads its answer (an `issued` kind) into a token valid from the
    /// send time.
    ///
    /// `secrets` are scrubbed from any server message kept in an error.
    pub(crate) async fn exchange(
        &self,
        request: RequestBuilder,
        issued: Issued,
        clock: &dyn TimeSource,
        secrets: &[&str],
    ) -> Result<Token, CreateError> {
        let request = request
            .timeout(self.request_timeout)
            .headers(self.token_headers.clone());
        let sent_at = clock.now();
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        let server_date =
            header(&response, DATE).and_then(|date| httpdate::parse_http_date(date).ok());
        // A date in `Retry-After` is on the server's clock, like its `Date`.
        let retry_after = header(&response, RETRY_AFTER).and_then(|value| {
            let reference = server_date.unwrap_or_else(|| clock.now());
            parse::retry_after(value, reference, self.config.max_retry_after)
        });
        let body = read_capped(response, self.max_body_bytes).await;
        if status.is_success() {
            let timing = Timing {
                sent_at,
                server_date,
            };
            return parse::token(&body?, &self.config, issued, timing);
        }
        let kind = classify(status);
        let mut error = CreateError::new(kind).with_status(status);
        if kind.is_transient() {
            error = error.with_retry_after(retry_after);
        } else if kind == ErrorKind::BadRequest
            && let Ok(body) = body
        {
            // Only a 400 explains the request; other refusals (401 especially) may echo
            // credentials in forms no scrubbing can know.
            error = error.with_server_message(parse::server_message(&body, secrets));
        }
        Err(error)
    }
}

fn header(response: &Response, name: http::HeaderName) -> Option<&str> {
    response.headers().get(name)?.to_str().ok()
}

/// The class of a failed status.
fn classify(status: StatusCode) -> ErrorKind {
    match status {
        StatusCode::UNAUTHORIZED => ErrorKind::Unauthorized,
        StatusCode::FORBIDDEN => ErrorKind::Forbidden,
        StatusCode::BAD_REQUEST => ErrorKind::BadRequest,
        StatusCode::REQUEST_TIMEOUT => ErrorKind::RequestTimeout,
        StatusCode::TOO_MANY_REQUESTS => ErrorKind::RateLimited,
        status if status.is_server_error() => ErrorKind::ServerError,
        _ => ErrorKind::UnexpectedStatus,
    }
}

/// Maps a reqwest failure (no answer, or a broken one) to its class.
fn transport(error: reqwest::Error) -> CreateError {
    let kind = if error.is_builder() {
        ErrorKind::InvalidRequest
    } else if error.is_timeout() {
        ErrorKind::Timeout
    } else if error.is_connect() {
        ErrorKind::Connect
    } else {
        ErrorKind::Transport
    };
    CreateError::new(kind).with_source(error.without_url())
}

/// Reads the body, refusing more than `cap` bytes (checked before and while reading).
async fn read_capped(mut response: Response, cap: usize) -> Result<Vec<u8>, CreateError> {
    let too_large = || CreateError::new(ErrorKind::BodyTooLarge);
    if response
        .content_length()
        .is_some_and(|length| length > cap as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport)? {
        if body.len() + chunk.len() > cap {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
