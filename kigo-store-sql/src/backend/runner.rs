//! Sending a rendered statement with its values, the same way on every database: the part of
//! each operation that does not depend on the database's SQL.

use std::sync::Arc;

use sqlx::query::Query;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Pool, Row, Type};

use super::sql;
use crate::row::StoredRow;

/// A value bound to a statement parameter.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Value<'a> {
    Text(&'a str),
    Int(i64),
    Bytes(&'a [u8]),
}

/// What a statement's result says, which each database's result type reports on its own.
pub(crate) trait Outcome {
    /// The number of rows the statement changed (matched, on MySQL).
    fn rows(&self) -> u64;

    /// The value of MySQL's `LAST_INSERT_ID(expr)` that the statement last set, carried by its
    /// result; zero if it set none. Zero on the other databases.
    #[cfg(feature = "mysql")]
    fn insert_id(&self) -> u64 {
        0
    }
}

#[cfg(feature = "postgres")]
impl Outcome for sqlx::postgres::PgQueryResult {
    fn rows(&self) -> u64 {
        self.rows_affected()
    }
}

#[cfg(feature = "mysql")]
impl Outcome for sqlx::mysql::MySqlQueryResult {
    fn rows(&self) -> u64 {
        self.rows_affected()
    }

    fn insert_id(&self) -> u64 {
        self.last_insert_id()
    }
}

#[cfg(feature = "sqlite")]
impl Outcome for sqlx::sqlite::SqliteQueryResult {
    fn rows(&self) -> u64 {
        self.rows_affected()
    }
}

/// `statement` with `values` bound in order.
pub(crate) fn bound<DB>(
    statement: &Arc<str>,
    values: &[Value<'_>],
) -> Query<'static, DB, DB::Arguments>
where
    DB: Database,
    for<'a> &'a str: Encode<'a, DB> + Type<DB>,
    for<'a> &'a [u8]: Encode<'a, DB> + Type<DB>,
    for<'a> i64: Encode<'a, DB> + Type<DB>,
{
    values
        .iter()
        .fold(sqlx::query(sql(statement)), |query, value| match *value {
            Value::Text(text) => query.bind(text),
            Value::Int(int) => query.bind(int),
            Value::Bytes(bytes) => query.bind(bytes),
        })
}

/// A pool, and the ways the store reads statements' results.
#[derive(Debug)]
pub(crate) struct Runner<DB: Database> {
    pub(crate) pool: Pool<DB>,
}

impl<DB> Runner<DB>
where
    DB: Database,
    DB::QueryResult: Outcome,
    DB::Arguments: IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'a> &'a str: Encode<'a, DB> + Type<DB>,
    for<'a> &'a [u8]: Encode<'a, DB> + Type<DB>,
    for<'a> i64: Encode<'a, DB> + Decode<'a, DB> + Type<DB>,
    for<'a> Vec<u8>: Decode<'a, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
{
    pub(crate) fn new(pool: Pool<DB>) -> Self {
        Self { pool }
    }

    /// Runs `statement`; what its result says.
    pub(crate) async fn execute(
        &self,
        statement: &Arc<str>,
        values: &[Value<'_>],
    ) -> Result<DB::QueryResult, sqlx::Error> {
        bound(statement, values).execute(&self.pool).await
    }

    /// The first column of the row `statement` returned, if any.
    pub(crate) async fn number(
        &self,
        statement: &Arc<str>,
        values: &[Value<'_>],
    ) -> Result<Option<i64>, sqlx::Error> {
        let row = bound(statement, values).fetch_optional(&self.pool).await?;
        row.map(|row| row.try_get::<Option<i64>, _>(0))
            .transpose()
            .map(Option::flatten)
    }

    /// The row of a load: format version, entry, generation, cool-down left (in that order,
    /// all but the entry as 64-bit integers).
    pub(crate) async fn stored(
        &self,
        statement: &Arc<str>,
        key: &str,
    ) -> Result<Option<StoredRow>, sqlx::Error> {
        let row = bound(statement, &[Value::Text(key)])
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
}
