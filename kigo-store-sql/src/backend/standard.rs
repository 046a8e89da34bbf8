//! The operations of the databases whose statements take the same values in the same order and
//! report their outcome the same way (PostgreSQL and SQLite: upserts with `RETURNING`); what
//! still differs between them is a [`Dialect`].

use std::fmt;

use async_trait::async_trait;
use kigo_core::store::ChangeFeed;
use sqlx::error::DatabaseError;
use sqlx::migrate::MigrateError;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Type};

use super::runner::Value::{Bytes, Int, Text};
use super::runner::{RowsAffected, Runner};
use super::{Backend, BackendKind, Statements};
use crate::error::Class;
use crate::row::{NewEntry, StoredRow, format_version};

/// What differs between the databases that share the standard statements' shape.
#[async_trait]
pub(crate) trait Dialect: Send + Sync + fmt::Debug + 'static {
    type Db: Database;

    fn kind(&self) -> BackendKind;

    /// The class of an error response of this database.
    fn classify(&self, error: &(dyn DatabaseError + 'static)) -> Class;

    /// Whether the token table exists.
    async fn table_exists(&self, runner: &Runner<Self::Db>) -> Result<bool, sqlx::Error>;

    /// Applies the migrations not yet applied.
    async fn migrate(&self, runner: &Runner<Self::Db>) -> Result<(), MigrateError>;

    /// Change notices, if the database can push them.
    fn changes(&self, runner: &Runner<Self::Db>) -> Option<ChangeFeed> {
        let _ = runner;
        None
    }
}

/// A backend sending the standard statements:
/// - load `(key)`: format version, entry, generation, cool-down left;
/// - claim `(key, format, holder, ttl)`: the new fence, if granted;
/// - lease remaining `(key)`; release `(key, holder)`;
/// - commit `(key, holder, fence, format, entry, fingerprint, expiry)`: a row if committed;
/// - invalidate `(key, fingerprint)`: a row if removed;
/// - cool-down `(key, format, duration)`.
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
    <D::Db as Database>::QueryResult: RowsAffected,
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

    async fn table_exists(&self) -> Result<bool, sqlx::Error> {
        self.dialect.table_exists(&self.runner).await
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
        self.runner.number(&self.statements.claim, &values).await
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
        let lease = [Text(key), Text(holder), Int(fence)];
        let values = [&lease[..], &entry.values()].concat();
        self.runner
            .returns_row(&self.statements.commit, &values)
            .await
    }

    async fn invalidate(&self, key: &str, fingerprint: &[u8]) -> Result<bool, sqlx::Error> {
        let values = [Text(key), Bytes(fingerprint)];
        self.runner
            .returns_row(&self.statements.invalidate, &values)
            .await
    }

    async fn set_cooldown(&self, key: &str, duration_us: i64) -> Result<(), sqlx::Error> {
        let values = [Text(key), Int(format_version()), Int(duration_us)];
        self.runner
            .execute(&self.statements.set_cooldown, &values)
            .await?;
        Ok(())
    }

    fn changes(&self) -> Option<ChangeFeed> {
        self.dialect.changes(&self.runner)
    }
}
