//! MySQL and MariaDB: leases timed by `UTC_TIMESTAMP(6)`, fences read back through
//! `LAST_INSERT_ID(expr)` (the OK packet's insert ID), since neither has `UPDATE ... RETURNING`.
//! No push notifications: waiters poll.

use std::sync::Arc;

use async_trait::async_trait;
use sqlx::Connection;
use sqlx::error::DatabaseError;
use sqlx::migrate::MigrateError;
use sqlx::mysql::{MySqlDatabaseError, MySqlPool};

use super::runner::Value::{Bytes, Int, Text};
use super::runner::{Runner, bound};
use super::{Backend, BackendKind, Statements, Templates, render};
use crate::error::{Class, mysql_class};
use crate::migrate::{self, Template};
use crate::names::TableRef;
use crate::row::{NewEntry, StoredRow, format_version};

const MIGRATIONS: &[Template] = &[Template {
    version: 1,
    description: "create token table",
    sql: include_str!("../../migrations/mysql/0001_create_token_table.sql"),
}];

const NOW: &str = "UTC_TIMESTAMP(6)";

const TEMPLATES: Templates = Templates {
    load: "SELECT CAST(format_version AS SIGNED),
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
    runner: Runner<sqlx::MySql>,
    table: TableRef,
    statements: Statements,
    claim_new: Arc<str>,
}

impl MySql {
    pub(crate) fn new(pool: MySqlPool, table: TableRef) -> Self {
        let quoted = table.quoted(BackendKind::MySql);
        let fill = [("{table}", quoted.as_str()), ("{now}", NOW)];
        Self {
            statements: Statements::render(&TEMPLATES, &fill),
            claim_new: render(CLAIM_NEW, &fill),
            runner: Runner::new(pool),
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
        let statement = "SELECT COUNT(*) FROM information_schema.tables
                          WHERE table_schema = COALESCE(NULLIF(?, ''), DATABASE())
                            AND table_name = ?"
            .into();
        let schema = Text(self.table.schema().unwrap_or_default());
        let count = self
            .runner
            .number(&statement, &[schema, Text(self.table.table())])
            .await?;
        Ok(count > Some(0))
    }

    /// DDL commits implicitly in MySQL, so migrations cannot share one transaction: a named
    /// lock (`GET_LOCK`, per database and table) serializes concurrent runs instead. sqlx's own
    /// migration lock (`Migrate::lock`) waits with `GET_LOCK(name, -1)`, which MariaDB answers at
    /// once with NULL (no lock, no wait), so it is not used. The connection is detached from the pool and closed at
    /// the end, so a cancelled migration cannot leave the lock behind on a pooled connection.
    async fn migrate(&self) -> Result<(), MigrateError> {
        let mut connection = self.runner.pool.acquire().await?.detach();
        let locked: Option<i64> = sqlx::query_scalar(
            "SELECT GET_LOCK(CONCAT('kigo-migrate:', \
             LEFT(SHA2(CONCAT(DATABASE(), '.', ?), 256), 40)), ?)",
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
        migrate::apply(&mut connection, MIGRATIONS, &self.table, BackendKind::MySql).await?;
        connection.close().await?;
        Ok(())
    }

    async fn load(&self, key: &str) -> Result<Option<StoredRow>, sqlx::Error> {
        self.runner.stored(&self.statements.load, key).await
    }

    /// Claims an existing row with `LAST_INSERT_ID(fence + 1)`, whose value the server returns
    /// with the statement's result; creates a missing row with the lease granted (fence 1).
    async fn claim(
        &self,
        key: &str,
        holder: &str,
        ttl_us: i64,
    ) -> Result<Option<i64>, sqlx::Error> {
        let claimed = bound(
            &self.statements.claim,
            &[Text(holder), Int(ttl_us), Text(key)],
        )
        .execute(&self.runner.pool)
        .await?;
        if claimed.rows_affected() == 1 {
            return Ok(i64::try_from(claimed.last_insert_id()).ok());
        }
        let values = [Text(key), Int(format_version()), Text(holder), Int(ttl_us)];
        let created = self.runner.execute(&self.claim_new, &values).await?;
        Ok((created == 1).then_some(1))
    }

    async fn lease_remaining(&self, key: &str) -> Result<Option<i64>, sqlx::Error> {
        let values = [Text(key)];
        self.runner
            .number(&self.statements.lease_remaining, &values)
            .await
    }

    async fn release(&self, key: &str, holder: &str) -> Result<(), sqlx::Error> {
        let values = [Text(key), Text(holder)];
        self.runner
            .execute(&self.statements.release, &values)
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
        // `SET` comes before `WHERE` in MySQL's UPDATE: the entry's values first.
        let lease = [Text(key), Text(holder), Int(fence)];
        let values = [&entry.values()[..], &lease].concat();
        Ok(self
            .runner
            .execute(&self.statements.commit, &values)
            .await?
            == 1)
    }

    async fn invalidate(&self, key: &str, fingerprint: &[u8]) -> Result<bool, sqlx::Error> {
        let values = [Text(key), Bytes(fingerprint)];
        Ok(self
            .runner
            .execute(&self.statements.invalidate, &values)
            .await?
            == 1)
    }

    async fn set_cooldown(&self, key: &str, duration_us: i64) -> Result<(), sqlx::Error> {
        let values = [
            Text(key),
            Int(format_version()),
            Int(duration_us),
            Int(duration_us),
        ];
        self.runner
            .execute(&self.statements.set_cooldown, &values)
            .await?;
        Ok(())
    }
}
