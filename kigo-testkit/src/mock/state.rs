//! What the mock remembers: the tokens it issued and its counters.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use kigo_core::{PartnerId, TokenKey, UserId};
use serde::{Deserialize, Serialize};

use super::fault::Endpoint;
use super::sso::{SsoLedger, SsoSessionSeen, counter_key};

/// What the mock has seen and done so far. Read it with [`super::MockKigo::counters`], or as JSON
/// from `GET /_mock/counters` when the mock runs as a process.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Counters {
    /// Requests received per endpoint, whatever the answer.
    pub requests: BTreeMap<Endpoint, u64>,
    /// Tokens created per key (`TokenKey::storage_id`), by creation or refresh.
    pub creations: BTreeMap<String, u64>,
    /// Protected requests answered with success.
    pub protected_served: u64,
    /// `401 Unauthorized` answers, on any endpoint.
    pub unauthorized: u64,
    /// SSO sessions created per `[partner, program or null, user]` (a JSON array), single-use
    /// ones included.
    #[serde(default)]
    pub sso_sessions: BTreeMap<String, u64>,
}

impl Counters {
    /// Tokens created for `key`.
    pub fn creations_for(&self, key: &TokenKey) -> u64 {
        self.creations
            .get(&key.storage_id())
            .copied()
            .unwrap_or_default()
    }

    /// SSO sessions created for `user` of `partner` in `program`.
    pub fn sso_creations_for(
        &self,
        partner: &PartnerId,
        program: Option<&str>,
        user: &UserId,
    ) -> u64 {
        self.sso_sessions
            .get(&counter_key(partner, program, user))
            .copied()
            .unwrap_or_default()
    }

    /// Tokens created for all keys (SSO sessions not included).
    pub fn total_creations(&self) -> u64 {
        self.creations.values().sum()
    }

    /// Requests received by `endpoint`.
    pub fn requests_to(&self, endpoint: Endpoint) -> u64 {
        self.requests.get(&endpoint).copied().unwrap_or_default()
    }
}

/// What the mock noted about one request to an endpoint (never a secret).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SeenRequest {
    /// Which endpoint.
    pub endpoint: Endpoint,
    /// The `User-Agent` header, if any.
    pub user_agent: Option<String>,
    /// Whether an `Authorization` header came with it.
    pub authorization: bool,
    /// The names of the headers that came with it (their values may be secrets).
    pub header_names: Vec<String>,
}

/// One issued session token.
#[derive(Debug, Clone)]
pub(super) struct Issued {
    pub(super) key: TokenKey,
    pub(super) expires_at: SystemTime,
}

/// The issued tokens, refresh tokens and counters.
#[derive(Default)]
pub(super) struct Ledger {
    tokens: HashMap<String, Issued>,
    /// The key each refresh token belongs to, and when it expires.
    refresh_tokens: HashMap<String, (TokenKey, SystemTime)>,
    counters: Counters,
    seen: Vec<SeenRequest>,
    sso: SsoLedger,
}

/// Counts only: the tokens are secrets.
impl fmt::Debug for Ledger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ledger")
            .field("tokens", &self.tokens.len())
            .field("refresh_tokens", &self.refresh_tokens.len())
            .field("sso_sessions", &self.sso.len())
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

/// Why a bearer token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    Unknown,
    Expired,
}

impl Ledger {
    pub(super) fn request(&mut self, seen: SeenRequest) {
        *self.counters.requests.entry(seen.endpoint).or_default() += 1;
        self.seen.push(seen);
    }

    pub(super) fn seen(&self) -> Vec<SeenRequest> {
        self.seen.clone()
    }

    pub(super) fn unauthorized(&mut self) {
        self.counters.unauthorized += 1;
    }

    pub(super) fn served(&mut self) {
        self.counters.protected_served += 1;
    }

    pub(super) fn counters(&self) -> Counters {
        self.counters.clone()
    }

    /// Records a new token for `key`, issued at `now` and valid until `expires_at`; forgets the
    /// tokens that have expired, so that the ledger holds only live ones.
    pub(super) fn issue(
        &mut self,
        secret: String,
        key: TokenKey,
        now: SystemTime,
        expires_at: SystemTime,
    ) {
        *self.counters.creations.entry(key.storage_id()).or_default() += 1;
        self.tokens.retain(|_, issued| issued.expires_at > now);
        self.tokens.insert(secret, Issued { key, expires_at });
    }

    pub(super) fn issue_refresh(&mut self, secret: String, key: TokenKey, expires_at: SystemTime) {
        self.refresh_tokens.insert(secret, (key, expires_at));
    }

    /// The key a refresh token belongs to, if it is valid at `now`; it is used up (refresh
    /// tokens rotate).
    pub(super) fn redeem_refresh(&mut self, secret: &str, now: SystemTime) -> Option<TokenKey> {
        let (key, expires_at) = self.refresh_tokens.remove(secret)?;
        (now < expires_at).then_some(key)
    }

    /// Records a created SSO session, counted under its key.
    pub(super) fn grant_sso(
        &mut self,
        id: String,
        seen: SsoSessionSeen,
        now: SystemTime,
        expires_at: SystemTime,
    ) {
        let key = seen.counter_key();
        *self.counters.sso_sessions.entry(key).or_default() += 1;
        self.sso.grant(id, seen, now, expires_at);
    }

    /// The SSO session `id`, as the hosted page opens it at `now`.
    pub(super) fn open_sso(
        &mut self,
        id: &str,
        now: SystemTime,
    ) -> Result<SsoSessionSeen, &'static str> {
        self.sso.open(id, now)
    }

    pub(super) fn sso_seen(&self) -> Vec<SsoSessionSeen> {
        self.sso.seen()
    }

    /// The key of a session token that is valid at `now`.
    pub(super) fn check(&self, secret: &str, now: SystemTime) -> Result<TokenKey, Refusal> {
        let issued = self.tokens.get(secret).ok_or(Refusal::Unknown)?;
        if now >= issued.expires_at {
            return Err(Refusal::Expired);
        }
        Ok(issued.key.clone())
    }

    /// Revokes every session token issued so far (refresh tokens stay valid); returns how many
    /// of them were still valid at `now`.
    pub(super) fn revoke_all(&mut self, now: SystemTime) -> usize {
        let live = self
            .tokens
            .values()
            .filter(|issued| issued.expires_at > now)
            .count();
        self.tokens.clear();
        live
    }
}

/// A source of unguessable token strings.
#[derive(Debug, Default)]
pub(super) struct Minter {
    next: AtomicU64,
}

impl Minter {
    pub(super) fn mint(&self, prefix: &str) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        format!(
            "{prefix}_{n}_{:016x}{:016x}",
            fastrand::u64(..),
            fastrand::u64(..)
        )
    }
}
