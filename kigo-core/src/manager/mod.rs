//! The token manager: hands out cached tokens lock-free and renews them, once per fleet, through
//! a [`TokenStore`].

use std::fmt;
use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::{Duration, SystemTime};

use futures_util::future::{Either, select};

mod background;
mod builder;
mod flight;
mod lifecycle;
mod metrics;
mod partners;
mod registry;
mod scheduler;
mod slot;
mod status;
mod user_ids;

pub use builder::{BuildError, HasStore, ManagerBuilder, NeedsStore};
pub use flight::{CreateTimedOut, RefreshPanicked, StaleOnArrival, StoreTimedOut};
pub use metrics::MetricsSnapshot;
pub use slot::TokenGuard;
pub use status::{Health, KeyStatus, ManagerStatus, TokenOrigin, TokenStatus};
pub use user_ids::UserIdLogging;

use builder::Config;
use flight::StoreTimedOut as TimedOut;
use lifecycle::Lifecycle;
use metrics::{Metrics, StoreOp};
use partners::PartnerPauses;
use registry::Registry;
use slot::{Cached, KeySlot};

use crate::runtime::RuntimeEnv;
use crate::store::{HolderId, StoreError, TokenStore};
use crate::time::unix_nanos;
use crate::{Error, Fingerprint, KeyScope, Token, TokenKey, TokenSource};

/// Hands out tokens for the keys of one [`KeyScope`] and keeps them fresh.
///
/// - **Hot path**: a cached, valid token is handed out with one atomic pointer load and a time
///   comparison: no lock, no store or network round trip, no allocation, no shared counter.
/// - **Refresh ahead**: each key is renewed in the background at this replica's jittered refresh
///   point (see [`crate::ExpiryPolicy`]), so that no caller waits while a valid token exists.
/// - **Single flight**: concurrent callers of one key share one refresh in this process, and
///   managers sharing a store share one creation per renewal through the store's lease: the
///   winner re-reads, creates and commits with a fenced write; the others wait for the change
///   notice (or poll) and read the store.
/// - **Failures**: a valid token keeps being served while the endpoint or the store fails;
///   transient endpoint failures back off with jitter, honour `Retry-After` and start a cool-down
///   the whole fleet observes, for the whole partner; permanent ones surface at once and pause
///   the fleet for longer; without the store the [`crate::StoreFailurePolicy`] decides; a
///   refresh that panics fails that refresh only.
/// - **Scope**: it serves only the keys of its scope, and refuses others before touching the
///   store or the source.
///
/// Cloning is cheap and shares everything. Background work stops on [`TokenManager::shutdown`]
/// or when the last clone is dropped.
#[derive(Clone)]
pub struct TokenManager {
    inner: Arc<Inner>,
}

/// One key of a [`TokenManager`]: the cheapest way to get its token again and again.
#[derive(Clone)]
pub struct TokenHandle {
    inner: Arc<Inner>,
    slot: Arc<KeySlot>,
}

pub(crate) struct Inner {
    source: Arc<dyn TokenSource>,
    store: Arc<dyn TokenStore>,
    scope: KeyScope,
    env: RuntimeEnv,
    config: Config,
    /// This replica's draw in `[0, 1)` for the refresh window.
    jitter: f64,
    /// How far the hot path's clock may trail; subtracted from stale points once, at install.
    hot_lag: Duration,
    rng: Mutex<fastrand::Rng>,
    replica: String,
    next_holder: AtomicU64,
    registry: Registry,
    /// Creations running now are bounded by this.
    creations: async_lock::Semaphore,
    /// Cool-downs that pause every key of a partner.
    partner_pauses: PartnerPauses,
    metrics: Metrics,
    lifecycle: Arc<Lifecycle>,
    /// When each key is next renewed.
    scheduler: scheduler::Scheduler,
    /// Whether the scheduler and the change follower run.
    background_started: AtomicBool,
}

impl Inner {
    fn new(
        source: Arc<dyn TokenSource>,
        store: Arc<dyn TokenStore>,
        scope: KeyScope,
        env: RuntimeEnv,
        config: Config,
        mut rng: fastrand::Rng,
        replica: String,
    ) -> Self {
        Self {
            source,
            store,
            scope,
            jitter: rng.f64(),
            hot_lag: env.time().coarse_lag(),
            env,
            registry: Registry::new(config.user_keys),
            creations: async_lock::Semaphore::new(config.max_creations),
            partner_pauses: PartnerPauses::default(),
            config,
            rng: Mutex::new(rng),
            replica,
            next_holder: AtomicU64::new(0),
            metrics: Metrics::default(),
            lifecycle: Arc::default(),
            scheduler: scheduler::Scheduler::default(),
            background_started: AtomicBool::new(false),
        }
    }
}

impl TokenManager {
    /// Starts configuring a manager whose tokens come from `source` (an `Arc` of one works too).
    /// Choose its store next.
    pub fn builder(source: impl TokenSource) -> ManagerBuilder<NeedsStore> {
        ManagerBuilder::new(Arc::new(source))
    }

    /// The handle of `key`: keep it to skip the key lookup on every call. A key outside the
    /// manager's scope is refused.
    pub fn handle(&self, key: TokenKey) -> Result<TokenHandle, Error> {
        let slot = self.inner.slot(&key)?;
        Ok(TokenHandle {
            inner: Arc::clone(&self.inner),
            slot,
        })
    }

    /// A valid token for `key`, waiting for a refresh only if none is cached; the wait is bounded
    /// by the manager's `max_wait`. A key outside the scope gets [`Error::ForeignKey`]; otherwise
    /// as [`TokenHandle::token`] says.
    #[inline]
    pub fn token<'a>(&'a self, key: &'a TokenKey) -> TokenFuture<'a> {
        TokenFuture(TokenFutureState::Start { manager: self, key })
    }

    /// Reports that the API rejected the token with `fingerprint` for `key` (a 401): see
    /// [`TokenHandle::invalidate`]. A key outside the scope changes nothing.
    pub fn invalidate(&self, key: &TokenKey, fingerprint: &Fingerprint) -> bool {
        self.handle(key.clone())
            .is_ok_and(|handle| handle.invalidate(fingerprint))
    }

    /// The keys this manager serves.
    pub fn scope(&self) -> &KeyScope {
        &self.inner.scope
    }

    /// When this replica renews `token` (its refresh point, with this replica's jitter).
    pub fn refresh_at(&self, token: &Token) -> SystemTime {
        self.inner.refresh_at(token)
    }

    /// This manager's counters.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.inner.metrics.snapshot()
    }

    /// How many user-level keys are cached now (bounded by the capacity).
    pub fn user_keys(&self) -> usize {
        self.inner.registry.user_keys()
    }

    /// Stops all background work and waits until it has ended. Callers waiting for a refresh get
    /// [`Error::ShutDown`]; leases held are released. Cached tokens can still be read.
    pub async fn shutdown(&self) {
        self.inner.lifecycle.stop();
        self.inner.lifecycle.idle().await;
    }
}

/// The future of [`TokenManager::token`].
///
/// Its first poll hands out a cached, valid token at once: one lookup in the manager's keys, no
/// allocation, and code small enough to be inlined into the caller. Only when no valid token
/// is cached does it make the key's slot and wait for a refresh, in a boxed future, so that
/// this one stays small.
#[must_use = "futures do nothing unless polled"]
pub struct TokenFuture<'a>(TokenFutureState<'a>);

enum TokenFutureState<'a> {
    Start {
        manager: &'a TokenManager,
        key: &'a TokenKey,
    },
    Waiting(Pin<Box<dyn Future<Output = Result<TokenGuard, Error>> + Send + 'a>>),
    Done,
}

impl Future for TokenFuture<'_> {
    type Output = Result<TokenGuard, Error>;

    // Inlined into the awaiting code with the rest of the hot path (down to the entry's
    // validity check): left to the compiler, `poll` stayed a call, and a lookup by key ran 7 %
    // more instructions.
    #[inline(always)]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let TokenFutureState::Start { manager, key } = self.0
            && let Some(token) = manager.cached(key)
        {
            self.0 = TokenFutureState::Done;
            return Poll::Ready(Ok(token));
        }
        self.poll_slow(cx)
    }
}

impl TokenFuture<'_> {
    /// No usable token was cached when first polled: find or make the key's slot (refusing a
    /// foreign key), and wait unless a token came meanwhile.
    #[inline(never)]
    fn poll_slow(&mut self, cx: &mut Context<'_>) -> Poll<Result<TokenGuard, Error>> {
        if let TokenFutureState::Start { manager, key } = self.0 {
            let inner = &manager.inner;
            self.0 = TokenFutureState::Waiting(Box::pin(async move {
                let slot = inner.slot(key)?;
                match slot.cached(inner.env.time().now_coarse_nanos()) {
                    Some(token) => Ok(token),
                    None => inner.wait_for_token(&slot).await,
                }
            }));
        }
        let TokenFutureState::Waiting(waiting) = &mut self.0 else {
            // Polled again after it completed: nothing more to give.
            return Poll::Pending;
        };
        let outcome = ready!(waiting.as_mut().poll(cx));
        self.0 = TokenFutureState::Done;
        Poll::Ready(outcome)
    }
}

impl fmt::Debug for TokenFuture<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not the key: a user ID is shown only as the manager's `UserIdLogging` says.
        let state = match &self.0 {
            TokenFutureState::Start { .. } => "not polled",
            TokenFutureState::Waiting(_) => "waiting for a refresh",
            TokenFutureState::Done => "done",
        };
        f.debug_tuple("TokenFuture").field(&state).finish()
    }
}

impl TokenManager {
    /// A token of `key` usable now, if one is cached: the hot path of [`TokenManager::token`].
    #[inline(always)]
    fn cached(&self, key: &TokenKey) -> Option<TokenGuard> {
        self.inner
            .registry
            .cached(key, self.inner.env.time().now_coarse_nanos())
    }
}

impl fmt::Debug for TokenManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenManager")
            .field("replica", &self.inner.replica)
            .field("scope", &self.inner.scope)
            .field("source", &self.inner.source)
            .field("store", &self.inner.store)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl TokenHandle {
    /// The key of this handle.
    pub fn key(&self) -> &TokenKey {
        &self.slot.key
    }

    /// The cached token if it is valid now: the hot path, never waits.
    #[inline]
    pub fn cached(&self) -> Option<TokenGuard> {
        self.slot.cached(self.inner.env.time().now_coarse_nanos())
    }

    /// A valid token, waiting for a refresh only if none is cached; the wait is bounded by the
    /// manager's `max_wait`.
    ///
    /// # What a caller gets, and when
    /// - A valid cached token: at once, without a lock, the store or the network.
    /// - No valid token: the caller joins the key's refresh (or starts one) and gets the token it
    ///   brings. If another replica holds the lease, the refresh waits for its commit (a change
    ///   notice, or a poll).
    /// - The token endpoint failed transiently (a timeout, a `5xx`, a `429`):
    ///   [`Error::Unavailable`] at once, with `retry_after`. Until then (the backoff, the
    ///   server's `Retry-After`, or a cool-down another replica shared) every call gets the same
    ///   error at once, without calling the endpoint; the refresher retries in the background
    ///   when it ends, so a later call finds a token without waiting.
    /// - The endpoint refused for good (bad credentials): [`Error::Permanent`] at once, and again
    ///   until the slower permanent backoff ends.
    /// - The store is down: the store-failure policy decides ([`Error::StoreUnavailable`] or a
    ///   token created without it); the store is misconfigured for this replica:
    ///   [`Error::StoreMisconfigured`] at once.
    /// - Any of this taking longer than `max_wait`: [`Error::WaitTimedOut`] at that deadline,
    ///   while the refresh goes on for the next caller.
    /// - After [`TokenManager::shutdown`]: [`Error::ShutDown`].
    #[inline]
    pub async fn token(&self) -> Result<TokenGuard, Error> {
        if let Some(token) = self.cached() {
            return Ok(token);
        }
        // Boxed so that this future stays small: polling it on the hot path moves no slow-path state.
        Box::pin(self.inner.wait_for_token(&self.slot)).await
    }

    /// Reports that the API rejected the token with `fingerprint` (a 401).
    ///
    /// Drops the cached token only if it is still that one, so that any number of requests
    /// failing with the same token cause one renewal; a newer token is left alone, and so is a
    /// token younger than the manager's `min_token_age` (a later 401, once it is older, drops
    /// it). The next refresh removes it from the store too (again only if it is still current
    /// there) and never adopts it again. Returns whether the cached token was dropped.
    pub fn invalidate(&self, fingerprint: &Fingerprint) -> bool {
        let current = self.slot.current();
        if current.present
            && current.token.fingerprint() == *fingerprint
            && self.inner.too_young_to_drop(&current.token)
        {
            self.inner.metrics.rejection(&self.slot.key, false);
            let key = self.inner.config.user_ids.show(&self.slot.key);
            tracing::debug!(%key, %fingerprint, "a token younger than the minimum age was rejected; kept");
            return false;
        }
        self.slot.failures().rejected.record(*fingerprint);
        let dropped = self.inner.drop_if_current(&self.slot, fingerprint);
        if dropped {
            self.inner.metrics.rejection(&self.slot.key, true);
            let key = self.inner.config.user_ids.show(&self.slot.key);
            tracing::info!(%key, %fingerprint, "token rejected by the API; renewing");
        }
        dropped
    }
}

impl TokenHandle {
    /// Renews this key now, for the whole fleet, as an operator asks (a suspected leak, the
    /// `kigo renew` command): the fleet's current token, as the store holds it, is marked
    /// rejected here and removed from the store if still current, and one creation under the
    /// lease replaces it; other replicas take the new token from the store (at once where the
    /// store sends change notices). No minimum age applies. Waits as [`TokenHandle::token`]
    /// does.
    pub async fn renew(&self) -> Result<TokenGuard, Error> {
        let load = self.inner.store.load(&self.slot.key);
        let stored = self
            .inner
            .bounded(StoreOp::Load, load)
            .await
            .ok()
            .and_then(|snapshot| snapshot.token().map(Token::fingerprint));
        let cached = self.slot.current();
        let cached = cached.present.then(|| cached.token.fingerprint());
        for fingerprint in stored.into_iter().chain(cached) {
            self.slot.failures().rejected.record(fingerprint);
            self.inner.drop_if_current(&self.slot, &fingerprint);
        }
        Box::pin(self.inner.wait_for_token(&self.slot)).await
    }
}

impl fmt::Debug for TokenHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenHandle")
            .field("key", &self.slot.key)
            .finish_non_exhaustive()
    }
}

impl Inner {
    fn now(&self) -> SystemTime {
        self.env.now()
    }

    /// The slot of `key`, made (and its refresher started) on first use; a key outside the
    /// scope is refused before anything else happens.
    fn slot(self: &Arc<Self>, key: &TokenKey) -> Result<Arc<KeySlot>, Error> {
        if !self.scope.contains(key) {
            return Err(Error::ForeignKey {
                key: key.clone(),
                scope: self.scope.clone(),
            });
        }
        let (slot, created) = self.registry.get_or_insert(key);
        if created {
            self.start_background(&slot);
        }
        Ok(slot)
    }

    /// Makes `cached` the token `slot` hands out.
    fn install(&self, slot: &KeySlot, cached: Cached) {
        self.registry.replace_if(slot, cached, |_| true);
        slot.notify_changed();
    }

    /// Drops the cached token of `slot` if it is the one with `fingerprint`; true if it did.
    fn drop_if_current(&self, slot: &KeySlot, fingerprint: &Fingerprint) -> bool {
        let dropped = self.registry.replace_if(slot, Cached::empty(), |current| {
            current.present && current.token.fingerprint() == *fingerprint
        });
        if dropped {
            slot.note_rejection_drop();
            slot.notify_changed();
        }
        dropped
    }

    /// Whether a 401 for `token` comes too early to drop it.
    fn too_young_to_drop(&self, token: &Token) -> bool {
        let min_age = self
            .config
            .min_token_age
            .min(token.lifetime() / MIN_AGE_SHARE_OF_LIFETIME);
        let age = self
            .now()
            .duration_since(token.issued_at())
            .unwrap_or_default();
        age < min_age
    }

    /// The slow path: join or start flights until a valid token is cached, within `max_wait`.
    async fn wait_for_token(self: &Arc<Self>, slot: &Arc<KeySlot>) -> Result<TokenGuard, Error> {
        let started = self.now();
        let limit = self.config.max_wait;
        let outcome = match self.within(limit, self.flights_until_served(slot)).await {
            Some(outcome) => outcome,
            None => Err(Error::WaitTimedOut {
                key: slot.key.clone(),
                waited: self.now().duration_since(started).unwrap_or_default(),
            }),
        };
        let waited = self.now().duration_since(started).unwrap_or_default();
        self.metrics.waited(&slot.key, waited, outcome.is_ok());
        outcome
    }

    async fn flights_until_served(
        self: &Arc<Self>,
        slot: &Arc<KeySlot>,
    ) -> Result<TokenGuard, Error> {
        let started = self.now();
        for _ in 0..FLIGHTS_PER_CALL {
            if self.lifecycle.is_stopped() {
                return Err(Error::ShutDown);
            }
            self.flight(slot, flight::Reason::Needed).await?;
            if let Some(token) = slot.cached(unix_nanos(self.now())) {
                return Ok(token);
            }
        }
        Err(Error::WaitTimedOut {
            key: slot.key.clone(),
            waited: self.now().duration_since(started).unwrap_or_default(),
        })
    }

    /// `future`'s output, or `None` once `limit` has passed on the manager's clock.
    async fn within<T>(&self, limit: Duration, future: impl Future<Output = T>) -> Option<T> {
        match select(pin!(future), self.env.sleep(limit)).await {
            Either::Left((output, _)) => Some(output),
            Either::Right(((), _)) => None,
        }
    }

    /// Runs a store operation, giving up after the store timeout: a store that never answers must
    /// not hold a refresh, and the callers waiting for it, forever.
    async fn bounded<T>(
        &self,
        op: StoreOp,
        operation: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let limit = self.config.store_timeout;
        let result = self
            .within(limit, operation)
            .await
            .unwrap_or_else(|| Err(StoreError::unavailable(TimedOut(limit))));
        self.metrics.store_op(op, result.as_ref().map(|_| ()));
        result
    }

    /// When this replica renews `token`.
    fn refresh_at(&self, token: &Token) -> SystemTime {
        self.config.expiry.refresh_at(token, self.jitter)
    }

    /// The cache entry for `token`, with this replica's refresh and stale points.
    fn cache_entry(&self, token: Token, origin: TokenOrigin) -> Cached {
        let refresh_at = self.refresh_at(&token);
        let usable_until = self.usable_until(&token);
        Cached::new(token, refresh_at, usable_until, origin)
    }

    /// Until when this replica hands out `token`: its stale point, less the hot path clock's lag.
    fn usable_until(&self, token: &Token) -> SystemTime {
        crate::time::before(self.config.expiry.stale_at(token), self.hot_lag)
    }

    fn next_holder(&self) -> HolderId {
        let n = self.next_holder.fetch_add(1, Ordering::Relaxed);
        let nonce = self.rng().u64(..);
        HolderId::new(format!("{}-{n}-{nonce:016x}", self.replica))
    }

    /// A uniform draw in `[0, 1)` for backoff jitter.
    fn draw(&self) -> f64 {
        self.rng().f64()
    }

    /// The poll interval, jittered into `[interval / 2, interval]`.
    fn poll_delay(&self) -> Duration {
        let interval = self.config.poll_interval;
        interval / 2 + crate::time::share(interval / 2, self.draw())
    }

    fn rng(&self) -> std::sync::MutexGuard<'_, fastrand::Rng> {
        self.rng.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// How many flights a caller goes through before giving up: one that may have been running for
/// another reason (refresh ahead, a store notice), then one of its own.
const FLIGHTS_PER_CALL: usize = 2;

/// The minimum age before a 401 drops a token is at most this fraction of its lifetime (a tenth),
/// so that short-lived tokens stay renewable on a 401.
const MIN_AGE_SHARE_OF_LIFETIME: u32 = 10;

impl Drop for Inner {
    fn drop(&mut self) {
        self.lifecycle.stop();
    }
}
