//! A custom [`TokenStore`], worked out: the replicas of one machine (processes, or containers
//! sharing a volume) share their tokens through a directory, one record file per key.
//!
//! ```no_run
//! # async fn wire(api: kigo_http::KigoApi) -> Result<(), Box<dyn std::error::Error>> {
//! use examples::file_store::FileStore;
//!
//! // Sealed with the fleet's keys from KIGO_SEALING_KEYS; every process names the same path.
//! let store = FileStore::builder("/var/lib/partner-backend/kigo-tokens").build()?;
//! let partners = api.partner_manager().store(store).build()?;
//! # Ok(())
//! # }
//! ```
//!
//! It passes the conformance suite of `kigo-testkit` (`tests/file_store.rs` in this crate runs
//! it with [`FileStoreHarness`]), which is how a store proves the properties below.
//!
//! # What a store must get right, and how this one does it
//!
//! - **One change at a time per key.** Taking a lease is read, decide, write: two processes
//!   doing that at once would both win. Every change takes an exclusive lock on the key
//!   ([`std::fs::File::lock`]; advisory, so every process must go through this store), then
//!   reads the record, changes it and writes it back before it unlocks.
//! - **The lock has a file of its own.** A record is replaced by a rename, which puts a new file
//!   at its path: a lock on the record file would be a lock on a file no longer there, and a
//!   process waiting for it would then change a stale record. The lock file is never replaced.
//! - **Nobody sees half a change.** A record is written to a temporary file beside it, flushed
//!   to the disk and renamed over the old one: a reader finds the old record or the new one, and
//!   a crash leaves one of them. So a load reads without the lock.
//! - **Time is the store's.** Leases, cool-downs and expiry are judged by one clock, read under
//!   the lock: the system clock, which all processes of a machine share, so they agree (tests
//!   give a manual clock).
//! - **Fences only grow.** The record keeps the last fence granted, also when the token expires
//!   or is invalidated; each grant is one more. A commit must come from the lease last granted
//!   (same holder, same fence, not lapsed) and be newer than the stored token: a holder paused
//!   past its lease cannot overwrite its successor's token, and a late release frees nothing.
//! - **Entries go through [`EntryCodec`].** Sealed by default and bound to the directory, so an
//!   entry copied from another key, generation or directory does not open. What does not decode
//!   is [`Entry::Corrupt`] with the codec's [`CorruptEntry`] kind (the manager replaces what it
//!   can and reports what this replica cannot open); a file that is no record at all is
//!   [`CorruptEntry::Malformed`], and the next change starts it over.
//! - **Errors say whose move it is.** A failing disk is [`StoreError::Unavailable`] (the manager
//!   keeps serving the token it has and tries again); a directory this process may not use is
//!   [`StoreError::Misconfigured`], with a hint for the operator. Nothing read from the
//!   directory makes it panic.
//! - **Secrets stay with their owner.** The directory is created with mode 0700 and the files
//!   with 0600 on Unix: sealing keeps a reader from the tokens, not a writer from the leases.
//! - **Blocking I/O stays off the executor.** Each operation runs on tokio's blocking threads
//!   ([`tokio::task::spawn_blocking`]): a lock may wait for another process, and a disk may
//!   stall. An operation the manager gives up on still finishes there, so its caller does not
//!   know its outcome, as with a network store; the fences keep that safe.
//! - **Change notices are optional.** [`TokenStore::changes`] stays `None`: waiting replicas
//!   poll the store every `poll_interval` of the manager.
//!
//! # Limits
//!
//! One machine: file locks on network file systems are not to be trusted. One record and one
//! lock file per key, never deleted: fine for partner-level tokens and a modest number of users,
//! not for a million (use Redis or SQL). Entries are bound to the directory's canonical path
//! (links resolved), so every process must reach it by that path: a volume mounted elsewhere is
//! another namespace, and each side would take the other's entries for forged ones and replace
//! them. Whoever may write the directory can reset a key's fences by destroying its record;
//! sealing still keeps them from planting a token.

use std::io::{self, ErrorKind};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use kigo_core::codec::{CorruptEntry, EntryCodec, KEYRING_HINT, Sealing};
use kigo_core::runtime::{SystemClock, TimeSource};
use kigo_core::store::{
    CommitOutcome, Entry, HolderId, InvalidateOutcome, Lease, LeaseAttempt, Snapshot, StoreError,
    TokenStore,
};
use kigo_core::{Fingerprint, Token, TokenKey};
use tokio::runtime::{Handle, TryCurrentError};
use tokio::task::JoinError;

mod files;
mod harness;
mod record;

use files::Directory;
pub use harness::FileStoreHarness;
use record::{Record, Stored, millis};

/// What an operator is told when the directory cannot be used.
const ACCESS_HINT: &str = "the file store's directory must be a directory this process's user \
    can read and write: create it (mode 700, owned by the service's user) or fix its owner and \
    mode";

/// What an operator is told when the file system cannot lock files.
const LOCK_HINT: &str =
    "the file store's directory is on a file system without file locks: use a local directory";

/// What a developer is told when the store is used outside a tokio runtime.
const RUNTIME_HINT: &str = "the file store runs its file I/O on tokio's blocking threads: use it \
    inside a tokio runtime";

/// A [`TokenStore`] on a directory, shared by the processes of one machine. See the
/// [module documentation](self).
///
/// Clones are handles on the same store.
#[derive(Debug, Clone)]
pub struct FileStore {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    directory: Directory,
    codec: EntryCodec,
    clock: Arc<dyn TimeSource>,
}

/// Why a file store operation failed: the cause inside a [`StoreError`], for
/// [`StoreError::cause`] to downcast to.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileStoreError {
    /// A file operation failed.
    #[error("file store: cannot {doing}")]
    Io {
        /// What the store was doing.
        doing: &'static str,
        /// The system's error.
        #[source]
        source: io::Error,
    },
    /// A record could not be written out.
    #[error("file store: cannot encode a record")]
    Encode(#[source] serde_json::Error),
    /// The store was used outside a tokio runtime.
    #[error("file store: no tokio runtime for its blocking file I/O")]
    NoRuntime(#[source] TryCurrentError),
    /// The blocking task ended without an answer (the runtime shut down).
    #[error("file store: its blocking task did not finish")]
    Task(#[source] JoinError),
}

impl FileStoreError {
    /// Wraps an I/O error of the step `doing`.
    fn io(doing: &'static str) -> impl FnOnce(io::Error) -> Self {
        move |source| Self::Io { doing, source }
    }
}

/// Classifies by the system's error kind: what the operator must fix is `Misconfigured`, what
/// may pass is `Unavailable`.
impl From<FileStoreError> for StoreError {
    fn from(error: FileStoreError) -> Self {
        let hint = match &error {
            FileStoreError::Io { source, .. } => match source.kind() {
                ErrorKind::PermissionDenied
                | ErrorKind::ReadOnlyFilesystem
                | ErrorKind::NotFound
                | ErrorKind::NotADirectory
                | ErrorKind::AlreadyExists => Some(ACCESS_HINT),
                ErrorKind::Unsupported => Some(LOCK_HINT),
                _ => None,
            },
            FileStoreError::NoRuntime(_) => Some(RUNTIME_HINT),
            FileStoreError::Encode(_) | FileStoreError::Task(_) => None,
        };
        match hint {
            Some(hint) => StoreError::misconfigured(hint, error),
            None => StoreError::unavailable(error),
        }
    }
}

/// Configures a [`FileStore`].
#[derive(Debug)]
pub struct FileStoreBuilder {
    directory: PathBuf,
    sealing: Sealing,
    clock: Option<Arc<dyn TimeSource>>,
}

impl FileStore {
    /// A builder for a store on `directory`, sealed with the keys in `KIGO_SEALING_KEYS`, on the
    /// system clock.
    pub fn builder(directory: impl Into<PathBuf>) -> FileStoreBuilder {
        FileStoreBuilder {
            directory: directory.into(),
            sealing: Sealing::default(),
            clock: None,
        }
    }

    /// The file that holds the record of `key`, for an operator (and tests).
    pub fn record_file(&self, key: &TokenKey) -> PathBuf {
        self.shared.directory.record_file(key)
    }

    /// Runs `work` on tokio's blocking threads.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Shared) -> Result<T, FileStoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let runtime = Handle::try_current().map_err(FileStoreError::NoRuntime)?;
        let shared = Arc::clone(&self.shared);
        let outcome = runtime
            .spawn_blocking(move || work(&shared))
            .await
            .map_err(FileStoreError::Task)?;
        Ok(outcome?)
    }

    /// Applies `change` to the record of `key` under the key's lock, off the executor.
    async fn change<T: Send + 'static>(
        &self,
        key: &TokenKey,
        change: impl FnOnce(&mut Record, u64) -> T + Send + 'static,
    ) -> Result<T, StoreError> {
        let key = key.clone();
        self.run(move |shared| shared.change(&key, change)).await
    }
}

impl Shared {
    fn now_ms(&self) -> u64 {
        millis(self.clock.now())
    }

    fn load(&self, key: &TokenKey) -> Result<Snapshot, FileStoreError> {
        let now_ms = self.now_ms();
        let Some(bytes) = self.directory.read(key)? else {
            return Ok(Snapshot::absent());
        };
        Ok(match Record::parse(&bytes) {
            Some(record) => record.snapshot(key, &self.codec, now_ms),
            None => Snapshot {
                entry: Entry::Corrupt(CorruptEntry::Malformed),
                cooldown: None,
            },
        })
    }

    /// Locks `key`, reads its record (a fresh one if there is none or it is garbage), applies
    /// `change` at the time read under the lock, and writes the record back if it changed.
    fn change<T>(
        &self,
        key: &TokenKey,
        change: impl FnOnce(&mut Record, u64) -> T,
    ) -> Result<T, FileStoreError> {
        let lock = self.directory.lock(key)?;
        let now_ms = self.now_ms();
        let before = self.directory.read(key)?;
        let mut record = before
            .as_deref()
            .and_then(Record::parse)
            .unwrap_or_else(|| Record::new(key));
        record.forget_past(now_ms);
        let outcome = change(&mut record, now_ms);
        let after = record.to_bytes().map_err(FileStoreError::Encode)?;
        if before.as_deref() != Some(after.as_slice()) {
            self.directory.replace(key, &after)?;
        }
        // Unlocks, with the change on the disk.
        drop(lock);
        Ok(outcome)
    }
}

impl FileStoreBuilder {
    /// How entries are written: sealed with the keys in `KIGO_SEALING_KEYS` unless told
    /// otherwise; [`Sealing::Keyring`] seals with keys given in code (every process sharing the
    /// directory needs the keys of its entries); [`Sealing::Plaintext`] lets anyone who can read
    /// the directory or its backups read the tokens, and is logged at warn on `build()`.
    pub fn sealing(mut self, sealing: Sealing) -> Self {
        self.sealing = sealing;
        self
    }

    /// The clock that times leases, cool-downs and expiry: the system clock unless given (a
    /// manual clock in tests). Every process sharing the directory must read the same time.
    pub fn clock(mut self, clock: Arc<dyn TimeSource>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Creates the directory if it is missing (owner-only; blocking, as one does at start-up)
    /// and the codec that binds entries to it.
    pub fn build(self) -> Result<FileStore, StoreError> {
        let directory = Directory::open(&self.directory)?;
        let namespace = format!("file:{}", directory.path().display());
        let codec = self
            .sealing
            .codec("file", &namespace)
            .map_err(|error| StoreError::misconfigured(KEYRING_HINT, error))?;
        let clock = self.clock.unwrap_or_else(|| Arc::new(SystemClock::new()));
        Ok(FileStore {
            shared: Arc::new(Shared {
                directory,
                codec,
                clock,
            }),
        })
    }
}

#[async_trait]
impl TokenStore for FileStore {
    async fn load(&self, key: &TokenKey) -> Result<Snapshot, StoreError> {
        let key = key.clone();
        self.run(move |shared| shared.load(&key)).await
    }

    async fn acquire_lease(
        &self,
        key: &TokenKey,
        holder: &HolderId,
        ttl: Duration,
    ) -> Result<LeaseAttempt, StoreError> {
        let (owned_key, holder) = (key.clone(), holder.clone());
        self.change(key, move |record, now_ms| {
            record.acquire(&owned_key, &holder, ttl, now_ms)
        })
        .await
    }

    async fn release_lease(&self, lease: &Lease) -> Result<(), StoreError> {
        let owned = lease.clone();
        self.change(lease.key(), move |record, now_ms| {
            record.release(&owned, now_ms);
        })
        .await
    }

    async fn commit(&self, lease: &Lease, token: &Token) -> Result<CommitOutcome, StoreError> {
        let stored = Stored::new(&self.shared.codec, lease, token);
        let owned = lease.clone();
        self.change(lease.key(), move |record, now_ms| {
            record.commit(&owned, stored, now_ms)
        })
        .await
    }

    async fn invalidate(
        &self,
        key: &TokenKey,
        fingerprint: &Fingerprint,
    ) -> Result<InvalidateOutcome, StoreError> {
        let fingerprint = *fingerprint;
        self.change(key, move |record, now_ms| {
            record.invalidate(&fingerprint, now_ms)
        })
        .await
    }

    async fn set_cooldown(&self, key: &TokenKey, duration: Duration) -> Result<(), StoreError> {
        self.change(key, move |record, now_ms| {
            record.extend_cooldown(duration, now_ms);
        })
        .await
    }
}
