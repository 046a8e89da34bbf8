//! The fleet benchmark: 8 replicas serve traffic for 6 simulated hours of 30-minute tokens, and
//! the token creations, store operations and waiting requests are counted for kigo and for the
//! designs a user would otherwise pick, side by side in the same run:
//!
//! - `kigo`: a `TokenManager` per replica, sharing one store;
//! - `own_cache`: a token cached per replica behind a mutex held across the creation, renewed
//!   10 s before expiry (Go oauth2's `ReuseTokenSource`);
//! - `store_per_request`: the token read from the shared store on every request, created and
//!   written back by whoever finds it missing or expiring (a distributed cache on the hot path);
//! - `shared_no_lock`: a local cache in front of the shared store, filled from the store on a
//!   miss, created and written back without a lock (Duende's HybridCache / IDistributedCache).
//!
//! Time is a manual clock and creation takes 500 ms of it, so the run is deterministic and takes
//! seconds. Run: `cargo bench -p kigo-core --bench fleet`.
#![allow(clippy::print_stdout)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use kigo_core::runtime::{RuntimeEnv, TimeSource};
use kigo_core::{
    CreateRequest, MemoryStore, PartnerId, Token, TokenKey, TokenManager, TokenSource,
};
use kigo_testkit::{FakeSource, FaultyStore, ManualClock, settle};

const REPLICAS: usize = 8;
const REQUESTS_PER_STEP: usize = 4;
const STEP: Duration = Duration::from_secs(5);
const SPAN: Duration = Duration::from_secs(6 * 3600);
const LATENCY: Duration = Duration::from_millis(500);
/// The renewal margin of the hand-written designs (Go oauth2's `expiryDelta`).
const MARGIN: Duration = Duration::from_secs(10);

/// One replica's way of getting a token for a request.
#[async_trait]
trait Replica: Send + Sync {
    async fn token(&self) -> Token;
}

/// Everything the designs share: the clock, the token endpoint, and a shared store with an
/// operation counter (for the hand-written designs).
struct World {
    clock: ManualClock,
    source: FakeSource,
    shared: Mutex<Option<Token>>,
    store_ops: AtomicU64,
}

impl World {
    fn new() -> Arc<Self> {
        let clock = ManualClock::new();
        let source = FakeSource::new().with_latency(LATENCY, Arc::new(clock.clone()));
        Arc::new(Self {
            clock,
            source,
            shared: Mutex::new(None),
            store_ops: AtomicU64::new(0),
        })
    }

    fn fresh(&self, token: &Token) -> bool {
        self.clock.now() + MARGIN < token.expires_at()
    }

    async fn create(&self) -> Token {
        let key = TokenKey::partner(PartnerId::new("bench").unwrap());
        let request = CreateRequest::new(&key, None, &self.clock);
        self.source.create(request).await.unwrap()
    }

    fn store_read(&self) -> Option<Token> {
        self.store_ops.fetch_add(1, Ordering::Relaxed);
        self.shared
            .lock()
            .unwrap()
            .clone()
            .filter(|t| self.fresh(t))
    }

    fn store_write(&self, token: &Token) {
        self.store_ops.fetch_add(1, Ordering::Relaxed);
        *self.shared.lock().unwrap() = Some(token.clone());
    }
}

struct Kigo(kigo_core::TokenHandle);

#[async_trait]
impl Replica for Kigo {
    async fn token(&self) -> Token {
        self.0.token().await.unwrap().clone()
    }
}

struct OwnCache(Arc<World>, tokio::sync::Mutex<Option<Token>>);

#[async_trait]
impl Replica for OwnCache {
    async fn token(&self) -> Token {
        let mut cached = self.1.lock().await;
        match cached.as_ref().filter(|t| self.0.fresh(t)) {
            Some(token) => token.clone(),
            None => cached.insert(self.0.create().await).clone(),
        }
    }
}

struct StorePerRequest(Arc<World>);

#[async_trait]
impl Replica for StorePerRequest {
    async fn token(&self) -> Token {
        if let Some(token) = self.0.store_read() {
            return token;
        }
        let token = self.0.create().await;
        self.0.store_write(&token);
        token
    }
}

struct SharedNoLock(Arc<World>, Mutex<Option<Token>>);

#[async_trait]
impl Replica for SharedNoLock {
    async fn token(&self) -> Token {
        let local = self.1.lock().unwrap().clone().filter(|t| self.0.fresh(t));
        if let Some(token) = local {
            return token;
        }
        let token = match self.0.store_read() {
            Some(token) => token,
            None => {
                let token = self.0.create().await;
                self.0.store_write(&token);
                token
            }
        };
        *self.1.lock().unwrap() = Some(token.clone());
        token
    }
}

/// Counts of one design over the run.
struct Outcome {
    requests: u64,
    waited: u64,
    creations: u64,
    store_ops: u64,
}

/// Drives `REQUESTS_PER_STEP` concurrent requests per replica every `STEP` for `SPAN`.
async fn run(world: &World, replicas: &[Arc<dyn Replica>], store_ops: impl Fn() -> u64) -> Outcome {
    let (mut requests, mut waited) = (0, 0);
    let mut elapsed = Duration::ZERO;
    while elapsed < SPAN {
        let calls: Vec<_> = replicas
            .iter()
            .flat_map(|replica| std::iter::repeat_n(replica, REQUESTS_PER_STEP))
            .map(|replica| {
                let replica = Arc::clone(replica);
                tokio::spawn(async move { replica.token().await })
            })
            .collect();
        settle().await;
        requests += calls.len() as u64;
        waited += calls.iter().filter(|call| !call.is_finished()).count() as u64;
        world.clock.advance(LATENCY);
        settle().await;
        for call in calls {
            call.await.unwrap();
        }
        world.clock.advance(STEP - LATENCY);
        settle().await;
        elapsed += STEP;
    }
    Outcome {
        requests,
        waited,
        creations: world.source.creations(),
        store_ops: store_ops(),
    }
}

async fn kigo() -> Outcome {
    let world = World::new();
    let store = FaultyStore::new(Arc::new(MemoryStore::with_clock(Arc::new(
        world.clock.clone(),
    ))));
    let key = TokenKey::partner(PartnerId::new("bench").unwrap());
    let replicas: Vec<Arc<dyn Replica>> = (0..REPLICAS as u64)
        .map(|seed| {
            let manager = TokenManager::builder(Arc::new(world.source.clone()))
                .store(Arc::new(store.clone()))
                .runtime(RuntimeEnv::manual(&world.clock).unwrap())
                .seed(seed)
                .build()
                .unwrap();
            Arc::new(Kigo(manager.handle(key.clone()).unwrap())) as Arc<dyn Replica>
        })
        .collect();
    run(&world, &replicas, || store.calls()).await
}

async fn alternative(make: impl Fn(&Arc<World>) -> Arc<dyn Replica>) -> Outcome {
    let world = World::new();
    let replicas: Vec<_> = (0..REPLICAS).map(|_| make(&world)).collect();
    run(&world, &replicas, || {
        world.store_ops.load(Ordering::Relaxed)
    })
    .await
}

fn main() {
    // `cargo test --benches` runs this with `--test`-like flags; the numbers need `cargo bench`.
    if !std::env::args().any(|arg| arg == "--bench") {
        return;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    let outcomes = runtime.block_on(async {
        vec![
            ("kigo", kigo().await),
            (
                "own_cache",
                alternative(|w| Arc::new(OwnCache(Arc::clone(w), Default::default()))).await,
            ),
            (
                "store_per_request",
                alternative(|w| Arc::new(StorePerRequest(Arc::clone(w)))).await,
            ),
            (
                "shared_no_lock",
                alternative(|w| Arc::new(SharedNoLock(Arc::clone(w), Mutex::new(None)))).await,
            ),
        ]
    });
    println!(
        "fleet: {REPLICAS} replicas x {REQUESTS_PER_STEP} requests every {STEP:?} for {SPAN:?} of 30-minute tokens, creation {LATENCY:?}"
    );
    let kigo_creations = outcomes[0].1.creations as f64;
    println!(
        "{:<18} {:>9} {:>8} {:>10} {:>12} {:>14}",
        "design", "requests", "waited", "creations", "vs kigo", "store ops/req"
    );
    for (name, outcome) in &outcomes {
        println!(
            "{:<18} {:>9} {:>8} {:>10} {:>11.1}x {:>14.3}",
            name,
            outcome.requests,
            outcome.waited,
            outcome.creations,
            outcome.creations as f64 / kigo_creations,
            outcome.store_ops as f64 / outcome.requests as f64,
        );
    }
}
