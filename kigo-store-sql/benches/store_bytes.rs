//! Bytes per user key in PostgreSQL: N user-level tokens committed through the store's write
//! path (`acquire_lease`, then a fenced `commit`, sealed under a generated keyring, the default
//! table), into a fresh database for each N.
//!
//! Reports, per key: the growth of `pg_total_relation_size` of the store's table (heap, TOAST,
//! free-space and visibility maps, and every index), the part beyond the token itself (its
//! 42-byte secret; the tokens have no refresh token), and where it is: the heap, each index,
//! the rest; with the average row (`pg_column_size`) and stored entry. Measured twice: after
//! `VACUUM (ANALYZE)`, as a live table stays (a commit is an update that leaves the row's old
//! version behind, whose room `VACUUM` keeps for the next ones), and after `VACUUM FULL`, the
//! table packed.
//!
//! Run: `cargo bench -p kigo-store-sql --features postgres --bench store_bytes` (10,000 keys;
//! `KIGO_BENCH_STORE_KEYS=10000,1000000` for others).
#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant};

use kigo_store_sql::SqlStore;
use kigo_testkit::conformance::test_keyring;
use kigo_testkit::fill::{self, SECRET_LEN, per_key};
use sqlx::PgPool;

/// Commits in flight at once, and the store's connections.
const CONCURRENCY: usize = 32;
const CONNECTIONS: u32 = 16;

/// The store's table (the default).
const TABLE: &str = "kigo_tokens";

#[tokio::main]
async fn main() {
    println!(
        "| keys | after | total per key | beyond the token | heap | indexes | maps and TOAST | row \
         | its entry | fill |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for count in fill::counts(&[10_000]) {
        for row in measure(count).await {
            println!("{row}");
        }
    }
    println!(
        "\nThe token itself: its {SECRET_LEN}-byte secret (no refresh token). Each count in a \
         fresh database."
    );
}

/// The rows of the table for `count` keys filled into a fresh database.
async fn measure(count: usize) -> Vec<String> {
    let db = kigo_test_services::postgres::database()
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    let store = SqlStore::builder()
        .url(db.url())
        .keyring(test_keyring())
        .migrate_on_connect(true)
        .max_connections(CONNECTIONS)
        .operation_timeout(Duration::from_secs(60))
        .build()
        .await
        .unwrap_or_else(|error| panic!("building the store: {error}"));
    let pool = PgPool::connect(db.url())
        .await
        .expect("a connection to the benchmark's database");

    let before = Sizes::read(&pool, "VACUUM (ANALYZE) kigo_tokens").await;
    let keys = fill::user_keys(count);
    let started = Instant::now();
    fill::commit_all(&store, &keys, CONCURRENCY)
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    let took = started.elapsed();
    let mut rows = Vec::new();
    for (after, vacuum) in [
        ("`VACUUM`", "VACUUM (ANALYZE) kigo_tokens"),
        ("`VACUUM FULL`", "VACUUM (FULL, ANALYZE) kigo_tokens"),
    ] {
        let sizes = Sizes::read(&pool, vacuum).await;
        let total = per_key(sizes.total - before.total, count);
        let indexes: Vec<String> = sizes
            .indexes
            .iter()
            .zip(&before.indexes)
            .map(|((name, after), (_, before))| {
                let name = name.strip_prefix("kigo_tokens_").unwrap_or(name);
                format!("{name} {:.0}", per_key(after - before, count))
            })
            .collect();
        rows.push(format!(
            "| {count} | {after} | {total:.0} | **{:.0}** | {:.0} | {} | {:.0} | {:.0} | {:.0} | \
             {:.1} s |",
            total - SECRET_LEN as f64,
            per_key(sizes.heap - before.heap, count),
            indexes.join(" / "),
            per_key(sizes.rest - before.rest, count),
            sizes.row,
            sizes.entry,
            took.as_secs_f64(),
        ));
    }
    rows
}

/// What the store's table takes, in bytes, after `vacuum`.
struct Sizes {
    total: i64,
    heap: i64,
    /// Each index by name, in the order of their names.
    indexes: Vec<(String, i64)>,
    /// TOAST and the free-space and visibility maps.
    rest: i64,
    /// The average row, and stored entry (`NaN` for an empty table).
    row: f64,
    entry: f64,
}

impl Sizes {
    async fn read(pool: &PgPool, vacuum: &'static str) -> Self {
        sqlx::query(vacuum)
            .execute(pool)
            .await
            .expect("vacuuming the table");
        let size = async |query: &'static str, relation: &str| -> i64 {
            sqlx::query_scalar(query)
                .bind(relation)
                .fetch_one(pool)
                .await
                .unwrap_or_else(|error| panic!("the size of {relation}: {error}"))
        };
        let total = size("SELECT pg_total_relation_size($1::regclass)", TABLE).await;
        let heap = size("SELECT pg_relation_size($1::regclass)", TABLE).await;
        let table = size("SELECT pg_table_size($1::regclass)", TABLE).await;
        let indexes: Vec<(String, i64)> = sqlx::query_as(
            "SELECT CAST(indexrelid::regclass AS TEXT) AS name, pg_relation_size(indexrelid)
               FROM pg_index WHERE indrelid = $1::regclass ORDER BY name",
        )
        .bind(TABLE)
        .fetch_all(pool)
        .await
        .expect("the table's indexes");
        let (row, entry): (Option<f64>, Option<f64>) = sqlx::query_as(
            "SELECT AVG(pg_column_size(t.*))::FLOAT8, AVG(octet_length(t.entry))::FLOAT8
               FROM kigo_tokens AS t",
        )
        .fetch_one(pool)
        .await
        .expect("the average row");
        Self {
            total,
            heap,
            indexes,
            rest: table - heap,
            row: row.unwrap_or(f64::NAN),
            entry: entry.unwrap_or(f64::NAN),
        }
    }
}
