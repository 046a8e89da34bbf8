//! Bytes per user key in Redis: N user-level tokens committed through the store's write path
//! (`acquire_lease`, then a fenced `commit`, sealed under a generated keyring, the default
//! prefix and retention), on a private `redis-server` of its own for each N.
//!
//! Reports, per key: the growth of `INFO memory`'s `used_memory` (what Redis allocated, its
//! dictionaries and expiry entries included), the part beyond the token itself (its 42-byte
//! secret; the tokens have no refresh token), the growth of resident memory as a cross-check,
//! the Redis keys each token key leaves, and `MEMORY USAGE` of one sample key's record, with the
//! length of the entry it holds.
//!
//! Run: `cargo bench -p kigo-store-redis --bench store_bytes` (10,000 keys;
//! `KIGO_BENCH_STORE_KEYS=10000,1000000` for others).
#![allow(clippy::print_stdout)]

use std::time::Instant;

use kigo_core::TokenKey;
use kigo_store_redis::RedisStore;
use kigo_test_services::redis::{RedisService, private_redis};
use kigo_testkit::conformance::test_keyring;
use kigo_testkit::fill::{self, SECRET_LEN, per_key};
use redis::aio::MultiplexedConnection;

/// Commits in flight at once, over the store's one multiplexed connection.
const CONCURRENCY: usize = 64;

#[tokio::main]
async fn main() {
    println!(
        "| keys | used_memory per key | beyond the token | resident growth per key | Redis keys per \
         token key | MEMORY USAGE of one key's record | its entry | fill |"
    );
    println!("|---:|---:|---:|---:|---:|---|---:|---:|");
    for count in fill::counts(&[10_000]) {
        println!("{}", measure(count).await);
    }
    println!(
        "\nThe token itself: its {SECRET_LEN}-byte secret (no refresh token). Each count on a \
         fresh private redis-server."
    );
}

/// One row of the table: `count` keys filled into a fresh server.
async fn measure(count: usize) -> String {
    let service = private_redis()
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    let store = RedisStore::builder()
        .url(service.url())
        .keyring(test_keyring())
        .build()
        .unwrap_or_else(|error| panic!("building the store: {error}"));
    let mut redis = connection(&service).await;

    // One key first, so that the scripts are loaded and the connection is set up before the
    // count starts.
    let warm_up = fill::user_keys(1);
    fill::commit_all(&store, &warm_up, 1)
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    let keys: Vec<TokenKey> = fill::user_keys(count + 1).split_off(1);
    let before = Memory::read(&mut redis).await;
    let started = Instant::now();
    fill::commit_all(&store, &keys, CONCURRENCY)
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    let took = started.elapsed();
    let after = Memory::read(&mut redis).await;

    let used = per_key(after.used - before.used, count);
    let sample = Sample::of(&store, &mut redis, &keys[count / 2]).await;
    format!(
        "| {count} | {used:.0} | **{:.0}** | {:.0} | {:.2} | {} | {} | {:.1} s |",
        used - SECRET_LEN as f64,
        per_key(after.rss - before.rss, count),
        per_key(after.keys - before.keys, count),
        sample.record,
        sample.entry,
        took.as_secs_f64(),
    )
}

async fn connection(service: &RedisService) -> MultiplexedConnection {
    service
        .client()
        .expect("a client")
        .get_multiplexed_async_connection()
        .await
        .expect("a connection to the benchmark's server")
}

/// What `INFO memory` and `DBSIZE` report.
struct Memory {
    used: i64,
    rss: i64,
    keys: i64,
}

impl Memory {
    async fn read(redis: &mut MultiplexedConnection) -> Self {
        let info: String = redis::cmd("INFO")
            .arg("memory")
            .query_async(redis)
            .await
            .expect("INFO memory");
        let field = |name: &str| -> i64 {
            info.lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
                .and_then(|value| value.trim().parse().ok())
                .unwrap_or_else(|| panic!("INFO memory has no {name}"))
        };
        let keys: i64 = redis::cmd("DBSIZE")
            .query_async(redis)
            .await
            .expect("DBSIZE");
        Self {
            used: field("used_memory"),
            rss: field("used_memory_rss"),
            keys,
        }
    }
}

/// `MEMORY USAGE` of one token key's record, and the length of the entry it holds.
struct Sample {
    record: i64,
    entry: i64,
}

/// The length of a record's header (see the crate's `scripts` module).
const RECORD_HEADER_LEN: i64 = 15;

impl Sample {
    async fn of(store: &RedisStore, redis: &mut MultiplexedConnection, key: &TokenKey) -> Self {
        let record = store.key_names(key).record;
        let usage = redis::cmd("MEMORY")
            .arg("USAGE")
            .arg(&record)
            .arg("SAMPLES")
            .arg(0)
            .query_async::<Option<i64>>(&mut *redis)
            .await
            .expect("MEMORY USAGE")
            .unwrap_or_default();
        let length: i64 = redis::cmd("STRLEN")
            .arg(&record)
            .query_async(redis)
            .await
            .expect("STRLEN");
        Self {
            record: usage,
            entry: length - RECORD_HEADER_LEN,
        }
    }
}
