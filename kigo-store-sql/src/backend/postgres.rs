//! PostgreSQL: leases timed by `clock_timestamp()`, notifications by `pg_notify` in the
//! committing statement, received with a [`PgListener`] on a connection of its own.

use std::future::ready;

use async_trait::async_trait;
use futures_util::StreamExt;
use futures_util::stream;
use kigo_core::TokenKey;
use kigo_core::store::{ChangeFeed, ChangeNotice};
use sqlx::Row;
use sqlx::error::DatabaseError;
use sqlx::migrate::MigrateError;
use sqlx::postgres::{PgListener, PgPool, PgPoolOptions};

use super::{Backend, BackendKind, Statements, Templates, sql};
use crate::error::{Class, postgres_class};
use crate::migrate::{Template, migrator};
use crate::names::TableRef;
use crate::row::{NewEntry, StoredRow, format_version};

const MIGRATIONS: &[Template] = &[Template {
    version: 1,
    description: "create token table",
    sql: include_str!("../../migrations/postgres/0001_create_token_table.sql"),
}];

const TEMPLATES: Templates = Templates {
    load: "SELECT t.format_version,
                  CASE WHEN t.expires_at IS NULL OR t.expires_at > c.now THEN t.entry END,
                  t.generation,
                  CASE WHEN t.cooldown_until > c.now
                       THEN CAST(EXTRACT(EPOCH FROM t.cooldown_until - c.now) * 1000000 AS BIGINT)
                  END
             FROM {table} AS t CROSS JOIN (SELECT {now} AS now) AS c
            WHERE t.token_key = $1",
    claim: "INSERT INTO {table} AS t (token_key, format_version, fence, lease_holder, lease_until)
            VALUES ($1, $2, 1, $3, {now} + $4::FLOAT8 * INTERVAL '1 microsecond')
            ON CONFLICT (token_key) DO UPDATE
               SET fence = t.fence + 1,
                   lease_holder = EXCLUDED.lease_holder,
                   lease_until = EXCLUDED.lease_until
             WHERE t.lease_until IS NULL OR t.lease_until <= {now}
            RETURNING t.fence",
    lease_remaining: "SELECT CAST(EXTRACT(EPOCH FROM lease_until - {now}) * 1000000 AS BIGINT)
                        FROM {table} WHERE token_key = $1 AND lease_until > {now}",
    release: "UPDATE {table} SET lease_holder = NULL, lease_until = NULL
               WHERE token_key = $1 AND lease_holder = $2",
    commit: "WITH committed AS (
                 UPDATE {table}
                    SET format_version = $4, entry = $5, generation = $3, fingerprint = $6,
                        expires_at = TIMESTAMPTZ 'epoch' + $7::FLOAT8 * INTERVAL '1 microsecond',
                        lease_holder = NULL, lease_until = NULL, cooldown_until = NULL
                  WHERE token_key = $1 AND lease_holder = $2 AND fence = $3
                    AND generation < $3 AND lease_until > {now}
              RETURNING token_key)
             SELECT token_key, pg_notify($8, token_key) FROM committed",
    invalidate: "WITH removed AS (
                     UPDATE {table} SET entry = NULL, fingerprint = NULL, expires_at = NULL
                      WHERE token_key = $1 AND fingerprint = $2
                  RETURNING token_key)
                 SELECT token_key, pg_notify($3, token_key) FROM removed",
    set_cooldown: "INSERT INTO {table} AS t (token_key, format_version, cooldown_until)
                   VALUES ($1, $2, {now} + $3::FLOAT8 * INTERVAL '1 microsecond')
                   ON CONFLICT (token_key) DO UPDATE
                      SET cooldown_until = GREATEST(t.cooldown_until, EXCLUDED.cooldown_until)",
};

/// The store's operations on PostgreSQL.
#[derive(Debug)]
pub(crate) struct Postgres {
    pool: PgPool,
    table: TableRef,
    statements: Statements,
    channel: String,
}

impl Postgres {
    pub(crate) fn new(pool: PgPool, table: TableRef) -> Self {
        let statements = Statements::render(
            &TEMPLATES,
            &table.quoted(BackendKind::Postgres),
            "clock_timestamp()",
        );
        Self {
            channel: table.channel(),
            pool,
            table,
            statements,
        }
    }
}

#[async_trait]
impl Backend for Postgres {
    fn kind(&self) -> BackendKind {
        BackendKind::Postgres
    }

    fn classify(&self, error: &(dyn DatabaseError + 'static)) -> Class {
        error
            .code()
            .map_or(Class::Unknown, |sqlstate| postgres_class(&sqlstate))
    }

    async fn table_exists(&self) -> Result<bool, sqlx::Error> {
        sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(self.table.quoted(BackendKind::Postgres))
            .fetch_one(&self.pool)
            .await
    }

    /// Runs in one transaction that first takes a transaction-level advisory lock, so that
    /// replicas starting together apply each migration once, and nothing stays locked if the
    /// call is cancelled (unlike a session lock, which would stay with the pooled connection).
    async fn migrate(&self) -> Result<(), MigrateError> {
        let mut migrator = migrator(MIGRATIONS, &self.table, BackendKind::Postgres);
        migrator.set_locking(false);
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(lock_key(&self.channel))
            .execute(&mut *tx)
            .await?;
        migrator.run_direct(None, &mut *tx, false).await?;
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
            .bind(&self.channel)
            .fetch_optional(&self.pool)
            .await?;
        Ok(committed.is_some())
    }

    async fn invalidate(&self, key: &str, fingerprint: &[u8]) -> Result<bool, sqlx::Error> {
        let removed = sqlx::query(sql(&self.statements.invalidate))
            .bind(key)
            .bind(fingerprint)
            .bind(&self.channel)
            .fetch_optional(&self.pool)
            .await?;
        Ok(removed.is_some())
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

    fn changes(&self) -> Option<ChangeFeed> {
        let options = self.pool.connect_options();
        let channel = self.channel.clone();
        let listening = async move {
            // A pool of one for the listener, so that it never takes a connection the store's
            // statements need.
            let pool = PgPoolOptions::new()
                .max_connections(1)
                .connect_lazy_with((*options).clone());
            let mut listener = PgListener::connect_with(&pool).await.ok()?;
            listener.eager_reconnect(false);
            listener.listen(&channel).await.ok()?;
            Some(listener)
        };
        let feed = stream::once(listening)
            .filter_map(ready)
            .flat_map(|listener| {
                // Ends when the connection is lost: notices sent meanwhile are gone, and the
                // manager polls until it has subscribed again.
                stream::unfold(listener, |mut listener| async move {
                    match listener.try_recv().await {
                        Ok(Some(notification)) => Some((notification, listener)),
                        Ok(None) | Err(_) => None,
                    }
                })
            })
            .filter_map(|notification| {
                let key = TokenKey::from_storage_id(notification.payload());
                ready(key.map(|key| ChangeNotice { key }))
            });
        Some(Box::pin(feed))
    }
}

/// The advisory lock key of a table's migrations: FNV-1a of its channel name.
fn lock_key(channel: &str) -> i64 {
    let hash = format!("kigo-store-sql migrate {channel}")
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        });
    i64::from_ne_bytes(hash.to_ne_bytes())
}
