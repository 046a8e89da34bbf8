//! Reading a token answer: the token, its lifetime (seconds, RFC 3339 or epoch seconds, else the
//! documented default) and an optional refresh token. Bad input gives a typed error, never a
//! panic and never a wrong token.

use std::time::{Duration, SystemTime};

use kigo_core::{InvalidToken, Token, TokenSecret};
use serde_json::Value;

use crate::config::ApiConfig;
use crate::error::{CreateError, ErrorKind};

/// What an answer carries: each kind has its own fields and default lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Issued {
    PartnerToken,
    /// A user-level token, with the refresh token that may come with it.
    UserToken,
    /// An SSO session: its `session_id` is the secret.
    SsoSession,
}

impl Issued {
    fn secret_fields(self, config: &ApiConfig) -> &[String] {
        match self {
            Self::PartnerToken | Self::UserToken => &config.response.token,
            Self::SsoSession => &config.response.session_id,
        }
    }

    fn default_lifetime(self, config: &ApiConfig) -> Duration {
        match self {
            Self::PartnerToken => config.default_lifetime,
            Self::UserToken => config.user_default_lifetime,
            Self::SsoSession => config.sso_default_lifetime,
        }
    }
}

/// When the answer was produced, as far as the client can tell.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    /// When the request was sent, on the caller's clock.
    pub(crate) sent_at: SystemTime,
    /// The server's `Date` header, if it sent one: absolute expiries are counted from it, so that
    /// a server clock that differs from ours does not shift the lifetime.
    pub(crate) server_date: Option<SystemTime>,
}

/// Builds the token (or SSO session) described by `body`, valid from `timing.sent_at`.
pub(crate) fn token(
    body: &[u8],
    config: &ApiConfig,
    issued: Issued,
    timing: Timing,
) -> Result<Token, CreateError> {
    let answer: Value = serde_json::from_slice(body)
        .map_err(|error| CreateError::new(ErrorKind::NotJson).with_source(error))?;
    let secret = match first(&answer, issued.secret_fields(config)) {
        None => return Err(CreateError::new(ErrorKind::MissingToken)),
        Some(Value::String(secret)) if secret.is_empty() => {
            return Err(CreateError::new(ErrorKind::EmptyToken));
        }
        Some(Value::String(secret)) => secret.clone(),
        Some(_) => return Err(CreateError::new(ErrorKind::InvalidToken)),
    };
    let lifetime = lifetime(&answer, config, issued.default_lifetime(config), timing)?;
    let expires_at = timing
        .sent_at
        .checked_add(lifetime)
        .ok_or_else(|| CreateError::new(ErrorKind::AbsurdLifetime))?;
    let token =
        Token::new(TokenSecret::new(secret), timing.sent_at, expires_at).map_err(|invalid| {
            match invalid {
                InvalidToken::Empty => CreateError::new(ErrorKind::EmptyToken),
                InvalidToken::NonPositiveLifetime => {
                    CreateError::new(ErrorKind::NonPositiveLifetime)
                }
                _ => CreateError::new(ErrorKind::InvalidToken),
            }
        })?;
    if issued != Issued::UserToken {
        return Ok(token);
    }
    match first(&answer, &config.response.refresh_token) {
        Some(Value::String(refresh)) if !refresh.is_empty() => {
            Ok(token.with_refresh_token(TokenSecret::new(refresh.clone())))
        }
        _ => Ok(token),
    }
}

fn first<'a>(answer: &'a Value, pointers: &[String]) -> Option<&'a Value> {
    pointers
        .iter()
        .find_map(|pointer| answer.pointer(pointer))
        .filter(|value| !value.is_null())
}

fn lifetime(
    answer: &Value,
    config: &ApiConfig,
    default: Duration,
    timing: Timing,
) -> Result<Duration, CreateError> {
    let fields = &config.response;
    let lifetime = if let Some(value) = first(answer, &fields.expires_in) {
        seconds(value).and_then(positive_duration)?
    } else if let Some(value) = first(answer, &fields.expires_at) {
        let expires_at = absolute(value)?;
        let reference = timing.server_date.unwrap_or(timing.sent_at);
        expires_at
            .duration_since(reference)
            .ok()
            .filter(|lifetime| !lifetime.is_zero())
            .ok_or_else(|| CreateError::new(ErrorKind::NonPositiveLifetime))?
    } else {
        default
    };
    if lifetime > config.max_lifetime {
        return Err(CreateError::new(ErrorKind::AbsurdLifetime));
    }
    if lifetime < config.min_lifetime {
        return Err(CreateError::new(ErrorKind::ShortLifetime));
    }
    Ok(lifetime)
}

/// A number of seconds: a JSON number or a numeric string.
fn seconds(value: &Value) -> Result<f64, CreateError> {
    let number = match value {
        Value::Number(number) => number.as_f64(),
        Value::String(text) => text.trim().parse::<f64>().ok(),
        _ => None,
    };
    number
        .filter(|number| number.is_finite())
        .ok_or_else(|| CreateError::new(ErrorKind::InvalidExpiry))
}

fn positive_duration(seconds: f64) -> Result<Duration, CreateError> {
    if seconds <= 0.0 {
        return Err(CreateError::new(ErrorKind::NonPositiveLifetime));
    }
    Duration::try_from_secs_f64(seconds).map_err(|_| CreateError::new(ErrorKind::AbsurdLifetime))
}

/// An absolute time: an RFC 3339 string, or seconds since the epoch (number or numeric string).
fn absolute(value: &Value) -> Result<SystemTime, CreateError> {
    if let Value::String(text) = value
        && let Ok(parsed) =
            time::OffsetDateTime::parse(text.trim(), &time::format_description::well_known::Rfc3339)
    {
        return Ok(SystemTime::from(parsed));
    }
    let since_epoch = seconds(value)?;
    if since_epoch <= 0.0 {
        return Err(CreateError::new(ErrorKind::NonPositiveLifetime));
    }
    let since_epoch = Duration::try_from_secs_f64(since_epoch)
        .map_err(|_| CreateError::new(ErrorKind::AbsurdLifetime))?;
    SystemTime::UNIX_EPOCH
        .checked_add(since_epoch)
        .ok_or_else(|| CreateError::new(ErrorKind::AbsurdLifetime))
}

/// `Retry-After` as seconds or an HTTP date (counted from `now`), capped at `max`.
pub(crate) fn retry_after(value: &str, now: SystemTime, max: Duration) -> Option<Duration> {
    let value = value.trim();
    let delay = match value.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => {
            let at = httpdate::parse_http_date(value).ok()?;
            at.duration_since(now).unwrap_or_default()
        }
    };
    Some(delay.min(max))
}

/// `text` as a JSON string holds it, without the quotes.
fn json_escaped(text: &str) -> String {
    let quoted = Value::from(text).to_string();
    let inner = quoted
        .strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'));
    inner.unwrap_or(&quoted).to_owned()
}

/// The longest server message kept in an error, in characters.
const MAX_MESSAGE_CHARS: usize = 200;

/// The server's explanation in an error body: its `message` (or `error`, `detail`,
/// `error_description`) field, else the whole answer; `secrets` replaced first, then cut short.
///
/// A JSON answer without such a field (a server echoing the request, say) is written again as
/// this crate writes JSON, so that a secret in it is found however the server escaped it (`\"`,
/// `\/`, `\u0022`): as sent, or as a JSON string holds it.
pub(crate) fn server_message(body: &[u8], secrets: &[&str]) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let parsed = serde_json::from_str::<Value>(&text).ok();
    let field = parsed.as_ref().and_then(|answer| {
        ["message", "error", "detail", "error_description"]
            .iter()
            .find_map(|name| answer.get(name)?.as_str())
    });
    let mut message = match (field, &parsed) {
        (Some(field), _) => field.to_owned(),
        (None, Some(answer)) => answer.to_string(),
        (None, None) => text.into_owned(),
    };
    for secret in secrets.iter().filter(|secret| !secret.is_empty()) {
        for form in [(*secret).to_owned(), json_escaped(secret)] {
            message = message.replace(&form, "[redacted]");
        }
    }
    let message: String = message
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_MESSAGE_CHARS)
        .collect();
    let message = message.trim();
    (!message.is_empty()).then(|| message.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(seconds)
    }

    fn parse_as(issued: Issued, body: &str) -> Result<Token, CreateError> {
        let timing = Timing {
            sent_at: at(1_800_000_000),
            server_date: None,
        };
        token(body.as_bytes(), &ApiConfig::default(), issued, timing)
    }

    fn parse(body: &str) -> Result<Token, CreateError> {
        parse_as(Issued::UserToken, body)
    }

    fn kind(body: &str) -> ErrorKind {
        parse(body).expect_err(body).kind()
    }

    #[test]
    fn every_expiry_shape_counts_from_the_send_time() {
        let sent = at(1_800_000_000);
        for body in [
            r#"{"session_token":"t","expires_in":600}"#,
            r#"{"session_token":"t","expires_in":"600"}"#,
            r#"{"access_token":"t","expires_at":1800000600}"#,
            r#"{"token":"t","expires_at":"2027-01-15T08:10:00Z"}"#,
            r#"{"token":"t","expires_at":"2027-01-15T09:10:00+01:00"}"#,
        ] {
            let token = parse(body).expect(body);
            assert_eq!(token.issued_at(), sent, "{body}");
            assert_eq!(token.lifetime(), Duration::from_secs(600), "{body}");
        }
    }

    #[test]
    fn each_kind_of_answer_without_an_expiry_lives_as_kigo_documents() {
        for (issued, body, minutes) in [
            (Issued::PartnerToken, r#"{"session_token":"t"}"#, 30),
            (Issued::UserToken, r#"{"session_token":"t"}"#, 60),
            (Issued::SsoSession, r#"{"session_id":"s"}"#, 30),
        ] {
            let token = parse_as(issued, body).unwrap();
            assert_eq!(
                token.lifetime(),
                Duration::from_secs(minutes * 60),
                "{issued:?}"
            );
        }
    }

    #[test]
    fn an_sso_session_is_read_from_its_own_field_only() {
        let session = parse_as(
            Issued::SsoSession,
            r#"{"session_id":"s1","expires_in":1800}"#,
        );
        assert_eq!(session.unwrap().secret().expose(), "s1");
        assert_eq!(
            parse_as(Issued::SsoSession, r#"{"session_token":"t"}"#)
                .unwrap_err()
                .kind(),
            ErrorKind::MissingToken
        );
    }

    #[test]
    fn absolute_expiry_uses_the_server_date() {
        let timing = Timing {
            sent_at: at(1_000),
            server_date: Some(at(5_000)),
        };
        let body = br#"{"session_token":"t","expires_at":5060}"#;
        let token = token(body, &ApiConfig::default(), Issued::PartnerToken, timing).unwrap();
        assert_eq!(token.expires_at(), at(1_060));
    }

    #[test]
    fn bad_answers_give_typed_errors() {
        for (body, expected) in [
            ("not json", ErrorKind::NotJson),
            (r#"{"session_token":"t""#, ErrorKind::NotJson),
            (r#"{"expires_in":60}"#, ErrorKind::MissingToken),
            (r#"{"session_token":null}"#, ErrorKind::MissingToken),
            (r#"{"session_token":""}"#, ErrorKind::EmptyToken),
            (r#"{"session_token":42}"#, ErrorKind::InvalidToken),
            (r#"{"session_token":"a b"}"#, ErrorKind::InvalidToken),
            (
                r#"{"session_token":"t","expires_in":0}"#,
                ErrorKind::NonPositiveLifetime,
            ),
            (
                r#"{"session_token":"t","expires_in":-30}"#,
                ErrorKind::NonPositiveLifetime,
            ),
            (
                r#"{"session_token":"t","expires_in":1e300}"#,
                ErrorKind::AbsurdLifetime,
            ),
            (
                r#"{"session_token":"t","expires_in":864000}"#,
                ErrorKind::AbsurdLifetime,
            ),
            (
                r#"{"session_token":"t","expires_in":0.001}"#,
                ErrorKind::ShortLifetime,
            ),
            (
                r#"{"session_token":"t","expires_at":1800000000.5}"#,
                ErrorKind::ShortLifetime,
            ),
            (
                r#"{"session_token":"t","expires_in":"soon"}"#,
                ErrorKind::InvalidExpiry,
            ),
            (
                r#"{"session_token":"t","expires_at":"yesterday"}"#,
                ErrorKind::InvalidExpiry,
            ),
            (
                r#"{"session_token":"t","expires_at":1000}"#,
                ErrorKind::NonPositiveLifetime,
            ),
        ] {
            assert_eq!(kind(body), expected, "{body}");
        }
    }

    #[test]
    fn refresh_tokens_are_kept_with_user_tokens_only() {
        let body = r#"{"session_token":"t","refresh_token":"r"}"#;
        let token = parse(body).unwrap();
        assert_eq!(token.refresh_token().map(TokenSecret::expose), Some("r"));
        let partner = parse_as(Issued::PartnerToken, body).unwrap();
        assert!(partner.refresh_token().is_none());
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = at(1_800_000_000);
        let max = Duration::from_secs(3600);
        assert_eq!(retry_after("120", now, max), Some(Duration::from_secs(120)));
        let date = httpdate::fmt_http_date(now + Duration::from_secs(90));
        assert_eq!(retry_after(&date, now, max), Some(Duration::from_secs(90)));
        assert_eq!(retry_after("999999", now, max), Some(max));
        assert_eq!(retry_after("soon", now, max), None);
    }

    #[test]
    fn server_messages_are_scrubbed_then_truncated() {
        let body = br#"{"message":"key sk_live_123 is not valid"}"#;
        assert_eq!(
            server_message(body, &["sk_live_123"]).as_deref(),
            Some("key [redacted] is not valid")
        );
        let long = format!("{}sk_live_123", "x".repeat(190));
        let message = server_message(long.as_bytes(), &["sk_live_123"]).unwrap();
        assert!(!message.contains("sk_live"), "{message}");
        assert_eq!(message.chars().count(), 200);
        assert_eq!(server_message(b"  ", &[]), None);
    }

    #[test]
    fn a_secret_echoed_in_escaped_json_is_scrubbed_too() {
        let secret = r#"sk"live\12/34"#;
        for echo in [
            r#"{"api_key":"sk\"live\\12/34","partner_id":"acme"}"#,
            r#"{"api_key":"sk\"live\\12\/34","partner_id":"acme"}"#,
            r#"{"api_key":"sk\u0022live\u005c12\u002f34","partner_id":"acme"}"#,
        ] {
            let message = server_message(echo.as_bytes(), &[secret]).unwrap();
            assert!(!message.contains("live"), "{message}");
            assert!(message.contains("[redacted]"), "{message}");
            assert!(message.contains("acme"), "{message}");
        }
    }
}
