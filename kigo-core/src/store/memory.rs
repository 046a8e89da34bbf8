//! The in-process store: shares one token among the managers of one process.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use futures_channel::mpsc;

use super::{
    ChangeFeed, ChangeNotice, CommitOutcome, Entry, HolderId, InvalidateOutcome, KeyPage, Lease,
    LeaseAttempt, Resealed, Snapshot, StoreAdmin, StoreCheck, StoreError, TokenStore,
};
use crate::codec::EntryCodec;
use crate::runtime::{SystemClock, TimeSource};
use crate::{Fingerprint, Token, TokenKey};

/// How many undelivered notices a subscriber may fall behind before notices are dropped (the
/// manager polls as a fallback).
const FEED_CAPACITY: usize = 64;

/// A [`TokenStore`] in this process's memory.
///
/// Clones are handles on the same store, so several managers in one process share one token
/// through it. It does not share anything across processes: for a fleet, use the Redis or SQL
/// store. Entries go through the same [`EntryCodec`] as the shared stores do (plaintext by
/// default: sealing with a key held by the same process protects nothing), so the memory store
/// exercises the same encoding paths in tests.
#[derive(Clone)]
pub struct MemoryStore {
    shared: Arc<Shared>,
    /// Per handle: another replica's handle on the same records may seal with other keys.
    codec: EntryCodec,
}

impl fmt::Debug for MemoryStore {
    /// How many keys it holds, never what: the encoded entries hold the tokens.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("codec", &self.codec)
            .field("keys", &self.state().records.len())
            .finish_non_exhaustive()
    }
}

struct Shared {
    clock: Arc<dyn TimeSource>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    records: HashMap<TokenKey, Record>,
    subscribers: Vec<mpsc::Sender<ChangeNotice>>,
}

#[derive(Default)]
struct Record {
    value: Option<Stored>,
    /// The last fence granted; stored generations never exceed it.
    fence: u64,
    /// The holder of the last lease granted (whose fence is `fence`) and until when it runs.
    lease: Option<(HolderId, SystemTime)>,
    cooldown_until: Option<SystemTime>,
}

struct Stored {
    encoded: Vec<u8>,
    generation: u64,
    fingerprint: Option<Fingerprint>,
    expires_at: Option<SystemTime>,
}

impl MemoryStore {
    /// An empty store on the system clock.
    pub fn new() -> Self {
        Self::with_clock(Arc::new(SystemClock::new()))
    }

    /// An empty store whose leases and cool-downs run on `clock` (a manual clock in tests).
    pub fn with_clock(clock: Arc<dyn TimeSource>) -> Self {
        Self::with_codec(clock, EntryCodec::plaintext())
    }

    /// An empty store on `clock` that encodes entries with `codec`.
    pub fn with_codec(clock: Arc<dyn TimeSource>, codec: EntryCodec) -> Self {
        Self {
            shared: Arc::new(Shared {
                clock,
                state: Mutex::new(State::default()),
            }),
            codec,
        }
    }

    /// A handle on the same records that encodes entries with `codec`: another replica's view,
    /// with its own keys (for tests of key rotation and of misconfigured replicas).
    pub fn handle_with_codec(&self, codec: EntryCodec) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            codec,
        }
    }

    /// Writes `raw` as the stored value of `key`, bypassing the codec: for tests of corrupt
    /// entries.
    #[cfg(feature = "test-util")]
    pub fn write_raw(&self, key: &TokenKey, raw: &[u8]) {
        let mut state = self.state();
        let record = state.records.entry(key.clone()).or_default();
        let generation = record
            .value
            .as_ref()
            .map_or(record.fence, |stored| stored.generation);
        record.value = Some(Stored {
            encoded: raw.to_vec(),
            generation,
            fingerprint: None,
            expires_at: None,
        });
    }

    /// The stored bytes of `key`, read behind the store's back: for tests of moved and replayed
    /// entries.
    #[cfg(feature = "test-util")]
    pub fn read_raw(&self, key: &TokenKey) -> Option<Vec<u8>> {
        let state = self.state();
        let stored = state.records.get(key)?.value.as_ref()?;
        (!stored.encoded.is_empty()).then(|| stored.encoded.clone())
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn now(&self) -> SystemTime {
        self.shared.clock.now()
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl State {
    fn notify(&mut self, key: &TokenKey) {
        self.subscribers.retain_mut(|subscriber| {
            match subscriber.try_send(ChangeNotice { key: key.clone() }) {
                Ok(()) => true,
                Err(error) => error.is_full(),
            }
        });
    }
}

impl Record {
    fn lease_holder(&self, now: SystemTime) -> Option<(&HolderId, SystemTime)> {
        self.lease
            .as_ref()
            .filter(|(_, until)| *until > now)
            .map(|(holder, until)| (holder, *until))
    }

    fn live_value(&self, now: SystemTime) -> Option<&Stored> {
        self.value
            .as_ref()
            .filter(|stored| stored.expires_at.is_none_or(|expiry| expiry > now))
    }

    /// Forgets the bytes of an expired token (its generation stays, for the fence).
    fn drop_expired(&mut self, now: SystemTime) {
        if self.live_value(now).is_none()
            && let Some(stored) = &mut self.value
        {
            stored.forget();
        }
    }
}

impl Stored {
    fn forget(&mut self) {
        self.encoded = Vec::new();
        self.fingerprint = None;
        self.expires_at = Some(SystemTime::UNIX_EPOCH);
    }
}

#[async_trait]
impl TokenStore for MemoryStore {
    async fn load(&self, key: &TokenKey) -> Result<Snapshot, StoreError> {
        let now = self.now();
        let mut state = self.state();
        let Some(record) = state.records.get_mut(key) else {
            return Ok(Snapshot::absent());
        };
        record.drop_expired(now);
        let entry = match record.live_value(now) {
            None => Entry::Absent,
            Some(stored) => match self.codec.decode(key, &stored.encoded, stored.generation) {
                Ok(token) => Entry::Present(token),
                Err(corrupt) => Entry::Corrupt(corrupt),
            },
        };
        let cooldown = record
            .cooldown_until
            .and_then(|until| until.duration_since(now).ok())
            .filter(|left| !left.is_zero());
        Ok(Snapshot { entry, cooldown })
    }

    async fn acquire_lease(
        &self,
        key: &TokenKey,
        holder: &HolderId,
        ttl: Duration,
    ) -> Result<LeaseAttempt, StoreError> {
        let now = self.now();
        let mut state = self.state();
        let record = state.records.entry(key.clone()).or_default();
        if let Some((_, until)) = record.lease_holder(now) {
            return Ok(LeaseAttempt::Held {
                remaining: until.duration_since(now).ok(),
            });
        }
        record.fence += 1;
        record.lease = Some((holder.clone(), crate::time::after(now, ttl)));
        Ok(LeaseAttempt::Acquired(Lease::new(
            key.clone(),
            holder.clone(),
            record.fence,
        )))
    }

    async fn release_lease(&self, lease: &Lease) -> Result<(), StoreError> {
        let mut state = self.state();
        if let Some(record) = state.records.get_mut(lease.key())
            && record.lease.as_ref().map(|(holder, _)| holder) == Some(lease.holder())
            && record.fence == lease.fence()
        {
            record.lease = None;
        }
        Ok(())
    }

    async fn commit(&self, lease: &Lease, token: &Token) -> Result<CommitOutcome, StoreError> {
        let now = self.now();
        let encoded = self.codec.encode(lease.key(), lease.fence(), token);
        let mut state = self.state();
        let Some(record) = state.records.get_mut(lease.key()) else {
            return Ok(CommitOutcome::Rejected);
        };
        // The lease must be the last one granted: its holder, and its fence (a forged, never
        // granted fence would let the next grant's fence fall behind the stored generation).
        let holds = record
            .lease_holder(now)
            .is_some_and(|(holder, _)| holder == lease.holder())
            && lease.fence() == record.fence;
        let stored_generation = record.value.as_ref().map_or(0, |stored| stored.generation);
        if !holds || lease.fence() <= stored_generation {
            return Ok(CommitOutcome::Rejected);
        }
        record.value = Some(Stored {
            encoded,
            generation: lease.fence(),
            fingerprint: Some(token.fingerprint()),
            expires_at: Some(token.expires_at()),
        });
        record.lease = None;
        record.cooldown_until = None;
        state.notify(lease.key());
        Ok(CommitOutcome::Committed)
    }

    async fn invalidate(
        &self,
        key: &TokenKey,
        fingerprint: &Fingerprint,
    ) -> Result<InvalidateOutcome, StoreError> {
        let mut state = self.state();
        let Some(record) = state.records.get_mut(key) else {
            return Ok(InvalidateOutcome::NotCurrent);
        };
        let current = record.value.as_ref().and_then(|stored| stored.fingerprint);
        if current != Some(*fingerprint) {
            return Ok(InvalidateOutcome::NotCurrent);
        }
        // Keep the generation: the next commit must still be newer.
        if let Some(stored) = &mut record.value {
            stored.forget();
        }
        state.notify(key);
        Ok(InvalidateOutcome::Removed)
    }

    async fn set_cooldown(&self, key: &TokenKey, duration: Duration) -> Result<(), StoreError> {
        let until = crate::time::after(self.now(), duration);
        let mut state = self.state();
        let record = state.records.entry(key.clone()).or_default();
        if record.cooldown_until.is_none_or(|current| current < until) {
            record.cooldown_until = Some(until);
        }
        Ok(())
    }

    async fn lease_holder(
        &self,
        key: &TokenKey,
    ) -> Result<Option<(HolderId, Option<Duration>)>, StoreError> {
        let now = self.now();
        let state = self.state();
        let held = state
            .records
            .get(key)
            .and_then(|record| record.lease_holder(now));
        Ok(held.map(|(holder, until)| (holder.clone(), until.duration_since(now).ok())))
    }

    fn changes(&self) -> Option<ChangeFeed> {
        let (sender, receiver) = mpsc::channel(FEED_CAPACITY);
        self.state().subscribers.push(sender);
        Some(Box::pin(receiver))
    }
}

#[async_trait]
impl StoreAdmin for MemoryStore {
    async fn keys(&self, after: Option<&TokenKey>, limit: usize) -> Result<KeyPage, StoreError> {
        let state = self.state();
        let mut keys: Vec<_> = state.records.keys().cloned().collect();
        keys.sort_by_cached_key(TokenKey::storage_id);
        let after = after.map(TokenKey::storage_id);
        Ok(keys
            .into_iter()
            .filter(|key| after.as_ref().is_none_or(|after| key.storage_id() > *after))
            .take(limit)
            .collect())
    }

    async fn reseal(&self, key: &TokenKey) -> Result<Resealed, StoreError> {
        let now = self.now();
        let mut state = self.state();
        let Some(stored) = state
            .records
            .get_mut(key)
            .and_then(|record| record.live_value(now).is_some().then_some(record))
            .and_then(|record| record.value.as_mut())
        else {
            return Ok(Resealed::Absent);
        };
        match self.codec.reseal(key, &stored.encoded, stored.generation) {
            Ok(Some(resealed)) => {
                stored.encoded = resealed;
                Ok(Resealed::Done)
            }
            Ok(None) => Ok(Resealed::Current),
            Err(corrupt) => Ok(Resealed::Unreadable(corrupt)),
        }
    }

    async fn purge_expired(&self) -> Result<u64, StoreError> {
        let now = self.now();
        let mut state = self.state();
        let mut cleared = 0;
        for record in state.records.values_mut() {
            let holds_bytes = record
                .value
                .as_ref()
                .is_some_and(|stored| !stored.encoded.is_empty());
            if holds_bytes && record.live_value(now).is_none() {
                record.drop_expired(now);
                cleared += 1;
            }
        }
        Ok(cleared)
    }

    async fn check(&self) -> Result<StoreCheck, StoreError> {
        let now = self.now();
        let state = self.state();
        let mut check = StoreCheck {
            store: "memory (this process)".to_owned(),
            transport: "local".to_owned(),
            clock_offset_ms: Some(0),
            permissions_ok: true,
            ..StoreCheck::default()
        };
        for (key, record) in &state.records {
            let Some(stored) = record.live_value(now) else {
                continue;
            };
            check.entries_read += 1;
            let opened = self.codec.decode(key, &stored.encoded, stored.generation);
            let resealed = self.codec.reseal(key, &stored.encoded, stored.generation);
            match (opened, resealed) {
                (Err(_), _) | (_, Err(_)) => check.entries_unreadable += 1,
                (Ok(_), Ok(Some(_))) => check.entries_under_older_keys += 1,
                (Ok(_), Ok(None)) => {}
            }
        }
        Ok(check)
    }
}
