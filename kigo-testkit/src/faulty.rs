//! A store wrapper that fails on demand, or holds operations at a gate, for tests of store
//! outages and of replicas that pause or die mid-operation.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use kigo_core::store::{
    ChangeFeed, CommitOutcome, HolderId, InvalidateOutcome, Lease, LeaseAttempt, Snapshot,
};
use kigo_core::{Fingerprint, StoreError, Token, TokenKey, TokenStore};
use tokio::sync::watch;

/// Wraps a store; while failing, every operation returns [`StoreError::Unavailable`]; while
/// hanging, it never answers; while a [`Gate`] is held, operations that reach it wait there (a
/// replica paused, or dead if the gate never opens).
///
/// Clones share the switches, so a test keeps one clone to flip them.
#[derive(Debug, Clone)]
pub struct FaultyStore {
    store: Arc<dyn TokenStore>,
    switches: Arc<Switches>,
}

#[derive(Debug, Default)]
struct Switches {
    failing: AtomicBool,
    hanging: AtomicBool,
    mute_changes: AtomicBool,
    /// How many of the next commits fail.
    failing_commits: AtomicU64,
    /// How many of the next operations panic.
    panicking: AtomicU64,
    /// Bumped to end every change feed handed out so far.
    cuts: watch::Sender<u64>,
    subscriptions: AtomicU64,
    calls: AtomicU64,
    gates: [GateState; Gate::COUNT],
}

/// Where a [`FaultyStore`] can hold an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Gate {
    /// Right after a lease was granted (the claim is in the store), before the caller sees it.
    AfterAcquire,
    /// Right before a commit is sent.
    BeforeCommit,
    /// Right before a lease release is sent.
    BeforeRelease,
}

impl Gate {
    const COUNT: usize = 3;
}

#[derive(Debug)]
struct GateState {
    held: AtomicBool,
    /// How many operations reached the gate since it was held.
    reached: watch::Sender<usize>,
    open: watch::Sender<bool>,
}

impl Default for GateState {
    fn default() -> Self {
        Self {
            held: AtomicBool::new(false),
            reached: watch::Sender::new(0),
            open: watch::Sender::new(true),
        }
    }
}

impl GateState {
    async fn pass(&self) {
        if !self.held.load(Ordering::SeqCst) {
            return;
        }
        let mut open = self.open.subscribe();
        self.reached.send_modify(|count| *count += 1);
        let _ = open.wait_for(|open| *open).await;
    }
}

/// The injected failure.
#[derive(Debug, thiserror::Error)]
#[error("injected store failure")]
pub struct InjectedFault;

impl FaultyStore {
    /// Wraps `store`, healthy at first.
    pub fn new(store: Arc<dyn TokenStore>) -> Self {
        Self {
            store,
            switches: Arc::default(),
        }
    }

    /// Makes every operation fail (or work again).
    pub fn set_failing(&self, failing: bool) {
        self.switches.failing.store(failing, Ordering::SeqCst);
    }

    /// Makes every operation hang without an answer (or answer again), as a black-holed
    /// connection would; calls already hanging stay so.
    pub fn set_hanging(&self, hanging: bool) {
        self.switches.hanging.store(hanging, Ordering::SeqCst);
    }

    /// Makes the next `count` commits fail while every other operation works (`u64::MAX`: in
    /// effect all of them), as a store that reads but cannot write would, or a commit whose answer
    /// was lost.
    pub fn fail_commits(&self, count: u64) {
        self.switches.failing_commits.store(count, Ordering::SeqCst);
    }

    /// Makes the next `count` operations (subscriptions included) panic, as a store with a bug
    /// would.
    pub fn panic_next(&self, count: u64) {
        self.switches.panicking.store(count, Ordering::SeqCst);
    }

    /// Drops every change notice (or delivers them again), as a lost notification would.
    pub fn mute_changes(&self, mute: bool) {
        self.switches.mute_changes.store(mute, Ordering::SeqCst);
    }

    /// Closes `gate`: operations that reach it wait until [`FaultyStore::open`].
    pub fn hold(&self, gate: Gate) {
        let state = self.gate(gate);
        state.open.send_replace(false);
        state.reached.send_replace(0);
        state.held.store(true, Ordering::SeqCst);
    }

    /// Whether an operation reached the held `gate` within `deadline` (and waits there).
    pub async fn reached(&self, gate: Gate, deadline: Duration) -> bool {
        let mut reached = self.gate(gate).reached.subscribe();
        tokio::time::timeout(deadline, reached.wait_for(|count| *count > 0))
            .await
            .is_ok_and(|waited| waited.is_ok())
    }

    /// Lets the operations waiting at `gate` (and later ones) through.
    pub fn open(&self, gate: Gate) {
        let state = self.gate(gate);
        state.held.store(false, Ordering::SeqCst);
        state.open.send_replace(true);
    }

    fn gate(&self, gate: Gate) -> &GateState {
        &self.switches.gates[gate as usize]
    }

    /// Ends every change feed handed out so far, as a lost connection would.
    pub fn cut_changes(&self) {
        self.switches.cuts.send_modify(|cuts| *cuts += 1);
    }

    /// How many times a change feed was asked for.
    pub fn subscriptions(&self) -> u64 {
        self.switches.subscriptions.load(Ordering::SeqCst)
    }

    /// How many operations were attempted, failing or not.
    pub fn calls(&self) -> u64 {
        self.switches.calls.load(Ordering::SeqCst)
    }

    async fn check(&self) -> Result<(), StoreError> {
        self.switches.calls.fetch_add(1, Ordering::SeqCst);
        if self.switches.hanging.load(Ordering::SeqCst) {
            // A store that accepted the request and never answers (a network black hole).
            std::future::pending::<()>().await;
        }
        if self.switches.failing.load(Ordering::SeqCst) {
            return Err(StoreError::unavailable(InjectedFault));
        }
        self.panic_if_told();
        Ok(())
    }

    fn panic_if_told(&self) {
        let panicking = &self.switches.panicking;
        let told = panicking.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
            left.checked_sub(1)
        });
        if told.is_ok() {
            panic!("an injected panic of the token store");
        }
    }
}

#[async_trait]
impl TokenStore for FaultyStore {
    async fn load(&self, key: &TokenKey) -> Result<Snapshot, StoreError> {
        self.check().await?;
        self.store.load(key).await
    }

    async fn acquire_lease(
        &self,
        key: &TokenKey,
        holder: &HolderId,
        ttl: Duration,
    ) -> Result<LeaseAttempt, StoreError> {
        self.check().await?;
        let attempt = self.store.acquire_lease(key, holder, ttl).await?;
        if matches!(attempt, LeaseAttempt::Acquired(_)) {
            self.gate(Gate::AfterAcquire).pass().await;
        }
        Ok(attempt)
    }

    async fn release_lease(&self, lease: &Lease) -> Result<(), StoreError> {
        self.check().await?;
        self.gate(Gate::BeforeRelease).pass().await;
        self.store.release_lease(lease).await
    }

    async fn commit(&self, lease: &Lease, token: &Token) -> Result<CommitOutcome, StoreError> {
        self.check().await?;
        self.gate(Gate::BeforeCommit).pass().await;
        let failing = &self.switches.failing_commits;
        let fail = failing.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
            left.checked_sub(1)
        });
        if fail.is_ok() {
            return Err(StoreError::unavailable(InjectedFault));
        }
        self.store.commit(lease, token).await
    }

    async fn invalidate(
        &self,
        key: &TokenKey,
        fingerprint: &Fingerprint,
    ) -> Result<InvalidateOutcome, StoreError> {
        self.check().await?;
        self.store.invalidate(key, fingerprint).await
    }

    async fn set_cooldown(&self, key: &TokenKey, duration: Duration) -> Result<(), StoreError> {
        self.check().await?;
        self.store.set_cooldown(key, duration).await
    }

    fn changes(&self) -> Option<ChangeFeed> {
        self.panic_if_told();
        let switches = Arc::clone(&self.switches);
        let feed = self.store.changes()?;
        self.switches.subscriptions.fetch_add(1, Ordering::SeqCst);
        let mut cuts = self.switches.cuts.subscribe();
        let cut = async move {
            let _ = cuts.changed().await;
        };
        Some(Box::pin(feed.take_until(cut).filter(move |_| {
            std::future::ready(!switches.mute_changes.load(Ordering::SeqCst))
        })))
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use kigo_core::store::Entry;
    use kigo_core::{MemoryStore, PartnerId, TokenSecret};

    use super::*;

    #[tokio::test]
    async fn a_held_gate_holds_the_operation_until_opened() {
        let store = FaultyStore::new(Arc::new(MemoryStore::new()));
        let key = TokenKey::partner(PartnerId::new("gated").unwrap());
        let lease = match store
            .acquire_lease(&key, &HolderId::random(), Duration::from_secs(30))
            .await
            .unwrap()
        {
            LeaseAttempt::Acquired(lease) => lease,
            held => panic!("{held:?}"),
        };
        store.hold(Gate::BeforeCommit);
        assert!(!store.reached(Gate::BeforeCommit, Duration::ZERO).await);

        let now = SystemTime::now();
        let token = Token::new(TokenSecret::new("t"), now, now + Duration::from_secs(60)).unwrap();
        let committing = tokio::spawn({
            let store = store.clone();
            async move { store.commit(&lease, &token).await }
        });
        assert!(
            store
                .reached(Gate::BeforeCommit, Duration::from_secs(10))
                .await
        );
        assert!(matches!(
            store.load(&key).await.unwrap().entry,
            Entry::Absent
        ));

        store.open(Gate::BeforeCommit);
        assert_eq!(committing.await.unwrap().unwrap(), CommitOutcome::Committed);
    }
}
