//! MySQL and MariaDB: leases timed by `UTC_TIMESTAMP(6)`. Neither has `UPDATE ... RETURNING`,
//! so a claim reports its fence through `LAST_INSERT_ID(expr)`, whose value comes back with the
//! statement's result. No push notifications: waiters poll.

use sqlx::Connection;
use sqlx::error::DatabaseError;
use sqlx::migrate::MigrateError;
use sqlx::mysql::{MySqlDatabaseError, MySqlPool, MySqlQueryResult};

use super::{Backend, MIGRATION_LOCK_WAIT, Sql, Templates};
use crate::error::Class;
use crate::migrate::{self, Template};
use crate::names::TableRef;
use crate::{BackendKind, SqlPool};

pub(crate) const MIGRATIONS: &[Template] = migrations!("mysql":
    1 "create token table" "0001_create_token_table.sql",
    2 "index token expiry" "0002_index_token_expiry.sql",
    3 "drop the expiry index" "0003_drop_expiry_index.sql",
);

const NOW: &str = "UTC_TIMESTAMP(6)";

// Positional `?` placeholders take their values in the order they appear, some twice: the orders
// given index into the values as the `Backend` operation lists them.
const TEMPLATES: Templates = Templates {
    now: NOW,
    load: Sql::new(
        "SELECT CAST(format_version AS SIGNED),
                CASE WHEN expires_at IS NULL OR expires_at > {now} THEN entry END,
                generation,
                CASE WHEN cooldown_until > {now}
                     THEN TIMESTAMPDIFF(MICROSECOND, {now}, cooldown_until) END
           FROM {table} WHERE token_key = ?",
    ),
    // One statement for a new row, a free or lapsed lease, and a held one. The inserted row
    // sets LAST_INSERT_ID to 1 (its fence); on an existing row the update sets it again: to the
    // new fence if the lease is free or lapsed, else to 0 (held). An expired token is cleared
    // (held lease or not). `expires_at` is assigned after the columns whose condition reads it
    // and `lease_until` last, so every condition reads the old values, whether MariaDB assigns
    // in order or simultaneously (SIMULTANEOUS_ASSIGNMENT). `{now}` is fixed within a statement.
    claim: Sql::ordered(
        "INSERT INTO {table} (token_key, format_version, fence, lease_holder, lease_until)
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
        &[0, 1, 2, 3, 2, 3],
    ),
    lease: Sql::new(
        "SELECT lease_holder, TIMESTAMPDIFF(MICROSECOND, {now}, lease_until)
           FROM {table} WHERE token_key = ? AND lease_until > {now}",
    ),
    release: Sql::new(
        "UPDATE {table} SET lease_holder = NULL, lease_until = NULL
          WHERE token_key = ? AND lease_holder = ? AND fence = ?",
    ),
    commit: Sql::ordered(
        "UPDATE {table}
            SET format_version = ?, entry = ?, generation = fence, fingerprint = NULL,
                expires_at = TIMESTAMPADD(MICROSECOND, ?, TIMESTAMP'1970-01-01 00:00:00'),
                lease_holder = NULL, lease_until = NULL, cooldown_until = NULL
          WHERE token_key = ? AND lease_holder = ? AND fence = ? AND generation < fence
            AND lease_until > {now}",
        &[3, 4, 5, 0, 1, 2],
    ),
    invalidate: Sql::new(
        "UPDATE {table} SET entry = NULL, fingerprint = NULL, expires_at = NULL
          WHERE token_key = ? AND generation = ? AND entry IS NOT NULL",
    ),
    set_cooldown: Sql::ordered(
        "INSERT INTO {table} (token_key, format_version, cooldown_until)
         VALUES (?, ?, TIMESTAMPADD(MICROSECOND, ?, {now}))
         ON DUPLICATE KEY UPDATE cooldown_until = GREATEST(
             COALESCE(cooldown_until, TIMESTAMP'1970-01-01 00:00:00'),
             TIMESTAMPADD(MICROSECOND, ?, {now}))",
        &[0, 1, 2, 2],
    ),
    batch_end: Sql::new(
        "SELECT MAX(b.token_key), COUNT(*)
           FROM (SELECT token_key FROM {table} WHERE token_key > ?
                  ORDER BY token_key LIMIT ?) AS b",
    ),
    clear_expired: Sql::new(
        "UPDATE {table} SET entry = NULL, fingerprint = NULL, expires_at = NULL
          WHERE token_key > ? AND token_key <= ? AND expires_at <= {now}",
    ),
    // Keys are `ascii_bin`: they compare byte by byte, the order of `TokenKey::storage_id`.
    page: Sql::new(
        "SELECT token_key, CAST(format_version AS SIGNED),
                CASE WHEN expires_at IS NULL OR expires_at > {now} THEN entry END,
                generation, CAST(NULL AS SIGNED)
           FROM {table} WHERE token_key > ? ORDER BY token_key LIMIT ?",
    ),
    reseal: Sql::ordered(
        "UPDATE {table} SET entry = ? WHERE token_key = ? AND generation = ? AND entry = ?",
        &[3, 0, 1, 2],
    ),
    forget: Sql::new("DELETE FROM {table} WHERE token_key = ?"),
    clock: Sql::new("SELECT TIMESTAMPDIFF(MICROSECOND, TIMESTAMP'1970-01-01 00:00:00', {now})"),
    applied_migration: Sql::new("SELECT MAX(version) FROM {tracking} WHERE success"),
};

/// The store's operations on MySQL or MariaDB.
pub(crate) fn backend(pool: MySqlPool, table: TableRef) -> Backend {
    Backend::new(SqlPool::MySql(pool), table, &TEMPLATES, &[])
}

/// The fence a claim granted, from its result: the value it set `LAST_INSERT_ID` to, 0 (none)
/// when the lease is held.
pub(crate) fn claimed_fence(claimed: &MySqlQueryResult) -> Option<i64> {
    let fence = claimed.last_insert_id();
    i64::try_from(fence).ok().filter(|fence| *fence > 0)
}

/// The class of a MySQL/MariaDB error, by its error number.
pub(crate) fn classify(error: &(dyn DatabaseError + 'static)) -> Class {
    error
        .try_downcast_ref::<MySqlDatabaseError>()
        .map_or(Class::Unknown, |error| class_of(error.number()))
}

/// The class of a MySQL/MariaDB error number.
fn class_of(number: u16) -> Class {
    match number {
        // ER_LOCK_DEADLOCK
        1213 => Class::Retry,
        // ER_NO_SUCH_TABLE, ER_BAD_FIELD_ERROR
        1146 | 1054 => Class::SchemaMissing,
        // ER_DBACCESS_DENIED, ER_ACCESS_DENIED, ER_BAD_DB, ER_TABLEACCESS_DENIED,
        // ER_COLUMNACCESS_DENIED, ER_SPECIFIC_ACCESS_DENIED, ER_HOST_NOT_PRIVILEGED,
        // ER_NOT_SUPPORTED_AUTH_MODE, ER_ACCESS_DENIED_NO_PASSWORD_ERROR
        1044 | 1045 | 1049 | 1142 | 1143 | 1227 | 1130 | 1251 | 1698 => Class::Denied,
        // ER_CON_COUNT, ER_SERVER_SHUTDOWN, ER_LOCK_WAIT_TIMEOUT, ER_QUERY_INTERRUPTED,
        // ER_CONNECTION_KILLED (MariaDB), ER_CLIENT_INTERACTION_TIMEOUT (MySQL), ER_TOO_MANY_USER_CONNECTIONS,
        // ER_STATEMENT_TIMEOUT (MariaDB), ER_QUERY_TIMEOUT (MySQL)
        1040 | 1053 | 1205 | 1317 | 1927 | 4031 | 1203 | 1969 | 3024 => Class::Transient,
        _ => Class::Unknown,
    }
}

/// Whether the token table exists.
pub(crate) async fn schema_current(
    pool: &MySqlPool,
    table: &TableRef,
) -> Result<bool, sqlx::Error> {
    let count: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM information_schema.tables
          WHERE table_schema = COALESCE(NULLIF(?, ''), DATABASE())
            AND table_name = ?",
    )
    .bind(table.schema().unwrap_or_default())
    .bind(table.table())
    .fetch_one(pool)
    .await?;
    Ok(count > 0)
}

/// DDL commits implicitly in MySQL, so migrations cannot share one transaction: a named
/// lock (`GET_LOCK`, per database and table) serializes concurrent runs instead. sqlx's own
/// migration lock (`Migrate::lock`) waits with `GET_LOCK(name, -1)`, which MariaDB answers at
/// once with NULL (no lock, no wait), so it is not used. The connection is detached from the
/// pool and closed at the end, so a cancelled migration cannot leave the lock behind on a
/// pooled connection.
pub(crate) async fn migrate(pool: &MySqlPool, table: &TableRef) -> Result<(), MigrateError> {
    let mut connection = pool.acquire().await?.detach();
    let locked: Option<i64> = sqlx::query_scalar(
        "SELECT GET_LOCK(CONCAT('kigo-migrate:', \
         LEFT(SHA2(CONCAT(DATABASE(), '.', ?), 256), 40)), ?)",
    )
    .bind(table.quoted(BackendKind::MySql))
    .bind(MIGRATION_LOCK_WAIT.as_secs())
    .fetch_one(&mut connection)
    .await?;
    if locked != Some(1) {
        return Err(MigrateError::Execute(sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "another replica's migration of this table held its lock for too long",
        ))));
    }
    migrate::apply(&mut connection, MIGRATIONS, table, BackendKind::MySql).await?;
    connection.close().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_numbers() {
        assert_eq!(class_of(1213), Class::Retry);
        assert_eq!(class_of(1146), Class::SchemaMissing);
        assert_eq!(class_of(1205), Class::Transient);
        assert_eq!(class_of(1927), Class::Transient);
        for refused in [1044, 1045, 1049, 1130, 1142, 1227, 1251, 1698] {
            assert_eq!(class_of(refused), Class::Denied, "{refused}");
        }
        assert_eq!(class_of(1062), Class::Unknown);
    }
}
