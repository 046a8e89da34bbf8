//! The operations every database runs the same way: one rendered statement each, its values
//! bound in order, its result read back. What still differs between the databases (error codes,
//! the schema probe, migrations, notifications, the order a statement takes its values in, how a
//! claim reports its fence) is a [`Dialect`].

use std::fmt;

use async_trait::async_trait;
use kigo_core::store::ChangeFeed;
use sqlx::error::DatabaseError;
use sqlx::migrate::MigrateError;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Type};

use super::runner::Value::{self, Bytes, Int, Text};
use super::runner::{Outcome, Runner};
use super::{Backend, BackendKind, Statements};
use crate::error::Class;
use crate::row::{NewEntry, StoredRow, format_version};

/// How a claim statement reports the fence it granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FenceReport {
    /// It returns a row with the fence (`RETURNING`); no row when the lease is held.
    Returned,
    /// It sets MySQL's `LAST_INSERT_ID(expr)` to the fence, or to 0 when the lease is held,
    /// and the value comes back with the statement's result.
    #[cfg(feature = "mysql")]
    InsertId,
}

/// What differs between the databases.
///
/// The statements' values, unless a dialect orders them otherwise:
/// - load `(key)`: format version, entry, generation, cool-down left;
/// - claim `(key, format, holder, ttl)`: the new fence, if granted (see [`FenceReport`]);
/// - lease remaining `(key)`; release `(key, holder, fence)`;
/// - commit `(key, holder, fence, format, entry, fingerprint, expiry)`: one row changed if
///   committed;
/// - invalidate `(key, fingerprint)`: one row changed if removed;
/// - cool-down `(key, format, duration)`;
/// - clear expired `(limit)`: the rows changed (matched, on MySQL) are the rows cleared.
#[async_trait]
pub(crate) trait Dialect: Send + Sync + fmt::Debug + 'static {
    type Db: Database;

    fn kind(&self) -> BackendKind;

    /// The class of an error response of this database.
    fn classify(&self, error: &(dyn DatabaseError + 'static)) -> Class;

    /// Whether the token table exists (see [`Backend::schema_current`]).
    async fn schema_current(&self, runner: &Runner<Self::Db>) -> Result<bool, sqlx::Error>;

    /// Applies the migrations not yet applied.
    async fn migrate(&self, runner: &Runner<Self::Db>) -> Result<(), MigrateError>;

    /// Change notices, if the database can push them.
    fn changes(&self, runner: &Runner<Self::Db>) -> Option<ChangeFeed> {
        let _ = runner;
        None
    }

    /// How the claim statement reports its fence.
    fn fence_report(&self) -> FenceReport {
        FenceReport::Returned
    }

    /// The values of the claim statement, from `(key, format, holder, ttl)`.
    fn claim_values<'a>(&self, values: [Value<'a>; 4]) -> Vec<Value<'a>> {
        values.to_vec()
    }

    /// The values of the commit statement, from the lease's `(key, holder, fence)` and the
    /// entry's [`NewEntry::values`].
    fn commit_values<'a>(&self, lease: [Value<'a>; 3], entry: [Value<'a>; 4]) -> Vec<Value<'a>> {
        [&lease[..], &entry[..]].concat()
    }

    /// The values of the cool-down statement, from `(key, format, duration)`.
    fn cooldown_values<'a>(&self, values: [Value<'a>; 3]) -> Vec<Value<'a>> {
        values.to_vec()
    }
}

/// A backend: a dialect's statements, rendered for the table, run through a pool.
#[derive(Debug)]
pub(crate) struct Standard<D: Dialect> {
    pub(crate) dialect: D,
    pub(crate) runner: Runner<D::Db>,
    pub(crate) statements: Statements,
}

#[async_trait]
impl<D> Backend for Standard<D>
where
    D: Dialect,
    <D::Db as Database>::QueryResult: Outcome,
    <D::Db as Database>::Arguments: IntoArguments<D::Db>,
    for<'c> &'c mut <D::Db as Database>::Connection: Executor<'c, Database = D::Db>,
    for<'a> &'a str: Encode<'a, D::Db> + Type<D::Db>,
    for<'a> &'a [u8]: Encode<'a, D::Db> + Type<D::Db>,
    for<'a> i64: Encode<'a, D::Db> + Decode<'a, D::Db> + Type<D::Db>,
    for<'a> Vec<u8>: Decode<'a, D::Db> + Type<D::Db>,
    usize: ColumnIndex<<D::Db as Database>::Row>,
{
    fn kind(&self) -> BackendKind {
        self.dialect.kind()
    }

    fn classify(&self, error: &(dyn DatabaseError + 'static)) -> Class {
        self.dialect.classify(error)
    }

    async fn schema_current(&self) -> Result<bool, sqlx::Error> {
        self.dialect.schema_current(&self.runner).await
    }

    async fn migrate(&self) -> Result<(), MigrateError> {
        self.dialect.migrate(&self.runner).await
    }

    async fn load(&self, key: &str) -> Result<Option<StoredRow>, sqlx::Error> {
        self.runner.stored(&self.statements.load, key).await
    }

    async fn claim(
        &self,
        key: &str,
        holder: &str,
        ttl_us: i64,
    ) -> Result<Option<i64>, sqlx::Error> {
        let values = [Text(key), Int(format_version()), Text(holder), Int(ttl_us)];
        let values = self.dialect.claim_values(values);
        let claim = &self.statements.claim;
        match self.dialect.fence_report() {
            FenceReport::Returned => self.runner.number(claim, &values).await,
            #[cfg(feature = "mysql")]
            FenceReport::InsertId => {
                let fence = self.runner.execute(claim, &values).await?.insert_id();
                Ok(i64::try_from(fence).ok().filter(|fence| *fence > 0))
            }
        }
    }

    async fn lease_remaining(&self, key: &str) -> Result<Option<i64>, sqlx::Error> {
        let values = [Text(key)];
        self.runner
            .number(&self.statements.lease_remaining, &values)
            .await
    }

    async fn release(&self, key: &str, holder: &str, fence: i64) -> Result<(), sqlx::Error> {
        let values = [Text(key), Text(holder), Int(fence)];
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
        let lease = [Text(key), Text(holder), Int(fence)];
        let values = self.dialect.commit_values(lease, entry.values());
        let done = self
            .runner
            .execute(&self.statements.commit, &values)
            .await?;
        Ok(done.rows() == 1)
    }

    async fn invalidate(&self, key: &str, fingerprint: &[u8]) -> Result<bool, sqlx::Error> {
        let values = [Text(key), Bytes(fingerprint)];
        let done = self
            .runner
            .execute(&self.statements.invalidate, &values)
            .await?;
        Ok(done.rows() == 1)
    }

    async fn set_cooldown(&self, key: &str, duration_us: i64) -> Result<(), sqlx::Error> {
        let values = [Text(key), Int(format_version()), Int(duration_us)];
        let values = self.dialect.cooldown_values(values);
        self.runner
            .execute(&self.statements.set_cooldown, &values)
            .await?;
        Ok(())
    }

    async fn clear_expired(&self, limit: i64) -> Result<u64, sqlx::Error> {
        let done = self
            .runner
            .execute(&self.statements.clear_expired, &[Int(limit)])
            .await?;
        Ok(done.rows())
    }

    fn changes(&self) -> Option<ChangeFeed> {
        self.dialect.changes(&self.runner)
    }
}
