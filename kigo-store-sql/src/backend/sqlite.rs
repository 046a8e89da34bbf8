//! SQLite: one file shared by the processes of one machine. Times come from the machine's clock
//! as SQLite reads it (`unixepoch('now', 'subsec')`, fixed within a statement), the one clock
//! all those processes share. Every write is one statement, which takes the database's write lock at its
//! start and waits for it within the busy timeout. No push notifications: waiters poll.

use std::time::{Duration, Instant};

use kigo_core::StoreError;
use sqlx::Connection;
use sqlx::error::DatabaseError;
use sqlx::migrate::MigrateError;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqlitePool};

use super::{Backend, Sql, Templates};
use crate::error::Class;
use crate::migrate::{self, Template};
use crate::names::TableRef;
use crate::{BackendKind, SqlPool};

pub(crate) const MIGRATIONS: &[Template] = migrations!("sqlite":
    1 "create token table" "0001_create_token_table.sql",
    2 "index token expiry" "0002_index_token_expiry.sql",
    3 "drop the expiry index" "0003_drop_expiry_index.sql",
);

/// The columns of the token table the statements use.
const COLUMNS: [&str; 10] = [
    "token_key",
    "format_version",
    "entry",
    "generation",
    "fence",
    "fingerprint",
    "expires_at_us",
    "lease_holder",
    "lease_until_us",
    "cooldown_until_us",
];

/// Microseconds since the Unix epoch by the machine's clock.
/// SQLite's clock has milliseconds: `unixepoch(.., 'subsec')` gives them as a fraction of a
/// second, which rounds back to whole milliseconds exactly (a Julian day number has too few
/// bits left for microseconds, so it lands a few microseconds off).
const NOW: &str = "CAST(ROUND(unixepoch('now', 'subsec') * 1000) AS INTEGER) * 1000";

const TEMPLATES: Templates = Templates {
    now: NOW,
    load: Sql::new(
        "SELECT t.format_version,
                CASE WHEN t.expires_at_us IS NULL OR t.expires_at_us > c.now THEN t.entry END,
                t.generation,
                CASE WHEN t.cooldown_until_us > c.now THEN t.cooldown_until_us - c.now END
           FROM {table} AS t, (SELECT {now} AS now) AS c
          WHERE t.token_key = ?1",
    ),
    claim: Sql::new(
        "INSERT INTO {table} AS t
                (token_key, format_version, fence, lease_holder, lease_until_us)
         VALUES (?1, ?2, 1, ?3, {now} + ?4)
         ON CONFLICT (token_key) DO UPDATE
            SET fence = t.fence + 1,
                lease_holder = excluded.lease_holder,
                lease_until_us = excluded.lease_until_us,
                entry = CASE WHEN t.expires_at_us <= {now} THEN NULL ELSE t.entry END,
                fingerprint = CASE WHEN t.expires_at_us <= {now} THEN NULL
                                   ELSE t.fingerprint END,
                expires_at_us = CASE WHEN t.expires_at_us <= {now} THEN NULL
                                     ELSE t.expires_at_us END
          WHERE t.lease_until_us IS NULL OR t.lease_until_us <= {now}
         RETURNING fence",
    ),
    lease: Sql::new(
        "SELECT lease_holder, lease_until_us - {now} FROM {table}
          WHERE token_key = ?1 AND lease_until_us > {now}",
    ),
    release: Sql::new(
        "UPDATE {table} SET lease_holder = NULL, lease_until_us = NULL
          WHERE token_key = ?1 AND lease_holder = ?2 AND fence = ?3",
    ),
    commit: Sql::new(
        "UPDATE {table}
            SET format_version = ?4, entry = ?5, generation = ?3, fingerprint = NULL,
                expires_at_us = ?6,
                lease_holder = NULL, lease_until_us = NULL, cooldown_until_us = NULL
          WHERE token_key = ?1 AND lease_holder = ?2 AND fence = ?3 AND generation < ?3
            AND lease_until_us > {now}",
    ),
    invalidate: Sql::new(
        "UPDATE {table} SET entry = NULL, fingerprint = NULL, expires_at_us = NULL
          WHERE token_key = ?1 AND generation = ?2 AND entry IS NOT NULL",
    ),
    set_cooldown: Sql::new(
        "INSERT INTO {table} AS t (token_key, format_version, cooldown_until_us)
         VALUES (?1, ?2, {now} + ?3)
         ON CONFLICT (token_key) DO UPDATE
            SET cooldown_until_us =
                MAX(COALESCE(t.cooldown_until_us, 0), excluded.cooldown_until_us)",
    ),
    batch_end: Sql::new(
        "SELECT MAX(b.token_key), COUNT(*)
           FROM (SELECT token_key FROM {table} WHERE token_key > ?1
                  ORDER BY token_key LIMIT ?2) AS b",
    ),
    clear_expired: Sql::new(
        "UPDATE {table} SET entry = NULL, fingerprint = NULL, expires_at_us = NULL
          WHERE token_key > ?1 AND token_key <= ?2 AND expires_at_us <= {now}",
    ),
    // Keys compare byte by byte (SQLite's BINARY collation): the order of
    // `TokenKey::storage_id`.
    page: Sql::new(
        "SELECT t.token_key, t.format_version,
                CASE WHEN t.expires_at_us IS NULL OR t.expires_at_us > c.now THEN t.entry END,
                t.generation, NULL
           FROM {table} AS t, (SELECT {now} AS now) AS c
          WHERE t.token_key > ?1 ORDER BY t.token_key LIMIT ?2",
    ),
    reseal: Sql::new(
        "UPDATE {table} SET entry = ?4 WHERE token_key = ?1 AND generation = ?2 AND entry = ?3",
    ),
    forget: Sql::new("DELETE FROM {table} WHERE token_key = ?1"),
    clock: Sql::new("SELECT {now}"),
    applied_migration: Sql::new("SELECT MAX(version) FROM {tracking} WHERE success"),
};

/// The store's operations on an SQLite file.
pub(crate) fn backend(pool: SqlitePool, table: TableRef) -> Backend {
    Backend::new(SqlPool::Sqlite(pool), table, &TEMPLATES, &[])
}

/// The file connections with `options` open (see [`Backend::location`]): on this machine.
pub(crate) fn location(options: &SqliteConnectOptions) -> (String, &'static str) {
    (
        format!("sqlite {}", options.get_filename().display()),
        "local",
    )
}

/// The class of an SQLite error, by its extended result code.
pub(crate) fn classify(error: &(dyn DatabaseError + 'static)) -> Class {
    error
        .code()
        .and_then(|code| code.parse().ok())
        .map_or(Class::Unknown, class_of)
}

/// The class of an SQLite extended result code.
fn class_of(code: i64) -> Class {
    match code & 0xff {
        // SQLITE_BUSY, SQLITE_LOCKED, SQLITE_NOMEM, SQLITE_IOERR, SQLITE_FULL, SQLITE_PROTOCOL
        5 | 6 | 7 | 10 | 13 | 15 => Class::Transient,
        // SQLITE_PERM, SQLITE_READONLY, SQLITE_CANTOPEN, SQLITE_AUTH
        3 | 8 | 14 | 23 => Class::Denied,
        // SQLITE_CORRUPT, SQLITE_NOTADB: the file is not a database this store can use.
        11 | 26 => Class::Config,
        // SQLITE_ERROR ("no such table" among others) and anything else: probe the schema.
        _ => Class::Unknown,
    }
}

/// SQLite reports a missing table and a missing column alike (`SQLITE_ERROR`): the table
/// must be there with every column.
pub(crate) async fn schema_current(
    pool: &SqlitePool,
    table: &TableRef,
) -> Result<bool, sqlx::Error> {
    let statement = format!(
        "SELECT COUNT(*) FROM pragma_table_info(?1) WHERE name IN ({})",
        COLUMNS.map(|column| format!("'{column}'")).join(", ")
    );
    let count: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(statement))
        .bind(table.table())
        .fetch_one(pool)
        .await?;
    Ok(usize::try_from(count).is_ok_and(|count| count == COLUMNS.len()))
}

/// Runs in one `BEGIN IMMEDIATE` transaction: it takes the write lock first, so processes
/// starting together on one file apply each migration once.
pub(crate) async fn migrate(pool: &SqlitePool, table: &TableRef) -> Result<(), MigrateError> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    migrate::apply(&mut *tx, MIGRATIONS, table, BackendKind::Sqlite).await?;
    tx.commit().await?;
    Ok(())
}

/// Switches the file to write-ahead logging, a lasting property of the file, before any pool
/// connection opens it. Several processes opening a new file at once race for the switch, and
/// SQLite does not wait for the exclusive lock it needs (the busy timeout does not apply): so
/// retry, with jitter, within `patience`. Pool connections then leave the journal mode alone.
pub(crate) async fn use_wal(
    options: &SqliteConnectOptions,
    patience: Duration,
) -> Result<(), StoreError> {
    let deadline = Instant::now() + patience;
    loop {
        let switched = async {
            let mut connection = SqliteConnection::connect_with(options).await?;
            let mode: String = sqlx::query_scalar("PRAGMA journal_mode = WAL")
                .fetch_one(&mut connection)
                .await?;
            connection.close().await?;
            Ok::<_, sqlx::Error>(mode)
        }
        .await;
        let error = match switched {
            Ok(mode) => {
                journal_mode_chosen(&mode);
                return Ok(());
            }
            Err(error) => error,
        };
        let class = match &error {
            sqlx::Error::Database(database) => classify(database.as_ref()),
            other => Class::of_driver(other),
        };
        if class != Class::Transient || Instant::now() >= deadline {
            return Err(class.into_store_error(error));
        }
        tokio::time::sleep(Duration::from_millis(fastrand::u64(5..50))).await;
    }
}

/// SQLite answers the switch with the mode it is in: `wal`, or `memory` for an in-memory
/// database (which has no other). Anything else (an immutable file, a file system without shared
/// memory) works, but each write then locks readers out: say so.
fn journal_mode_chosen(mode: &str) {
    if !mode.eq_ignore_ascii_case("wal") && !mode.eq_ignore_ascii_case("memory") {
        tracing::warn!(
            journal_mode = mode,
            "the SQLite file did not switch to write-ahead logging: readers wait for every \
             write, so replicas may see the store busy more often"
        );
    }
}

#[cfg(test)]
mod tests {
    use sqlx::{AssertSqlSafe, Connection};

    use super::*;

    #[test]
    fn result_codes() {
        assert_eq!(class_of(5), Class::Transient);
        assert_eq!(class_of(517), Class::Transient); // SQLITE_BUSY_SNAPSHOT
        assert_eq!(class_of(262), Class::Transient); // SQLITE_LOCKED_SHAREDCACHE
        assert_eq!(class_of(8), Class::Denied);
        assert_eq!(class_of(26), Class::Config);
        assert_eq!(class_of(1), Class::Unknown);
    }

    /// `{now}` reads SQLite's clock (milliseconds) exactly as microseconds since the epoch: no
    /// rounding error from floating point, at any time this century and the next.
    #[tokio::test]
    async fn now_is_exact_microseconds() {
        let mut db = SqliteConnection::connect("sqlite::memory:").await.unwrap();
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..2000 {
            let seconds = rng.i64(946_684_800..7_258_118_400); // 2000 to 2200
            let millis = rng.i64(0..1000);
            let date: String = sqlx::query_scalar("SELECT datetime(?1, 'unixepoch')")
                .bind(seconds)
                .fetch_one(&mut db)
                .await
                .unwrap();
            let at = format!("'{date}.{millis:03}'");
            let now = AssertSqlSafe(format!("SELECT {}", NOW.replace("'now'", &at)));
            let read: i64 = sqlx::query_scalar(now).fetch_one(&mut db).await.unwrap();
            assert_eq!(read, seconds * 1_000_000 + millis * 1000, "{at}");
        }
    }
}
