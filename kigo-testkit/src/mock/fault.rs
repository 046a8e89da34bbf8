//! What the mock can be told to do wrong, per endpoint: scripted once, or on every request.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The endpoints of the mock Kigo API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    /// Creates a partner-level session token from the API key and partner ID.
    PartnerSession,
    /// Creates a user-level session token, with a partner-level token as bearer.
    UserSession,
    /// Renews a user-level session token with its refresh token.
    UserRefresh,
    /// A sample endpoint that needs a valid session token.
    Protected,
    /// Creates an SSO session for a Kigo-hosted page, with a partner-level token as bearer.
    SsoSession,
    /// The Kigo-hosted page, opened with an SSO session's ID.
    SsoPage,
}

/// The delay a `429` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetryAfter {
    /// `Retry-After: <seconds>`.
    Seconds(u64),
    /// `Retry-After: <HTTP date>`, this long after the mock's clock reads now.
    DateIn(Duration),
}

/// One misbehaviour of an endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// Answer normally, after this much real time.
    Latency(Duration),
    /// Answer with this status (a 5xx, 403, ...) and a small JSON error body.
    Status(u16),
    /// Answer with this status and this body text (for example a 400 with a message).
    StatusWithBody {
        /// The HTTP status.
        status: u16,
        /// The body, sent as `application/json`.
        body: String,
    },
    /// Answer `429 Too Many Requests`, with a `Retry-After` if given.
    TooManyRequests(Option<RetryAfter>),
    /// Never answer (until the mock shuts down).
    Hang,
    /// Reset the connection (TCP RST) instead of answering.
    Reset,
    /// Answer `200` with a body that is not valid JSON.
    MalformedJson,
    /// Answer `200` with a chunked body of this many bytes (no `Content-Length`).
    HugeBody(usize),
    /// Answer `200` announcing a body of this many bytes (`Content-Length`), then send none
    /// (until the mock shuts down): a client that trusts the announced length refuses at once.
    LongContentLength(u64),
    /// Answer with this redirect status (`307`, `308`, ...) to `location`.
    Redirect {
        /// The HTTP status.
        status: u16,
        /// The `Location` header.
        location: String,
    },
    /// Answer `200` with exactly this body (to test response shapes and bad fields).
    RawBody(String),
    /// Create the token as usual and announce the usual lifetime, but let it expire after this.
    ExpiresEarly(Duration),
}

/// The faults waiting for each endpoint.
#[derive(Debug, Default)]
pub(super) struct FaultPlan {
    endpoints: HashMap<Endpoint, Plan>,
}

#[derive(Debug, Default)]
struct Plan {
    once: VecDeque<Fault>,
    always: Option<Fault>,
}

impl FaultPlan {
    pub(super) fn once(&mut self, endpoint: Endpoint, faults: impl IntoIterator<Item = Fault>) {
        self.endpoints
            .entry(endpoint)
            .or_default()
            .once
            .extend(faults);
    }

    pub(super) fn always(&mut self, endpoint: Endpoint, fault: Option<Fault>) {
        self.endpoints.entry(endpoint).or_default().always = fault;
    }

    pub(super) fn clear(&mut self) {
        self.endpoints.clear();
    }

    /// The fault for the next request to `endpoint`: a scripted one first, else the standing one.
    pub(super) fn next(&mut self, endpoint: Endpoint) -> Option<Fault> {
        let plan = self.endpoints.get_mut(&endpoint)?;
        plan.once.pop_front().or_else(|| plan.always.clone())
    }
}

/// A fault script sent to a mock running as a process (`POST /_mock/faults`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultScript {
    /// Which endpoint.
    pub endpoint: Endpoint,
    /// Faults for the next requests, in order.
    #[serde(default)]
    pub once: Vec<Fault>,
    /// A fault for every later request; `None` leaves the standing fault as it is.
    #[serde(default)]
    pub always: Option<Fault>,
}
