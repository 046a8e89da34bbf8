//! MySQL and MariaDB: leases timed by `UTC_TIMESTAMP(6)`. Neither has `UPDATE ... RETURNING`,
//! so a claim reports its fence through `LAST_INSERT_ID(expr)`, whose value comes back with the
//! statement's result. No push notifications: waiters poll.

use async_trait::async_trait;
use sqlx::Connection;
use sqlx::error::DatabaseError;
use sqlx::migrate::MigrateError;
use sqlx::mysql::{MySqlDatabaseError, MySqlPool};

use super::runner::Runner;
use super::runner::Value::{self, Text};
use super::standard::{Dialect, FenceReport, Standard};
use super::{BackendKind, MIGRATION_LOCK_WAIT, Statements, Templates};
use crate::error::{Class, mysql_class};
use crate::migrate::{self, Template};
use crate::names::TableRef;

const MIGRATIONS: &[Template] = migrations!("mysql");

const NOW: &str = "UTC_TIMESTAMP(6)";

const TEMPLATES: Templates = Templates {
    now: NOW,
    load: "SELECT CAST(format_version AS SIGNED),
                  CASE WHEN expires_at IS NULL OR expires_at > {now} THEN entry END,
                  generation,
                  CASE WHEN cooldown_until > {now}
                       THEN TIMESTAMPDIFF(MICROSECOND, {now}, cooldown_until) END
             FROM {table} WHERE token_key = ?",
    // One statement for a new row, a free or lapsed lease, and a held one. The inserted row
    // sets LAST_INSERT_ID to 1 (its fence); on an existing row the update sets it again: to the
    // new fence if the lease is free or lapsed, else to 0 (held). An expired token is cleared
    // (held lease or not). `expires_at` is assigned after the columns whose condition reads it
    // and `lease_until` last, so every condition reads the old values, whether MariaDB assigns
    // in order or simultaneously (SIMULTANEOUS_ASSIGNMENT). `{now}` is fixed within a statement.
    claim: "INSERT INTO {table} (token_key, format_version, fence, lease_holder, lease_until)
            VALUES (?, ?, LAST_INSERT_ID(1), ?, TIMESTAMPADD(MICROSECOND, ?, {now}))
            ON DUPLICATE KEY UPDATE
               fence = IF(lease_until IS NULL OR lease_until <= {now},
                          LAST_INSERT_ID(fence + 1), fence + LAST_INSERT_ID(0)),
               lease_holder = IF(lease_until IS NULL OR lease_until <= {now}, ?, lease_holder),
               entry = IF(expires_at <= {now}, NULL, entry),
               fingerprint = IF(expires_at <= {now}, NULL, fingerprint),
               expires_at = IF(expires_at <= {now}, NULL, expires_at),
               lease_until = IF(lease_until IS NULL OR lease_until <= {now},
                                TIMESTAMPADD(MICROSECOND, ?, {now}), lease_until)",
    lease_remaining: "SELECT TIMESTAMPDIFF(MICROSECOND, {now}, lease_until)
                        FROM {table} WHERE token_key = ? AND lease_until > {now}",
    release: "UPDATE {table} SET lease_holder = NULL, lease_until = NULL
               WHERE token_key = ? AND lease_holder = ? AND fence = ?",
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
    clear_expired: "UPDATE {table} SET entry = NULL, fingerprint = NULL, expires_at = NULL
                     WHERE expires_at <= {now} ORDER BY expires_at LIMIT ?",
};

/// The store's operations on MySQL or MariaDB.
pub(crate) fn backend(pool: MySqlPool, table: TableRef) -> Standard<MySql> {
    Standard {
        statements: Statements::render(&TEMPLATES, &table, BackendKind::MySql, &[]),
        runner: Runner::new(pool),
        dialect: MySql { table },
    }
}

/// What is MySQL's own: error numbers, positional `?` placeholders (values in the order they
/// appear, some twice), fences through `LAST_INSERT_ID`, migrations behind a named lock.
#[derive(Debug)]
pub(crate) struct MySql {
    table: TableRef,
}

#[async_trait]
impl Dialect for MySql {
    type Db = sqlx::MySql;

    fn kind(&self) -> BackendKind {
        BackendKind::MySql
    }

    fn classify(&self, error: &(dyn DatabaseError + 'static)) -> Class {
        error
            .try_downcast_ref::<MySqlDatabaseError>()
            .map_or(Class::Unknown, |error| mysql_class(error.number()))
    }

    async fn schema_current(&self, runner: &Runner<sqlx::MySql>) -> Result<bool, sqlx::Error> {
        let statement = "SELECT COUNT(*) FROM information_schema.tables
                          WHERE table_schema = COALESCE(NULLIF(?, ''), DATABASE())
                            AND table_name = ?"
            .into();
        let schema = Text(self.table.schema().unwrap_or_default());
        let count = runner
            .number(&statement, &[schema, Text(self.table.table())])
            .await?;
        Ok(count > Some(0))
    }

    /// DDL commits implicitly in MySQL, so migrations cannot share one transaction: a named
    /// lock (`GET_LOCK`, per database and table) serializes concurrent runs instead. sqlx's own
    /// migration lock (`Migrate::lock`) waits with `GET_LOCK(name, -1)`, which MariaDB answers at
    /// once with NULL (no lock, no wait), so it is not used. The connection is detached from the
    /// pool and closed at the end, so a cancelled migration cannot leave the lock behind on a
    /// pooled connection.
    async fn migrate(&self, runner: &Runner<sqlx::MySql>) -> Result<(), MigrateError> {
        let mut connection = runner.pool.acquire().await?.detach();
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

    fn fence_report(&self) -> FenceReport {
        FenceReport::InsertId
    }

    /// The holder and the lease's length again, for the update of an existing row.
    fn claim_values<'a>(&self, values: [Value<'a>; 4]) -> Vec<Value<'a>> {
        let [.., holder, ttl] = values;
        [&values[..], &[holder, ttl]].concat()
    }

    /// `SET` comes before `WHERE` in an `UPDATE`: the entry's values first.
    fn commit_values<'a>(&self, lease: [Value<'a>; 3], entry: [Value<'a>; 4]) -> Vec<Value<'a>> {
        [&entry[..], &lease[..]].concat()
    }

    /// The duration again, for the update of an existing row.
    fn cooldown_values<'a>(&self, values: [Value<'a>; 3]) -> Vec<Value<'a>> {
        let [.., duration] = values;
        [&values[..], &[duration]].concat()
    }
}
