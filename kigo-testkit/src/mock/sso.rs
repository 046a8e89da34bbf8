//! SSO sessions for Kigo-hosted pages: created with a partner-level bearer for one user (and
//! program), opened by the hosted page with `?session-id=`; a single-use one opens once.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode};
use kigo_core::{PartnerId, UserId};
use serde_json::{Map, Value, json};

use super::Shared;
use super::handlers::{Body, error, json_response, partner_bearer, unauthorized, with_expiry};

/// What the mock noted about one SSO session it created (test data: it holds the email).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SsoSessionSeen {
    /// The partner whose token asked for it.
    pub partner: PartnerId,
    /// `external_program_id`, if given.
    pub program: Option<String>,
    /// `external_user_id`.
    pub user: UserId,
    /// `single_use`: it opens the hosted page once.
    pub single_use: bool,
    /// `email`, if given.
    pub email: Option<String>,
    /// `attributes`, if given (else `null`).
    pub attributes: Value,
}

impl SsoSessionSeen {
    /// The key the mock counts its creations under (see [`super::Counters::sso_sessions`]).
    pub fn counter_key(&self) -> String {
        counter_key(&self.partner, self.program.as_deref(), &self.user)
    }
}

/// The key of an SSO session's creations in [`super::Counters::sso_sessions`]: the JSON array
/// `[partner, program or null, user]`.
pub(super) fn counter_key(partner: &PartnerId, program: Option<&str>, user: &UserId) -> String {
    json!([partner.as_str(), program, user.as_str()]).to_string()
}

/// A session the mock created, until it expires (or, single-use, is opened).
#[derive(Debug)]
struct Granted {
    seen: SsoSessionSeen,
    expires_at: SystemTime,
}

/// The SSO sessions the mock created.
#[derive(Debug, Default)]
pub(super) struct SsoLedger {
    sessions: HashMap<String, Granted>,
    seen: Vec<SsoSessionSeen>,
}

impl SsoLedger {
    pub(super) fn grant(
        &mut self,
        id: String,
        seen: SsoSessionSeen,
        now: SystemTime,
        expires_at: SystemTime,
    ) {
        self.sessions.retain(|_, granted| granted.expires_at > now);
        self.seen.push(seen.clone());
        self.sessions.insert(id, Granted { seen, expires_at });
    }

    /// The session `id` as the hosted page opens it at `now`: a single-use one is used up.
    pub(super) fn open(
        &mut self,
        id: &str,
        now: SystemTime,
    ) -> Result<SsoSessionSeen, &'static str> {
        let granted = self.sessions.get(id).ok_or("unknown or used SSO session")?;
        if now >= granted.expires_at {
            return Err("expired SSO session");
        }
        let seen = granted.seen.clone();
        if seen.single_use {
            self.sessions.remove(id);
        }
        Ok(seen)
    }

    pub(super) fn seen(&self) -> Vec<SsoSessionSeen> {
        self.seen.clone()
    }

    /// Sessions not yet known to be expired or used.
    pub(super) fn len(&self) -> usize {
        self.sessions.len()
    }
}

/// `POST` [`super::SSO_SESSION_PATH`]: a session for the user of the JSON body, with a
/// partner-level bearer.
pub(super) fn create(
    shared: &Shared,
    headers: &HeaderMap,
    body: &Bytes,
    expires_early: Option<Duration>,
) -> Response<Body> {
    let refusal = "a user-level token cannot create SSO sessions";
    let partner = match partner_bearer(shared, headers, refusal) {
        Ok(partner) => partner,
        Err(refusal) => return *refusal,
    };
    let Some(seen) = read_request(partner, body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "a valid external_user_id is required; external_program_id and email are strings, \
             single_use a boolean, attributes an object",
        );
    };
    let now = shared.clock.now();
    let lifetime = shared.lifetimes.sso;
    let id = shared.minter.mint("kigo_sso");
    let mut answer = json!({ "session_id": id });
    with_expiry(shared, &mut answer, now, lifetime);
    shared
        .ledger()
        .grant_sso(id, seen, now, now + expires_early.unwrap_or(lifetime));
    json_response(StatusCode::OK, &answer)
}

/// The request's fields, or `None` if one is missing or of the wrong type.
fn read_request(partner: PartnerId, body: &Bytes) -> Option<SsoSessionSeen> {
    let fields: Map<String, Value> = serde_json::from_slice(body).ok()?;
    let text = |name: &str| match fields.get(name) {
        None | Some(Value::Null) => Some(None),
        Some(Value::String(text)) => Some(Some(text.clone())),
        Some(_) => None,
    };
    let user = UserId::new(text("external_user_id")??).ok()?;
    let single_use = match fields.get("single_use") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(single_use)) => *single_use,
        Some(_) => return None,
    };
    let attributes = match fields.get("attributes") {
        None => Value::Null,
        Some(attributes @ (Value::Null | Value::Object(_))) => attributes.clone(),
        Some(_) => return None,
    };
    Some(SsoSessionSeen {
        partner,
        program: text("external_program_id")?,
        user,
        single_use,
        email: text("email")?,
        attributes,
    })
}

/// `GET` [`super::SSO_PAGE_PATH`]`?session-id=<id>`: the Kigo-hosted page, opened for the
/// session's user; `401` for an unknown, expired or used session.
pub(super) fn open_page(shared: &Shared, query: Option<&str>) -> Response<Body> {
    let id = query
        .unwrap_or_default()
        .split('&')
        .find_map(|pair| pair.strip_prefix("session-id="));
    let Some(id) = id else {
        return error(StatusCode::BAD_REQUEST, "session-id is required");
    };
    let opened = shared.ledger().open_sso(id, shared.clock.now());
    match opened {
        Ok(seen) => json_response(
            StatusCode::OK,
            &json!({
                "partner": seen.partner.as_str(),
                "program": seen.program,
                "user": seen.user.as_str(),
            }),
        ),
        Err(message) => unauthorized(shared, message),
    }
}
