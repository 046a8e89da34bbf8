//! [`SqlStore`]: the [`TokenStore`] contract on top of one backend's statements, and what an
//! operator does to it ([`StoreAdmin`](kigo_core::store::StoreAdmin), in `admin`).

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use kigo_core::codec::EntryCodec;
use kigo_core::store::{
    ChangeFeed, CommitOutcome, Entry, HolderId, InvalidateOutcome, Lease, LeaseAttempt, Snapshot,
};
use kigo_core::{Fingerprint, StoreError, Token, TokenKey, TokenStore};
use sqlx::migrate::MigrateError;

use crate::backend::{Backend, Swept};

mod admin;
use crate::error::{Class, HISTORY_HINT, SqlError};
use crate::row::{NewEntry, duration, micros};
use crate::{BackendKind, SqlPool};

/// How often a statement the database rolled back to break a deadlock or a serialization
/// conflict is sent in all, before the store reports itself unavailable. Every conflict lets at
/// least one of the statements involved through, so a whole fleet's statements on one key get
/// through within a few attempts once they are spread out (see [`retry_pause`]).
const ATTEMPTS: u32 = 10;

/// How many rows one step of a sweep for expired tokens examines (in the byte order of their
/// keys): after each commit (so that a table of a million rows never holds up a commit), and per
/// step of [`SqlStore::purge_expired`].
const SWEEP_BATCH: i64 = 100;

/// The pause before attempt `attempt` (2 or more) of a statement the database rolled back: a
/// random share of a window that doubles from 8 ms up to 512 ms, so that the statements that
/// conflicted do not meet again.
fn retry_pause(attempt: u32) -> Duration {
    let window_ms = 2_u64 << attempt.clamp(2, 8);
    Duration::from_millis(fastrand::u64(..=window_ms))
}

/// Why an operation failed.
enum Failure {
    /// The database answered with `error`, of `class`.
    Database { class: Class, error: sqlx::Error },
    /// It did not finish within the operation timeout.
    TimedOut,
}

/// A [`TokenStore`] on PostgreSQL, MySQL/MariaDB or SQLite.
///
/// Clones share the pool. Every operation is one statement on a pooled connection, returned at
/// once: no connection is held while the manager calls the token endpoint.
#[derive(Clone)]
pub struct SqlStore {
    shared: Arc<Shared>,
}

struct Shared {
    backend: Backend,
    codec: EntryCodec,
    /// How long one store operation may take: all its attempts, the pauses between them, the
    /// waits for a pooled connection, and the classification of an error.
    timeout: Duration,
    /// The key after which the sweep for expired tokens that follows a commit goes on (one
    /// batch of rows per commit, through the whole table and round again), locked while that
    /// sweep runs: a commit that finds it locked leaves the sweeping to the one running, so that
    /// a burst of commits costs the database one sweep at a time per store.
    sweep_after: tokio::sync::Mutex<String>,
}

impl SqlStore {
    pub(crate) fn new(backend: Backend, codec: EntryCodec, timeout: Duration) -> Self {
        Self {
            shared: Arc::new(Shared {
                backend,
                codec,
                timeout,
                sweep_after: tokio::sync::Mutex::default(),
            }),
        }
    }

    /// Creates or updates the token table: applies the migrations shipped with this crate that
    /// the table has not seen yet. Safe to call from every replica at start-up: concurrent calls
    /// apply each migration once.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match self.shared.backend.migrate().await {
            Ok(()) => Ok(()),
            Err(MigrateError::Execute(error) | MigrateError::ExecuteMigration(error, _)) => {
                let deadline = tokio::time::Instant::now() + self.shared.timeout;
                Err(self
                    .classify(&error, deadline)
                    .await
                    .into_store_error(error))
            }
            Err(error) => Err(StoreError::misconfigured(
                HISTORY_HINT,
                SqlError::Migrate(error),
            )),
        }
    }

    /// Clears the token of every row whose token has expired by the database's clock, walking
    /// the table by its keys, 100 rows a step; how many rows it cleared. A row keeps its fence
    /// and generation, so the key's next lease is still fenced above every earlier one. Each
    /// commit already sweeps the next 100 rows, and a claim clears its own row: this is for an
    /// operator who wants none left now (say, before a backup).
    pub async fn purge_expired(&self) -> Result<u64, StoreError> {
        let mut cleared = 0;
        let mut after = String::new();
        loop {
            let swept = self.sweep(&after).await?;
            cleared += swept.cleared;
            match swept.next {
                Some(next) => after = next,
                None => return Ok(cleared),
            }
        }
    }

    /// Sweeps the [`SWEEP_BATCH`] rows after the key `after` for expired tokens.
    async fn sweep(&self, after: &str) -> Result<Swept, StoreError> {
        self.run(|| self.shared.backend.sweep(after, SWEEP_BATCH))
            .await
    }

    /// After a commit: sweeps the next batch of rows for expired tokens, unless this store's
    /// previous sweep still runs. The commit is done, so a failure is only logged; the next
    /// commit tries again.
    async fn sweep_after_commit(&self) {
        let Ok(mut after) = self.shared.sweep_after.try_lock() else {
            return;
        };
        let swept = self.sweep(&after).await;
        match swept.map(|swept| {
            *after = swept.next.unwrap_or_default();
            swept.cleared
        }) {
            Ok(0) => {}
            Ok(cleared) => tracing::debug!(
                cleared,
                table = %self.shared.backend.table().name(),
                "cleared expired tokens"
            ),
            Err(error) => tracing::warn!(
                ?error,
                table = %self.shared.backend.table().name(),
                "clearing expired tokens after a commit failed; the next commit tries again"
            ),
        }
    }

    /// Which database this store runs on.
    pub fn kind(&self) -> BackendKind {
        self.pool().kind()
    }

    /// The pool the store sends its statements through.
    pub fn pool(&self) -> &SqlPool {
        self.shared.backend.pool()
    }

    /// Runs `statement` (see [`Self::attempt`]) and maps its error.
    async fn run<T, F, Fut>(&self, statement: F) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, sqlx::Error>>,
    {
        self.attempt(statement)
            .await
            .map_err(|failure| self.store_error(failure))
    }

    /// Runs `statement`, again after a deadlock or serialization failure (the database rolled
    /// it back, so nothing was done). All attempts, their pauses and the classification of an
    /// error share the operation timeout.
    async fn attempt<T, F, Fut>(&self, mut statement: F) -> Result<T, Failure>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, sqlx::Error>>,
    {
        let mut attempt = 1;
        let deadline = tokio::time::Instant::now() + self.shared.timeout;
        loop {
            let error = match tokio::time::timeout_at(deadline, statement()).await {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(error)) => error,
                Err(_) => return Err(Failure::TimedOut),
            };
            let class = self.classify(&error, deadline).await;
            if class == Class::Retry && attempt < ATTEMPTS {
                attempt += 1;
                tracing::debug!(%error, attempt, "statement rolled back by the database; retrying");
                let pause = tokio::time::Instant::now() + retry_pause(attempt);
                if pause >= deadline {
                    return Err(Failure::TimedOut);
                }
                tokio::time::sleep_until(pause).await;
                continue;
            }
            return Err(Failure::Database { class, error });
        }
    }

    /// The [`StoreError`] for `failure`.
    fn store_error(&self, failure: Failure) -> StoreError {
        match failure {
            Failure::Database { class, error } => class.into_store_error(error),
            Failure::TimedOut => StoreError::unavailable(SqlError::TimedOut {
                after: self.shared.timeout,
            }),
        }
    }

    /// The class of `error`; for an error code this store does not know, whether the token
    /// table is there (asked before `deadline`) tells a missing schema from anything else.
    async fn classify(&self, error: &sqlx::Error, deadline: tokio::time::Instant) -> Class {
        let class = match error {
            sqlx::Error::Database(database) => self.shared.backend.classify(database.as_ref()),
            other => Class::of_driver(other),
        };
        if class != Class::Unknown {
            return class;
        }
        let probe = self.shared.backend.schema_current();
        match tokio::time::timeout_at(deadline, probe).await {
            Ok(Ok(false)) => Class::SchemaMissing,
            Ok(Ok(true) | Err(_)) | Err(_) => Class::Unknown,
        }
    }
}

impl fmt::Debug for SqlStore {
    /// The database and the table: not the statements, the pool or the codec.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlStore")
            .field("kind", &self.kind())
            .field("table", &self.shared.backend.table().name())
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl TokenStore for SqlStore {
    async fn load(&self, key: &TokenKey) -> Result<Snapshot, StoreError> {
        let id = key.storage_id();
        let row = self.run(|| self.shared.backend.load(&id)).await?;
        Ok(row.map_or_else(Snapshot::absent, |row| {
            row.into_snapshot(key, &self.shared.codec)
        }))
    }

    async fn acquire_lease(
        &self,
        key: &TokenKey,
        holder: &HolderId,
        ttl: Duration,
    ) -> Result<LeaseAttempt, StoreError> {
        let id = key.storage_id();
        let ttl_us = micros(ttl);
        let claimed = self
            .run(|| self.shared.backend.claim(&id, holder.as_str(), ttl_us))
            .await?;
        if let Some(fence) = claimed.and_then(|fence| u64::try_from(fence).ok()) {
            return Ok(LeaseAttempt::Acquired(Lease::new(
                key.clone(),
                holder.clone(),
                fence,
            )));
        }
        let lease = self.run(|| self.shared.backend.lease(&id)).await?;
        Ok(LeaseAttempt::Held {
            remaining: lease.and_then(|(_, remaining)| remaining).map(duration),
        })
    }

    async fn release_lease(&self, lease: &Lease) -> Result<(), StoreError> {
        // No lease is ever granted with a fence beyond `i64::MAX`: nothing to release.
        let Ok(fence) = i64::try_from(lease.fence()) else {
            return Ok(());
        };
        let id = lease.key().storage_id();
        let holder = lease.holder().as_str();
        self.run(|| self.shared.backend.release(&id, holder, fence))
            .await
    }

    async fn commit(&self, lease: &Lease, token: &Token) -> Result<CommitOutcome, StoreError> {
        let Ok(fence) = i64::try_from(lease.fence()) else {
            return Ok(CommitOutcome::Rejected);
        };
        let id = lease.key().storage_id();
        let entry = NewEntry::new(&self.shared.codec, lease.key(), lease.fence(), token);
        let holder = lease.holder().as_str();
        let committed = self
            .run(|| self.shared.backend.commit(&id, holder, fence, &entry))
            .await?;
        if !committed {
            return Ok(CommitOutcome::Rejected);
        }
        self.sweep_after_commit().await;
        Ok(CommitOutcome::Committed)
    }

    async fn invalidate(
        &self,
        key: &TokenKey,
        fingerprint: &Fingerprint,
    ) -> Result<InvalidateOutcome, StoreError> {
        // The row keeps no fingerprint (16 bytes and their alignment in every row): the token
        // stored is read and opened here, and removed only if still the one committed then.
        let id = key.storage_id();
        let Some(row) = self.run(|| self.shared.backend.load(&id)).await? else {
            return Ok(InvalidateOutcome::NotCurrent);
        };
        let generation = row.generation;
        let current = match row.into_snapshot(key, &self.shared.codec).entry {
            Entry::Present(token) => token.fingerprint() == *fingerprint,
            _ => false,
        };
        if !current {
            return Ok(InvalidateOutcome::NotCurrent);
        }
        let removed = self
            .run(|| self.shared.backend.invalidate(&id, generation))
            .await?;
        Ok(if removed {
            InvalidateOutcome::Removed
        } else {
            InvalidateOutcome::NotCurrent
        })
    }

    async fn set_cooldown(&self, key: &TokenKey, duration: Duration) -> Result<(), StoreError> {
        let id = key.storage_id();
        let duration_us = micros(duration);
        self.run(|| self.shared.backend.set_cooldown(&id, duration_us))
            .await
    }

    async fn lease_holder(
        &self,
        key: &TokenKey,
    ) -> Result<Option<(HolderId, Option<Duration>)>, StoreError> {
        let id = key.storage_id();
        let lease = self.run(|| self.shared.backend.lease(&id)).await?;
        Ok(lease.and_then(|(holder, remaining)| {
            Some((HolderId::new(holder?), remaining.map(duration)))
        }))
    }

    fn changes(&self) -> Option<ChangeFeed> {
        self.shared.backend.changes()
    }
}

#[cfg(all(test, feature = "postgres"))]
mod tests {
    use std::error::Error as _;

    use kigo_core::{PartnerId, TokenKey, TokenStore};
    use kigo_testkit::conformance::test_keyring;

    use crate::SqlStore;

    /// Everything an error or `Debug` shows, sources included.
    fn shown(error: &kigo_core::StoreError) -> String {
        let mut text = format!("{error:?} {error}");
        let mut source = error.source();
        while let Some(cause) = source {
            text.push_str(&format!(" {cause}"));
            source = cause.source();
        }
        text
    }

    #[tokio::test]
    async fn debug_shows_the_database_and_table_only() {
        let store = SqlStore::builder()
            .keyring(test_keyring())
            .schema("auth")
            .table("tokens")
            .url("postgres://kigo:pa55-secret@127.0.0.1:9/app")
            .build()
            .await
            .unwrap();
        let shown = format!("{store:?}");
        assert_eq!(
            shown,
            r#"SqlStore { kind: Postgres, table: "auth.tokens", .. }"#
        );
    }

    #[tokio::test]
    async fn passwords_in_urls_are_never_shown() {
        let unreachable = "postgres://kigo:pa55-secret@127.0.0.1:9/tokens";
        let store = SqlStore::builder()
            .keyring(test_keyring())
            .acquire_timeout(std::time::Duration::from_millis(200))
            .url(unreachable)
            .build()
            .await
            .unwrap();
        assert!(!format!("{store:?}").contains("pa55-secret"));
        let key = TokenKey::partner(PartnerId::new("acme").unwrap());
        let error = store.load(&key).await.unwrap_err();
        assert!(!shown(&error).contains("pa55-secret"), "{}", shown(&error));

        let error = SqlStore::builder()
            .url("redis://kigo:pa55-secret@127.0.0.1/0")
            .build()
            .await
            .unwrap_err();
        assert!(shown(&error).contains("\"redis\""), "{}", shown(&error));
        assert!(!shown(&error).contains("pa55-secret"));

        // A key/value connection string: what stands before its first `:` is no scheme.
        let error = SqlStore::builder()
            .url("password=pa55:secret host=db")
            .build()
            .await
            .unwrap_err();
        assert!(shown(&error).contains("not a URL"), "{}", shown(&error));
        assert!(!shown(&error).contains("pa55"), "{}", shown(&error));
    }
}
