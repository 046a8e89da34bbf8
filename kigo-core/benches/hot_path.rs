//! The hot path (handing out a cached, valid token) side by side with what users would
//! otherwise write, on 1 and 2 threads, in the same run:
//!
//! - `kigo_cached` / `kigo_token`: `TokenHandle::cached()` and the async `TokenHandle::token()`
//!   (polled once, it completes at once when a token is cached);
//! - `arc_swap_guard`: a bare `ArcSwap::load()` of the token, the floor for any lock-free cache;
//! - `mutex_cache`: `std::sync::Mutex<Option<Arc<Token>>>` with an expiry check (Go oauth2 style);
//! - `tokio_rwlock_cache`: `tokio::sync::RwLock<Option<Arc<Token>>>` with an expiry check
//!   (AWS / Azure SDK style);
//! - `store_read`: reading the token from the (in-memory) store on every request.
//!
//! Run: `cargo bench -p kigo-core --bench hot_path`.

use std::hint::black_box;
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::FutureExt;
use kigo_core::{MemoryStore, PartnerId, Token, TokenKey, TokenManager, TokenStore};
use kigo_testkit::FakeSource;

/// A token must have this much validity left to be handed out, as in the alternatives' checks.
const MARGIN: Duration = Duration::from_secs(90);

fn valid(token: &Token) -> bool {
    SystemTime::now() + MARGIN < token.expires_at()
}

/// A non-zero byte of the token, so that a found token is told from none.
fn mark(token: &Token) -> u8 {
    token.fingerprint().as_bytes()[0] | 1
}

/// One way of getting the cached token; `read` returns [`mark`] of it (0 for none), so that the
/// work cannot be optimised away.
trait Cache: Send + Sync {
    fn read(&self) -> u8;
}

struct Kigo(kigo_core::TokenHandle);
struct KigoAsync(kigo_core::TokenHandle);
struct BareArcSwap(ArcSwap<Token>);
struct MutexCache(Mutex<Option<Arc<Token>>>);
struct RwLockCache(tokio::sync::RwLock<Option<Arc<Token>>>);
struct StoreRead(MemoryStore, TokenKey);

impl Cache for Kigo {
    fn read(&self) -> u8 {
        self.0.cached().map_or(0, |token| mark(&token))
    }
}

impl Cache for KigoAsync {
    fn read(&self) -> u8 {
        match self.0.token().now_or_never() {
            Some(Ok(token)) => mark(&token),
            _ => 0,
        }
    }
}

impl Cache for BareArcSwap {
    fn read(&self) -> u8 {
        mark(&self.0.load())
    }
}

impl Cache for MutexCache {
    fn read(&self) -> u8 {
        let token = {
            let cached = self.0.lock().unwrap();
            cached.as_ref().filter(|token| valid(token)).cloned()
        };
        token.map_or(0, |token| mark(&token))
    }
}

impl Cache for RwLockCache {
    fn read(&self) -> u8 {
        let read = async {
            let cached = self.0.read().await;
            cached.as_ref().filter(|token| valid(token)).cloned()
        };
        match read.now_or_never() {
            Some(Some(token)) => mark(&token),
            _ => 0,
        }
    }
}

impl Cache for StoreRead {
    fn read(&self) -> u8 {
        match self.0.load(&self.1).now_or_never() {
            Some(Ok(snapshot)) => snapshot.token().map_or(0, mark),
            _ => 0,
        }
    }
}

/// Time per read on each of `threads` threads reading at once.
fn timed(cache: &dyn Cache, threads: usize, iters: u64) -> Duration {
    let start = Barrier::new(threads);
    let elapsed: Vec<Duration> = thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    start.wait();
                    let began = Instant::now();
                    for _ in 0..iters {
                        black_box(cache.read());
                    }
                    began.elapsed()
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    elapsed.into_iter().max().unwrap_or_default()
}

fn caches(runtime: &tokio::runtime::Runtime) -> Vec<(&'static str, Box<dyn Cache>)> {
    let key = TokenKey::partner(PartnerId::new("bench").unwrap());
    let (handle, token, store) = runtime.block_on(async {
        let store = MemoryStore::new();
        let manager = TokenManager::builder(Arc::new(FakeSource::new()))
            .store(Arc::new(store.clone()))
            .build()
            .unwrap();
        let handle = manager.handle(key.clone()).unwrap();
        let token = handle.token().await.unwrap().clone();
        (handle, token, store)
    });
    let shared = Arc::new(token.clone());
    vec![
        (
            "kigo_cached",
            Box::new(Kigo(handle.clone())) as Box<dyn Cache>,
        ),
        ("kigo_token", Box::new(KigoAsync(handle))),
        (
            "arc_swap_guard",
            Box::new(BareArcSwap(ArcSwap::from_pointee(token))),
        ),
        (
            "mutex_cache",
            Box::new(MutexCache(Mutex::new(Some(Arc::clone(&shared))))),
        ),
        (
            "tokio_rwlock_cache",
            Box::new(RwLockCache(tokio::sync::RwLock::new(Some(shared)))),
        ),
        ("store_read", Box::new(StoreRead(store, key))),
    ]
}

fn hot_path(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let caches = caches(&runtime);
    for cache in &caches {
        assert_ne!(cache.1.read(), 0, "{} hands out no token", cache.0);
    }
    for threads in [1, 2] {
        let mut group = c.benchmark_group(format!("hot_path/{threads}_thread"));
        for (name, cache) in &caches {
            group.bench_function(*name, |b| {
                b.iter_custom(|iters| timed(cache.as_ref(), threads, iters))
            });
        }
        group.finish();
    }
}

criterion_group!(benches, hot_path);
criterion_main!(benches);
