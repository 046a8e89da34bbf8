//! The mock's answers: routing, faults first, then the normal behaviour of each endpoint.

use std::convert::Infallible;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::stream;
use http::header::{
    AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, DATE, HeaderName, HeaderValue, LOCATION,
    RETRY_AFTER, USER_AGENT,
};
use http::request::Parts;
use http::{HeaderMap, Method, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use kigo_core::{PartnerId, TokenKey, UserId};
use serde_json::{Value, json};

use super::fault::{Endpoint, Fault, FaultScript, RetryAfter};
use super::server::Connection;
use super::state::{Refusal, SeenRequest};
use super::{
    ExpiryShape, PARTNER_SESSION_PATH, PROTECTED_PATH, SSO_PAGE_PATH, SSO_SESSION_PATH, Shared,
    USER_REFRESH_PATH, USER_SESSION_PATH, sso,
};

pub(super) type Body = BoxBody<Bytes, Infallible>;

/// The largest request body the mock reads.
const MAX_REQUEST_BODY: usize = 1024 * 1024;

pub(super) async fn handle(
    shared: &Shared,
    request: hyper::Request<Incoming>,
    connection: &Connection,
) -> Response<Body> {
    let mut response = route(shared, request, connection).await;
    if let Ok(date) = HeaderValue::from_str(&httpdate::fmt_http_date(shared.clock.now())) {
        response.headers_mut().insert(DATE, date);
    }
    response
}

async fn route(
    shared: &Shared,
    request: hyper::Request<Incoming>,
    connection: &Connection,
) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let body = match Limited::new(body, MAX_REQUEST_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return error(StatusCode::PAYLOAD_TOO_LARGE, "request body too large"),
    };
    let endpoint = match (&parts.method, parts.uri.path()) {
        (&Method::POST, PARTNER_SESSION_PATH) => Endpoint::PartnerSession,
        (&Method::POST, USER_SESSION_PATH) => Endpoint::UserSession,
        (&Method::POST, USER_REFRESH_PATH) => Endpoint::UserRefresh,
        (&Method::POST, SSO_SESSION_PATH) => Endpoint::SsoSession,
        (&Method::GET, SSO_PAGE_PATH) => Endpoint::SsoPage,
        (_, PROTECTED_PATH) => Endpoint::Protected,
        (method, path) if path.starts_with("/_mock/") => return admin(shared, method, path, &body),
        _ => return error(StatusCode::NOT_FOUND, "no such endpoint"),
    };
    shared.ledger().request(SeenRequest {
        endpoint,
        user_agent: header_text(&parts.headers, USER_AGENT),
        authorization: parts.headers.contains_key(AUTHORIZATION),
        header_names: parts.headers.keys().map(ToString::to_string).collect(),
    });
    let fault = shared.faults().next(endpoint);
    let mut expires_early = None;
    match fault {
        None => {}
        Some(Fault::Latency(delay)) => tokio::time::sleep(delay).await,
        Some(Fault::ExpiresEarly(actual)) => expires_early = Some(actual),
        Some(Fault::Hang) => return std::future::pending().await,
        Some(Fault::Reset) => {
            connection.reset();
            return std::future::pending().await;
        }
        Some(other) => return injected(shared, other),
    }
    match endpoint {
        Endpoint::PartnerSession => partner_session(shared, &parts, &body, expires_early),
        Endpoint::UserSession => user_session(shared, &parts.headers, &body, expires_early),
        Endpoint::UserRefresh => user_refresh(shared, &body, expires_early),
        Endpoint::SsoSession => sso::create(shared, &parts.headers, &body, expires_early),
        Endpoint::SsoPage => sso::open_page(shared, parts.uri.query()),
        Endpoint::Protected => protected(shared, &parts.headers, &body),
    }
}

fn header_text(headers: &HeaderMap, name: HeaderName) -> Option<String> {
    Some(headers.get(name)?.to_str().ok()?.to_owned())
}

fn partner_session(
    shared: &Shared,
    parts: &Parts,
    body: &Bytes,
    expires_early: Option<Duration>,
) -> Response<Body> {
    let fields = serde_json::from_slice::<Value>(body).unwrap_or(Value::Null);
    let credential = |field: &str, header: &str| {
        fields
            .get(field)
            .and_then(Value::as_str)
            .or_else(|| parts.headers.get(header)?.to_str().ok())
            .map(str::to_owned)
    };
    let (Some(api_key), Some(partner_id)) = (
        credential("api_key", "x-api-key"),
        credential("partner_id", "x-partner-id"),
    ) else {
        return error(
            StatusCode::BAD_REQUEST,
            "api_key and partner_id are required",
        );
    };
    let partner = PartnerId::new(partner_id)
        .ok()
        .filter(|partner| shared.partners.get(partner) == Some(&api_key));
    match partner {
        Some(partner) => issue(shared, TokenKey::partner(partner), expires_early, false),
        None => unauthorized(shared, "invalid API key or partner ID"),
    }
}

fn user_session(
    shared: &Shared,
    headers: &HeaderMap,
    body: &Bytes,
    expires_early: Option<Duration>,
) -> Response<Body> {
    let partner = match partner_bearer(
        shared,
        headers,
        "a user-level token cannot create user tokens",
    ) {
        Ok(partner) => partner,
        Err(refusal) => return *refusal,
    };
    let user = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|fields| fields.get("external_user_id")?.as_str().map(UserId::new));
    match user {
        Some(Ok(user)) => issue(
            shared,
            TokenKey::user(partner, user),
            expires_early,
            shared.refresh_tokens,
        ),
        _ => error(
            StatusCode::BAD_REQUEST,
            "a valid external_user_id is required",
        ),
    }
}

fn user_refresh(shared: &Shared, body: &Bytes, expires_early: Option<Duration>) -> Response<Body> {
    let refresh = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|fields| fields.get("refresh_token")?.as_str().map(str::to_owned));
    let Some(refresh) = refresh else {
        return error(StatusCode::BAD_REQUEST, "refresh_token is required");
    };
    let key = shared.ledger().redeem_refresh(&refresh, shared.clock.now());
    match key {
        Some(key) => issue(shared, key, expires_early, true),
        None => unauthorized(shared, "invalid refresh token"),
    }
}

fn protected(shared: &Shared, headers: &HeaderMap, body: &Bytes) -> Response<Body> {
    match bearer_key(shared, headers) {
        Ok(key) => {
            shared.ledger().served();
            json_response(
                StatusCode::OK,
                &json!({"key": key.storage_id(), "received_bytes": body.len()}),
            )
        }
        Err(message) => unauthorized(shared, message),
    }
}

/// The partner whose valid partner-level token is the bearer; else the answer: `401` for no
/// valid token, `403` with `refusal` for a user-level one.
pub(super) fn partner_bearer(
    shared: &Shared,
    headers: &HeaderMap,
    refusal: &str,
) -> Result<PartnerId, Box<Response<Body>>> {
    match bearer_key(shared, headers) {
        Ok(TokenKey::Partner(partner)) => Ok(partner),
        Ok(TokenKey::User { .. }) => Err(Box::new(error(StatusCode::FORBIDDEN, refusal))),
        Err(message) => Err(Box::new(unauthorized(shared, message))),
    }
}

/// The key of the valid session token in the `Authorization` header, or why there is none.
pub(super) fn bearer_key(shared: &Shared, headers: &HeaderMap) -> Result<TokenKey, &'static str> {
    let token = headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .ok_or("a bearer session token is required")?;
    let checked = shared.ledger().check(token, shared.clock.now());
    checked.map_err(|refusal| match refusal {
        Refusal::Unknown => "unknown or revoked session token",
        Refusal::Expired => "expired session token",
    })
}

/// Creates a token for `key` and answers with it in the configured shape.
fn issue(
    shared: &Shared,
    key: TokenKey,
    expires_early: Option<Duration>,
    with_refresh: bool,
) -> Response<Body> {
    let now = shared.clock.now();
    let (prefix, lifetime) = match key {
        TokenKey::Partner(_) => ("kigo_partner", shared.lifetimes.partner),
        TokenKey::User { .. } => ("kigo_user", shared.lifetimes.user),
    };
    let secret = shared.minter.mint(prefix);
    let mut answer = json!({ "session_token": secret });
    with_expiry(shared, &mut answer, now, lifetime);
    let mut ledger = shared.ledger();
    if with_refresh {
        let refresh = shared.minter.mint("kigo_refresh");
        answer["refresh_token"] = json!(refresh);
        ledger.issue_refresh(refresh, key.clone(), now + shared.lifetimes.refresh);
    }
    ledger.issue(secret, key, now, now + expires_early.unwrap_or(lifetime));
    json_response(StatusCode::OK, &answer)
}

/// Adds the expiry of something issued at `now` for `lifetime` to `answer`, in the configured
/// shape.
pub(super) fn with_expiry(
    shared: &Shared,
    answer: &mut Value,
    now: SystemTime,
    lifetime: Duration,
) {
    match shared.shape() {
        ExpiryShape::ExpiresIn => answer["expires_in"] = seconds(lifetime),
        ExpiryShape::ExpiresAtRfc3339 => answer["expires_at"] = json!(rfc3339(now + lifetime)),
        ExpiryShape::ExpiresAtEpoch => answer["expires_at"] = seconds(epoch(now + lifetime)),
        ExpiryShape::Omitted => {}
    }
}

/// Whole seconds as an integer, anything finer as a float.
fn seconds(duration: Duration) -> Value {
    if duration.subsec_nanos() == 0 {
        json!(duration.as_secs())
    } else {
        json!(duration.as_secs_f64())
    }
}

fn epoch(at: SystemTime) -> Duration {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
}

fn rfc3339(at: SystemTime) -> String {
    time::OffsetDateTime::from(at)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// The answer of a fault that replaces the endpoint's behaviour.
fn injected(shared: &Shared, fault: Fault) -> Response<Body> {
    match fault {
        Fault::Status(status) => error(status_code(status), "injected failure"),
        Fault::StatusWithBody { status, body } => raw(status_code(status), body),
        Fault::TooManyRequests(retry_after) => {
            let mut response = error(StatusCode::TOO_MANY_REQUESTS, "slow down");
            let value = retry_after.map(|retry_after| match retry_after {
                RetryAfter::Seconds(seconds) => seconds.to_string(),
                RetryAfter::DateIn(delay) => httpdate::fmt_http_date(shared.clock.now() + delay),
            });
            if let Some(value) = value.and_then(|value| HeaderValue::from_str(&value).ok()) {
                response.headers_mut().insert(RETRY_AFTER, value);
            }
            response
        }
        Fault::MalformedJson => raw(StatusCode::OK, r#"{"session_token": "kigo_partner_"#),
        Fault::HugeBody(size) => huge(size),
        Fault::LongContentLength(length) => announced_only(length),
        Fault::Redirect { status, location } => {
            let mut response = error(status_code(status), "moved");
            if let Ok(location) = HeaderValue::from_str(&location) {
                response.headers_mut().insert(LOCATION, location);
            }
            response
        }
        Fault::RawBody(body) => raw(StatusCode::OK, body),
        Fault::Latency(_) | Fault::Hang | Fault::Reset | Fault::ExpiresEarly(_) => {
            error(StatusCode::INTERNAL_SERVER_ERROR, "fault handled elsewhere")
        }
    }
}

/// A `200` whose chunked body of `size` bytes starts like a token answer and never ends one.
fn huge(size: usize) -> Response<Body> {
    const CHUNK: usize = 16 * 1024;
    let chunks = (0..size.div_ceil(CHUNK)).map(move |index| {
        let len = CHUNK.min(size - index * CHUNK);
        Ok::<_, Infallible>(Frame::data(Bytes::from(vec![b'a'; len])))
    });
    let body = StreamBody::new(stream::iter(chunks));
    with_json_type(Response::new(BodyExt::boxed(body)), StatusCode::OK)
}

/// A `200` whose `Content-Length` announces `length` bytes, and whose body never comes.
fn announced_only(length: u64) -> Response<Body> {
    let never = stream::pending::<Result<Frame<Bytes>, Infallible>>();
    let mut response = with_json_type(
        Response::new(BodyExt::boxed(StreamBody::new(never))),
        StatusCode::OK,
    );
    response
        .headers_mut()
        .insert(CONTENT_LENGTH, HeaderValue::from(length));
    response
}

fn admin(shared: &Shared, method: &Method, path: &str, body: &Bytes) -> Response<Body> {
    match (method, path) {
        (&Method::GET, "/_mock/counters") => {
            json_response(StatusCode::OK, &json!(shared.ledger().counters()))
        }
        (&Method::POST, "/_mock/revoke") => {
            let revoked = shared.ledger().revoke_all(shared.clock.now());
            json_response(StatusCode::OK, &json!({ "revoked": revoked }))
        }
        (&Method::POST, "/_mock/faults") => match serde_json::from_slice::<FaultScript>(body) {
            Ok(script) => {
                let mut faults = shared.faults();
                faults.once(script.endpoint, script.once);
                if script.always.is_some() {
                    faults.always(script.endpoint, script.always);
                }
                json_response(StatusCode::OK, &json!({}))
            }
            Err(parse) => error(StatusCode::BAD_REQUEST, &parse.to_string()),
        },
        (&Method::DELETE, "/_mock/faults") => {
            shared.faults().clear();
            json_response(StatusCode::OK, &json!({}))
        }
        _ => error(StatusCode::NOT_FOUND, "no such admin endpoint"),
    }
}

pub(super) fn unauthorized(shared: &Shared, message: &str) -> Response<Body> {
    shared.ledger().unauthorized();
    error(StatusCode::UNAUTHORIZED, message)
}

fn status_code(status: u16) -> StatusCode {
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

pub(super) fn error(status: StatusCode, message: &str) -> Response<Body> {
    json_response(status, &json!({ "message": message }))
}

pub(super) fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    raw(status, value.to_string())
}

fn raw(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    with_json_type(
        Response::new(BodyExt::boxed(Full::new(body.into()))),
        status,
    )
}

fn with_json_type(mut response: Response<Body>, status: StatusCode) -> Response<Body> {
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
