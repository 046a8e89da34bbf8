//! A store wrapper that stops one chosen call before it reaches the store, until the test lets
//! it go: the fault-injection point of the scenarios (a holder paused or dead at a given step,
//! a flight cancelled there). No sleeps: the test waits for the call to arrive.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use kigo_core::store::{
    ChangeFeed, CommitOutcome, HolderId, InvalidateOutcome, Lease, LeaseAttempt, Snapshot,
};
use kigo_core::{Fingerprint, StoreError, Token, TokenKey, TokenStore};
use tokio::sync::Notify;

/// A store operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Load,
    Acquire,
    Commit,
}

/// A lease granted through a [`Tripwire`]: its fence, and when the claim was sent and when its
/// answer came back (the database granted it in between).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Claim {
    pub(crate) fence: u64,
    pub(crate) sent: Instant,
    pub(crate) returned: Instant,
}

/// Wraps a store; the `nth` call (1-based) of `op` announces itself and waits to be resumed.
#[derive(Debug, Clone)]
pub(crate) struct Tripwire {
    inner: Arc<dyn TokenStore>,
    state: Arc<State>,
    /// Counts the calls under way, if shared with the test.
    busy: Option<Arc<AtomicUsize>>,
}

#[derive(Debug)]
struct State {
    op: Op,
    nth: u64,
    calls: AtomicU64,
    reached: Notify,
    resume: Notify,
    acquired: Mutex<Vec<Claim>>,
    commits: Mutex<Vec<CommitOutcome>>,
    loads: Mutex<Vec<Instant>>,
}

impl Tripwire {
    pub(crate) fn new(inner: Arc<dyn TokenStore>, op: Op, nth: u64) -> Self {
        Self {
            inner,
            state: Arc::new(State {
                op,
                nth,
                calls: AtomicU64::new(0),
                reached: Notify::new(),
                resume: Notify::new(),
                acquired: Mutex::new(Vec::new()),
                commits: Mutex::new(Vec::new()),
                loads: Mutex::new(Vec::new()),
            }),
            busy: None,
        }
    }

    /// The same wrapper, counting its calls under way in `busy` (which other wrappers may share).
    pub(crate) fn counting(self, busy: Arc<AtomicUsize>) -> Self {
        Self {
            busy: Some(busy),
            ..self
        }
    }

    /// When each load through this wrapper was sent.
    #[allow(
        dead_code,
        reason = "only the PostgreSQL tests have push notices to lose"
    )]
    pub(crate) fn loads(&self) -> Vec<Instant> {
        self.state.loads.lock().unwrap().clone()
    }

    /// Counts a call under way until dropped (also when the call is cancelled).
    fn busy(&self) -> Busy<'_> {
        if let Some(busy) = &self.busy {
            busy.fetch_add(1, Ordering::SeqCst);
        }
        Busy(self.busy.as_deref())
    }

    /// Waits (at most `limit`) until the chosen call has arrived and stopped.
    pub(crate) async fn reached(&self, limit: Duration) {
        tokio::time::timeout(limit, self.state.reached.notified())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{:?} #{} not reached within {limit:?}",
                    self.state.op, self.state.nth
                )
            });
    }

    /// Lets the stopped call go on to the store.
    pub(crate) fn resume(&self) {
        self.state.resume.notify_one();
    }

    /// The leases granted through this wrapper.
    pub(crate) fn acquired(&self) -> Vec<Claim> {
        self.state.acquired.lock().unwrap().clone()
    }

    /// The outcomes of the commits through this wrapper.
    pub(crate) fn commits(&self) -> Vec<CommitOutcome> {
        self.state.commits.lock().unwrap().clone()
    }

    /// Stops the chosen call until resumed; then counts the call as under way.
    async fn checkpoint(&self, op: Op) -> Busy<'_> {
        self.stop_if_chosen(op).await;
        self.busy()
    }

    async fn stop_if_chosen(&self, op: Op) {
        if op != self.state.op {
            return;
        }
        let call = self.state.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if call == self.state.nth {
            self.state.reached.notify_one();
            self.state.resume.notified().await;
        }
    }
}

#[async_trait]
impl TokenStore for Tripwire {
    async fn load(&self, key: &TokenKey) -> Result<Snapshot, StoreError> {
        let _busy = self.checkpoint(Op::Load).await;
        self.state.loads.lock().unwrap().push(Instant::now());
        self.inner.load(key).await
    }

    async fn acquire_lease(
        &self,
        key: &TokenKey,
        holder: &HolderId,
        ttl: Duration,
    ) -> Result<LeaseAttempt, StoreError> {
        let _busy = self.checkpoint(Op::Acquire).await;
        let sent = Instant::now();
        let attempt = self.inner.acquire_lease(key, holder, ttl).await?;
        if let LeaseAttempt::Acquired(lease) = &attempt {
            self.state.acquired.lock().unwrap().push(Claim {
                fence: lease.fence(),
                sent,
                returned: Instant::now(),
            });
        }
        Ok(attempt)
    }

    async fn release_lease(&self, lease: &Lease) -> Result<(), StoreError> {
        let _busy = self.busy();
        self.inner.release_lease(lease).await
    }

    async fn commit(&self, lease: &Lease, token: &Token) -> Result<CommitOutcome, StoreError> {
        let _busy = self.checkpoint(Op::Commit).await;
        let outcome = self.inner.commit(lease, token).await?;
        self.state.commits.lock().unwrap().push(outcome);
        Ok(outcome)
    }

    async fn invalidate(
        &self,
        key: &TokenKey,
        fingerprint: &Fingerprint,
    ) -> Result<InvalidateOutcome, StoreError> {
        let _busy = self.busy();
        self.inner.invalidate(key, fingerprint).await
    }

    async fn set_cooldown(&self, key: &TokenKey, duration: Duration) -> Result<(), StoreError> {
        let _busy = self.busy();
        self.inner.set_cooldown(key, duration).await
    }

    fn changes(&self) -> Option<ChangeFeed> {
        self.inner.changes()
    }
}

/// A call under way, counted until dropped.
struct Busy<'a>(Option<&'a AtomicUsize>);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        if let Some(busy) = self.0 {
            busy.fetch_sub(1, Ordering::SeqCst);
        }
    }
}
