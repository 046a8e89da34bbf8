//! What the simulation sees from outside the managers: every token the endpoint created (with
//! the true time it was asked for), and every commit and invalidation that reached the store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use kigo_core::runtime::TimeSource;
use kigo_core::store::{
    ChangeFeed, CommitOutcome, HolderId, InvalidateOutcome, Lease, LeaseAttempt, Snapshot,
};
use kigo_core::{
    CreateRequest, Fingerprint, MemoryStore, SourceError, StoreError, Token, TokenKey, TokenSource,
    TokenStore,
};
use kigo_testkit::{FakeSource, ManualClock};

/// The true time of the run: the world's clock, which no replica reads unskewed.
#[derive(Debug, Clone)]
pub struct TrueTime {
    clock: ManualClock,
    start: SystemTime,
}

impl TrueTime {
    pub fn new(clock: ManualClock) -> Self {
        let start = clock.now();
        Self { clock, start }
    }

    /// Time since the start of the run.
    pub fn elapsed(&self) -> Duration {
        self.since_start(self.clock.now())
    }

    /// `at` (a true time), since the start of the run.
    pub fn since_start(&self, at: SystemTime) -> Duration {
        at.duration_since(self.start).unwrap_or_default()
    }
}

/// A token the endpoint created.
#[derive(Debug, Clone)]
pub struct Creation {
    /// `T1`, `T2`, ... in order of creation: how traces name tokens (never by their secret).
    pub label: usize,
    pub replica: usize,
    pub key: TokenKey,
    /// When it was asked for, by the true clock.
    pub sent: Duration,
    pub lifetime: Duration,
}

impl Creation {
    /// When the API stops taking it, by the true clock: its lifetime from the send time, the
    /// earliest it can have been issued.
    pub fn expires(&self) -> Duration {
        self.sent + self.lifetime
    }
}

/// Something that reached the store.
#[derive(Debug, Clone)]
pub enum Record {
    Created(Fingerprint),
    Commit {
        at: Duration,
        key: TokenKey,
        generation: u64,
        fingerprint: Fingerprint,
        holder: HolderId,
        outcome: CommitOutcome,
    },
    Lease {
        key: TokenKey,
        holder: HolderId,
        attempt: LeaseAttempt,
    },
    Invalidated {
        key: TokenKey,
        fingerprint: Fingerprint,
        outcome: InvalidateOutcome,
    },
}

/// Who a lease holder is: the replica named first in its holder ID.
pub fn replica_of(holder: &HolderId) -> &str {
    holder.as_str().split('-').next().unwrap_or("?")
}

/// The run's record, shared by the recorders and read by the checks.
#[derive(Debug, Default)]
pub struct Journal {
    records: Vec<Record>,
    creations: HashMap<Fingerprint, Creation>,
}

impl Journal {
    pub fn creation(&self, fingerprint: &Fingerprint) -> Option<&Creation> {
        self.creations.get(fingerprint)
    }

    pub fn creations(&self) -> impl Iterator<Item = (&Fingerprint, &Creation)> {
        self.creations.iter()
    }

    /// Every token created so far for `key`.
    pub fn fingerprints_of(&self, key: &TokenKey) -> Vec<Fingerprint> {
        self.creations
            .iter()
            .filter(|(_, creation)| creation.key == *key)
            .map(|(fingerprint, _)| *fingerprint)
            .collect()
    }

    /// The records from `cursor` on.
    pub fn since(&self, cursor: usize) -> &[Record] {
        &self.records[cursor.min(self.records.len())..]
    }

    /// `T7` for the seventh token created; `T?` for one the endpoint never made.
    pub fn label(&self, fingerprint: &Fingerprint) -> String {
        self.creation(fingerprint).map_or_else(
            || "T?".to_owned(),
            |creation| format!("T{}", creation.label),
        )
    }
}

pub type SharedJournal = Arc<Mutex<Journal>>;

pub fn lock(journal: &SharedJournal) -> MutexGuard<'_, Journal> {
    journal.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One replica's view of the token endpoint: the shared fake, noting each token it creates.
#[derive(Debug)]
pub struct RecordingSource {
    pub endpoint: FakeSource,
    pub replica: usize,
    pub time: TrueTime,
    pub journal: SharedJournal,
}

#[async_trait]
impl TokenSource for RecordingSource {
    async fn create(&self, request: CreateRequest<'_>) -> Result<Token, SourceError> {
        let sent = self.time.elapsed();
        let token = self.endpoint.create(request).await?;
        let mut journal = lock(&self.journal);
        let label = journal.creations.len() + 1;
        let creation = Creation {
            label,
            replica: self.replica,
            key: request.key.clone(),
            sent,
            lifetime: token.lifetime(),
        };
        journal.creations.insert(token.fingerprint(), creation);
        journal.records.push(Record::Created(token.fingerprint()));
        Ok(token)
    }
}

/// The shared store, noting every commit and invalidation it answers.
#[derive(Debug)]
pub struct LedgerStore {
    pub store: MemoryStore,
    pub time: TrueTime,
    pub journal: SharedJournal,
}

impl LedgerStore {
    fn note(&self, record: Record) {
        lock(&self.journal).records.push(record);
    }
}

#[async_trait]
impl TokenStore for LedgerStore {
    async fn load(&self, key: &TokenKey) -> Result<Snapshot, StoreError> {
        self.store.load(key).await
    }

    async fn acquire_lease(
        &self,
        key: &TokenKey,
        holder: &HolderId,
        ttl: Duration,
    ) -> Result<LeaseAttempt, StoreError> {
        let attempt = self.store.acquire_lease(key, holder, ttl).await?;
        self.note(Record::Lease {
            key: key.clone(),
            holder: holder.clone(),
            attempt: attempt.clone(),
        });
        Ok(attempt)
    }

    async fn release_lease(&self, lease: &Lease) -> Result<(), StoreError> {
        self.store.release_lease(lease).await
    }

    async fn commit(&self, lease: &Lease, token: &Token) -> Result<CommitOutcome, StoreError> {
        let outcome = self.store.commit(lease, token).await?;
        self.note(Record::Commit {
            at: self.time.elapsed(),
            key: lease.key().clone(),
            generation: lease.fence(),
            fingerprint: token.fingerprint(),
            holder: lease.holder().clone(),
            outcome,
        });
        Ok(outcome)
    }

    async fn invalidate(
        &self,
        key: &TokenKey,
        fingerprint: &Fingerprint,
    ) -> Result<InvalidateOutcome, StoreError> {
        let outcome = self.store.invalidate(key, fingerprint).await?;
        self.note(Record::Invalidated {
            key: key.clone(),
            fingerprint: *fingerprint,
            outcome,
        });
        Ok(outcome)
    }

    async fn set_cooldown(&self, key: &TokenKey, duration: Duration) -> Result<(), StoreError> {
        self.store.set_cooldown(key, duration).await
    }

    async fn cooldown(&self, key: &TokenKey) -> Result<Option<Duration>, StoreError> {
        self.store.cooldown(key).await
    }

    fn changes(&self) -> Option<ChangeFeed> {
        self.store.changes()
    }
}

/// The store the fleet shares (in memory, on the true clock), noting into `journal`.
pub fn ledger(time: &TrueTime, journal: &SharedJournal) -> LedgerStore {
    LedgerStore {
        store: MemoryStore::with_clock(Arc::new(time.clock.clone())),
        time: time.clone(),
        journal: Arc::clone(journal),
    }
}
