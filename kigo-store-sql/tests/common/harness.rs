//! A [`StoreHarness`] for each database: a fresh database (or SQLite file) per test, migrated,
//! with every handle a store of its own (its own pool), as a replica would open it, and every
//! store sealing under the test's one keyring.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use kigo_core::codec::{FORMAT_VERSION, Keyring};
use kigo_core::store::StoreAdmin;
use kigo_core::{TokenKey, TokenStore};
use kigo_store_sql::{BackendKind, SqlPool, SqlStore, SqlStoreBuilder};
use kigo_test_services::{self as services, TestDatabase};
use kigo_testkit::admin_conformance::AdminHarness;
use kigo_testkit::conformance::{StoreHarness, test_keyring};
use sqlx::{AssertSqlSafe, Database, Encode, Executor, IntoArguments, Pool, Type};

/// Where a harness's database lives; kept alive as long as the harness.
enum Place {
    Server { _db: TestDatabase },
    File { _dir: tempfile::TempDir },
}

/// A store under test on a database of its own.
pub(crate) struct SqlHarness {
    url: String,
    keyring: Keyring,
    admin: SqlStore,
    _place: Place,
}

impl SqlHarness {
    /// On a fresh database of `kind`: a database of its own on the test server, or an SQLite
    /// file in a temp dir.
    pub(crate) async fn new(kind: BackendKind) -> Self {
        let db = match kind {
            BackendKind::Postgres => services::postgres::database().await,
            BackendKind::MySql => services::mysql::database().await,
            _ => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}", dir.path().join("tokens.db").display());
                return Self::on(url, Place::File { _dir: dir }).await;
            }
        };
        let db = db.unwrap_or_else(|error| panic!("{error}"));
        Self::on(db.url().to_owned(), Place::Server { _db: db }).await
    }

    async fn on(url: String, place: Place) -> Self {
        let keyring = test_keyring();
        let admin = SqlStore::builder()
            .keyring(keyring.clone())
            .migrate_on_connect(true)
            .url(&url)
            .build()
            .await
            .unwrap_or_else(|error| panic!("migrating the test database failed: {error:?}"));
        Self {
            url,
            keyring,
            admin,
            _place: place,
        }
    }

    /// The keyring the test's stores seal with.
    pub(crate) fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    /// Default options, sealing under the test's keyring.
    pub(crate) fn options(&self) -> SqlStoreBuilder {
        SqlStore::builder().keyring(self.keyring.clone())
    }

    /// A new store on the database (a replica's own pool, of up to 4 connections).
    pub(crate) async fn store(&self) -> SqlStore {
        self.store_with(self.options().max_connections(4)).await
    }

    /// A new store on the database with `options`.
    pub(crate) async fn store_with(&self, options: SqlStoreBuilder) -> SqlStore {
        options
            .url(&self.url)
            .build()
            .await
            .unwrap_or_else(|error| panic!("store: {error:?}"))
    }

    /// The URL of the database.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// The migrated store the harness reaches behind the others with.
    pub(crate) fn admin(&self) -> &SqlStore {
        &self.admin
    }

    /// Writes `raw` as the entry of `key` with row format `format`, bypassing the store.
    pub(crate) async fn write_raw_format(&self, key: &TokenKey, raw: &[u8], format: i32) {
        let id = key.storage_id();
        let written = match self.admin.pool() {
            SqlPool::Postgres(pool) => upsert(pool, RAW_POSTGRES, &id, format, raw).await,
            SqlPool::MySql(pool) => upsert(pool, RAW_MYSQL, &id, format, raw).await,
            SqlPool::Sqlite(pool) => upsert(pool, RAW_SQLITE, &id, format, raw).await,
            _ => unreachable!("every database feature is on in the tests"),
        };
        written.unwrap_or_else(|error| panic!("raw write: {error}"));
    }

    /// Runs `statement` on the database, bypassing the store; how many rows it changed.
    pub(crate) async fn execute(&self, statement: &str) -> u64 {
        let statement = || AssertSqlSafe(statement.to_owned());
        let done = match self.admin.pool() {
            SqlPool::Postgres(pool) => sqlx::query(statement())
                .execute(pool)
                .await
                .map(|done| done.rows_affected()),
            SqlPool::MySql(pool) => sqlx::query(statement())
                .execute(pool)
                .await
                .map(|done| done.rows_affected()),
            SqlPool::Sqlite(pool) => sqlx::query(statement())
                .execute(pool)
                .await
                .map(|done| done.rows_affected()),
            _ => unreachable!("every database feature is on in the tests"),
        };
        done.unwrap_or_else(|error| panic!("{statement}: {error}", statement = statement().0))
    }

    /// How many sessions on the database, other than the one asking, are inside a transaction
    /// (as a statement runs, or a connection holds one open). Always 0 on SQLite, where a
    /// transaction is not visible to other connections.
    pub(crate) async fn open_transactions(&self) -> i64 {
        let counted = match self.admin.pool() {
            SqlPool::Postgres(pool) => {
                sqlx::query_scalar(
                    "SELECT count(*) FROM pg_stat_activity
                      WHERE datname = current_database() AND pid <> pg_backend_pid()
                        AND xact_start IS NOT NULL",
                )
                .fetch_one(pool)
                .await
            }
            SqlPool::MySql(pool) => {
                sqlx::query_scalar(
                    "SELECT COUNT(*) FROM information_schema.innodb_trx AS t
                       JOIN information_schema.processlist AS p ON p.id = t.trx_mysql_thread_id
                      WHERE p.db = DATABASE() AND p.id <> CONNECTION_ID()",
                )
                .fetch_one(pool)
                .await
            }
            _ => Ok(0),
        };
        counted.unwrap_or_else(|error| panic!("open transactions: {error}"))
    }

    /// What the row of `key` holds, read bypassing the store.
    pub(crate) async fn raw_row(&self, key: &TokenKey) -> RawRow {
        self.row(key).await.expect("a row for the key")
    }

    /// What the row of `key` holds, if there is one, read bypassing the store.
    async fn row(&self, key: &TokenKey) -> Option<RawRow> {
        let id = key.storage_id();
        let read = match self.admin.pool() {
            SqlPool::Postgres(pool) => row_of(pool, ROW_POSTGRES, &id).await,
            SqlPool::MySql(pool) => row_of(pool, ROW_OTHERS, &id).await,
            SqlPool::Sqlite(pool) => row_of(pool, ROW_OTHERS, &id).await,
            _ => unreachable!("every database feature is on in the tests"),
        };
        let row = read.unwrap_or_else(|error| panic!("raw read: {error}"));
        row.map(|(entry, fingerprint, generation, fence)| RawRow {
            entry,
            fingerprint,
            generation,
            fence,
        })
    }

    /// How many rows still hold token material (an entry or a fingerprint).
    pub(crate) async fn rows_with_token_material(&self) -> i64 {
        self.count(
            "SELECT COUNT(*) FROM kigo_tokens WHERE entry IS NOT NULL OR fingerprint IS NOT NULL",
        )
        .await
    }

    /// How many rows the token table has.
    pub(crate) async fn rows(&self) -> i64 {
        self.count("SELECT COUNT(*) FROM kigo_tokens").await
    }

    /// How many indexes the token table has (its primary key's among them).
    pub(crate) async fn indexes(&self) -> i64 {
        self.count(match self.admin.kind() {
            BackendKind::Postgres => {
                "SELECT COUNT(*) FROM pg_indexes
                  WHERE schemaname = current_schema() AND tablename = 'kigo_tokens'"
            }
            BackendKind::MySql => {
                "SELECT COUNT(DISTINCT index_name) FROM information_schema.statistics
                  WHERE table_schema = DATABASE() AND table_name = 'kigo_tokens'"
            }
            _ => "SELECT COUNT(*) FROM pragma_index_list('kigo_tokens')",
        })
        .await
    }

    /// The count `statement` returns.
    async fn count(&self, statement: &'static str) -> i64 {
        let counted = match self.admin.pool() {
            SqlPool::Postgres(pool) => sqlx::query_scalar(statement).fetch_one(pool).await,
            SqlPool::MySql(pool) => sqlx::query_scalar(statement).fetch_one(pool).await,
            SqlPool::Sqlite(pool) => sqlx::query_scalar(statement).fetch_one(pool).await,
            _ => unreachable!("every database feature is on in the tests"),
        };
        counted.unwrap_or_else(|error| panic!("count: {error}"))
    }

    /// Moves the expiry of the tokens of `keys` into the past (as if their lifetime had passed),
    /// bypassing the store.
    pub(crate) async fn expire(&self, keys: &[TokenKey]) {
        let past = match self.admin.kind() {
            BackendKind::Postgres => "expires_at = TIMESTAMPTZ '2000-01-01 00:00:00+00'",
            BackendKind::MySql => "expires_at = TIMESTAMP'2000-01-01 00:00:00'",
            _ => "expires_at_us = 946684800000000",
        };
        // Storage IDs are percent-encoded ASCII without quotes: safe in a literal.
        let ids = keys
            .iter()
            .map(|key| format!("'{}'", key.storage_id()))
            .collect::<Vec<_>>()
            .join(", ");
        let expired = self
            .execute(&format!(
                "UPDATE kigo_tokens SET {past} WHERE token_key IN ({ids})"
            ))
            .await;
        assert_eq!(expired, keys.len() as u64, "rows expired");
    }
}

#[async_trait]
impl StoreHarness for SqlHarness {
    async fn handle(&self) -> Arc<dyn TokenStore> {
        Arc::new(self.store().await)
    }

    async fn write_raw(&self, key: &TokenKey, raw: &[u8]) {
        let format = i32::try_from(FORMAT_VERSION).expect("small format version");
        self.write_raw_format(key, raw, format).await;
    }

    async fn read_raw(&self, key: &TokenKey) -> Option<Vec<u8>> {
        self.row(key).await.and_then(|row| row.entry)
    }

    /// The database's clock is the machine's: real time passes.
    async fn pass(&self, duration: Duration) {
        tokio::time::sleep(duration).await;
    }

    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    /// Longer than the suite's default: every handle opens a pool of its own, whose first
    /// connection can take a few hundred milliseconds on a busy machine.
    fn short_ttl(&self) -> Duration {
        Duration::from_secs(1)
    }
}

#[async_trait]
impl AdminHarness for SqlHarness {
    async fn admin_with(&self, keyring: Keyring) -> Arc<dyn StoreAdmin> {
        Arc::new(self.store_with(SqlStore::builder().keyring(keyring)).await)
    }

    fn keyring(&self) -> Keyring {
        self.keyring.clone()
    }
}

/// A row as [`SqlHarness::raw_row`] reads it (no `Debug`: the entry is the token).
pub(crate) struct RawRow {
    pub(crate) entry: Option<Vec<u8>>,
    pub(crate) fingerprint: Option<Vec<u8>>,
    pub(crate) generation: i64,
    pub(crate) fence: i64,
}

const ROW_POSTGRES: &str =
    "SELECT entry, fingerprint, generation, fence FROM kigo_tokens WHERE token_key = $1";
const ROW_OTHERS: &str =
    "SELECT entry, fingerprint, generation, fence FROM kigo_tokens WHERE token_key = ?";

type RowValues = (Option<Vec<u8>>, Option<Vec<u8>>, i64, i64);

/// Reads the row of `id` on `pool` with `statement`, one of the above.
async fn row_of<DB>(
    pool: &Pool<DB>,
    statement: &'static str,
    id: &str,
) -> Result<Option<RowValues>, sqlx::Error>
where
    DB: Database,
    DB::Arguments: IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'a> &'a str: Encode<'a, DB> + Type<DB>,
    for<'r> RowValues: sqlx::FromRow<'r, DB::Row>,
{
    sqlx::query_as(statement)
        .bind(id)
        .fetch_optional(pool)
        .await
}

const RAW_POSTGRES: &str = "INSERT INTO kigo_tokens (token_key, format_version, entry)
    VALUES ($1, $2, $3)
    ON CONFLICT (token_key) DO UPDATE SET format_version = EXCLUDED.format_version,
        entry = EXCLUDED.entry, fingerprint = NULL, expires_at = NULL";
const RAW_MYSQL: &str = "INSERT INTO kigo_tokens (token_key, format_version, entry)
    VALUES (?, ?, ?)
    ON DUPLICATE KEY UPDATE format_version = VALUES(format_version),
        entry = VALUES(entry), fingerprint = NULL, expires_at = NULL";
const RAW_SQLITE: &str = "INSERT INTO kigo_tokens (token_key, format_version, entry)
    VALUES (?1, ?2, ?3)
    ON CONFLICT (token_key) DO UPDATE SET format_version = excluded.format_version,
        entry = excluded.entry, fingerprint = NULL, expires_at_us = NULL";

/// Runs one of the raw upserts above on `pool`.
async fn upsert<DB>(
    pool: &Pool<DB>,
    statement: &'static str,
    id: &str,
    format: i32,
    raw: &[u8],
) -> Result<(), sqlx::Error>
where
    DB: Database,
    DB::Arguments: IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'a> &'a str: Encode<'a, DB> + Type<DB>,
    for<'a> &'a [u8]: Encode<'a, DB> + Type<DB>,
    for<'a> i32: Encode<'a, DB> + Type<DB>,
{
    sqlx::query(statement)
        .bind(id)
        .bind(format)
        .bind(raw)
        .execute(pool)
        .await?;
    Ok(())
}
