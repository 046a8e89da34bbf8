//! Looking up a cached user-level token by key, with many users cached, side by side with the
//! caches a user would otherwise reach for, on 1, 2 and 8 threads, in the same run:
//!
//! - `kigo_token`: `TokenManager::token(&user_key)` awaited, one lookup after another inside one
//!   future, as a request handler awaits it (a cached token completes the await at once);
//! - `quick_cache_get`: a bare `quick_cache::sync::Cache<TokenKey, Arc<Token>>` get;
//! - `moka_get`: a bare `moka::sync::Cache<TokenKey, Arc<Token>>` get;
//! - `kigo_partner_token`: `TokenManager::token(&partner_key)` awaited the same way, on a manager
//!   of one partner-level key, for reference.
//!
//! The caches hold the same tokens as the manager, and every reader looks up the same random
//! sequence of keys (each thread from its own place in it).
//!
//! Run: `cargo bench -p kigo-core --bench user_keys` (10,000 keys);
//! `KIGO_BENCH_USER_KEYS=10000,1000000 cargo bench -p kigo-core --bench user_keys` for the
//! million as well (about 4 GB of memory).
#![allow(clippy::print_stdout)]

mod support;

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::{Arc, Barrier};
use std::task::Context;
use std::thread;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures_util::FutureExt;
use kigo_core::{KeyScope, PartnerId, Token, TokenKey, TokenManager};

/// The sizes measured unless `KIGO_BENCH_USER_KEYS` lists others (comma-separated).
const DEFAULT_SIZES: &[usize] = &[10_000];

/// Length of the random sequence of keys looked up (a power of two).
const LOOKUPS: usize = 1 << 20;

/// A non-zero byte of the token, so that a found token is told from none.
fn mark(token: &Token) -> u8 {
    token.fingerprint().as_bytes()[0] | 1
}

/// One way of looking up a cached token by key. `read_all` is what is timed; `read` looks up one
/// key and returns [`mark`] of its token (0 for none), which checks that every key is cached.
trait Cache: Send + Sync {
    fn read(&self, key: &TokenKey) -> u8;

    /// Looks up `count` keys of `lookups` one after another from `first`, keeping [`mark`] of
    /// each token from being optimised away.
    fn read_all(&self, lookups: &Lookups, first: usize, count: usize) {
        for at in first..first + count {
            black_box(self.read(lookups.key(at)));
        }
    }
}

struct Kigo(TokenManager);
/// The partner-level key's manager, asked for its one key whatever user key comes.
struct KigoPartner(TokenManager, TokenKey);
struct QuickCache(quick_cache::sync::Cache<TokenKey, Arc<Token>>);
struct Moka(moka::sync::Cache<TokenKey, Arc<Token>>);

fn polled_once(manager: &TokenManager, key: &TokenKey) -> u8 {
    match manager.token(key).now_or_never() {
        Some(Ok(token)) => mark(&token),
        _ => 0,
    }
}

/// Awaits `manager.token(key_at(at))` for every `at` in `range`, one after another inside one
/// future, as a request handler awaits it: a cached token completes each await at once, so the
/// future is polled once.
fn awaited<'a>(
    manager: &TokenManager,
    range: std::ops::Range<usize>,
    key_at: impl Fn(usize) -> &'a TokenKey,
) {
    let waker = futures_util::task::noop_waker();
    let all = pin!(async {
        for at in range {
            let token = manager.token(key_at(at)).await;
            black_box(token.as_ref().map_or(0, |token| mark(token)));
        }
    });
    assert!(
        all.poll(&mut Context::from_waker(&waker)).is_ready(),
        "a lookup waited for a refresh"
    );
}

impl Cache for Kigo {
    fn read(&self, key: &TokenKey) -> u8 {
        polled_once(&self.0, key)
    }

    fn read_all(&self, lookups: &Lookups, first: usize, count: usize) {
        awaited(&self.0, first..first + count, |at| lookups.key(at));
    }
}

impl Cache for KigoPartner {
    fn read(&self, _: &TokenKey) -> u8 {
        polled_once(&self.0, &self.1)
    }

    fn read_all(&self, _: &Lookups, first: usize, count: usize) {
        awaited(&self.0, first..first + count, |_| &self.1);
    }
}

impl Cache for QuickCache {
    fn read(&self, key: &TokenKey) -> u8 {
        self.0.get(key).map_or(0, |token| mark(&token))
    }
}

impl Cache for Moka {
    fn read(&self, key: &TokenKey) -> u8 {
        self.0.get(key).map_or(0, |token| mark(&token))
    }
}

/// The keys cached, and the random order they are looked up in.
struct Lookups {
    keys: Arc<[TokenKey]>,
    order: Vec<u32>,
}

impl Lookups {
    fn new(keys: Arc<[TokenKey]>) -> Self {
        let mut rng = fastrand::Rng::with_seed(11);
        let count = u32::try_from(keys.len()).unwrap();
        let order = (0..LOOKUPS).map(|_| rng.u32(..count)).collect();
        Self { keys, order }
    }

    fn key(&self, at: usize) -> &TokenKey {
        &self.keys[self.order[at % LOOKUPS] as usize]
    }
}

/// Time per lookup on each of `threads` threads looking up at once, each from its own place in
/// the sequence.
fn timed(cache: &dyn Cache, lookups: &Lookups, threads: usize, iters: u64) -> Duration {
    let start = Barrier::new(threads);
    let iters = usize::try_from(iters).unwrap();
    let elapsed: Vec<Duration> = thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|thread| {
                let (start, first) = (&start, thread * LOOKUPS / threads);
                scope.spawn(move || {
                    start.wait();
                    let began = Instant::now();
                    cache.read_all(lookups, first, iters);
                    began.elapsed()
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    elapsed.into_iter().max().unwrap_or_default()
}

fn partner_manager(runtime: &tokio::runtime::Runtime) -> KigoPartner {
    let partner = PartnerId::new("bench-partner").unwrap();
    let key = TokenKey::partner(partner.clone());
    let manager = runtime.block_on(async {
        let manager = support::manager(KeyScope::Partner(partner), 1);
        manager.token(&key).await.unwrap();
        manager
    });
    KigoPartner(manager, key)
}

/// The contenders at `count` keys, each holding a token for every key.
fn caches(
    runtime: &tokio::runtime::Runtime,
    keys: &Arc<[TokenKey]>,
) -> Vec<(&'static str, Box<dyn Cache>)> {
    let (manager, took) = support::populated_manager(runtime, keys);
    println!(
        "filled a manager with {} user keys in {took:.1?}",
        support::thousands(keys.len())
    );
    let capacity = support::capacity_for(keys.len());
    let quick = quick_cache::sync::Cache::new(capacity);
    let moka = moka::sync::Cache::new(u64::try_from(capacity).unwrap());
    for key in keys.iter() {
        let token = Arc::new(Token::clone(
            &manager.token(key).now_or_never().unwrap().unwrap(),
        ));
        quick.insert(key.clone(), Arc::clone(&token));
        moka.insert(key.clone(), token);
    }
    moka.run_pending_tasks();
    vec![
        ("kigo_token", Box::new(Kigo(manager)) as Box<dyn Cache>),
        ("quick_cache_get", Box::new(QuickCache(quick))),
        ("moka_get", Box::new(Moka(moka))),
        ("kigo_partner_token", Box::new(partner_manager(runtime))),
    ]
}

fn user_keys(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    for count in support::sizes(DEFAULT_SIZES) {
        let lookups = Lookups::new(support::user_keys(count));
        let caches = caches(&runtime, &lookups.keys);
        for (name, cache) in &caches {
            let missing = lookups
                .keys
                .iter()
                .filter(|key| cache.read(key) == 0)
                .count();
            assert_eq!(missing, 0, "{name} lacks {missing} of {count} keys");
        }
        for threads in [1, 2, 8] {
            let mut group = c.benchmark_group(format!("user_keys/{count}_keys/{threads}_threads"));
            group.throughput(Throughput::Elements(threads as u64));
            for (name, cache) in &caches {
                group.bench_function(*name, |b| {
                    b.iter_custom(|iters| timed(cache.as_ref(), &lookups, threads, iters))
                });
            }
            group.finish();
        }
    }
}

criterion_group!(benches, user_keys);
criterion_main!(benches);
