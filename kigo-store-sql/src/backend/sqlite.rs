//! SQLite: one file shared by the processes of one machine. Times come from the machine's clock
//! as SQLite reads it (`julianday('now')`, fixed within a statement), the one clock all those
//! processes share. Every write is one statement, which takes the database's write lock at its
//! start and waits for it within the busy timeout. No push notifications: waiters poll.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::error::DatabaseError;
use sqlx::migrate::MigrateError;
use sqlx::sqlite::SqlitePool;

use super::{Backend, BackendKind, Statements, Templates, sql};
use crate::error::{Class, sqlite_class};
use crate::migrate::{Template, migrator};
use crate::names::TableRef;
use crate::row::{NewEntry, StoredRow, format_version};

const MIGRATIONS: &[Template] = &[Template {
    version: 1,
    description: "create token table",
    sql: include_str!("../../migrations/sqlite/0001_create_token_table.sql"),
}];

/// Microseconds since the Unix epoch by the machine's clock.
const NOW: &str = "CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER)";

const TEMPLATES: Templates = Templates {
    load: "SELECT t.format_version,
                  CASE WHEN t.expires_at_us IS NULL OR t.expires_at_us > c.now THEN t.entry END,
                  t.generation,
                  CASE WHEN t.cooldown_until_us > c.now THEN t.cooldown_until_us - c.now END
             FROM {table} AS t, (SELECT {now} AS now) AS c
            WHERE t.token_key = ?1",
    claim: "INSERT INTO {table} AS t
                   (token_key, format_version, fence, lease_holder, lease_until_us)
            VALUES (?1, ?2, 1, ?3, {now} + ?4)
            ON CONFLICT (token_key) DO UPDATE
               SET fence = t.fence + 1,
                   lease_holder = excluded.lease_holder,
                   lease_until_us = excluded.lease_until_us
             WHERE t.lease_until_us IS NULL OR t.lease_until_us <= {now}
            RETURNING fence",
    lease_remaining: "SELECT lease_until_us - {now} FROM {table}
                       WHERE token_key = ?1 AND lease_until_us > {now}",
    release: "UPDATE {table} SET lease_holder = NULL, lease_until_us = NULL
               WHERE token_key = ?1 AND lease_holder = ?2",
    commit: "UPDATE {table}
                SET format_version = ?4, entry = ?5, generation = ?3, fingerprint = ?6,
                    expires_at_us = ?7,
                    lease_holder = NULL, lease_until_us = NULL, cooldown_until_us = NULL
              WHERE token_key = ?1 AND lease_holder = ?2 AND fence = ?3 AND generation < ?3
                AND lease_until_us > {now}",
    invalidate: "UPDATE {table} SET entry = NULL, fingerprint = NULL, expires_at_us = NULL
                  WHERE token_key = ?1 AND fingerprint = ?2",
    set_cooldown: "INSERT INTO {table} AS t (token_key, format_version, cooldown_until_us)
                   VALUES (?1, ?2, {now} + ?3)
                   ON CONFLICT (token_key) DO UPDATE
                      SET cooldown_until_us =
                          MAX(COALESCE(t.cooldown_until_us, 0), excluded.cooldown_until_us)",
};

/// The store's operations on an SQLite file.
#[derive(Debug)]
pub(crate) struct Sqlite {
    pool: SqlitePool,
    table: TableRef,
    statements: Statements,
}

impl Sqlite {
    pub(crate) fn new(pool: SqlitePool, table: TableRef) -> Self {
        Self {
            statements: Statements::render(&TEMPLATES, &table.quoted(BackendKind::Sqlite), NOW),
            pool,
            table,
        }
    }
}

#[async_trait]
impl Backend for Sqlite {
    fn kind(&self) -> BackendKind {
        BackendKind::Sqlite
    }

    fn classify(&self, error: &(dyn DatabaseError + 'static)) -> Class {
        error
            .code()
            .and_then(|code| code.parse().ok())
            .map_or(Class::Unknown, sqlite_class)
    }

    async fn table_exists(&self) -> Result<bool, sqlx::Error> {
        let count: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
        )
        .bind(self.table.table())
        .fetch_one(&self.pool)
        .await?;
        Ok(count > 0)
    }

    /// Runs in one `BEGIN IMMEDIATE` transaction: it takes the write lock first, so processes
    /// starting together on one file apply each migration once.
    async fn migrate(&self) -> Result<(), MigrateError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        // `run_direct` rather than `run`: sqlx's documented way around an `Acquire` lifetime
        // limitation with a borrowed connection in a `Send` future.
        migrator(MIGRATIONS, &self.table, BackendKind::Sqlite)
            .run_direct(None, &mut *tx, false)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn load(&self, key: &str) -> Result<Option<StoredRow>, sqlx::Error> {
        let row = sqlx::query(sql(&self.statements.load))
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| {
            Ok(StoredRow {
                format: row.try_get(0)?,
                entry: row.try_get(1)?,
                generation: row.try_get(2)?,
                cooldown_us: row.try_get(3)?,
            })
        })
        .transpose()
    }

    async fn claim(
        &self,
        key: &str,
        holder: &str,
        ttl_us: i64,
    ) -> Result<Option<i64>, sqlx::Error> {
        sqlx::query_scalar(sql(&self.statements.claim))
            .bind(key)
            .bind(format_version())
            .bind(holder)
            .bind(ttl_us)
            .fetch_optional(&self.pool)
            .await
    }

    async fn lease_remaining(&self, key: &str) -> Result<Option<i64>, sqlx::Error> {
        sqlx::query_scalar(sql(&self.statements.lease_remaining))
            .bind(key)
            .fetch_optional(&self.pool)
            .await
    }

    async fn release(&self, key: &str, holder: &str) -> Result<(), sqlx::Error> {
        sqlx::query(sql(&self.statements.release))
            .bind(key)
            .bind(holder)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn commit(
        &self,
        key: &str,
        holder: &str,
        fence: i64,
        entry: &NewEntry,
    ) -> Result<bool, sqlx::Error> {
        let committed = sqlx::query(sql(&self.statements.commit))
            .bind(key)
            .bind(holder)
            .bind(fence)
            .bind(entry.format)
            .bind(&entry.entry)
            .bind(&entry.fingerprint[..])
            .bind(entry.expires_us)
            .execute(&self.pool)
            .await?;
        Ok(committed.rows_affected() == 1)
    }

    async fn invalidate(&self, key: &str, fingerprint: &[u8]) -> Result<bool, sqlx::Error> {
        let removed = sqlx::query(sql(&self.statements.invalidate))
            .bind(key)
            .bind(fingerprint)
            .execute(&self.pool)
            .await?;
        Ok(removed.rows_affected() == 1)
    }

    async fn set_cooldown(&self, key: &str, duration_us: i64) -> Result<(), sqlx::Error> {
        sqlx::query(sql(&self.statements.set_cooldown))
            .bind(key)
            .bind(format_version())
            .bind(duration_us)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
