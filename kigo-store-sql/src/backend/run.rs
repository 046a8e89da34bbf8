//! Sending a rendered statement with its values and reading its result, the same way on every
//! database: what the store's operations share, written once for any sqlx pool.

use sqlx::query::Query;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, FromRow, IntoArguments, Pool, Type};

use super::Statement;
use crate::row::StoredRow;

/// A value bound to a statement parameter.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Value<'a> {
    Text(&'a str),
    Int(i64),
    Bytes(&'a [u8]),
}

/// The columns of a load: format version, entry, generation, cool-down left.
type LoadColumns = (i64, Option<Vec<u8>>, i64, Option<i64>);

/// The columns of a walk over the table: the token key, then those of a load.
type KeyedColumns = (String, i64, Option<Vec<u8>>, i64, Option<i64>);

/// A row as a walk over the table reads it: the token key, and the row as a load reads it.
pub(crate) type KeyedRow = (String, StoredRow);

/// The ways the store runs a statement, on a pool of any of its databases.
pub(crate) trait Run {
    /// What the database says of a statement it ran.
    type Done;

    /// Runs `statement`; what its result says.
    async fn execute(
        &self,
        statement: &Statement,
        values: &[Value<'_>],
    ) -> Result<Self::Done, sqlx::Error>;

    /// The first column, a number, of the row `statement` returned, if any.
    async fn number(
        &self,
        statement: &Statement,
        values: &[Value<'_>],
    ) -> Result<Option<i64>, sqlx::Error>;

    /// The first two columns, a text and a number, of the row `statement` returned, if any.
    async fn text_and_number(
        &self,
        statement: &Statement,
        values: &[Value<'_>],
    ) -> Result<Option<(Option<String>, Option<i64>)>, sqlx::Error>;

    /// The row of a load (see [`LoadColumns`]), if any.
    async fn stored(
        &self,
        statement: &Statement,
        values: &[Value<'_>],
    ) -> Result<Option<StoredRow>, sqlx::Error>;

    /// The rows of a walk over the table (see [`KeyedColumns`]).
    async fn keyed(
        &self,
        statement: &Statement,
        values: &[Value<'_>],
    ) -> Result<Vec<KeyedRow>, sqlx::Error>;
}

impl<DB> Run for Pool<DB>
where
    DB: Database,
    DB::Arguments: IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'a> &'a str: Encode<'a, DB> + Type<DB>,
    for<'a> &'a [u8]: Encode<'a, DB> + Type<DB>,
    for<'a> i64: Encode<'a, DB> + Decode<'a, DB> + Type<DB>,
    for<'a> Vec<u8>: Decode<'a, DB> + Type<DB>,
    for<'a> String: Decode<'a, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
{
    type Done = DB::QueryResult;

    async fn execute(
        &self,
        statement: &Statement,
        values: &[Value<'_>],
    ) -> Result<DB::QueryResult, sqlx::Error> {
        bound(statement, values).execute(self).await
    }

    async fn number(
        &self,
        statement: &Statement,
        values: &[Value<'_>],
    ) -> Result<Option<i64>, sqlx::Error> {
        let row = bound(statement, values)
            .try_map(|row| <(Option<i64>,)>::from_row(&row))
            .fetch_optional(self)
            .await?;
        Ok(row.and_then(|(number,)| number))
    }

    async fn text_and_number(
        &self,
        statement: &Statement,
        values: &[Value<'_>],
    ) -> Result<Option<(Option<String>, Option<i64>)>, sqlx::Error> {
        bound(statement, values)
            .try_map(|row| <(Option<String>, Option<i64>)>::from_row(&row))
            .fetch_optional(self)
            .await
    }

    async fn stored(
        &self,
        statement: &Statement,
        values: &[Value<'_>],
    ) -> Result<Option<StoredRow>, sqlx::Error> {
        let row = bound(statement, values)
            .try_map(|row| LoadColumns::from_row(&row))
            .fetch_optional(self)
            .await?;
        Ok(row.map(StoredRow::from))
    }

    async fn keyed(
        &self,
        statement: &Statement,
        values: &[Value<'_>],
    ) -> Result<Vec<KeyedRow>, sqlx::Error> {
        let rows = bound(statement, values)
            .try_map(|row| KeyedColumns::from_row(&row))
            .fetch_all(self)
            .await?;
        Ok(rows
            .into_iter()
            .map(|(key, format, entry, generation, cooldown_us)| {
                let row = StoredRow::from((format, entry, generation, cooldown_us));
                (key, row)
            })
            .collect())
    }
}

/// `statement` with `values` bound in the order it takes them.
fn bound<DB>(statement: &Statement, values: &[Value<'_>]) -> Query<'static, DB, DB::Arguments>
where
    DB: Database,
    for<'a> &'a str: Encode<'a, DB> + Type<DB>,
    for<'a> &'a [u8]: Encode<'a, DB> + Type<DB>,
    for<'a> i64: Encode<'a, DB> + Type<DB>,
{
    statement
        .values(values)
        .into_iter()
        .fold(sqlx::query(statement.sql()), |query, value| match value {
            Value::Text(text) => query.bind(text),
            Value::Int(int) => query.bind(int),
            Value::Bytes(bytes) => query.bind(bytes),
        })
}
