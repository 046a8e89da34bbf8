//! MySQL and MariaDB: leases timed by `UTC_TIMESTAMP(6)`, fences read back through
//! `LAST_INSERT_ID(expr)` (the OK packet's insert ID), since neither has `UPDATE ... RETURNING`.
//! No push notifications: waiters poll.

use std::sync::Arc;

use async_trait::async_trait;
use sqlx::error::DatabaseError;
use sqlx::migrate::MigrateError;
use sqlx::mysql::{MySqlDatabaseError, MySqlPool};
use sqlx::{Connection, Row};

use super::{Backend, BackendKind, Statements, Templates, render, sql};
use crate::error::{Class, mysql_class};
use crate::migrate::{Template, migrator};
use crate::names::TableRef;
use crate::row::{NewEntry, StoredRow, format_version};

const MIGRATIONS: &[Template] = &[Template {
    version: 1,
    description: "create token table",
    sql: include_str!("../../migrations/mysql/0001_create_token_table.sql"),
}];

const NOW: &str = "UTC_TIMESTAMP(6)";

const TEMPLATES: Templates = Templates {
    load: "SELECT format_version,
                  CASE WHEN expires_at IS NULL OR expires_at > {now} THEN entry END,
                  generation,
                  CASE WHEN cooldown_until > {now}
                       THEN TIMESTAMPDIFF(MICROSECOND, {now}, cooldown_until) END
             FROM {table} WHERE token_key = ?",
    // The claim of an existing row; `claim_new` creates a missing one.
    claim: "UPDATE {table}
               SET fence = LAST_INSERT_ID(fence + 1), lease_holder = ?,
                   lease_until = TIMESTAMPADD(MICROSECOND, ?, {now})
             WHERE token_key = ? AND (lease_until IS NULL OR lease_until <= {now})",
    lease_remaining: "SELECT TIMESTAMPDIFF(MICROSECOND, {now}, lease_until)
                        FROM {table} WHERE token_key = ? AND lease_until > {now}",
    release: "UPDATE {table} SET lease_holder = NULL, lease_until = NULL
               WHERE token_key = ? AND lease_holder = ?",
    commit: "UPDATE {table}
                SET format_version = ?, entry = ?, generation = fence, fingerprint = ?,
                    expires_at = TIMESTAMPADD(MICROSECOND, ?, TIMESTAMP'1970-01-01 00:00:00'),
                    lease_holder = NULL, lease_until = NULL, cooldown_until = NULL
              WHERE token_key = ? AND lease_holder = ? AND fence = ? AND generation < fence
                AND lease_until > {now}",
    invalidate: "UPDATE {table} SET entry = NULL, fingerprint = NULL, expires_at = NULL
                  WHERE token_key = ? AND fingerprint = ?",
    set_cooldown: "INSERT INTO {table} (token_key, format_version, cooldown_until)
                   VALUES (?, ?, TIMESTAMPADD(MICROSECOND, ?, {now}))
                   ON DUPLICATE KEY UPDATE cooldown_until = GREATEST(
                       COALESCE(cooldown_until, TIMESTAMP'1970-01-01 00:00:00'),
                       TIMESTAMPADD(MICROSECOND, ?, {now}))",
};

/// Creates the row of a key never claimed, with the lease granted (fence 1). `IGNORE` only
/// skips the duplicate key of a row that exists: every value is bounded by the schema.
const CLAIM_NEW: &str = "INSERT IGNORE INTO {table}
                             (token_key, format_version, fence, lease_holder, lease_until)
                         VALUES (?, ?, 1, ?, TIMESTAMPADD(MICROSECOND, ?, {now}))";

/// How long a migration waits for another replica's migration of the same table.
const MIGRATION_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// The store's operations on MySQL or MariaDB.
#[derive(Debug)]
pub(crate) struct MySql {
    pool: MySqlPool,
    table: TableRef,
    statements: Statements,
    claim_new: Arc<str>,
}

impl MySql {
    pub(crate) fn new(pool: MySqlPool, table: TableRef) -> Self {
        let quoted = table.quoted(BackendKind::MySql);
        Self {
            statements: Statements::render(&TEMPLATES, &quoted, NOW),
            claim_new: render(CLAIM_NEW, &quoted, NOW),
            pool,
            table,
        }
    }
}

#[async_trait]
impl Backend for MySql {
    fn kind(&self) -> BackendKind {
        BackendKind::MySql
    }

    fn classify(&self, error: &(dyn DatabaseError + 'static)) -> Class {
        error
            .try_downcast_ref::<MySqlDatabaseError>()
            .map_or(Class::Unknown, |error| mysql_class(error.number()))
    }

    async fn table_exists(&self) -> Result<bool, sqlx::Error> {
        let count: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM information_schema.tables
              WHERE table_schema = COALESCE(?, DATABASE()) AND table_name = ?",
        )
        .bind(self.table.schema())
        .bind(self.table.table())
        .fetch_one(&self.pool)
        .await?;
        Ok(count > 0)
    }

    /// DDL commits implicitly in MySQL, so migrations cannot share one transaction: a named
    /// lock (`GET_LOCK`, per database and table) serializes concurrent runs instead. sqlx's own
    /// migration lock waits with `GET_LOCK(name, -1)`, which MariaDB answers at once with NULL
    /// (no lock, no wait), so it is off. The connection is detached from the pool and closed at
    /// the end, so a cancelled migration cannot leave the lock behind on a pooled connection.
    async fn migrate(&self) -> Result<(), MigrateError> {
        let mut migrator = migrator(MIGRATIONS, &self.table, BackendKind::MySql);
        migrator.set_locking(false);
        let mut connection = self.pool.acquire().await?.detach();
        let locked: Option<i64> = sqlx::query_scalar(
            "SELECT GET_LOCK(CONCAT('kigo-migrate:', LEFT(SHA2(CONCAT(DATABASE(), '.', ?), 256), 40)), ?)",
        )
        .bind(self.table.quoted(BackendKind::MySql))
        .bind(MIGRATION_LOCK_WAIT.as_secs())
        .fetch_one(&mut connection)
        .await?;
        if locked != Some(1) {
            return Err(MigrateError::Execute(sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "another replica's migration of this table held its lock for too long",
            ))));
        }
        // `run_direct`: sqlx's way around an `Acquire` lifetime limit with a borrowed connection.
        migrator.run_direct(None, &mut connection, false).await?;
        connection.close().await?;
        Ok(())
    }

    async fn load(&self, key: &str) -> Result<Option<StoredRow>, sqlx::Error> {
        let row = sqlx::query(sql(&self.statements.load))
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| {
            Ok(StoredRow {
                format: i64::from(row.try_get::<i32, _>(0)?),
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
        let claimed = sqlx::query(sql(&self.statements.claim))
            .bind(holder)
            .bind(ttl_us)
            .bind(key)
            .execute(&self.pool)
            .await?;
        if claimed.rows_affected() == 1 {
            return Ok(i64::try_from(claimed.last_insert_id()).ok());
        }
        let created = sqlx::query(sql(&self.claim_new))
            .bind(key)
            .bind(format_version())
            .bind(holder)
            .bind(ttl_us)
            .execute(&self.pool)
            .await?;
        Ok((created.rows_affected() == 1).then_some(1))
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
            .bind(entry.format)
            .bind(&entry.entry)
            .bind(&entry.fingerprint[..])
            .bind(entry.expires_us)
            .bind(key)
            .bind(holder)
            .bind(fence)
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
            .bind(duration_us)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
