//! The shared state that replicas coordinate through: the [`TokenStore`] trait and its types.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::stream::BoxStream;

use crate::codec::CorruptEntry;
use crate::source::SharedError;
use crate::{Fingerprint, Token, TokenKey};

mod admin;
mod memory;

/// The environment variable that names the fleet's store by URL (`rediss://...`,
/// `postgres://...`, `sqlite:...`), read by the stores' `from_env` and by the `kigo` tool.
pub const STORE_URL_VAR: &str = "KIGO_STORE_URL";
pub use admin::{KeyPage, Resealed, StoreAdmin, StoreCheck, StoreKeyStatus, inspect};
pub use memory::MemoryStore;

/// Who holds a refresh lease: unique per attempt, so a late release or commit by a previous
/// holder can never be mistaken for the current one.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct HolderId(Arc<str>);

impl HolderId {
    /// Wraps a holder ID read back from a store.
    pub fn new(id: impl Into<Arc<str>>) -> Self {
        Self(id.into())
    }

    /// A fresh random ID: 128 random bits, hex.
    pub fn random() -> Self {
        Self(format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..)).into())
    }

    /// The ID as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for HolderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HolderId({})", self.0)
    }
}

impl fmt::Display for HolderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A granted refresh lease: the right to create the next token for `key` and commit it with
/// generation `fence`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    key: TokenKey,
    holder: HolderId,
    fence: u64,
}

impl Lease {
    /// A lease as granted by a store.
    pub fn new(key: TokenKey, holder: HolderId, fence: u64) -> Self {
        Self { key, holder, fence }
    }

    /// Which token.
    pub fn key(&self) -> &TokenKey {
        &self.key
    }

    /// Who holds it.
    pub fn holder(&self) -> &HolderId {
        &self.holder
    }

    /// The generation a commit under this lease writes: greater than any granted before.
    pub fn fence(&self) -> u64 {
        self.fence
    }
}

/// The result of [`TokenStore::acquire_lease`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseAttempt {
    /// The caller holds the lease.
    Acquired(Lease),
    /// Someone else holds it.
    Held {
        /// Time left on the other holder's lease by the store's clock, if the store can tell.
        remaining: Option<Duration>,
    },
}

/// The result of [`TokenStore::commit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitOutcome {
    /// The token is now the current one.
    Committed,
    /// The lease had lapsed or passed to another holder, or a newer generation is stored:
    /// nothing was written.
    Rejected,
}

/// The result of [`TokenStore::invalidate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidateOutcome {
    /// The token with that fingerprint was current and is gone.
    Removed,
    /// Another token (or none) is current: nothing was changed.
    NotCurrent,
}

/// What a store holds for a key.
#[derive(Debug, Clone)]
pub enum Entry {
    /// No token, or only an expired one.
    Absent,
    /// The current token.
    Present(Token),
    /// Something that is not a usable token; the next commit replaces it.
    Corrupt(CorruptEntry),
}

/// The state of one key in a store, as read by [`TokenStore::load`].
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The stored token.
    pub entry: Entry,
    /// The shared cool-down left, by the store's clock: while it runs, no replica calls the token
    /// endpoint for this key.
    pub cooldown: Option<Duration>,
}

impl Snapshot {
    /// Nothing stored and no cool-down.
    pub fn absent() -> Self {
        Self {
            entry: Entry::Absent,
            cooldown: None,
        }
    }

    /// The stored token, if one is present and decodes.
    pub fn token(&self) -> Option<&Token> {
        match &self.entry {
            Entry::Present(token) => Some(token),
            Entry::Absent | Entry::Corrupt(_) => None,
        }
    }
}

/// A notice that the entry of `key` changed (commit or invalidation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeNotice {
    /// The key whose entry changed.
    pub key: TokenKey,
}

/// A stream of change notices. It may lose notices and may end (connection lost); the manager
/// polls as a fallback and subscribes again.
pub type ChangeFeed = BoxStream<'static, ChangeNotice>;

/// Why a store operation failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store could not be reached or did not answer in time; it may work later.
    #[error("token store unavailable")]
    Unavailable {
        /// The backend's error.
        #[source]
        source: SharedError,
    },
    /// The store is not set up for this use (schema missing: run the migrations; permissions).
    #[error("token store misconfigured: {hint}")]
    Misconfigured {
        /// What to do about it.
        hint: &'static str,
        /// The backend's error.
        #[source]
        source: SharedError,
    },
}

impl StoreError {
    /// The backend's error, to downcast to the backend's own type.
    pub fn cause(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        match self {
            Self::Unavailable { source } | Self::Misconfigured { source, .. } => source.as_ref(),
        }
    }

    /// An unreachable or failing store.
    pub fn unavailable(source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Unavailable {
            source: Arc::new(source),
        }
    }

    /// A store that needs an operator (with `hint` saying what to do).
    pub fn misconfigured(
        hint: &'static str,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Misconfigured {
            hint,
            source: Arc::new(source),
        }
    }
}

/// The state replicas share: the current token per key, a refresh lease, a cool-down, and
/// change notifications.
///
/// A store's clock (Redis's, the database's) times leases and cool-downs, so that replicas with
/// skewed clocks agree. Implement it for a new backend and prove it with the conformance suite in
/// `kigo-testkit` (`kigo_testkit::conformance`), which runs every "# Behavior" line below.
///
/// # Encoding entries
///
/// A store that keeps tokens outside this process writes and reads them with
/// [`crate::codec::EntryCodec`], built from a [`crate::codec::Sealing`] (sealed by default) and
/// bound to the store's namespace: `encode(key, lease.fence(), token)` on commit,
/// `decode(key, bytes, generation)` on load, reporting a decoding failure as
/// [`Entry::Corrupt`]. The conformance suite checks the [`CorruptEntry`] kinds it yields, and the
/// manager relies on them to tell an entry to replace from one this replica cannot open.
///
/// # Implementing a custom store
///
/// A store keeps, per key, the last fence granted (it only grows), the lease granted with it and
/// until when, the current token (encoded, with its generation, fingerprint and expiry) and the
/// cool-down; each method reads and changes them as one step, by the store's clock. The store
/// below does so for the managers of one process, and proves it with the conformance suite of
/// `kigo-testkit` (dev-dependencies `kigo-testkit` and `tokio`). [`MemoryStore`] is the finished
/// form of it; [`examples/src/file_store`] in the repository is a store across the processes of
/// a machine, on files, with its harness and its run of the suite.
///
/// [`examples/src/file_store`]: https://github.com/kigo-rs/kigo-rs/tree/main/examples/src/file_store
///
/// ```
/// use std::collections::HashMap;
/// use std::fmt;
/// use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
/// use std::time::{Duration, SystemTime};
///
/// use async_trait::async_trait;
/// use kigo_core::codec::EntryCodec;
/// use kigo_core::runtime::TimeSource;
/// use kigo_core::store::{
///     CommitOutcome, Entry, HolderId, InvalidateOutcome, Lease, LeaseAttempt, Snapshot,
///     StoreError, TokenStore,
/// };
/// use kigo_core::{Fingerprint, Token, TokenKey};
///
/// struct TinyStore {
///     /// Times leases, cool-downs and expiry: the store's clock, not each caller's.
///     clock: Arc<dyn TimeSource>,
///     /// Writes and reads every entry (sealed, bound to the store's namespace).
///     codec: EntryCodec,
///     slots: Mutex<HashMap<TokenKey, Slot>>,
/// }
///
/// #[derive(Default)]
/// struct Slot {
///     /// The last fence granted; kept when the token goes, so generations only grow.
///     fence: u64,
///     /// The holder of the lease granted with `fence`.
///     lease: Option<(HolderId, Span)>,
///     token: Option<Stored>,
///     cooldown: Option<Span>,
/// }
///
/// struct Stored {
///     encoded: Vec<u8>,
///     generation: u64,
///     fingerprint: Fingerprint,
///     expires_at: SystemTime,
/// }
///
/// /// A while from a moment (a lease, a cool-down): no time arithmetic that could overflow.
/// struct Span {
///     from: SystemTime,
///     length: Duration,
/// }
///
/// impl Span {
///     fn left(&self, now: SystemTime) -> Option<Duration> {
///         let elapsed = now.duration_since(self.from).unwrap_or_default();
///         self.length.checked_sub(elapsed).filter(|left| !left.is_zero())
///     }
/// }
///
/// impl Slot {
///     /// Whether `lease` is the one last granted (holder and fence) and has not lapsed.
///     fn holds(&self, lease: &Lease, now: SystemTime) -> bool {
///         lease.fence() == self.fence
///             && self.lease.as_ref().is_some_and(|(holder, span)| {
///                 holder == lease.holder() && span.left(now).is_some()
///             })
///     }
/// }
///
/// impl TinyStore {
///     fn slots(&self) -> MutexGuard<'_, HashMap<TokenKey, Slot>> {
///         self.slots.lock().unwrap_or_else(PoisonError::into_inner)
///     }
/// }
///
/// /// Never the entries: they may hold tokens.
/// impl fmt::Debug for TinyStore {
///     fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
///         f.debug_struct("TinyStore").field("codec", &self.codec).finish_non_exhaustive()
///     }
/// }
///
/// #[async_trait]
/// impl TokenStore for TinyStore {
///     async fn load(&self, key: &TokenKey) -> Result<Snapshot, StoreError> {
///         let now = self.clock.now();
///         let slots = self.slots();
///         let Some(slot) = slots.get(key) else { return Ok(Snapshot::absent()) };
///         let entry = match slot.token.as_ref().filter(|stored| stored.expires_at > now) {
///             None => Entry::Absent,
///             Some(stored) => match self.codec.decode(key, &stored.encoded, stored.generation) {
///                 Ok(token) => Entry::Present(token),
///                 Err(corrupt) => Entry::Corrupt(corrupt),
///             },
///         };
///         let cooldown = slot.cooldown.as_ref().and_then(|span| span.left(now));
///         Ok(Snapshot { entry, cooldown })
///     }
///
///     async fn acquire_lease(
///         &self,
///         key: &TokenKey,
///         holder: &HolderId,
///         ttl: Duration,
///     ) -> Result<LeaseAttempt, StoreError> {
///         let now = self.clock.now();
///         let mut slots = self.slots();
///         let slot = slots.entry(key.clone()).or_default();
///         if let Some(left) = slot.lease.as_ref().and_then(|(_, span)| span.left(now)) {
///             return Ok(LeaseAttempt::Held { remaining: Some(left) });
///         }
///         slot.fence += 1;
///         slot.lease = Some((holder.clone(), Span { from: now, length: ttl }));
///         Ok(LeaseAttempt::Acquired(Lease::new(key.clone(), holder.clone(), slot.fence)))
///     }
///
///     async fn release_lease(&self, lease: &Lease) -> Result<(), StoreError> {
///         let now = self.clock.now();
///         if let Some(slot) = self.slots().get_mut(lease.key())
///             && slot.holds(lease, now)
///         {
///             slot.lease = None;
///         }
///         Ok(())
///     }
///
///     async fn commit(&self, lease: &Lease, token: &Token) -> Result<CommitOutcome, StoreError> {
///         let now = self.clock.now();
///         let encoded = self.codec.encode(lease.key(), lease.fence(), token);
///         let mut slots = self.slots();
///         let Some(slot) = slots.get_mut(lease.key()) else {
///             return Ok(CommitOutcome::Rejected);
///         };
///         let newer = slot.token.as_ref().is_none_or(|stored| lease.fence() > stored.generation);
///         if !slot.holds(lease, now) || !newer {
///             return Ok(CommitOutcome::Rejected);
///         }
///         slot.token = Some(Stored {
///             encoded,
///             generation: lease.fence(),
///             fingerprint: token.fingerprint(),
///             expires_at: token.expires_at(),
///         });
///         slot.lease = None;
///         slot.cooldown = None;
///         Ok(CommitOutcome::Committed)
///     }
///
///     async fn invalidate(
///         &self,
///         key: &TokenKey,
///         fingerprint: &Fingerprint,
///     ) -> Result<InvalidateOutcome, StoreError> {
///         let mut slots = self.slots();
///         let Some(slot) = slots.get_mut(key) else { return Ok(InvalidateOutcome::NotCurrent) };
///         if slot.token.as_ref().map(|stored| stored.fingerprint) != Some(*fingerprint) {
///             return Ok(InvalidateOutcome::NotCurrent);
///         }
///         slot.token = None;
///         Ok(InvalidateOutcome::Removed)
///     }
///
///     async fn set_cooldown(&self, key: &TokenKey, duration: Duration) -> Result<(), StoreError> {
///         let now = self.clock.now();
///         let mut slots = self.slots();
///         let slot = slots.entry(key.clone()).or_default();
///         let running = slot.cooldown.as_ref().and_then(|span| span.left(now));
///         if running.is_none_or(|left| left < duration) {
///             slot.cooldown = Some(Span { from: now, length: duration });
///         }
///         Ok(())
///     }
/// }
///
/// // The proof: every function of the conformance suite, through a harness that reaches behind
/// // the store (`kigo_testkit::conformance::StoreHarness`; hidden here, as in any test file).
/// # use kigo_testkit::conformance::{StoreHarness, run_all, test_keyring};
/// # use kigo_testkit::ManualClock;
/// #
/// # struct Harness {
/// #     clock: ManualClock,
/// #     store: Arc<TinyStore>,
/// # }
/// #
/// # #[async_trait]
/// # impl StoreHarness for Harness {
/// #     async fn handle(&self) -> Arc<dyn TokenStore> {
/// #         self.store.clone()
/// #     }
/// #
/// #     async fn write_raw(&self, key: &TokenKey, raw: &[u8]) {
/// #         let mut slots = self.store.slots();
/// #         let slot = slots.entry(key.clone()).or_default();
/// #         let generation = slot.token.as_ref().map_or(slot.fence, |stored| stored.generation);
/// #         slot.token = Some(Stored {
/// #             encoded: raw.to_vec(),
/// #             generation,
/// #             fingerprint: Fingerprint::of("planted"),
/// #             expires_at: self.clock.now() + Duration::from_secs(3600),
/// #         });
/// #     }
/// #
/// #     async fn read_raw(&self, key: &TokenKey) -> Option<Vec<u8>> {
/// #         let slots = self.store.slots();
/// #         slots.get(key)?.token.as_ref().map(|stored| stored.encoded.clone())
/// #     }
/// #
/// #     async fn pass(&self, duration: Duration) {
/// #         self.clock.advance(duration);
/// #     }
/// #
/// #     fn now(&self) -> SystemTime {
/// #         self.clock.now()
/// #     }
/// # }
/// #
/// # fn main() {
/// let clock = ManualClock::new();
/// let store = TinyStore {
///     clock: Arc::new(clock.clone()),
///     codec: EntryCodec::sealed(test_keyring()).in_namespace("tiny"),
///     slots: Mutex::default(),
/// };
/// let harness = Harness { clock, store: Arc::new(store) };
/// let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
/// runtime.block_on(run_all(&harness));
/// # }
/// ```
#[async_trait]
pub trait TokenStore: Send + Sync + fmt::Debug + 'static {
    /// Reads the entry and the cool-down of `key`.
    ///
    /// # Behavior
    /// - A key never written, or whose token has expired by the store's clock, is
    ///   [`Entry::Absent`].
    /// - A value the store cannot decode (garbage, an unknown format version, a failed decryption,
    ///   a foreign value under the store's key) is [`Entry::Corrupt`]: never a token, never a panic.
    /// - [`Snapshot::cooldown`] is the time left on the shared cool-down by the store's clock, `None`
    ///   when none runs.
    /// - Every handle on the same store sees the same state.
    async fn load(&self, key: &TokenKey) -> Result<Snapshot, StoreError>;

    /// Tries to take the refresh lease of `key` for `ttl`.
    ///
    /// # Behavior
    /// - Of any number of concurrent attempts while the lease is free, exactly one gets
    ///   [`LeaseAttempt::Acquired`]; the others get [`LeaseAttempt::Held`].
    /// - The lease lapses `ttl` after it was granted, by the store's clock; after that anyone may
    ///   acquire it, and the holder's commit is rejected.
    /// - Each grant's fence is greater than every fence granted before for this key and than the
    ///   stored token's generation.
    async fn acquire_lease(
        &self,
        key: &TokenKey,
        holder: &HolderId,
        ttl: Duration,
    ) -> Result<LeaseAttempt, StoreError>;

    /// Gives up `lease` without committing.
    ///
    /// # Behavior
    /// - Releases only the lease `lease` names, same holder and same fence (compare-and-delete):
    ///   a lapsed lease since granted to someone else, or to the same holder again, is left
    ///   alone.
    /// - Releasing twice, or a lease that has lapsed, is not an error.
    async fn release_lease(&self, lease: &Lease) -> Result<(), StoreError>;

    /// Makes `token` the current token of `lease.key()`, fenced by `lease`.
    ///
    /// # Behavior
    /// - Succeeds only while `lease` is the lease last granted (same holder and fence, not lapsed,
    ///   not released) and its fence is greater than the stored generation; otherwise returns
    ///   [`CommitOutcome::Rejected`] and changes nothing.
    /// - The stored token has generation `lease.fence()` and is dropped by the store once it
    ///   expires.
    /// - On success the lease is released, the cool-down is cleared, and a change notice is sent.
    /// - Replaces a corrupt entry like any other.
    async fn commit(&self, lease: &Lease, token: &Token) -> Result<CommitOutcome, StoreError>;

    /// Removes the current token of `key` if its fingerprint is `fingerprint`.
    ///
    /// # Behavior
    /// - A different token (a newer one another replica committed) is left alone:
    ///   [`InvalidateOutcome::NotCurrent`].
    /// - The generation is kept, so fences keep increasing.
    /// - On removal a change notice is sent.
    async fn invalidate(
        &self,
        key: &TokenKey,
        fingerprint: &Fingerprint,
    ) -> Result<InvalidateOutcome, StoreError>;

    /// Starts a shared cool-down of `duration` for `key`, after the token endpoint failed.
    ///
    /// # Behavior
    /// - Every handle's [`TokenStore::load`] reports it until it runs out, by the store's clock.
    /// - Never shortens a longer cool-down already running.
    /// - A successful [`TokenStore::commit`] ends it.
    async fn set_cooldown(&self, key: &TokenKey, duration: Duration) -> Result<(), StoreError>;

    /// The shared cool-down left for `key`, as [`TokenStore::load`] reports it.
    ///
    /// # Behavior
    /// - The same as `load(key)`'s [`Snapshot::cooldown`]. The default calls `load`; a store
    ///   that can read the cool-down alone may do so.
    async fn cooldown(&self, key: &TokenKey) -> Result<Option<Duration>, StoreError> {
        Ok(self.load(key).await?.cooldown)
    }

    /// Who holds the refresh lease of `key` and the time left on it, for operators (status pages,
    /// the `kigo` tool); the manager never relies on it.
    ///
    /// # Behavior
    /// - `None` when no lease is held, or (the default) when the store cannot tell.
    async fn lease_holder(
        &self,
        key: &TokenKey,
    ) -> Result<Option<(HolderId, Option<Duration>)>, StoreError> {
        let _ = key;
        Ok(None)
    }

    /// Notices of changes to any key, if the store can push them.
    ///
    /// # Behavior
    /// - `None` (the default) means no notifications: waiters poll the store every poll interval
    ///   (the manager's `poll_interval`, jittered).
    /// - A feed may lose notices and may end; every notice names a key that did change.
    fn changes(&self) -> Option<ChangeFeed> {
        None
    }
}

/// A store behind an `Arc` is a store: managers and tests share one without wrapping it again.
#[async_trait]
impl<T: TokenStore + ?Sized> TokenStore for Arc<T> {
    async fn load(&self, key: &TokenKey) -> Result<Snapshot, StoreError> {
        (**self).load(key).await
    }

    async fn acquire_lease(
        &self,
        key: &TokenKey,
        holder: &HolderId,
        ttl: Duration,
    ) -> Result<LeaseAttempt, StoreError> {
        (**self).acquire_lease(key, holder, ttl).await
    }

    async fn release_lease(&self, lease: &Lease) -> Result<(), StoreError> {
        (**self).release_lease(lease).await
    }

    async fn commit(&self, lease: &Lease, token: &Token) -> Result<CommitOutcome, StoreError> {
        (**self).commit(lease, token).await
    }

    async fn invalidate(
        &self,
        key: &TokenKey,
        fingerprint: &Fingerprint,
    ) -> Result<InvalidateOutcome, StoreError> {
        (**self).invalidate(key, fingerprint).await
    }

    async fn set_cooldown(&self, key: &TokenKey, duration: Duration) -> Result<(), StoreError> {
        (**self).set_cooldown(key, duration).await
    }

    async fn cooldown(&self, key: &TokenKey) -> Result<Option<Duration>, StoreError> {
        (**self).cooldown(key).await
    }

    async fn lease_holder(
        &self,
        key: &TokenKey,
    ) -> Result<Option<(HolderId, Option<Duration>)>, StoreError> {
        (**self).lease_holder(key).await
    }

    fn changes(&self) -> Option<ChangeFeed> {
        (**self).changes()
    }
}
