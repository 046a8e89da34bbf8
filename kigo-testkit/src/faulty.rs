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
use tokio::sync::{broadcast, watch};

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
    /// half for the answer, so that a caller that gives up in the second half gave up on an
    /// operation that happened. `Duration::ZERO` makes the store fast again.
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

    /// Runs `operation` as the store would answer it now: after the checks and half the latency
    /// on the way there, and with the other half on the way back.
    async fn answer<T>(
        &self,
        operation: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        self.check().await?;
        let answer = operation.await;
        self.travel().await;
        answer
    }

    async fn check(&self) -> Result<(), StoreError> {
        self.switches.calls.fetch_add(1, Ordering::SeqCst);
        if self.switches.hanging.load(Ordering::SeqCst) {
            // A store that accepted the request and never answers (a network black hole).
            std::future::pending::<()>().await;
        }
        self.travel().await;
        if self.switches.failing.load(Ordering::SeqCst) || take(&self.switches.failing_ops) {
            return Err(StoreError::unavailable(InjectedFault));
        }
        self.panic_if_told();
        Ok(())
    }

    /// Half the latency: one way of a round trip.
    async fn travel(&self) {
        let latency = self
            .switches
            .latency
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some((latency, sleeper)) = latency {
            sleeper.sleep(latency / 2).await;
        }
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
        self.answer(self.store.load(key)).await
    }

    async fn acquire_lease(
        &self,
        key: &TokenKey,
        holder: &HolderId,
        ttl: Duration,
    ) -> Result<LeaseAttempt, StoreError> {
        self.answer(async {
            let attempt = self.store.acquire_lease(key, holder, ttl).await?;
            if matches!(attempt, LeaseAttempt::Acquired(_)) {
                self.gate(Gate::AfterAcquire).pass().await;
            }
            Ok(attempt)
        })
        .await
    }

    async fn release_lease(&self, lease: &Lease) -> Result<(), StoreError> {
        self.answer(async {
            self.gate(Gate::BeforeRelease).pass().await;
            self.store.release_lease(lease).await
        })
        .await
    }

    async fn commit(&self, lease: &Lease, token: &Token) -> Result<CommitOutcome, StoreError> {
        self.answer(async {
            self.gate(Gate::BeforeCommit).pass().await;
            if take(&self.switches.failing_commits) {
                return Err(StoreError::unavailable(InjectedFault));
            }
            let outcome = self.store.commit(lease, token).await?;
            if take(&self.switches.lost_commit_answers) {
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
        self.answer(self.store.invalidate(key, fingerprint)).await
    }

    async fn set_cooldown(&self, key: &TokenKey, duration: Duration) -> Result<(), StoreError> {
        self.answer(self.store.set_cooldown(key, duration)).await
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

    fn token() -> Token {
        let now = SystemTime::now();
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
            async move { store.commit(&lease, &token()).await }
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
        let token = token();
        store.lose_commit_answers(1);
        assert!(store.commit(&lease, &token).await.is_err());
        let stored = store.load(&key()).await.unwrap();
        assert_eq!(
            stored.token().map(Token::fingerprint),
            Some(token.fingerprint())
        );
    }

    #[tokio::test]
    async fn latency_delays_every_answer_on_the_given_clock() {
        let clock = ManualClock::new();
        let store = FaultyStore::new(Arc::new(MemoryStore::with_clock(Arc::new(clock.clone()))));
        store.set_latency(Duration::from_secs(4), Arc::new(clock.clone()));
        let key = key();
        let mut load = store.load(&key);
        assert!((&mut load).now_or_never().is_none());
        clock.advance(Duration::from_secs(2));
        assert!(
            (&mut load).now_or_never().is_none(),
            "half there, half back"
        );
        clock.advance(Duration::from_secs(2));
        assert!(load.now_or_never().is_some());

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
