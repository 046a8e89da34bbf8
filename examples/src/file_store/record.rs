//! The state of one key as its file holds it, and the `TokenStore` rules as changes to it.
//!
//! Plain data and arithmetic on the store's time, in milliseconds since the Unix epoch: the lock
//! and the file I/O around each change are the parent module's.

use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use kigo_core::codec::{CorruptEntry, EntryCodec};
use kigo_core::store::{
    CommitOutcome, Entry, HolderId, InvalidateOutcome, Lease, LeaseAttempt, Snapshot,
};
use kigo_core::{Fingerprint, Token, TokenKey};
use serde::{Deserialize, Serialize};

/// Everything the store knows about one key: what its file holds, as JSON.
#[derive(Serialize, Deserialize)]
pub(super) struct Record {
    /// The key, for an operator looking at the directory (file names are digests).
    key: String,
    /// The last fence granted. It only grows, also when the token expires or is invalidated, so
    /// generations (the fences of the commits) only grow too.
    fence: u64,
    /// The lease granted with `fence`, until it lapses, is released or commits.
    lease: Option<Holder>,
    /// The current token, until it expires or is invalidated.
    token: Option<Stored>,
    /// When the shared cool-down ends.
    cooldown_until_ms: Option<u64>,
}

/// Who holds the lease, and until when.
#[derive(Serialize, Deserialize)]
struct Holder {
    holder: String,
    until_ms: u64,
}

/// A committed token.
#[derive(Serialize, Deserialize)]
pub(super) struct Stored {
    /// The fence of the commit's lease; the codec binds the seal to it.
    generation: u64,
    /// What [`EntryCodec::encode`] wrote (sealed, unless plaintext was chosen), in base64: the
    /// entry is binary, the file JSON.
    entry: String,
    /// For invalidation without opening the entry; none for an entry planted by a test.
    fingerprint: Option<String>,
    /// When the store drops the token.
    expires_at_ms: u64,
}

impl Stored {
    /// The token this entry holds for `key`; text that is not base64 is a malformed entry.
    fn decoded(&self, codec: &EntryCodec, key: &TokenKey) -> Result<Token, CorruptEntry> {
        let entry = STANDARD
            .decode(&self.entry)
            .map_err(|_| CorruptEntry::Malformed)?;
        codec.decode(key, &entry, self.generation)
    }

    /// `token`, as committed under `lease`.
    pub(super) fn new(codec: &EntryCodec, lease: &Lease, token: &Token) -> Self {
        Self {
            generation: lease.fence(),
            entry: STANDARD.encode(codec.encode(lease.key(), lease.fence(), token)),
            fingerprint: Some(token.fingerprint().to_string()),
            expires_at_ms: millis(token.expires_at()),
        }
    }
}

impl Record {
    /// The record of a key never written.
    pub(super) fn new(key: &TokenKey) -> Self {
        Self {
            key: key.storage_id(),
            fence: 0,
            lease: None,
            token: None,
            cooldown_until_ms: None,
        }
    }

    /// The record in `bytes`; `None` if they are not one (garbage, another program's file).
    pub(super) fn parse(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }

    /// The file's contents.
    pub(super) fn to_bytes(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec_pretty(self)
    }

    fn lease_at(&self, now_ms: u64) -> Option<&Holder> {
        self.lease.as_ref().filter(|lease| lease.until_ms > now_ms)
    }

    fn token_at(&self, now_ms: u64) -> Option<&Stored> {
        self.token
            .as_ref()
            .filter(|token| token.expires_at_ms > now_ms)
    }

    fn cooldown_at(&self, now_ms: u64) -> Option<Duration> {
        self.cooldown_until_ms
            .filter(|until| *until > now_ms)
            .map(|until| Duration::from_millis(until - now_ms))
    }

    /// Drops what has run out (an expired token, a lapsed lease, a finished cool-down), so that
    /// the file keeps no dead secret. The fence stays.
    pub(super) fn forget_past(&mut self, now_ms: u64) {
        if self.token_at(now_ms).is_none() {
            self.token = None;
        }
        if self.lease_at(now_ms).is_none() {
            self.lease = None;
        }
        if self.cooldown_at(now_ms).is_none() {
            self.cooldown_until_ms = None;
        }
    }

    /// What `load` reports: an entry that does not decode is corrupt, never a token.
    pub(super) fn snapshot(&self, key: &TokenKey, codec: &EntryCodec, now_ms: u64) -> Snapshot {
        let entry = match self.token_at(now_ms) {
            None => Entry::Absent,
            Some(stored) => match stored.decoded(codec, key) {
                Ok(token) => Entry::Present(token),
                Err(corrupt) => Entry::Corrupt(corrupt),
            },
        };
        Snapshot {
            entry,
            cooldown: self.cooldown_at(now_ms),
        }
    }

    /// Grants the lease to `holder` for `ttl` unless a lease runs.
    pub(super) fn acquire(
        &mut self,
        key: &TokenKey,
        holder: &HolderId,
        ttl: Duration,
        now_ms: u64,
    ) -> LeaseAttempt {
        if let Some(running) = self.lease_at(now_ms) {
            return LeaseAttempt::Held {
                remaining: Some(Duration::from_millis(running.until_ms - now_ms)),
            };
        }
        // Above every fence granted, and above the stored generation even in a file edited by
        // hand: a fence at or below it could never commit.
        let generation = self.token.as_ref().map_or(0, |token| token.generation);
        self.fence = self.fence.max(generation).saturating_add(1);
        self.lease = Some(Holder {
            holder: holder.as_str().to_owned(),
            until_ms: now_ms.saturating_add(whole_millis(ttl)),
        });
        LeaseAttempt::Acquired(Lease::new(key.clone(), holder.clone(), self.fence))
    }

    /// Whether `lease` is the one last granted (its holder and its fence) and still runs.
    fn holds(&self, lease: &Lease, now_ms: u64) -> bool {
        lease.fence() == self.fence
            && self
                .lease_at(now_ms)
                .is_some_and(|running| running.holder == lease.holder().as_str())
    }

    /// Releases `lease` if it is the running one; any other lease is left alone.
    pub(super) fn release(&mut self, lease: &Lease, now_ms: u64) {
        if self.holds(lease, now_ms) {
            self.lease = None;
        }
    }

    /// Makes `stored` the current token if `lease` holds and is newer than the stored token;
    /// a commit ends the lease and the cool-down.
    pub(super) fn commit(&mut self, lease: &Lease, stored: Stored, now_ms: u64) -> CommitOutcome {
        let newer = self
            .token
            .as_ref()
            .is_none_or(|current| stored.generation > current.generation);
        if !self.holds(lease, now_ms) || !newer {
            return CommitOutcome::Rejected;
        }
        self.token = Some(stored);
        self.lease = None;
        self.cooldown_until_ms = None;
        CommitOutcome::Committed
    }

    /// Removes the current token if it is the one with `fingerprint`.
    pub(super) fn invalidate(
        &mut self,
        fingerprint: &Fingerprint,
        now_ms: u64,
    ) -> InvalidateOutcome {
        let current = self
            .token_at(now_ms)
            .and_then(|token| token.fingerprint.as_deref());
        if current != Some(fingerprint.to_string().as_str()) {
            return InvalidateOutcome::NotCurrent;
        }
        self.token = None;
        InvalidateOutcome::Removed
    }

    /// Runs the cool-down until `duration` from now, unless it already runs longer.
    pub(super) fn extend_cooldown(&mut self, duration: Duration, now_ms: u64) {
        let until = now_ms.saturating_add(whole_millis(duration));
        self.cooldown_until_ms = Some(self.cooldown_until_ms.map_or(until, |ends| ends.max(until)));
    }

    /// Writes `raw` where the entry is kept, at the stored generation, as an attacker or a bug
    /// with write access might (for the conformance harness).
    pub(super) fn plant(&mut self, raw: &[u8]) {
        let generation = self
            .token
            .as_ref()
            .map_or(self.fence, |token| token.generation);
        self.token = Some(Stored {
            generation,
            entry: STANDARD.encode(raw),
            fingerprint: None,
            expires_at_ms: u64::MAX,
        });
    }

    /// The stored entry, as the codec wrote it.
    pub(super) fn entry(&self) -> Option<Vec<u8>> {
        STANDARD.decode(&self.token.as_ref()?.entry).ok()
    }
}

/// `time` in milliseconds since the Unix epoch (0 before it, saturating far after it).
pub(super) fn millis(time: SystemTime) -> u64 {
    let since_epoch = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    whole_millis(since_epoch)
}

fn whole_millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
