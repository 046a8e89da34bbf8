//! Bytes per cached user key: what a `TokenManager` holding a token for each of N user keys
//! allocates, beside the caches a user would otherwise reach for holding `Arc<Token>`:
//!
//! - `kigo`: a manager on its private memory store (`local_only()`), filled through `token()`;
//! - `memory_store`: that store alone, the same tokens committed to it directly, so that the
//!   manager's own share is the difference;
//! - `quick_cache` and `moka`: a `Cache<TokenKey, Arc<Token>>` of each crate.
//!
//! Each holder is measured in a process of its own (this program started again), so that one's
//! freed memory does not hide the next one's growth: the heap it keeps, counted by a counting
//! global allocator (bytes asked for, without the allocator's own overhead), and the growth of
//! the process's resident memory as a cross-check. The keys exist before the count starts (a
//! caller's keys); the tokens are counted, and their own size (the `Token` struct and its
//! strings) is given separately.
//!
//! Run: `cargo bench -p kigo-core --bench user_key_memory` (10,000, 100,000 and 1,000,000 keys;
//! `KIGO_BENCH_USER_KEYS=10000,100000` for other counts).
#![allow(clippy::print_stdout)]

mod support;

use std::alloc::System;
use std::any::Any;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::FutureExt;
use kigo_core::store::{CommitOutcome, HolderId, LeaseAttempt};
use kigo_core::{MemoryStore, Token, TokenKey, TokenStore};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// The counts measured unless `KIGO_BENCH_USER_KEYS` lists others (comma-separated).
const DEFAULT_SIZES: &[usize] = &[10_000, 100_000, 1_000_000];

/// Time for the manager's background tasks to reach their resting state once filled.
const SETTLE: Duration = Duration::from_millis(500);

/// The size of a page of `/proc/self/statm` (4 KiB on x86-64 and most aarch64 Linux).
const PAGE: i64 = 4096;

/// What holds the tokens.
#[derive(Debug, Clone, Copy)]
enum Holder {
    Kigo,
    MemoryStore,
    QuickCache,
    Moka,
}

impl Holder {
    const ALL: [Self; 4] = [Self::Kigo, Self::MemoryStore, Self::QuickCache, Self::Moka];

    fn name(self) -> &'static str {
        match self {
            Self::Kigo => "kigo",
            Self::MemoryStore => "memory_store",
            Self::QuickCache => "quick_cache",
            Self::Moka => "moka",
        }
    }

    fn description(self) -> &'static str {
        match self {
            Self::Kigo => "`TokenManager` with its `local_only()` `MemoryStore`",
            Self::MemoryStore => "its `MemoryStore` alone (the same tokens committed)",
            Self::QuickCache => "`quick_cache::sync::Cache<TokenKey, Arc<Token>>`",
            Self::Moka => "`moka::sync::Cache<TokenKey, Arc<Token>>`",
        }
    }

    fn named(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|holder| holder.name() == name)
    }
}

/// What one process measured for `count` keys, in bytes.
#[derive(Debug, Clone, Copy, Default)]
struct Measured {
    /// Heap allocated and not freed.
    heap: i64,
    /// Heap blocks allocated and not freed.
    blocks: i64,
    /// Growth of the resident memory.
    resident: i64,
    /// The tokens' own size, summed: the `Token` structs and their strings.
    tokens: i64,
}

impl Measured {
    fn line(&self) -> String {
        format!(
            "{} {} {} {}",
            self.heap, self.blocks, self.resident, self.tokens
        )
    }

    fn parse(line: &str) -> Option<Self> {
        let mut fields = line.split_whitespace().map(str::parse);
        let mut next = || fields.next()?.ok();
        Some(Self {
            heap: next()?,
            blocks: next()?,
            resident: next()?,
            tokens: next()?,
        })
    }
}

/// The `Token` struct and the strings it owns.
fn own_size(token: &Token) -> i64 {
    let strings = token.secret().expose().len()
        + token.bearer().expose().len()
        + token
            .refresh_token()
            .map_or(0, |refresh| refresh.expose().len());
    i64::try_from(size_of::<Token>() + strings).unwrap()
}

/// This process's resident memory, in bytes.
fn resident() -> i64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm (Linux)");
    let pages: i64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * PAGE
}

/// Fills `holder` with a token for each key; returns it (to keep it alive) and the tokens'
/// own size.
fn fill(
    holder: Holder,
    runtime: &tokio::runtime::Runtime,
    keys: &Arc<[TokenKey]>,
) -> (Box<dyn Any>, i64) {
    let source = support::InstantSource::default();
    let capacity = support::capacity_for(keys.len());
    match holder {
        Holder::Kigo => {
            let (manager, _) = support::populated_manager(runtime, keys);
            let tokens = keys
                .iter()
                .map(|key| own_size(&manager.token(key).now_or_never().unwrap().unwrap()))
                .sum();
            (Box::new(manager), tokens)
        }
        Holder::MemoryStore => {
            let (store, holder_id) = (MemoryStore::new(), HolderId::new("bench"));
            let mut tokens = 0;
            for key in keys.iter() {
                let token = source.mint(SystemTime::now());
                let attempt = store.acquire_lease(key, &holder_id, Duration::from_secs(30));
                let Some(Ok(LeaseAttempt::Acquired(lease))) = attempt.now_or_never() else {
                    panic!("the memory store refused a lease");
                };
                let committed = store.commit(&lease, &token).now_or_never();
                assert!(matches!(committed, Some(Ok(CommitOutcome::Committed))));
                tokens += own_size(&token);
            }
            (Box::new(store), tokens)
        }
        Holder::QuickCache => {
            let cache = quick_cache::sync::Cache::new(capacity);
            for key in keys.iter() {
                cache.insert(key.clone(), Arc::new(source.mint(SystemTime::now())));
            }
            assert_eq!(cache.len(), keys.len(), "quick_cache evicted some keys");
            let tokens = cache.iter().map(|(_, token)| own_size(&token)).sum();
            (Box::new(cache), tokens)
        }
        Holder::Moka => {
            let cache = moka::sync::Cache::new(u64::try_from(capacity).unwrap());
            for key in keys.iter() {
                cache.insert(key.clone(), Arc::new(source.mint(SystemTime::now())));
            }
            cache.run_pending_tasks();
            assert_eq!(
                cache.entry_count(),
                keys.len() as u64,
                "moka evicted some keys"
            );
            let tokens = cache.iter().map(|(_, token)| own_size(&token)).sum();
            (Box::new(cache), tokens)
        }
    }
}

/// Measures `holder` holding `count` keys, in this process.
fn measure(holder: Holder, count: usize) -> Measured {
    let keys = support::user_keys(count);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (resident_before, region) = (resident(), Region::new(GLOBAL));
    let (kept, tokens) = fill(holder, &runtime, &keys);
    runtime.block_on(async { tokio::time::sleep(SETTLE).await });
    let change = region.change();
    let measured = Measured {
        heap: i64::try_from(change.bytes_allocated).unwrap()
            - i64::try_from(change.bytes_deallocated).unwrap(),
        blocks: i64::try_from(change.allocations).unwrap()
            - i64::try_from(change.deallocations).unwrap(),
        resident: resident() - resident_before,
        tokens,
    };
    drop(kept);
    measured
}

/// Measures `holder` holding `count` keys, in a process of its own.
fn measure_apart(holder: Holder, count: usize) -> Measured {
    let program = std::env::current_exe().unwrap();
    let output = Command::new(program)
        .args(["--measure", holder.name(), &count.to_string()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "measuring {} at {count} keys failed: {}",
        holder.name(),
        String::from_utf8_lossy(&output.stderr)
    );
    Measured::parse(&stdout).unwrap_or_else(|| panic!("unexpected output: {stdout}"))
}

/// One row of the table: bytes per key.
fn row(keys: usize, holder: &str, measured: Measured, holds_tokens: bool) -> String {
    let per_key = |bytes: i64| bytes as f64 / keys as f64;
    let beyond = if holds_tokens {
        format!("{:.0}", per_key(measured.heap - measured.tokens))
    } else {
        "-".to_owned()
    };
    format!(
        "| {} | {holder} | {:.0} | {beyond} | {:.1} | {:.0} |",
        support::thousands(keys),
        per_key(measured.heap),
        per_key(measured.blocks),
        per_key(measured.resident)
    )
}

fn report(sizes: &[usize]) {
    println!(
        "| keys | holder | heap per key | beyond the token | heap blocks per key | resident growth per key |"
    );
    println!("|---:|---|---:|---:|---:|---:|");
    let mut token = None;
    for &count in sizes {
        let [kigo, store, quick_cache, moka] =
            Holder::ALL.map(|holder| measure_apart(holder, count));
        let manager_alone = Measured {
            heap: kigo.heap - store.heap,
            blocks: kigo.blocks - store.blocks,
            resident: kigo.resident - store.resident,
            tokens: kigo.tokens,
        };
        let rows = [
            (Holder::Kigo.description(), kigo, true),
            (Holder::MemoryStore.description(), store, false),
            ("**`TokenManager` less its store**", manager_alone, true),
            (Holder::QuickCache.description(), quick_cache, true),
            (Holder::Moka.description(), moka, true),
        ];
        for (holder, measured, holds_tokens) in rows {
            println!("{}", row(count, holder, measured, holds_tokens));
        }
        token = Some(kigo.tokens as f64 / count as f64);
    }
    if let Some(token) = token {
        println!();
        println!(
            "The token itself: {token:.0} bytes, the `Token` struct ({} bytes) and its strings \
             (the secret and its `Bearer ` form).",
            size_of::<Token>()
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|arg| arg == "--measure") {
        let holder = Holder::named(&args[at + 1]).expect("a holder's name");
        let count = args[at + 2].parse().expect("a count of keys");
        println!("{}", measure(holder, count).line());
        return;
    }
    report(&support::sizes(DEFAULT_SIZES));
}
