//! Shared setup of the manager tests: a manual clock, a fake source, a memory store.
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use std::collections::HashSet;

use futures_util::FutureExt;
use kigo_core::runtime::{RuntimeEnv, TimeSource};
use kigo_core::{
    Error, Fingerprint, KeyScope, ManagerBuilder, MemoryStore, PartnerId, TokenHandle, TokenKey,
    TokenManager, TokenStore, UserId,
};
use kigo_testkit::{FakeSource, ManualClock, settle};

pub const LIFETIME: Duration = Duration::from_secs(30 * 60);

/// The default minimum age before a 401 drops a token: a rejection storm in these tests comes
/// after it, as a revocation of a token in use would.
pub const MIN_TOKEN_AGE: Duration = Duration::from_secs(5);

pub fn partner(id: &str) -> TokenKey {
    TokenKey::partner(PartnerId::new(id).unwrap())
}

pub fn user(partner: &str, user: &str) -> TokenKey {
    TokenKey::user(PartnerId::new(partner).unwrap(), UserId::new(user).unwrap())
}

/// One simulated world: a manual clock, a fake token endpoint and a shared memory store.
pub struct World {
    pub clock: ManualClock,
    pub source: FakeSource,
    pub store: MemoryStore,
}

impl World {
    pub fn new() -> Self {
        Self::with_source(FakeSource::new())
    }

    pub fn with_source(source: FakeSource) -> Self {
        let clock = ManualClock::new();
        let store = MemoryStore::with_clock(Arc::new(clock.clone()));
        Self {
            clock,
            source,
            store,
        }
    }

    /// The fake answers after `latency` of manual time.
    pub fn with_latency(latency: Duration) -> Self {
        let clock = ManualClock::new();
        let source = FakeSource::new().with_latency(latency, Arc::new(clock.clone()));
        let store = MemoryStore::with_clock(Arc::new(clock.clone()));
        Self {
            clock,
            source,
            store,
        }
    }

    /// A manager builder on this world's clock, source and store, seeded with `seed`.
    pub fn builder(&self, seed: u64) -> ManagerBuilder {
        self.builder_on(seed, Arc::new(self.store.clone()))
    }

    pub fn builder_on(&self, seed: u64, store: Arc<dyn TokenStore>) -> ManagerBuilder {
        TokenManager::builder(self.source.clone())
            .store(store)
            .scope(KeyScope::AnyPartner)
            .runtime(RuntimeEnv::manual(&self.clock).unwrap())
            .seed(seed)
    }

    pub fn manager(&self, seed: u64) -> TokenManager {
        self.builder(seed).build().unwrap()
    }

    /// A manager whose own clock reads `skew_ms` away from the world's (the store keeps the
    /// world's time).
    pub fn skewed_manager(&self, seed: u64, skew_ms: i64) -> TokenManager {
        let local = self.clock.skewed(skew_ms);
        let env = RuntimeEnv::new(
            Arc::new(local.clone()),
            Arc::new(local),
            Arc::new(kigo_core::runtime::TokioSpawn::current().unwrap()),
        );
        self.builder(seed).runtime(env).build().unwrap()
    }

    pub fn now(&self) -> SystemTime {
        self.clock.now()
    }

    /// Moves the clock in `step`s for `total`, letting background work run after each step.
    pub async fn run_for(&self, total: Duration, step: Duration) {
        let mut elapsed = Duration::ZERO;
        while elapsed < total {
            self.clock.advance(step);
            settle().await;
            elapsed += step;
        }
    }
}

/// Steps the clock through `span`; after each step every handle must hand out a token without
/// waiting, which `check` inspects. Returns the distinct tokens handed out.
pub async fn serve_through(
    world: &World,
    handles: &[TokenHandle],
    span: Duration,
    step: Duration,
    check: impl Fn(&kigo_core::Token),
) -> HashSet<Fingerprint> {
    let mut handed_out = HashSet::new();
    let mut elapsed = Duration::ZERO;
    while elapsed < span {
        world.run_for(step, step).await;
        elapsed += step;
        for handle in handles {
            let token = handle
                .token()
                .now_or_never()
                .expect("a caller never waits while a valid token exists")
                .expect("a token");
            check(&token);
            handed_out.insert(token.fingerprint());
        }
    }
    handed_out
}

/// Moves the clock to just past the replica's refresh point of the current token.
pub async fn reach_refresh_point(world: &World, manager: &TokenManager, handle: &TokenHandle) {
    let token = handle.cached().expect("a cached token");
    let due = manager
        .refresh_at(&token)
        .duration_since(world.now())
        .unwrap();
    drop(token);
    world.clock.advance(due);
    settle().await;
}

/// The token of `handle` if it is handed out without waiting.
pub fn without_waiting(handle: &TokenHandle) -> Option<Fingerprint> {
    handle
        .token()
        .now_or_never()
        .map(|token| token.expect("a cached token").fingerprint())
}

/// Gets a first token (the only time a caller waits).
pub async fn warm(handle: &TokenHandle) -> Fingerprint {
    handle.token().await.expect("first token").fingerprint()
}

/// Starts one caller per handle given, each reporting `rejected` as refused by the API (a 401)
/// if given, then asking for a token.
pub fn spawn_callers(
    handles: impl IntoIterator<Item = TokenHandle>,
    rejected: Option<Fingerprint>,
) -> Vec<tokio::task::JoinHandle<Result<Fingerprint, Error>>> {
    handles
        .into_iter()
        .map(|handle| {
            tokio::spawn(async move {
                if let Some(rejected) = rejected {
                    handle.invalidate(&rejected);
                }
                handle.token().await.map(|t| t.fingerprint())
            })
        })
        .collect()
}

/// A caller in a task of its own: it asks `handle` for a token.
pub fn spawn_caller(handle: TokenHandle) -> tokio::task::JoinHandle<Result<Fingerprint, Error>> {
    spawn_callers([handle], None).remove(0)
}

/// The distinct tokens the callers got; every caller must have got one.
pub async fn tokens_of(
    callers: Vec<tokio::task::JoinHandle<Result<Fingerprint, Error>>>,
) -> HashSet<Fingerprint> {
    let mut seen = HashSet::new();
    for caller in callers {
        seen.insert(caller.await.unwrap().expect("every caller gets a token"));
    }
    seen
}

/// Callers on all `handles` at once (after reporting `rejected` as a 401, if given) while the
/// source takes `latency` of manual time to create the one token they wait for.
pub async fn callers_meet(
    world: &World,
    handles: &[TokenHandle],
    latency: Duration,
    rejected: Option<Fingerprint>,
) -> HashSet<Fingerprint> {
    if rejected.is_some() {
        world.clock.advance(MIN_TOKEN_AGE);
    }
    let calls_before = world.source.calls().len();
    let callers = spawn_callers(handles.to_vec(), rejected);
    world.source.wait_for_calls(calls_before + 1).await;
    settle().await;
    world.clock.advance(latency);
    tokens_of(callers).await
}

/// Gets every handle its first token while the source takes `latency` of manual time.
pub async fn warm_all(
    world: &World,
    handles: &[TokenHandle],
    latency: Duration,
) -> HashSet<Fingerprint> {
    callers_meet(world, handles, latency, None).await
}
