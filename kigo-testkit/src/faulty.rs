//! A store wrapper that fails on demand, or holds operations at a gate, for tests of store
//! outages and of replicas that pause or die mid-operation.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use kigo_core::runtime::AsyncSleep;
use kigo_core::store::{
    ChangeFeed, ChangeNotice, CommitOutcome, HolderId, InvalidateOutcome, Lease, LeaseAttempt,
    Snapshot,
};
use kigo_core::{Fingerprint, StoreError, Token, TokenKey, TokenStore};
use tokio::sync::{broadcast, oneshot, watch};

/// Wraps a store; while failing, every operation returns [`StoreError::Unavailable`]; while
/// hanging, it never answers; while a [`Gate`] is held, operations that reach it wait there (a
/// replica paused, or dead if the gate never opens). It can also slow every operation down, fail
/// a number of them, lose the answers of commits it made, and deliver change notices for keys
/// that did not change.
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
    /// How many of the next operations fail.
    failing_ops: AtomicU64,
    /// How many of the next commits are made but answered with a failure.
    lost_commit_answers: AtomicU64,
    /// How long each operation takes, on which clock.
    latency: Mutex<Option<(Duration, Arc<dyn AsyncSleep>)>>,
    /// Notices for keys that did not change, to every change feed handed out.
    forged: Forged,
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

/// Sends forged change notices to every feed subscribed.
#[derive(Debug)]
struct Forged(broadcast::Sender<TokenKey>);

impl Default for Forged {
    fn default() -> Self {
        Self(broadcast::Sender::new(FORGED_BACKLOG))
    }
}

/// How many forged notices a feed may fall behind before it misses some (as a slow subscriber
/// of a real store would).
const FORGED_BACKLOG: usize = 64;

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

    /// Makes the next `count` operations fail, whichever they are, while later ones work: a
    /// flaky connection.
    pub fn fail_next(&self, count: u64) {
        self.switches.failing_ops.store(count, Ordering::SeqCst);
    }

    /// Makes the next `count` commits happen in the store but answer with a failure, as a commit
    /// whose answer was lost in transit would: the caller cannot tell whether it committed.
    pub fn lose_commit_answers(&self, count: u64) {
        self.switches
            .lost_commit_answers
            .store(count, Ordering::SeqCst);
    }

    /// Makes every operation take `latency` on `sleeper`'s clock: half of it to reach the store,
    /// half for the answer. A request once sent reaches the store even if its caller stops
    /// waiting (it was on the wire), so a caller that gives up may have given up on an operation
    /// that happens later: a commit arriving after its lease lapsed. The request travels in a
    /// task on the caller's tokio runtime. `Duration::ZERO` makes the store fast again.
    pub fn set_latency(&self, latency: Duration, sleeper: Arc<dyn AsyncSleep>) {
        let latency = (!latency.is_zero()).then_some((latency, sleeper));
        *self
            .switches
            .latency
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = latency;
    }

    /// Delivers a change notice for `key` on every change feed handed out so far, though nothing
    /// changed: a duplicated or late notice, which a subscriber must take as a hint only.
    pub fn forge_notice(&self, key: TokenKey) {
        // No feed subscribed: nobody to deceive.
        let _ = self.switches.forged.0.send(key);
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

    /// Runs `operation` (made from a handle on this store) as the store would answer it now.
    /// With latency, the request travels half of it in a task of its own, so that it reaches
    /// the store even if the caller stops waiting (a request on the wire cannot be recalled);
    /// the answer takes the other half.
    async fn answer<T, F, Fut>(&self, operation: F) -> Result<T, StoreError>
    where
        F: FnOnce(Self) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, StoreError>> + Send + 'static,
        T: Send + 'static,
    {
        self.check().await?;
        let Some((latency, sleeper)) = self.latency() else {
            return operation(self.clone()).await;
        };
        let (answer, answered) = oneshot::channel();
        let there = sleeper.sleep(latency / 2);
        let store = self.clone();
        tokio::spawn(async move {
            there.await;
            let _ = answer.send(operation(store).await);
        });
        // The task ended without an answer only if the operation panicked.
        let answer = answered
            .await
            .unwrap_or_else(|_| Err(StoreError::unavailable(InjectedFault)));
        sleeper.sleep(latency / 2).await;
        answer
    }

    async fn check(&self) -> Result<(), StoreError> {
        self.switches.calls.fetch_add(1, Ordering::SeqCst);
        if self.switches.hanging.load(Ordering::SeqCst) {
            // A store that accepted the request and never answers (a network black hole).
            std::future::pending::<()>().await;
        }
        if self.switches.failing.load(Ordering::SeqCst) || take(&self.switches.failing_ops) {
            return Err(StoreError::unavailable(InjectedFault));
        }
        self.panic_if_told();
        Ok(())
    }

    fn latency(&self) -> Option<(Duration, Arc<dyn AsyncSleep>)> {
        self.switches
            .latency
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn panic_if_told(&self) {
        if take(&self.switches.panicking) {
            panic!("an injected panic of the token store");
        }
    }
}

/// Takes one from `counter` if it is not zero; true if it did.
fn take(counter: &AtomicU64) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
            left.checked_sub(1)
        })
        .is_ok()
}

#[async_trait]
impl TokenStore for FaultyStore {
    async fn load(&self, key: &TokenKey) -> Result<Snapshot, StoreError> {
        let key = key.clone();
        self.answer(move |this| async move { this.store.load(&key).await })
            .await
    }

    async fn acquire_lease(
        &self,
        key: &TokenKey,
        holder: &HolderId,
        ttl: Duration,
    ) -> Result<LeaseAttempt, StoreError> {
        let (key, holder) = (key.clone(), holder.clone());
        self.answer(move |this| async move {
            let attempt = this.store.acquire_lease(&key, &holder, ttl).await?;
            if matches!(attempt, LeaseAttempt::Acquired(_)) {
                this.gate(Gate::AfterAcquire).pass().await;
            }
            Ok(attempt)
        })
        .await
    }

    async fn release_lease(&self, lease: &Lease) -> Result<(), StoreError> {
        let lease = lease.clone();
        self.answer(move |this| async move {
            this.gate(Gate::BeforeRelease).pass().await;
            this.store.release_lease(&lease).await
        })
        .await
    }

    async fn commit(&self, lease: &Lease, token: &Token) -> Result<CommitOutcome, StoreError> {
        let (lease, token) = (lease.clone(), token.clone());
        self.answer(move |this| async move {
            this.gate(Gate::BeforeCommit).pass().await;
            if take(&this.switches.failing_commits) {
                return Err(StoreError::unavailable(InjectedFault));
            }
            let outcome = this.store.commit(&lease, &token).await?;
            if take(&this.switches.lost_commit_answers) {
                return Err(StoreError::unavailable(InjectedFault));
            }
            Ok(outcome)
        })
        .await
    }

    async fn invalidate(
        &self,
        key: &TokenKey,
        fingerprint: &Fingerprint,
    ) -> Result<InvalidateOutcome, StoreError> {
        let (key, fingerprint) = (key.clone(), *fingerprint);
        self.answer(move |this| async move { this.store.invalidate(&key, &fingerprint).await })
            .await
    }

    async fn set_cooldown(&self, key: &TokenKey, duration: Duration) -> Result<(), StoreError> {
        let key = key.clone();
        self.answer(move |this| async move { this.store.set_cooldown(&key, duration).await })
            .await
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
        // The real feed ends with a `None`, which ends the merged feed too: a lost connection
        // must still end it, whatever forged notices may come.
        let real = feed
            .filter(move |_| std::future::ready(!switches.mute_changes.load(Ordering::SeqCst)))
            .map(Some)
            .chain(futures_util::stream::once(std::future::ready(None)));
        let forged = forged_notices(self.switches.forged.0.subscribe()).map(Some);
        let merged = futures_util::stream::select(real, forged)
            .take_while(|notice| std::future::ready(notice.is_some()))
            .filter_map(std::future::ready);
        Some(Box::pin(merged.take_until(cut)))
    }
}

/// The forged notices a feed receives, from its subscription on.
fn forged_notices(
    receiver: broadcast::Receiver<TokenKey>,
) -> impl futures_util::Stream<Item = ChangeNotice> {
    futures_util::stream::unfold(receiver, |mut receiver| async move {
        loop {
            match receiver.recv().await {
                Ok(key) => return Some((ChangeNotice { key }, receiver)),
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use futures_util::FutureExt;
    use kigo_core::runtime::TimeSource;
    use kigo_core::store::Entry;
    use kigo_core::{MemoryStore, PartnerId, TokenSecret};

    use super::*;
    use crate::ManualClock;

    fn key() -> TokenKey {
        TokenKey::partner(PartnerId::new("faulty").unwrap())
    }

    async fn acquired(store: &FaultyStore) -> Lease {
        match store
            .acquire_lease(&key(), &HolderId::random(), Duration::from_secs(30))
            .await
            .unwrap()
        {
            LeaseAttempt::Acquired(lease) => lease,
            held => panic!("{held:?}"),
        }
    }

    fn token(now: SystemTime) -> Token {
        Token::new(TokenSecret::new("t"), now, now + Duration::from_secs(60)).unwrap()
    }

    #[tokio::test]
    async fn a_held_gate_holds_the_operation_until_opened() {
        let store = FaultyStore::new(Arc::new(MemoryStore::new()));
        let lease = acquired(&store).await;
        store.hold(Gate::BeforeCommit);
        assert!(!store.reached(Gate::BeforeCommit, Duration::ZERO).await);

        let committing = tokio::spawn({
            let store = store.clone();
            async move { store.commit(&lease, &token(SystemTime::now())).await }
        });
        assert!(
            store
                .reached(Gate::BeforeCommit, Duration::from_secs(10))
                .await
        );
        assert!(matches!(
            store.load(&key()).await.unwrap().entry,
            Entry::Absent
        ));

        store.open(Gate::BeforeCommit);
        assert_eq!(committing.await.unwrap().unwrap(), CommitOutcome::Committed);
    }

    #[tokio::test]
    async fn failing_the_next_operations_fails_that_many_of_any_kind() {
        let store = FaultyStore::new(Arc::new(MemoryStore::new()));
        store.fail_next(2);
        assert!(store.load(&key()).await.is_err());
        assert!(
            store
                .set_cooldown(&key(), Duration::from_secs(1))
                .await
                .is_err()
        );
        assert!(store.load(&key()).await.is_ok());
    }

    #[tokio::test]
    async fn a_lost_commit_answer_is_a_failure_though_the_token_was_committed() {
        let store = FaultyStore::new(Arc::new(MemoryStore::new()));
        let lease = acquired(&store).await;
        let token = token(SystemTime::now());
        store.lose_commit_answers(1);
        assert!(store.commit(&lease, &token).await.is_err());
        let stored = store.load(&key()).await.unwrap();
        assert_eq!(
            stored.token().map(Token::fingerprint),
            Some(token.fingerprint())
        );
    }

    #[tokio::test]
    async fn a_slow_store_answers_late_and_a_sent_request_arrives_though_its_caller_gave_up() {
        let clock = ManualClock::new();
        let store = FaultyStore::new(Arc::new(MemoryStore::with_clock(Arc::new(clock.clone()))));
        let lease = acquired(&store).await;
        store.set_latency(Duration::from_secs(4), Arc::new(clock.clone()));
        let token = token(clock.now());
        let mut commit = store.commit(&lease, &token);
        assert!((&mut commit).now_or_never().is_none());
        clock.advance(Duration::from_secs(2));
        tokio::task::yield_now().await;
        assert!(
            (&mut commit).now_or_never().is_none(),
            "the answer is on its way"
        );
        // The caller gives up; the commit reached the store all the same.
        drop(commit);
        let key = key();
        let mut load = store.load(&key);
        assert!((&mut load).now_or_never().is_none());
        clock.advance(Duration::from_secs(2));
        tokio::task::yield_now().await;
        assert!((&mut load).now_or_never().is_none());
        clock.advance(Duration::from_secs(2));
        tokio::task::yield_now().await;
        let stored = load.now_or_never().expect("answered").unwrap();
        assert_eq!(
            stored.token().map(Token::fingerprint),
            Some(token.fingerprint())
        );

        store.set_latency(Duration::ZERO, Arc::new(clock.clone()));
        assert!(store.load(&key).now_or_never().is_some());
    }

    #[tokio::test]
    async fn a_forged_notice_reaches_every_feed_and_a_real_end_still_ends_it() {
        let inner = Arc::new(FaultyStore::new(Arc::new(MemoryStore::new())));
        let store = FaultyStore::new(inner.clone());
        let mut feeds = [store.changes().unwrap(), store.changes().unwrap()];
        store.forge_notice(key());
        for feed in &mut feeds {
            assert_eq!(feed.next().await, Some(ChangeNotice { key: key() }));
        }
        // The wrapped store's feeds end (a lost connection): so do the merged ones.
        inner.cut_changes();
        for feed in &mut feeds {
            let end = tokio::time::timeout(Duration::from_secs(10), feed.next()).await;
            assert_eq!(
                end.ok(),
                Some(None),
                "the merged feed ends with the real one"
            );
        }
    }
}
