//! PostgreSQL: leases timed by `clock_timestamp()`, notifications by `pg_notify` in the
//! committing statement, received with a [`PgListener`] on a connection of its own.

use std::fmt;
use std::future::ready;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream;
use kigo_core::TokenKey;
use kigo_core::store::{ChangeFeed, ChangeNotice};
use sqlx::error::DatabaseError;
use sqlx::migrate::MigrateError;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};

use super::{Backend, MIGRATION_LOCK_WAIT, Sql, Templates};
use crate::error::Class;
use crate::migrate::{self, Template};
use crate::names::TableRef;
use crate::{BackendKind, SqlPool};

pub(crate) const MIGRATIONS: &[Template] = migrations!("postgres":
    1 "create token table" "0001_create_token_table.sql",
    2 "index token expiry" "0002_index_token_expiry.sql",
    3 "index token keys bytewise" "0003_index_token_keys_bytewise.sql",
    4 "primary key bytewise" "0004_key_in_byte_order.sql",
    5 "drop the expiry index" "0005_drop_expiry_index.sql",
);

// Expiry is judged by `statement_timestamp()` where a token is cleared: one instant for the
// whole statement (so that entry, fingerprint and expiry are cleared together), never later
// than the `clock_timestamp()` a load judges by (so that no token a load would still serve is
// cleared).
const TEMPLATES: Templates = Templates {
    now: "clock_timestamp()",
    load: Sql::new(
        "SELECT CAST(t.format_version AS BIGINT),
                CASE WHEN t.expires_at IS NULL OR t.expires_at > c.now THEN t.entry END,
                t.generation,
                CASE WHEN t.cooldown_until > c.now
                     THEN CAST(EXTRACT(EPOCH FROM t.cooldown_until - c.now) * 1000000 AS BIGINT)
                END
           FROM {table} AS t CROSS JOIN (SELECT {now} AS now) AS c
          WHERE t.token_key = $1",
    ),
    claim: Sql::new(
        "INSERT INTO {table} AS t (token_key, format_version, fence, lease_holder, lease_until)
         VALUES ($1, $2, 1, $3, {now} + $4::FLOAT8 * INTERVAL '1 microsecond')
         ON CONFLICT (token_key) DO UPDATE
            SET fence = t.fence + 1,
                lease_holder = EXCLUDED.lease_holder,
                lease_until = EXCLUDED.lease_until,
                entry = CASE WHEN t.expires_at <= statement_timestamp() THEN NULL
                             ELSE t.entry END,
                fingerprint = CASE WHEN t.expires_at <= statement_timestamp() THEN NULL
                                   ELSE t.fingerprint END,
                expires_at = CASE WHEN t.expires_at <= statement_timestamp() THEN NULL
                                  ELSE t.expires_at END
          WHERE t.lease_until IS NULL OR t.lease_until <= {now}
         RETURNING t.fence",
    ),
    lease: Sql::new(
        "SELECT lease_holder, CAST(EXTRACT(EPOCH FROM lease_until - {now}) * 1000000 AS BIGINT)
           FROM {table} WHERE token_key = $1 AND lease_until > {now}",
    ),
    release: Sql::new(
        "UPDATE {table} SET lease_holder = NULL, lease_until = NULL
          WHERE token_key = $1 AND lease_holder = $2 AND fence = $3",
    ),
    commit: Sql::new(
        "WITH committed AS (
             UPDATE {table}
                SET format_version = $4, entry = $5, generation = $3, fingerprint = NULL,
                    expires_at = TIMESTAMPTZ 'epoch' + $6::FLOAT8 * INTERVAL '1 microsecond',
                    lease_holder = NULL, lease_until = NULL, cooldown_until = NULL
              WHERE token_key = $1 AND lease_holder = $2 AND fence = $3
                AND generation < $3 AND lease_until > {now}
          RETURNING token_key)
         SELECT token_key, pg_notify({channel}, token_key) FROM committed",
    ),
    invalidate: Sql::new(
        "WITH removed AS (
             UPDATE {table} SET entry = NULL, fingerprint = NULL, expires_at = NULL
              WHERE token_key = $1 AND generation = $2 AND entry IS NOT NULL
          RETURNING token_key)
         SELECT token_key, pg_notify({channel}, token_key) FROM removed",
    ),
    set_cooldown: Sql::new(
        "INSERT INTO {table} AS t (token_key, format_version, cooldown_until)
         VALUES ($1, $2, {now} + $3::FLOAT8 * INTERVAL '1 microsecond')
         ON CONFLICT (token_key) DO UPDATE
            SET cooldown_until = GREATEST(t.cooldown_until, EXCLUDED.cooldown_until)",
    ),
    // Keys compare byte by byte, as in `page`.
    batch_end: Sql::new(
        "SELECT MAX(b.token_key COLLATE \"C\"), COUNT(*)
           FROM (SELECT token_key FROM {table} WHERE token_key COLLATE \"C\" > $1
                  ORDER BY token_key COLLATE \"C\" LIMIT $2) AS b",
    ),
    // Rows a concurrent statement has locked are left for the next sweep.
    clear_expired: Sql::new(
        "UPDATE {table} SET entry = NULL, fingerprint = NULL, expires_at = NULL
          WHERE token_key IN (SELECT token_key FROM {table}
                               WHERE token_key COLLATE \"C\" > $1
                                 AND token_key COLLATE \"C\" <= $2
                                 AND expires_at <= statement_timestamp()
                               FOR UPDATE SKIP LOCKED)",
    ),
    // Keys compare byte by byte (`COLLATE "C"`, the primary key's order since migration 4),
    // whatever the database's collation: the order of `TokenKey::storage_id`.
    page: Sql::new(
        "SELECT t.token_key, CAST(t.format_version AS BIGINT),
                CASE WHEN t.expires_at IS NULL OR t.expires_at > c.now THEN t.entry END,
                t.generation, CAST(NULL AS BIGINT)
           FROM {table} AS t CROSS JOIN (SELECT {now} AS now) AS c
          WHERE t.token_key COLLATE \"C\" > $1
          ORDER BY t.token_key COLLATE \"C\" LIMIT $2",
    ),
    reseal: Sql::new(
        "UPDATE {table} SET entry = $4 WHERE token_key = $1 AND generation = $2 AND entry = $3",
    ),
    forget: Sql::new("DELETE FROM {table} WHERE token_key = $1"),
    clock: Sql::new("SELECT CAST(EXTRACT(EPOCH FROM {now}) * 1000000 AS BIGINT)"),
    applied_migration: Sql::new("SELECT MAX(version) FROM {tracking} WHERE success"),
};

/// The store's operations on PostgreSQL, its change notices heard as `listen` says.
pub(crate) fn backend(pool: PgPool, table: TableRef, listen: Listen) -> Backend {
    let channel = channel(&table);
    let extra = [("{channel}", channel.as_str())];
    let mut backend = Backend::new(SqlPool::Postgres(pool), table, &TEMPLATES, &extra);
    backend.notices = Some(Notices { channel, listen });
    backend
}

/// The notification channel of `table`, as an SQL expression: `kigo_` and the MD5 of the
/// table's schema-qualified name, the schema of an unqualified table being the session's
/// `current_schema()` (where the migrations created it). Stores on tables of one name in
/// different schemas (through `search_path`) never hear each other, and the name stays within a
/// channel's 63 bytes however long the names are. The names are checked identifiers: safe in
/// string literals.
fn channel(table: &TableRef) -> String {
    let schema = table.schema().map_or_else(
        || "COALESCE(current_schema(), '')".to_owned(),
        |schema| format!("'{schema}'"),
    );
    format!("('kigo_' || md5({schema} || '.{}'))", table.table())
}

/// Where the connection that listens for change notices goes.
#[derive(Clone)]
pub(crate) struct Listen {
    /// A server of its own (behind a pooler that cannot `LISTEN`), else the pool's.
    pub(crate) options: Option<PgConnectOptions>,
    /// How long to wait for that connection.
    pub(crate) acquire_timeout: Duration,
}

impl fmt::Debug for Listen {
    /// Whether the listener has a URL of its own, not the URL: it may hold a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listen")
            .field("own_url", &self.options.is_some())
            .field("acquire_timeout", &self.acquire_timeout)
            .finish()
    }
}

/// Where a store hears its table's change notices: the channel, and the connection to listen on.
#[derive(Debug)]
pub(crate) struct Notices {
    /// The channel, as an SQL expression (see [`channel`]).
    channel: String,
    listen: Listen,
}

/// The class of a PostgreSQL error, by its SQLSTATE.
pub(crate) fn classify(error: &(dyn DatabaseError + 'static)) -> Class {
    error
        .code()
        .map_or(Class::Unknown, |sqlstate| class_of(&sqlstate))
}

/// The class of a PostgreSQL SQLSTATE.
fn class_of(sqlstate: &str) -> Class {
    match sqlstate {
        // serialization_failure, deadlock_detected
        "40001" | "40P01" => Class::Retry,
        // undefined_table, undefined_column, invalid_schema_name
        "42P01" | "42703" | "3F000" => Class::SchemaMissing,
        // insufficient_privilege; invalid_catalog_name (no such database)
        "42501" | "3D000" => Class::Denied,
        // lock_not_available, query_canceled, admin/crash shutdown, cannot_connect_now,
        // idle session timeouts, and the connection (08), resources (53) and operator (57)
        // classes.
        "55P03" => Class::Transient,
        state if state.starts_with("08") || state.starts_with("53") || state.starts_with("57") => {
            Class::Transient
        }
        // invalid_authorization_specification, invalid_password
        state if state.starts_with("28") => Class::Denied,
        _ => Class::Unknown,
    }
}

/// Whether the token table exists.
pub(crate) async fn schema_current(pool: &PgPool, table: &TableRef) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(table.quoted(BackendKind::Postgres))
        .fetch_one(pool)
        .await
}

/// Runs in one transaction that first takes a transaction-level advisory lock, so that
/// replicas starting together apply each migration once, and nothing stays locked if the
/// call is cancelled (unlike a session lock, which would stay with the pooled connection).
/// The transaction's own timeouts let it wait for another replica's migration.
pub(crate) async fn migrate(pool: &PgPool, table: &TableRef) -> Result<(), MigrateError> {
    let mut tx = pool.begin().await?;
    let wait = MIGRATION_LOCK_WAIT.as_millis().to_string();
    sqlx::query(
        "SELECT set_config('lock_timeout', $1, true), set_config('statement_timeout', $1, true)",
    )
    .bind(&wait)
    .execute(&mut *tx)
    .await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(lock_key(&table.name()))
        .execute(&mut *tx)
        .await?;
    migrate::apply(&mut *tx, MIGRATIONS, table, BackendKind::Postgres).await?;
    tx.commit().await?;
    Ok(())
}

/// Notices from a `PgListener` on a connection of its own (a pool of one, so that it never
/// takes a connection the statements need). The feed ends when that connection cannot be
/// made or is lost, after a warning: notices sent meanwhile are gone, and the manager polls
/// until it has subscribed again.
pub(crate) fn changes(pool: &PgPool, table: &TableRef, notices: &Notices) -> ChangeFeed {
    let options = notices
        .listen
        .options
        .clone()
        .unwrap_or_else(|| (*pool.connect_options()).clone());
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(notices.listen.acquire_timeout)
        .connect_lazy_with(options);
    let channel = sqlx::AssertSqlSafe(format!("SELECT {}", notices.channel));
    let table = table.name();
    let listening = async move {
        let subscribed = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.eager_reconnect(false);
            let channel: String = sqlx::query_scalar(channel).fetch_one(&mut listener).await?;
            listener.listen(&channel).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        subscribed
            .await
            .map_err(|error| {
                tracing::warn!(%error, %table, "cannot listen for PostgreSQL change notices; waiters poll");
            })
            .ok()
            .map(|listener| (listener, table))
    };
    let feed = stream::once(listening)
        .filter_map(ready)
        .flat_map(|listening| {
            stream::unfold(listening, |(mut listener, table)| async move {
                match listener.try_recv().await {
                    Ok(Some(notification)) => Some((notification, (listener, table))),
                    Ok(None) => {
                        tracing::warn!(%table, "lost the connection listening for PostgreSQL change notices; waiters poll");
                        None
                    }
                    Err(error) => {
                        tracing::warn!(%error, %table, "lost the connection listening for PostgreSQL change notices; waiters poll");
                        None
                    }
                }
            })
        })
        .filter_map(|notification| {
            let key = TokenKey::from_storage_id(notification.payload());
            ready(key.map(|key| ChangeNotice { key }))
        });
    Box::pin(feed)
}

/// The advisory lock key of a table's migrations: FNV-1a of its name.
fn lock_key(table: &str) -> i64 {
    let hash = format!("kigo-store-sql migrate {table}")
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        });
    hash.cast_signed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates() {
        assert_eq!(class_of("40001"), Class::Retry);
        assert_eq!(class_of("40P01"), Class::Retry);
        assert_eq!(class_of("42P01"), Class::SchemaMissing);
        assert_eq!(class_of("3F000"), Class::SchemaMissing);
        assert_eq!(class_of("57P01"), Class::Transient);
        assert_eq!(class_of("08006"), Class::Transient);
        assert_eq!(class_of("53300"), Class::Transient);
        assert_eq!(class_of("28P01"), Class::Denied);
        assert_eq!(class_of("42501"), Class::Denied);
        assert_eq!(class_of("23505"), Class::Unknown);
    }
}
