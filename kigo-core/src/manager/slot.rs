//! One key's state: the cached token behind an atomic pointer, the single flight, and the
//! bookkeeping of failures.

use std::collections::VecDeque;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use arc_swap::{ArcSwap, ArcSwapOption, Guard};
use event_listener::Event;
use futures_util::future::{BoxFuture, FutureExt, Shared};

use super::status::TokenOrigin;
use crate::time::{from_unix_nanos, unix_nanos};
use crate::{Error, Fingerprint, StoreError, Token, TokenKey};

/// What callers of one flight share: its outcome.
pub(super) type FlightOutcome = Result<(), Error>;

/// A running flight that any number of callers can await.
pub(super) type Flight = Shared<BoxFuture<'static, FlightOutcome>>;

/// A token as cached by one manager, with the points in time this manager judges it by.
///
/// `repr(C)`, what the hot path reads first (the validity, the used mark, then the token): right
/// after the reference counts, so that handing the token out touches as few cache lines as
/// possible. The validity is an integer, so that checking it is one comparison with the clock's
/// [`TimeSource::now_coarse_nanos`](crate::runtime::TimeSource::now_coarse_nanos).
#[derive(Debug)]
#[repr(C)]
pub(super) struct Cached {
    /// The stale point minus the clock's coarse lag, in nanoseconds since the Unix epoch: handed
    /// out only before this.
    usable_until_ns: u64,
    /// Whether a caller has taken this token; user-level tokens nobody uses are not renewed.
    used: AtomicBool,
    /// False for the placeholder of an empty slot.
    pub(super) present: bool,
    /// Where the token came from.
    pub(super) origin: TokenOrigin,
    pub(super) token: Token,
    pub(super) refresh_at: SystemTime,
    /// The slot this entry stands for in the registry's cache of user-level keys, while it is
    /// the value there: the way back from a lookup to the key's refreshes. Cleared when the
    /// registry evicts the key, so that the slot and its entry stop keeping each other alive.
    registered: ArcSwapOption<KeySlot>,
}

impl Cached {
    pub(super) fn empty() -> Self {
        Self {
            token: Token::placeholder(),
            present: false,
            refresh_at: SystemTime::UNIX_EPOCH,
            usable_until_ns: 0,
            used: AtomicBool::new(false),
            origin: TokenOrigin::CreatedHere,
            registered: ArcSwapOption::empty(),
        }
    }

    pub(super) fn new(
        token: Token,
        refresh_at: SystemTime,
        usable_until: SystemTime,
        origin: TokenOrigin,
    ) -> Self {
        Self {
            token,
            present: true,
            refresh_at,
            usable_until_ns: unix_nanos(usable_until),
            used: AtomicBool::new(false),
            origin,
            registered: ArcSwapOption::empty(),
        }
    }

    /// Whether this entry may be handed out at `now_ns` (nanoseconds since the Unix epoch).
    #[inline(always)]
    pub(super) fn usable_at(&self, now_ns: u64) -> bool {
        now_ns < self.usable_until_ns
    }

    /// Until when this entry may be handed out.
    pub(super) fn usable_until(&self) -> SystemTime {
        from_unix_nanos(self.usable_until_ns)
    }

    pub(super) fn was_used(&self) -> bool {
        self.used.load(Ordering::Relaxed)
    }

    /// The slot this entry stands for in the registry, if it is (or was) the registry's value.
    pub(super) fn registered_slot(&self) -> Option<Arc<KeySlot>> {
        self.registered.load_full()
    }

    /// Makes this entry stand for `slot` in the registry.
    pub(super) fn register(&self, slot: Arc<KeySlot>) {
        self.registered.store(Some(slot));
    }

    /// Whether this entry is the registry's value for `slot`.
    pub(super) fn stands_for(&self, slot: &KeySlot) -> bool {
        self.registered
            .load()
            .as_deref()
            .is_some_and(|registered| std::ptr::eq(registered, slot))
    }

    /// Ends this entry's standing for its slot (the registry evicted it): the slot, if this
    /// held the last reference, goes with it.
    pub(super) fn unregister(&self) -> Option<Arc<KeySlot>> {
        self.registered.swap(None)
    }

    /// Hands this entry out if it is usable at `now_ns`: the hot path of a lookup by key.
    #[inline(always)]
    pub(super) fn hand_out(self: Arc<Self>, now_ns: u64) -> Result<TokenGuard, Arc<Self>> {
        if !self.usable_at(now_ns) {
            return Err(self);
        }
        self.mark_used();
        Ok(TokenGuard(Guard::from_inner(self)))
    }

    #[inline(always)]
    fn mark_used(&self) {
        // Load first: after the first caller, the line stays shared and readers do not contend.
        if !self.used.load(Ordering::Relaxed) {
            self.used.store(true, Ordering::Relaxed);
        }
    }
}

/// A valid token, borrowed from the manager's cache without touching a shared counter.
///
/// Dereferences to [`Token`]. Hold it for the duration of a request, not longer: each thread has
/// a few slots for such borrows, and holding many at once falls back to reference counting.
pub struct TokenGuard(Guard<Arc<Cached>>);

impl Deref for TokenGuard {
    type Target = Token;

    fn deref(&self) -> &Token {
        &self.0.token
    }
}

impl fmt::Debug for TokenGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("TokenGuard").field(&self.0.token).finish()
    }
}

/// Failure bookkeeping for one key (slow path only).
#[derive(Debug, Default)]
pub(super) struct Failures {
    /// Consecutive failures of the token endpoint.
    pub(super) endpoint: u32,
    /// No endpoint attempt before this (backoff, Retry-After, shared cool-down).
    pub(super) endpoint_retry_at: Option<SystemTime>,
    /// What callers get while the endpoint is paused and no token is valid.
    pub(super) endpoint_error: Option<Error>,
    /// Consecutive failures of the store.
    pub(super) store: u32,
    /// No store attempt before this.
    pub(super) store_retry_at: Option<SystemTime>,
    pub(super) store_error: Option<StoreError>,
    /// No refresh-ahead attempt before this: another replica holds the lease, and its commit (or
    /// the lease's lapse) is what to wait for.
    pub(super) lease_retry_at: Option<SystemTime>,
    /// Tokens recently reported rejected (401): never adopted again, removed from the store.
    pub(super) rejected: Rejections,
    /// The last creation without the store, for the local rate limit.
    pub(super) last_local_creation: Option<SystemTime>,
}

impl Failures {
    /// No failure: what a key reads until it has one (most keys never do, and keep no
    /// bookkeeping of their own).
    const NONE: Self = Self {
        endpoint: 0,
        endpoint_retry_at: None,
        endpoint_error: None,
        store: 0,
        store_retry_at: None,
        store_error: None,
        lease_retry_at: None,
        rejected: Rejections(VecDeque::new()),
        last_local_creation: None,
    };
}

static NO_FAILURES: Failures = Failures::NONE;

/// A key's failure bookkeeping, locked: reading it allocates nothing; the first write gives the
/// key bookkeeping of its own.
pub(super) struct FailuresGuard<'a>(MutexGuard<'a, Option<Box<Failures>>>);

impl FailuresGuard<'_> {
    /// The key's own bookkeeping, if it has any: for clearing failures without giving a key
    /// that never failed bookkeeping of its own.
    pub(super) fn kept(&mut self) -> Option<&mut Failures> {
        self.0.as_deref_mut()
    }
}

impl Deref for FailuresGuard<'_> {
    type Target = Failures;

    fn deref(&self) -> &Failures {
        self.0.as_deref().unwrap_or(&NO_FAILURES)
    }
}

impl DerefMut for FailuresGuard<'_> {
    fn deref_mut(&mut self) -> &mut Failures {
        self.0.get_or_insert_with(Box::default)
    }
}

/// How many rejected tokens a key remembers: a late 401 for an older token must not make it
/// forget the newer one that was rejected too.
const REMEMBERED_REJECTIONS: usize = 4;

/// The most recent tokens reported rejected for one key, newest last.
#[derive(Debug, Default)]
pub(super) struct Rejections(VecDeque<Fingerprint>);

impl Rejections {
    pub(super) fn record(&mut self, fingerprint: Fingerprint) {
        if self.contains(&fingerprint) {
            return;
        }
        if self.0.len() == REMEMBERED_REJECTIONS {
            self.0.pop_front();
        }
        self.0.push_back(fingerprint);
    }

    pub(super) fn contains(&self, fingerprint: &Fingerprint) -> bool {
        self.0.contains(fingerprint)
    }
}

/// One key's state in one manager.
///
/// `repr(C)`, the cached token first: the hot path reads it right after the registry's lookup
/// has touched the reference counts, so usually in the same cache line.
#[repr(C)]
pub(super) struct KeySlot {
    current: ArcSwap<Cached>,
    pub(super) key: TokenKey,
    /// Fires on every install and invalidation here, on change notices from the store, and when a
    /// failure schedules a retry: whoever waits on it re-evaluates. Only a flight that must wait
    /// listens, and only then is it notified, so that most keys never allocate its listener list.
    changed: Event,
    flight: Mutex<Option<Flight>>,
    failures: Mutex<Option<Box<Failures>>>,
    /// When this key's current entry in the manager's scheduler is due, in nanoseconds since the
    /// epoch (`scheduler::NOT_QUEUED`: none queued). Written under the scheduler's lock.
    pub(super) scheduled: AtomicU64,
    /// When the last refresh ended, in ms since the epoch (0: none yet), and how.
    last_refresh_ms: AtomicU64,
    last_outcome: AtomicU8,
    /// Set when a 401 drops the cached token, taken by the next flight (to say why it runs).
    dropped_by_rejection: AtomicBool,
    /// Counts the firings of `changed` (wrapping), so that a flight can tell whether one came
    /// since it looked without listening all along.
    changes: AtomicU32,
}

impl fmt::Debug for KeySlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySlot")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl KeySlot {
    pub(super) fn new(key: TokenKey) -> Self {
        Self {
            key,
            current: ArcSwap::from_pointee(Cached::empty()),
            changed: Event::new(),
            flight: Mutex::new(None),
            failures: Mutex::new(None),
            dropped_by_rejection: AtomicBool::new(false),
            changes: AtomicU32::new(0),
            scheduled: AtomicU64::new(super::scheduler::NOT_QUEUED),
            last_refresh_ms: AtomicU64::new(0),
            last_outcome: AtomicU8::new(0),
        }
    }

    /// The hot path: one atomic pointer load and a time comparison, at `now_ns` (nanoseconds
    /// since the Unix epoch).
    pub(super) fn cached(&self, now_ns: u64) -> Option<TokenGuard> {
        let guard = self.current.load();
        if !guard.usable_at(now_ns) {
            return None;
        }
        guard.mark_used();
        Some(TokenGuard(guard))
    }

    /// The cached entry (slow path).
    pub(super) fn current(&self) -> Arc<Cached> {
        self.current.load_full()
    }

    /// Makes `next` the cached entry if `when` holds for the current one; true if it did. A
    /// compare-and-swap, so that a 401 never drops a token installed since it looked.
    pub(super) fn replace_if(&self, next: &Arc<Cached>, when: impl Fn(&Cached) -> bool) -> bool {
        let mut current = self.current.load_full();
        loop {
            if !when(&current) {
                return false;
            }
            let previous = self.current.compare_and_swap(&current, Arc::clone(next));
            if Arc::ptr_eq(&previous, &current) {
                return true;
            }
            current = Guard::into_inner(previous);
        }
    }

    /// Sets the cached entry (the registry does, while it holds the lock of the slot's key).
    pub(super) fn set_current(&self, next: Arc<Cached>) {
        self.current.store(next);
    }

    /// Marks the cached token as dropped by a 401, for the next flight to say why it runs.
    pub(super) fn note_rejection_drop(&self) {
        self.dropped_by_rejection.store(true, Ordering::Relaxed);
    }

    /// Wakes whoever waits for a change of this key: see [`KeySlot::changes`].
    pub(super) fn notify_changed(&self) {
        self.changes.fetch_add(1, Ordering::SeqCst);
        // Most keys have no listener: asking first keeps their list unallocated (notifying
        // allocates it). A listener added after this check sees the new count: the list's lock
        // orders the two.
        if self.changed.total_listeners() > 0 {
            self.changed.notify(usize::MAX);
        }
    }

    /// How many changes were notified so far (wrapping): read it before looking at the key,
    /// then [`KeySlot::wait_for_change`] returns at once if one came since.
    pub(super) fn changes(&self) -> u32 {
        self.changes.load(Ordering::SeqCst)
    }

    /// Waits until a change comes after `seen` (a reading of [`KeySlot::changes`]).
    pub(super) async fn wait_for_change(&self, seen: u32) {
        let listener = self.changed.listen();
        if self.changes() != seen {
            return;
        }
        listener.await;
    }

    /// Whether a 401 dropped the cached token since the last call.
    pub(super) fn take_rejection_drop(&self) -> bool {
        self.dropped_by_rejection.swap(false, Ordering::Relaxed)
    }

    pub(super) fn failures(&self) -> FailuresGuard<'_> {
        FailuresGuard(self.failures.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Notes when a refresh of this key ended, and how (`outcome`: an index into
    /// [`super::status::OUTCOMES`]).
    pub(super) fn record_refresh(&self, at_ms: u64, outcome: u8) {
        self.last_refresh_ms.store(at_ms, Ordering::Relaxed);
        self.last_outcome.store(outcome, Ordering::Relaxed);
    }

    /// When the last refresh ended (ms since the epoch) and how, if one did.
    pub(super) fn last_refresh(&self) -> Option<(u64, u8)> {
        let at = self.last_refresh_ms.load(Ordering::Relaxed);
        (at != 0).then(|| (at, self.last_outcome.load(Ordering::Relaxed)))
    }

    /// Joins the running flight, or starts one with `start` (which must spawn the work and return
    /// its outcome future).
    pub(super) fn join_or_start(
        &self,
        start: impl FnOnce() -> BoxFuture<'static, FlightOutcome>,
    ) -> Flight {
        let mut flight = self.flight.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(running) = &*flight {
            return running.clone();
        }
        let started = start().shared();
        *flight = Some(started.clone());
        started
    }

    /// Called by the flight itself once it is done, before it publishes its outcome.
    pub(super) fn end_flight(&self) {
        *self.flight.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }
}

/// Time left until `at`, zero if it has passed.
pub(super) fn until(now: SystemTime, at: SystemTime) -> Duration {
    at.duration_since(now).unwrap_or_default()
}
