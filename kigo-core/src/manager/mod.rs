//! The token manager: hands out cached tokens lock-free and renews them, once per fleet, through
//! a [`TokenStore`].

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use futures_channel::oneshot;
use futures_util::FutureExt;

mod background;
mod flight;
mod lifecycle;
mod metrics;
mod registry;
mod slot;

pub use flight::{CreateTimedOut, StaleOnArrival, StoreTimedOut};
pub use metrics::MetricsSnapshot;
pub use slot::TokenGuard;

use flight::Reason;
use lifecycle::Lifecycle;
use metrics::{Metrics, bump};
use registry::Registry;
use slot::{Flight, KeySlot};

use crate::policy::{BackoffPolicy, ExpiryPolicy, StoreFailurePolicy};
use crate::runtime::RuntimeEnv;
use crate::store::{HolderId, MemoryStore, TokenStore};
use crate::{Error, Fingerprint, Token, TokenKey, TokenSource};

/// Hands out tokens for any number of keys and keeps them fresh.
///
/// - **Hot path**: a cached, valid token is handed out with one atomic pointer load and a time
///   comparison: no lock, no store or network round trip, no allocation, no shared counter.
/// - **Refresh ahead**: each key is renewed in the background at this replica's jittered refresh
///   point (see [`ExpiryPolicy`]), so that no caller waits while a valid token exists.
/// - **Single flight**: concurrent callers of one key share one refresh in this process, and
///   managers sharing a store share one creation per renewal through the store's lease: the
///   winner re-reads, creates and commits with a fenced write; the others wait for the change
///   notice (or poll) and read the store.
/// - **Failures**: a valid token keeps being served while the endpoint or the store fails;
///   transient endpoint failures back off with jitter, honour `Retry-After` and start a cool-down
///   the whole fleet observes; permanent ones surface at once; without the store the
///   [`StoreFailurePolicy`] decides.
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
    metrics: Metrics,
    lifecycle: Arc<Lifecycle>,
    following_changes: AtomicBool,
}

#[derive(Debug, Clone)]
struct Config {
    expiry: ExpiryPolicy,
    backoff: BackoffPolicy,
    store_failure: StoreFailurePolicy,
    lease_ttl: Duration,
    create_timeout: Duration,
    store_timeout: Duration,
    poll_interval: Duration,
    max_wait: Duration,
    user_keys: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            expiry: ExpiryPolicy::default(),
            backoff: BackoffPolicy::default(),
            store_failure: StoreFailurePolicy::default(),
            lease_ttl: Duration::from_secs(30),
            create_timeout: Duration::from_secs(10),
            store_timeout: Duration::from_secs(5),
            poll_interval: Duration::from_millis(500),
            max_wait: Duration::from_secs(45),
            user_keys: 10_000,
        }
    }
}

/// A manager configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// No runtime was given and the caller is not inside a tokio runtime.
    #[error("no runtime: build inside a tokio runtime or pass one with `runtime(...)`")]
    NoRuntime,
    /// Settings that contradict each other.
    #[error("invalid manager configuration: {0}")]
    Invalid(&'static str),
}

/// Configures a [`TokenManager`]. Every setting has a default fit for Kigo's 30-minute tokens.
pub struct ManagerBuilder {
    source: Arc<dyn TokenSource>,
    store: Option<Arc<dyn TokenStore>>,
    env: Option<RuntimeEnv>,
    config: Config,
    seed: Option<u64>,
    replica: Option<String>,
}

impl fmt::Debug for ManagerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagerBuilder")
            .field("source", &self.source)
            .field("store", &self.store)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl ManagerBuilder {
    /// The store replicas share. Default: a private [`MemoryStore`] (no sharing across processes).
    pub fn store(mut self, store: Arc<dyn TokenStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// The clock, sleeper and spawner. Default: the system clock and the caller's tokio runtime.
    pub fn runtime(mut self, env: RuntimeEnv) -> Self {
        self.env = Some(env);
        self
    }

    /// When to renew and until when to hand out (see [`ExpiryPolicy`]).
    pub fn expiry(mut self, policy: ExpiryPolicy) -> Self {
        self.config.expiry = policy;
        self
    }

    /// How to space retries after failures (see [`BackoffPolicy`]).
    pub fn backoff(mut self, policy: BackoffPolicy) -> Self {
        self.config.backoff = policy;
        self
    }

    /// What to do when a token is needed and the store is unreachable.
    pub fn store_failure(mut self, policy: StoreFailurePolicy) -> Self {
        self.config.store_failure = policy;
        self
    }

    /// How long a refresh lease lasts (default 30 s): a crashed holder delays renewal by at most
    /// this, so it must stay far below the time between the refresh and stale points.
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.config.lease_ttl = ttl;
        self
    }

    /// How long one call to the source may take (default 10 s, below the lease TTL so that a
    /// holder commits before its lease lapses).
    pub fn create_timeout(mut self, timeout: Duration) -> Self {
        self.config.create_timeout = timeout;
        self
    }

    /// How long one store operation may take (default 5 s): a store that stops answering is then
    /// treated as down, so the cached token keeps being served and the store-failure policy
    /// applies.
    pub fn store_timeout(mut self, timeout: Duration) -> Self {
        self.config.store_timeout = timeout;
        self
    }

    /// How often a waiter re-reads the store when no change notice comes (default 500 ms,
    /// jittered down to half): the most a lost notice costs.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.config.poll_interval = interval;
        self
    }

    /// The longest a caller waits for another replica's refresh (default 45 s: a lease TTL plus a
    /// creation).
    pub fn max_wait(mut self, max_wait: Duration) -> Self {
        self.config.max_wait = max_wait;
        self
    }

    /// How many user-level keys to keep (default 10 000); the least recently useful go first.
    pub fn user_key_capacity(mut self, capacity: usize) -> Self {
        self.config.user_keys = capacity;
        self
    }

    /// Seeds this manager's randomness (refresh jitter, backoff jitter), for reproducible tests.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// A name for this replica, used in lease holder IDs and logs. Default: random.
    pub fn replica_name(mut self, name: impl Into<String>) -> Self {
        self.replica = Some(name.into());
        self
    }

    /// Checks the settings and builds the manager. Starts no task until a key is first used.
    pub fn build(self) -> Result<TokenManager, BuildError> {
        let config = self.config;
        if config.create_timeout >= config.lease_ttl {
            return Err(BuildError::Invalid(
                "create_timeout must be below lease_ttl",
            ));
        }
        let durations = [
            config.poll_interval,
            config.lease_ttl,
            config.create_timeout,
            config.store_timeout,
        ];
        if durations.iter().any(Duration::is_zero) {
            return Err(BuildError::Invalid(
                "poll_interval, lease_ttl, create_timeout and store_timeout must be positive",
            ));
        }
        if config.user_keys == 0 {
            return Err(BuildError::Invalid("user_key_capacity must be positive"));
        }
        let env = match self.env {
            Some(env) => env,
            None => default_runtime().ok_or(BuildError::NoRuntime)?,
        };
        let store = self
            .store
            .unwrap_or_else(|| Arc::new(MemoryStore::with_clock(Arc::clone(env.time()))));
        let mut rng = self
            .seed
            .map_or_else(fastrand::Rng::new, fastrand::Rng::with_seed);
        let replica = self
            .replica
            .unwrap_or_else(|| format!("{:08x}", rng.u32(..)));
        Ok(TokenManager {
            inner: Arc::new(Inner {
                source: self.source,
                store,
                jitter: rng.f64(),
                hot_lag: env.time().coarse_lag(),
                env,
                registry: Registry::new(config.user_keys),
                config,
                rng: Mutex::new(rng),
                replica,
                next_holder: AtomicU64::new(0),
                metrics: Metrics::default(),
                lifecycle: Arc::default(),
                following_changes: AtomicBool::new(false),
            }),
        })
    }
}

#[cfg(feature = "rt-tokio")]
fn default_runtime() -> Option<RuntimeEnv> {
    RuntimeEnv::tokio()
}

#[cfg(not(feature = "rt-tokio"))]
fn default_runtime() -> Option<RuntimeEnv> {
    None
}

impl TokenManager {
    /// Starts configuring a manager whose tokens come from `source`.
    pub fn builder(source: Arc<dyn TokenSource>) -> ManagerBuilder {
        ManagerBuilder {
            source,
            store: None,
            env: None,
            config: Config::default(),
            seed: None,
            replica: None,
        }
    }

    /// The handle of `key`: keep it to skip the key lookup on every call.
    pub fn handle(&self, key: TokenKey) -> TokenHandle {
        let (slot, created) = self.inner.registry.get_or_insert(&key);
        if created {
            self.inner.start_background(&slot);
        }
        TokenHandle {
            inner: Arc::clone(&self.inner),
            slot,
        }
    }

    /// A valid token for `key`, waiting for a refresh only if none is cached.
    pub async fn token(&self, key: &TokenKey) -> Result<TokenGuard, Error> {
        match self.inner.registry.get(key) {
            Some(slot) => {
                if let Some(token) = slot.cached(self.inner.env.time().now_coarse()) {
                    return Ok(token);
                }
                Box::pin(self.inner.wait_for_token(&slot)).await
            }
            None => self.handle(key.clone()).token().await,
        }
    }

    /// Reports that the API rejected the token with `fingerprint` for `key` (a 401): see
    /// [`TokenHandle::invalidate`].
    pub fn invalidate(&self, key: &TokenKey, fingerprint: &Fingerprint) -> bool {
        self.handle(key.clone()).invalidate(fingerprint)
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

impl fmt::Debug for TokenManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenManager")
            .field("replica", &self.inner.replica)
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
        self.slot.cached(self.inner.env.time().now_coarse())
    }

    /// A valid token, waiting for a refresh only if none is cached.
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
    /// failing with the same token cause one renewal; a newer token is left alone. The next
    /// refresh removes it from the store too (again only if it is still current there) and never
    /// adopts it again. Returns whether the cached token was dropped.
    pub fn invalidate(&self, fingerprint: &Fingerprint) -> bool {
        self.slot.failures().rejected.record(*fingerprint);
        let dropped = self.slot.drop_if_current(fingerprint);
        if dropped {
            bump(&self.inner.metrics.invalidations);
            tracing::info!(key = %self.slot.key, %fingerprint, "token rejected by the API; renewing");
        }
        dropped
    }
}

impl fmt::Debug for TokenHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenHandle")
            .field("key", &self.slot.key)
            .finish_non_exhaustive()
    }
}

/// How many flights a caller goes through before giving up: one that may have been running for
/// another reason (refresh ahead, a store notice), then one of its own.
const FLIGHTS_PER_CALL: usize = 2;

impl Inner {
    fn now(&self) -> SystemTime {
        self.env.now()
    }

    /// The slow path: join or start a flight until a valid token is cached.
    async fn wait_for_token(self: &Arc<Self>, slot: &Arc<KeySlot>) -> Result<TokenGuard, Error> {
        bump(&self.metrics.waits);
        let started = self.now();
        for _ in 0..FLIGHTS_PER_CALL {
            if self.lifecycle.is_stopped() {
                return Err(Error::ShutDown);
            }
            self.flight(slot, Reason::Needed).await?;
            if let Some(token) = slot.cached(self.now()) {
                return Ok(token);
            }
        }
        Err(Error::WaitTimedOut {
            key: slot.key.clone(),
            waited: self.now().duration_since(started).unwrap_or_default(),
        })
    }

    /// Joins the running flight of `slot`, or starts one for `reason`.
    fn flight(self: &Arc<Self>, slot: &Arc<KeySlot>, reason: Reason) -> Flight {
        slot.join_or_start(|| {
            bump(&self.metrics.flights);
            let (done, outcome) = oneshot::channel();
            let inner = Arc::clone(self);
            let task_slot = Arc::clone(slot);
            self.lifecycle.spawn(&self.env, async move {
                let result = flight::run(&inner, &task_slot, reason).await;
                task_slot.end_flight();
                let _ = done.send(result);
            });
            async move { outcome.await.unwrap_or(Err(Error::ShutDown)) }.boxed()
        })
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
        interval / 2 + (interval / 2).mul_f64(self.draw())
    }

    fn rng(&self) -> std::sync::MutexGuard<'_, fastrand::Rng> {
        self.rng.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.lifecycle.stop();
    }
}
