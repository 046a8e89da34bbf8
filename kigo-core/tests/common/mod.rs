//! Shared setup of the manager tests: a manual clock, a fake source, a memory store.
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::FutureExt;
use kigo_core::runtime::{RuntimeEnv, TimeSource};
use kigo_core::{
    Fingerprint, ManagerBuilder, MemoryStore, PartnerId, TokenHandle, TokenKey, TokenManager,
    TokenStore,
};
use kigo_testkit::{FakeSource, ManualClock, settle};

pub const LIFETIME: Duration = Duration::from_secs(30 * 60);

pub fn partner(id: &str) -> TokenKey {
    TokenKey::partner(PartnerId::new(id).unwrap())
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
        TokenManager::builder(Arc::new(self.source.clone()))
            .store(store)
            .runtime(RuntimeEnv::manual(&self.clock).unwrap())
            .seed(seed)
    }

    pub fn manager(&self, seed: u64) -> TokenManager {
        self.builder(seed).build().unwrap()
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
