//! What an operator does to a store, beyond what the manager needs: list its keys, seal its
//! entries again under the current key, remove token material past use, check its setup. The
//! `kigo` tool works through this trait, on any store that implements it.

use std::fmt;

use async_trait::async_trait;
use serde::Serialize;

use super::{Entry, StoreError, TokenStore};
use crate::TokenKey;
use crate::codec::CorruptEntry;
use crate::time::{millis_of, unix_ms};

/// What [`StoreAdmin::reseal`] did to one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Resealed {
    /// Sealed again under the current key.
    Done,
    /// Already sealed under the current key (or the store writes plaintext): left as it is.
    Current,
    /// No token stored (absent or expired).
    Absent,
    /// It changed while being resealed (a replica committed): left to the replica, which seals
    /// with its current key.
    Changed,
    /// It does not open with this keyring (or is corrupt): left as it is.
    Unreadable(CorruptEntry),
}

/// A store's setup as [`StoreAdmin::check`] finds it. Every field is something an operator can
/// act on; none holds a secret.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct StoreCheck {
    /// What kind of store, and where (no password): `redis rediss://host:6380 (prefix kigo:)`.
    pub store: String,
    /// Whether the connection is encrypted (TLS), or local (a loopback host, a socket, a file).
    pub transport: String,
    /// The store's clock minus this machine's, in milliseconds, where the store has a clock.
    pub clock_offset_ms: Option<i64>,
    /// The schema version, for a store with migrations; `None` otherwise.
    pub schema: Option<String>,
    /// Every operation the manager needs was tried (on a key of the check's own) and allowed.
    pub permissions_ok: bool,
    /// What was refused, if anything.
    pub permission_problem: Option<String>,
    /// How many stored entries were read, and how many did not open with this keyring.
    pub entries_read: u64,
    /// Entries that did not open: sealed with a key this keyring lacks, plaintext, or corrupt.
    pub entries_unreadable: u64,
    /// Entries sealed with an older key of the keyring (`kigo store rotate-key` reseals them).
    pub entries_under_older_keys: u64,
}

/// A page of a store's keys, in a stable order, for operations that walk them all and may be
/// resumed: pass the last key of a page as `after` for the next.
pub type KeyPage = Vec<TokenKey>;

/// What an operator does to a store. Implemented by the workspace's stores; a custom store may.
///
/// # Behavior
/// - [`StoreAdmin::keys`] lists every key with state in the store, ordered by
///   [`TokenKey::storage_id`], at most `limit` after `after`.
/// - [`StoreAdmin::reseal`] writes the entry back sealed under the current key only if it is
///   unchanged since it was read (same bytes, same generation): never a lost commit.
/// - [`StoreAdmin::purge_expired`] removes token material that can no longer be used and keeps
///   what fences need.
#[async_trait]
pub trait StoreAdmin: TokenStore {
    /// Up to `limit` keys after `after` (from the start if `None`).
    async fn keys(&self, after: Option<&TokenKey>, limit: usize) -> Result<KeyPage, StoreError>;

    /// Seals the entry of `key` again under the keyring's current key.
    async fn reseal(&self, key: &TokenKey) -> Result<Resealed, StoreError>;

    /// Removes token material past use; how many entries it cleared.
    async fn purge_expired(&self) -> Result<u64, StoreError>;

    /// Applies the store's migrations, if it has any.
    async fn migrate(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Checks the store's setup: connectivity, transport, clock, schema, permissions, and whether
    /// the keyring opens the stored entries.
    async fn check(&self) -> Result<StoreCheck, StoreError>;
}

impl fmt::Display for Resealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Done => f.write_str("resealed"),
            Self::Current => f.write_str("already current"),
            Self::Absent => f.write_str("absent"),
            Self::Changed => f.write_str("changed meanwhile"),
            Self::Unreadable(why) => write!(f, "unreadable: {why}"),
        }
    }
}

/// One key as the store sees it: for status pages and the `kigo` tool. Never the token.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct StoreKeyStatus {
    /// `absent`, `present`, or `corrupt: <why>`.
    pub entry: String,
    /// The fingerprint of the stored token.
    pub fingerprint: Option<String>,
    /// The generation of the stored token.
    pub generation: Option<u64>,
    /// When the stored token expires, in milliseconds since the Unix epoch.
    pub expires_at_ms: Option<u64>,
    /// The shared cool-down left, in milliseconds.
    pub cooldown_ms: Option<u64>,
    /// Who holds the refresh lease, if the store can tell (see `TokenStore::lease_holder`).
    pub lease_holder: Option<String>,
    /// The time left on that lease, in milliseconds.
    pub lease_remaining_ms: Option<u64>,
}

/// `key` as `store` holds it: the stored token's fingerprint, generation and expiry, the
/// cool-down, and the lease holder where the store can tell. Two store round trips.
pub async fn inspect(store: &dyn TokenStore, key: &TokenKey) -> Result<StoreKeyStatus, StoreError> {
    let snapshot = store.load(key).await?;
    let lease = store.lease_holder(key).await?;
    let (entry, token) = match &snapshot.entry {
        Entry::Absent => ("absent".to_owned(), None),
        Entry::Present(token) => ("present".to_owned(), Some(token)),
        Entry::Corrupt(corrupt) => (format!("corrupt: {corrupt}"), None),
    };
    Ok(StoreKeyStatus {
        entry,
        fingerprint: token.map(|token| token.fingerprint().to_string()),
        generation: token.map(crate::Token::generation),
        expires_at_ms: token.map(|token| unix_ms(token.expires_at())),
        cooldown_ms: snapshot.cooldown.map(millis_of),
        lease_holder: lease.as_ref().map(|(holder, _)| holder.to_string()),
        lease_remaining_ms: lease.and_then(|(_, left)| left.map(millis_of)),
    })
}
