//! What a manager can tell an operator: a status per key and per manager, and a health answer an
//! endpoint returns as is. Serialisable; never a token (fingerprints only), users by their
//! logged form (a keyed hash unless the operator opted in).

use serde::Serialize;

use super::slot::KeySlot;
use super::{Inner, TokenHandle, TokenManager};
use crate::store::StoreKeyStatus;
use crate::time::{unix_ms, unix_nanos};
use crate::{Error, TokenKey};

/// Where a cached token came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TokenOrigin {
    /// This replica created it and committed it to the store.
    CreatedHere,
    /// Another replica created it; this one read it from the store.
    ReadFromStore,
    /// This replica created it while the store could not take it (the store-failure policy).
    CreatedWithoutStore,
}

/// The cached token of a key, without the token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct TokenStatus {
    /// Its fingerprint (a truncated SHA-256, as in logs).
    pub fingerprint: String,
    /// When the request that created it was sent, in milliseconds since the Unix epoch.
    pub issued_at_ms: u64,
    /// When it expires.
    pub expires_at_ms: u64,
    /// When this replica renews it.
    pub refresh_at_ms: u64,
    /// Until when this replica hands it out.
    pub usable_until_ms: u64,
    /// The generation it was committed under (0 if never committed).
    pub generation: u64,
    /// Where it came from.
    pub origin: TokenOrigin,
    /// Whether it can be handed out now.
    pub usable: bool,
}

/// One key as this replica sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct KeyStatus {
    /// The key as logs show it (`partner acme`, `user #3f9a1c2b of partner acme`).
    pub key: String,
    /// `partner` or `user`.
    pub level: &'static str,
    /// The cached token, if any.
    pub token: Option<TokenStatus>,
    /// When the last refresh ended, in milliseconds since the Unix epoch.
    pub last_refresh_ms: Option<u64>,
    /// How it ended: `ok`, or the class of its error (see [`Error`]'s variants).
    pub last_refresh_outcome: Option<&'static str>,
    /// Failed calls to the token endpoint since the last success.
    pub consecutive_failures: u32,
    /// No call to the token endpoint before this (backoff, `Retry-After`, a shared cool-down).
    pub paused_until_ms: Option<u64>,
    /// Whether the store answered the last time this key used it.
    pub store_reachable: bool,
    /// The store's last error, while it fails (no secret: stores keep passwords out of errors).
    pub store_error: Option<String>,
    /// No usable token, or the store failing.
    pub degraded: bool,
}

/// A manager as a whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ManagerStatus {
    /// This replica's name (in lease holder IDs and logs).
    pub replica: String,
    /// The keys it serves.
    pub scope: String,
    /// Its partner-level keys (user-level keys are many: ask for one with `TokenHandle::status`).
    pub partner_keys: Vec<KeyStatus>,
    /// How many user-level keys it holds.
    pub user_keys: usize,
    /// Whether any partner-level key is degraded.
    pub degraded: bool,
    /// Whether it was shut down.
    pub shut_down: bool,
}

/// What a health endpoint returns: live while the manager runs, ready while every partner-level
/// key it serves has a token to hand out and the store is not misconfigured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Health {
    /// The manager runs (not shut down).
    pub live: bool,
    /// It can hand out its partner-level tokens now.
    pub ready: bool,
    /// Why it is not ready, a line per key.
    pub reasons: Vec<String>,
}

impl TokenManager {
    /// This manager's status: its partner-level keys, how many user-level keys it holds, and
    /// whether it is degraded.
    pub fn status(&self) -> ManagerStatus {
        let partner_keys: Vec<_> = self
            .inner
            .registry
            .partner_slots()
            .iter()
            .map(|slot| self.inner.key_status(slot))
            .collect();
        ManagerStatus {
            replica: self.inner.replica.clone(),
            scope: self.inner.scope.to_string(),
            degraded: partner_keys.iter().any(|key| key.degraded),
            partner_keys,
            user_keys: self.user_keys(),
            shut_down: self.inner.lifecycle.is_stopped(),
        }
    }

    /// Live and ready, for a health endpoint.
    pub fn health(&self) -> Health {
        let status = self.status();
        let reasons: Vec<String> = status
            .partner_keys
            .iter()
            .filter(|key| key.degraded)
            .map(|key| match (&key.store_error, key.last_refresh_outcome) {
                (Some(error), _) => format!("{}: store: {error}", key.key),
                (None, Some(outcome)) => format!("{}: no usable token ({outcome})", key.key),
                (None, None) => format!("{}: no usable token", key.key),
            })
            .collect();
        Health {
            live: !status.shut_down,
            ready: !status.shut_down && reasons.is_empty(),
            reasons,
        }
    }

    /// `key` as the store sees it: the stored token's fingerprint and generation, the cool-down,
    /// and the lease holder where the store can tell. A store round trip; a key outside the
    /// scope is refused.
    pub async fn inspect(&self, key: &TokenKey) -> Result<StoreKeyStatus, Error> {
        let slot = self.inner.slot(key)?;
        crate::store::inspect(self.inner.store.as_ref(), &slot.key)
            .await
            .map_err(|source| Error::StoreUnavailable {
                key: key.clone(),
                retry_after: None,
                source,
            })
    }
}

impl TokenHandle {
    /// This key as this replica sees it (no store round trip).
    pub fn status(&self) -> KeyStatus {
        self.inner.key_status(&self.slot)
    }
}

impl Inner {
    fn key_status(&self, slot: &KeySlot) -> KeyStatus {
        let now = self.now();
        let current = slot.current();
        let token = current.present.then(|| TokenStatus {
            fingerprint: current.token.fingerprint().to_string(),
            issued_at_ms: unix_ms(current.token.issued_at()),
            expires_at_ms: unix_ms(current.token.expires_at()),
            refresh_at_ms: unix_ms(current.refresh_at),
            usable_until_ms: unix_ms(current.usable_until()),
            generation: current.token.generation(),
            origin: current.origin,
            usable: current.usable_at(unix_nanos(now)),
        });
        let failures = slot.failures();
        let store_error = failures.store_error.as_ref().map(ToString::to_string);
        let paused_until = [failures.endpoint_retry_at, failures.store_retry_at]
            .into_iter()
            .flatten()
            .filter(|at| *at > now)
            .max();
        let usable = token.as_ref().is_some_and(|token| token.usable);
        KeyStatus {
            key: self.config.user_ids.show(&slot.key).to_string(),
            level: match slot.key {
                TokenKey::Partner(_) => "partner",
                TokenKey::User { .. } => "user",
            },
            token,
            last_refresh_ms: slot.last_refresh().map(|(at, _)| at),
            last_refresh_outcome: slot
                .last_refresh()
                .and_then(|(_, outcome)| OUTCOMES.get(usize::from(outcome)).copied()),
            consecutive_failures: failures.endpoint,
            paused_until_ms: paused_until.map(unix_ms),
            store_reachable: failures.store == 0,
            degraded: !usable || failures.store > 0,
            store_error,
        }
    }
}

/// How a refresh can end, as status pages say it: `ok`, or an error's class.
pub(super) const OUTCOMES: [&str; 8] = [
    "ok",
    "endpoint_permanent",
    "endpoint_unavailable",
    "store_unavailable",
    "store_misconfigured",
    "wait_timed_out",
    "foreign_key",
    "shut_down",
];

/// The index in [`OUTCOMES`] of a refresh that ended with `error` (or none).
pub(super) fn outcome_index(error: Option<&Error>) -> u8 {
    let class = error.map_or("ok", Error::class);
    let index = OUTCOMES.iter().position(|outcome| *outcome == class);
    index
        .and_then(|index| u8::try_from(index).ok())
        .unwrap_or(0)
}
