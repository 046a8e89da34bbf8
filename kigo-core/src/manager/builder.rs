//! Configuring a [`TokenManager`]: a store must be chosen (a shared one, or local-only by name),
//! the keys it serves are known, and settings that cannot work are refused at `build()`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::{Inner, TokenManager, UserIdLogging};
use crate::policy::{BackoffPolicy, ExpiryPolicy, StoreFailurePolicy};
use crate::runtime::RuntimeEnv;
use crate::store::{MemoryStore, TokenStore};
use crate::{KeyScope, TokenSource};

/// The settings of a manager, with defaults fit for Kigo's 30-minute tokens.
#[derive(Debug, Clone)]
pub(super) struct Config {
    pub(super) expiry: ExpiryPolicy,
    pub(super) backoff: BackoffPolicy,
    pub(super) permanent_backoff: BackoffPolicy,
    pub(super) store_failure: StoreFailurePolicy,
    pub(super) lease_ttl: Duration,
    pub(super) create_timeout: Duration,
    pub(super) store_timeout: Duration,
    pub(super) poll_interval: Duration,
    pub(super) max_wait: Duration,
    pub(super) min_token_age: Duration,
    pub(super) max_creations: usize,
    pub(super) user_keys: usize,
    pub(super) user_ids: UserIdLogging,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            expiry: ExpiryPolicy::default(),
            backoff: BackoffPolicy::default(),
            permanent_backoff: BackoffPolicy::permanent(),
            store_failure: StoreFailurePolicy::default(),
            lease_ttl: DEFAULT_LEASE_TTL,
            create_timeout: Duration::from_secs(10),
            store_timeout: Duration::from_secs(5),
            poll_interval: Duration::from_millis(500),
            max_wait: Duration::from_secs(45),
            min_token_age: Duration::from_secs(5),
            max_creations: 16,
            user_keys: 10_000,
            user_ids: UserIdLogging::default(),
        }
    }
}

/// The lease TTL unless a holder needs longer.
const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(30);

/// What a derived lease TTL or wait adds to what it must cover.
const DERIVED_MARGIN: Duration = Duration::from_secs(5);

/// A manager configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// No runtime was given and the caller is not inside a tokio runtime.
    #[error("no runtime: build inside a tokio runtime or pass one with `runtime(...)`")]
    NoRuntime,
    /// Neither the source nor the builder says which keys the manager serves.
    #[error("no key scope: the source does not name the keys it serves; set `scope(...)`")]
    NoScope,
    /// Settings that contradict each other.
    #[error("invalid manager configuration: {0}")]
    Invalid(&'static str),
}

/// The state of a [`ManagerBuilder`] that has no store yet: choose one with
/// [`ManagerBuilder::store`] or, for a single process, [`ManagerBuilder::local_only`].
#[derive(Debug)]
pub struct NeedsStore;

/// The state of a [`ManagerBuilder`] with its store chosen: it can be built.
#[derive(Debug)]
pub struct HasStore(Arc<dyn TokenStore>);

/// Configures a [`TokenManager`]. Every setting has a default fit for Kigo's 30-minute tokens;
/// the store has none, so that no replica ends up with a private one by accident:
///
/// ```compile_fail
/// # fn demo(source: kigo_testkit::FakeSource) {
/// let manager = kigo_core::TokenManager::builder(source).build(); // no store chosen
/// # }
/// ```
pub struct ManagerBuilder<S = HasStore> {
    source: Arc<dyn TokenSource>,
    store: S,
    env: Option<RuntimeEnv>,
    config: Config,
    /// Set explicitly; otherwise derived from the creation and store timeouts.
    lease_ttl: Option<Duration>,
    /// Set explicitly; otherwise derived from the lease and the creation timeout.
    max_wait: Option<Duration>,
    scope: Option<KeyScope>,
    seed: Option<u64>,
    replica: Option<String>,
}

impl<S> fmt::Debug for ManagerBuilder<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagerBuilder")
            .field("source", &self.source)
            .field("scope", &self.scope)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl ManagerBuilder<NeedsStore> {
    pub(super) fn new(source: Arc<dyn TokenSource>) -> Self {
        Self {
            source,
            store: NeedsStore,
            env: None,
            config: Config::default(),
            lease_ttl: None,
            max_wait: None,
            scope: None,
            seed: None,
            replica: None,
        }
    }

    /// The store the replicas of the fleet share (Redis, SQL, or your own; an `Arc` of one
    /// works too).
    pub fn store(self, store: impl TokenStore) -> ManagerBuilder<HasStore> {
        ManagerBuilder {
            source: self.source,
            store: HasStore(Arc::new(store)),
            env: self.env,
            config: self.config,
            lease_ttl: self.lease_ttl,
            max_wait: self.max_wait,
            scope: self.scope,
            seed: self.seed,
            replica: self.replica,
        }
    }

    /// A private in-memory store: this process shares its tokens with nobody, so every replica
    /// of a fleet creates its own. For a single process, a test, or a tool.
    pub fn local_only(self) -> ManagerBuilder<HasStore> {
        let store = match &self.env {
            Some(env) => MemoryStore::with_clock(Arc::clone(env.time())),
            None => MemoryStore::new(),
        };
        self.store(store)
    }
}

impl<S> ManagerBuilder<S> {
    /// The keys this manager serves, when the source does not say (a source that does must
    /// agree). Every other key is refused with [`crate::Error::ForeignKey`].
    pub fn scope(mut self, scope: KeyScope) -> Self {
        self.scope = Some(scope);
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

    /// How to space retries after transient failures (see [`BackoffPolicy`]).
    pub fn backoff(mut self, policy: BackoffPolicy) -> Self {
        self.config.backoff = policy;
        self
    }

    /// How to space retries after permanent failures, such as bad credentials (default 1 minute
    /// doubling to 10 minutes, see [`BackoffPolicy::permanent`]): the whole fleet observes the
    /// pause through the store, so a revoked API key costs a few calls an hour, not one per
    /// replica every few seconds.
    pub fn permanent_backoff(mut self, policy: BackoffPolicy) -> Self {
        self.config.permanent_backoff = policy;
        self
    }

    /// What to do when a token is needed and the store is unreachable.
    pub fn store_failure(mut self, policy: StoreFailurePolicy) -> Self {
        self.config.store_failure = policy;
        self
    }

    /// How long a refresh lease lasts. A crashed holder delays renewal by at most this, so it
    /// must stay far below the time between the refresh and stale points, and above what a
    /// holder needs: the creation timeout plus two store timeouts (a re-read and a commit).
    /// Default: 30 s, or that need plus 5 s when it is longer.
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = Some(ttl);
        self
    }

    /// How long one call to the source may take (default 10 s). The lease and the caller's wait
    /// follow it unless set.
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

    /// The longest a caller of `token()` waits, all told; then it gets
    /// [`crate::Error::WaitTimedOut`], while the refresh goes on. Default: the lease TTL plus the
    /// creation timeout plus 5 s (45 s with the other defaults): long enough to outlast a holder
    /// that died and one creation of its own.
    pub fn max_wait(mut self, max_wait: Duration) -> Self {
        self.max_wait = Some(max_wait);
        self
    }

    /// A `401` for a token younger than this does not drop it (default 5 s, and never more than
    /// a tenth of the token's life): a token the API rejects at once (an API that has not yet
    /// seen it everywhere, a partner the API refuses) cannot make the fleet renew more often
    /// than once per this much time. A `401` once the token is older drops it as usual.
    pub fn min_token_age(mut self, age: Duration) -> Self {
        self.config.min_token_age = age;
        self
    }

    /// How many creations this manager runs at once (default 16); more wait their turn, so that
    /// after an outage thousands of user keys queue instead of stampeding the token endpoint.
    pub fn max_concurrent_creations(mut self, max: usize) -> Self {
        self.config.max_creations = max;
        self
    }

    /// How many user-level keys to keep (default 10 000); the least recently useful go first.
    pub fn user_key_capacity(mut self, capacity: usize) -> Self {
        self.config.user_keys = capacity;
        self
    }

    /// How logs and traces name users (default: a short keyed hash, see [`UserIdLogging`]).
    pub fn log_user_ids(mut self, logging: UserIdLogging) -> Self {
        self.config.user_ids = logging;
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
}

impl ManagerBuilder<HasStore> {
    /// Checks the settings and builds the manager. Starts no task until a key is first used.
    pub fn build(self) -> Result<TokenManager, BuildError> {
        let scope = match (self.scope, self.source.scope()) {
            (Some(set), Some(source)) if set != source => {
                return Err(BuildError::Invalid(
                    "the scope set on the builder is not the one its source serves",
                ));
            }
            (Some(scope), _) | (None, Some(scope)) => scope,
            (None, None) => return Err(BuildError::NoScope),
        };
        let mut config = self.config;
        let holder_needs = config
            .create_timeout
            .saturating_add(config.store_timeout.saturating_mul(2));
        config.lease_ttl = self
            .lease_ttl
            .unwrap_or_else(|| DEFAULT_LEASE_TTL.max(holder_needs.saturating_add(DERIVED_MARGIN)));
        config.max_wait = self.max_wait.unwrap_or_else(|| {
            config
                .lease_ttl
                .saturating_add(config.create_timeout)
                .saturating_add(DERIVED_MARGIN)
        });
        check(&config)?;
        let env = match self.env {
            Some(env) => env,
            None => default_runtime().ok_or(BuildError::NoRuntime)?,
        };
        let mut rng = self
            .seed
            .map_or_else(fastrand::Rng::new, fastrand::Rng::with_seed);
        let replica = self
            .replica
            .unwrap_or_else(|| format!("{:08x}", rng.u32(..)));
        Ok(TokenManager {
            inner: Arc::new(Inner::new(
                self.source,
                self.store.0,
                scope,
                env,
                config,
                rng,
                replica,
            )),
        })
    }
}

/// Refuses settings that cannot work.
fn check(config: &Config) -> Result<(), BuildError> {
    let durations = [
        config.poll_interval,
        config.lease_ttl,
        config.create_timeout,
        config.store_timeout,
        config.max_wait,
    ];
    if durations.iter().any(Duration::is_zero) {
        return Err(BuildError::Invalid(
            "poll_interval, lease_ttl, create_timeout, store_timeout and max_wait must be positive",
        ));
    }
    // The holder creates, then re-reads and commits (two store operations) under its lease.
    let holder_needs = config
        .create_timeout
        .saturating_add(config.store_timeout.saturating_mul(2));
    if holder_needs >= config.lease_ttl {
        return Err(BuildError::Invalid(
            "lease_ttl must exceed create_timeout plus two store_timeouts (a holder creates, \
             re-reads and commits under its lease)",
        ));
    }
    if config.user_keys == 0 || config.max_creations == 0 {
        return Err(BuildError::Invalid(
            "user_key_capacity and max_concurrent_creations must be positive",
        ));
    }
    Ok(())
}

#[cfg(feature = "rt-tokio")]
fn default_runtime() -> Option<RuntimeEnv> {
    RuntimeEnv::tokio()
}

#[cfg(not(feature = "rt-tokio"))]
fn default_runtime() -> Option<RuntimeEnv> {
    None
}
