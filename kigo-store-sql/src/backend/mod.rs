//! The store's statements on its database: one [`Backend`] for the three, holding the pool and the
//! statements rendered once for the configured table. What differs between the databases lives in
//! one module each: the SQL, the error codes, the schema probe, migrations, and notifications.

use std::sync::Arc;

use kigo_core::store::ChangeFeed;
use sqlx::AssertSqlSafe;
use sqlx::error::DatabaseError;
use sqlx::migrate::MigrateError;

use crate::SqlPool;
use crate::error::Class;
use crate::names::TableRef;
use crate::row::{NewEntry, StoredRow, format_version};
pub(crate) use run::KeyedRow;
use run::Value::{Bytes, Int, Text};
use run::{Run, Value};

/// How long a migration waits for another replica's migration of the same table (the
/// operation timeout, meant for the store's quick statements, does not apply to it).
#[cfg(any(feature = "postgres", feature = "mysql"))]
const MIGRATION_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// The migrations shipped for `$database` (its folder under `migrations/`), in order: each a
/// version, a description and a file.
macro_rules! migrations {
    ($database:literal: $($version:literal $description:literal $file:literal,)+) => {
        &[$(
            crate::migrate::Template {
                version: $version,
                description: $description,
                sql: include_str!(concat!("../../migrations/", $database, "/", $file)),
            },
        )+]
    };
}

#[cfg(feature = "mysql")]
pub(crate) mod mysql;
#[cfg(feature = "postgres")]
pub(crate) mod postgres;
mod run;
#[cfg(feature = "sqlite")]
pub(crate) mod sqlite;

/// Which database a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BackendKind {
    /// PostgreSQL: leases timed by `clock_timestamp()`, wake-ups by `LISTEN/NOTIFY`.
    Postgres,
    /// MySQL or MariaDB: leases timed by `UTC_TIMESTAMP(6)`; waiters poll.
    MySql,
    /// SQLite: one file shared by the processes of one machine, timed by the machine's clock
    /// as SQLite reads it; waiters poll.
    Sqlite,
}

impl BackendKind {
    /// The database's name in URLs and in the namespace that sealed entries are bound to.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::MySql => "mysql",
            Self::Sqlite => "sqlite",
        }
    }
}

/// Where a database server's connections go (see [`Backend::location`]), from its connect
/// options, checked by `$route` (sqlx's PostgreSQL and MySQL options have the same getters, on
/// types of their own).
#[cfg(any(feature = "postgres", feature = "mysql"))]
macro_rules! server_location {
    ($kind:expr, $options:expr, $route:path) => {{
        let options = $options;
        let at = options.get_socket().map_or_else(
            || format!("{}:{}", options.get_host(), options.get_port()),
            |socket| socket.display().to_string(),
        );
        let database = options.get_database().unwrap_or_default();
        let server = format!("{} {at}/{database}", $kind.name());
        (server, $route(&options).name())
    }};
}

/// Runs `$body` with `$pool` bound to the sqlx pool inside `$pools` (a `&SqlPool`): the body is
/// compiled once per database, for its types.
macro_rules! on_pool {
    ($pools:expr, $pool:ident => $body:expr) => {
        match $pools {
            #[cfg(feature = "postgres")]
            SqlPool::Postgres($pool) => $body,
            #[cfg(feature = "mysql")]
            SqlPool::MySql($pool) => $body,
            #[cfg(feature = "sqlite")]
            SqlPool::Sqlite($pool) => $body,
        }
    };
}

/// What one step of a sweep over the table did: how many expired tokens it cleared, and the key
/// the next step starts after (`None` once it reached the last row).
#[derive(Debug, Default)]
pub(crate) struct Swept {
    pub(crate) cleared: u64,
    pub(crate) next: Option<String>,
}

/// The store's operations on one database. Every operation runs one statement (an upsert, an
/// update or a select; a sweep, two) on a pooled connection, so no connection is held between
/// them.
#[derive(Debug)]
pub(crate) struct Backend {
    pool: SqlPool,
    table: TableRef,
    statements: Statements,
    /// Where PostgreSQL's change notices come from.
    #[cfg(feature = "postgres")]
    notices: Option<postgres::Notices>,
}

impl Backend {
    /// The statements of `templates` (with `extra` placeholders) for `table`, on `pool`.
    fn new(pool: SqlPool, table: TableRef, templates: &Templates, extra: &[(&str, &str)]) -> Self {
        let statements = Statements::render(templates, &table, pool.kind(), extra);
        Self {
            pool,
            table,
            statements,
            #[cfg(feature = "postgres")]
            notices: None,
        }
    }

    /// The pool the statements run on.
    pub(crate) fn pool(&self) -> &SqlPool {
        &self.pool
    }

    /// The token table.
    pub(crate) fn table(&self) -> &TableRef {
        &self.table
    }

    /// Where the store's connections go, without credentials (`postgres db.internal:5432/app`),
    /// and how: `local` (this machine), `tls` (required by the connect options) or
    /// `unencrypted`.
    pub(crate) fn location(&self) -> (String, &'static str) {
        match &self.pool {
            #[cfg(feature = "postgres")]
            SqlPool::Postgres(pool) => server_location!(
                BackendKind::Postgres,
                pool.connect_options(),
                crate::transport::postgres_route
            ),
            #[cfg(feature = "mysql")]
            SqlPool::MySql(pool) => server_location!(
                BackendKind::MySql,
                pool.connect_options(),
                crate::transport::mysql_route
            ),
            #[cfg(feature = "sqlite")]
            SqlPool::Sqlite(pool) => sqlite::location(&pool.connect_options()),
        }
    }

    /// The class of an error response of this database, by its code.
    pub(crate) fn classify(&self, error: &(dyn DatabaseError + 'static)) -> Class {
        match &self.pool {
            #[cfg(feature = "postgres")]
            SqlPool::Postgres(_) => postgres::classify(error),
            #[cfg(feature = "mysql")]
            SqlPool::MySql(_) => mysql::classify(error),
            #[cfg(feature = "sqlite")]
            SqlPool::Sqlite(_) => sqlite::classify(error),
        }
    }

    /// Whether the token table exists, with every column this version uses where the database
    /// cannot tell a missing column by its error code (to tell a missing or outdated schema
    /// from other failures).
    pub(crate) async fn schema_current(&self) -> Result<bool, sqlx::Error> {
        match &self.pool {
            #[cfg(feature = "postgres")]
            SqlPool::Postgres(pool) => postgres::schema_current(pool, &self.table).await,
            #[cfg(feature = "mysql")]
            SqlPool::MySql(pool) => mysql::schema_current(pool, &self.table).await,
            #[cfg(feature = "sqlite")]
            SqlPool::Sqlite(pool) => sqlite::schema_current(pool, &self.table).await,
        }
    }

    /// Applies the migrations not yet applied to the token table.
    pub(crate) async fn migrate(&self) -> Result<(), MigrateError> {
        match &self.pool {
            #[cfg(feature = "postgres")]
            SqlPool::Postgres(pool) => postgres::migrate(pool, &self.table).await,
            #[cfg(feature = "mysql")]
            SqlPool::MySql(pool) => mysql::migrate(pool, &self.table).await,
            #[cfg(feature = "sqlite")]
            SqlPool::Sqlite(pool) => sqlite::migrate(pool, &self.table).await,
        }
    }

    /// Change notices, if the database can push them.
    pub(crate) fn changes(&self) -> Option<ChangeFeed> {
        match &self.pool {
            #[cfg(feature = "postgres")]
            SqlPool::Postgres(pool) => self
                .notices
                .as_ref()
                .map(|notices| postgres::changes(pool, &self.table, notices)),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }

    /// The row of `key`, with expiry and cool-down judged by the database clock.
    pub(crate) async fn load(&self, key: &str) -> Result<Option<StoredRow>, sqlx::Error> {
        let load = &self.statements.load;
        on_pool!(&self.pool, pool => pool.stored(load, &[Text(key)]).await)
    }

    /// Takes the lease of `key` for `holder` if it is free or lapsed, creating the row if
    /// needed, and clears the row's token if it has expired; the new fence if granted.
    pub(crate) async fn claim(
        &self,
        key: &str,
        holder: &str,
        ttl_us: i64,
    ) -> Result<Option<i64>, sqlx::Error> {
        let values = [Text(key), Int(format_version()), Text(holder), Int(ttl_us)];
        let claim = &self.statements.claim;
        match &self.pool {
            #[cfg(feature = "postgres")]
            SqlPool::Postgres(pool) => pool.number(claim, &values).await,
            #[cfg(feature = "mysql")]
            SqlPool::MySql(pool) => Ok(mysql::claimed_fence(&pool.execute(claim, &values).await?)),
            #[cfg(feature = "sqlite")]
            SqlPool::Sqlite(pool) => pool.number(claim, &values).await,
        }
    }

    /// The holder of the live lease of `key` and the time left on it, in microseconds; `None`
    /// when no lease is live.
    pub(crate) async fn lease(
        &self,
        key: &str,
    ) -> Result<Option<(Option<String>, Option<i64>)>, sqlx::Error> {
        let lease = &self.statements.lease;
        on_pool!(&self.pool, pool => pool.text_and_number(lease, &[Text(key)]).await)
    }

    /// Frees the lease of `key` if `holder` holds it under `fence`: a holder that claimed
    /// again (a refresh keeps its holder ID across attempts) is not freed by the late release
    /// of its earlier lease.
    pub(crate) async fn release(
        &self,
        key: &str,
        holder: &str,
        fence: i64,
    ) -> Result<(), sqlx::Error> {
        let values = [Text(key), Text(holder), Int(fence)];
        self.changed(&self.statements.release, &values).await?;
        Ok(())
    }

    /// Stores `entry` with generation `fence` if `holder` holds a live lease granted with
    /// `fence` and the stored generation is older; ends the lease and the cool-down and
    /// notifies. Whether it did.
    pub(crate) async fn commit(
        &self,
        key: &str,
        holder: &str,
        fence: i64,
        entry: &NewEntry,
    ) -> Result<bool, sqlx::Error> {
        let values = [
            Text(key),
            Text(holder),
            Int(fence),
            Int(entry.format),
            Bytes(&entry.entry),
            Int(entry.expires_us),
        ];
        Ok(self.changed(&self.statements.commit, &values).await? == 1)
    }

    /// Removes the token of `key` if it is still the one committed as `generation`, keeping
    /// the generation; notifies. Whether it did.
    pub(crate) async fn invalidate(&self, key: &str, generation: i64) -> Result<bool, sqlx::Error> {
        let values = [Text(key), Int(generation)];
        Ok(self.changed(&self.statements.invalidate, &values).await? == 1)
    }

    /// Extends the cool-down of `key` to at least `duration_us` from now.
    pub(crate) async fn set_cooldown(
        &self,
        key: &str,
        duration_us: i64,
    ) -> Result<(), sqlx::Error> {
        let values = [Text(key), Int(format_version()), Int(duration_us)];
        self.changed(&self.statements.set_cooldown, &values).await?;
        Ok(())
    }

    /// Examines the (up to) `limit` rows after the token key `after`, in the byte order of
    /// their keys, and clears the token (entry, fingerprint, expiry) of those whose token has
    /// expired, keeping their generation and fence.
    pub(crate) async fn sweep(&self, after: &str, limit: i64) -> Result<Swept, sqlx::Error> {
        let batch_end = &self.statements.batch_end;
        let values = [Text(after), Int(limit)];
        let end = on_pool!(&self.pool, pool => pool.text_and_number(batch_end, &values).await)?;
        let Some((Some(last), Some(examined))) = end else {
            return Ok(Swept::default());
        };
        let cleared = self.clear_expired(after, &last).await?;
        let next = (examined >= limit).then_some(last);
        Ok(Swept { cleared, next })
    }

    /// Clears the token of the rows whose key is after `after` and up to `last` (byte order)
    /// and whose token has expired; how many it cleared.
    pub(crate) async fn clear_expired(&self, after: &str, last: &str) -> Result<u64, sqlx::Error> {
        self.changed(&self.statements.clear_expired, &[Text(after), Text(last)])
            .await
    }

    /// Up to `limit` rows after the token key `after`, in the byte order of their keys, each
    /// read as a load reads it (the cool-down aside).
    pub(crate) async fn page(&self, after: &str, limit: i64) -> Result<Vec<KeyedRow>, sqlx::Error> {
        let page = &self.statements.page;
        on_pool!(&self.pool, pool => pool.keyed(page, &[Text(after), Int(limit)]).await)
    }

    /// Writes `resealed` as the entry of `key` if the row still holds `entry` at `generation`.
    /// Whether it did.
    pub(crate) async fn reseal(
        &self,
        key: &str,
        generation: i64,
        entry: &[u8],
        resealed: &[u8],
    ) -> Result<bool, sqlx::Error> {
        let values = [Text(key), Int(generation), Bytes(entry), Bytes(resealed)];
        Ok(self.changed(&self.statements.reseal, &values).await? == 1)
    }

    /// Deletes the row of `key` (its fence with it): for rows of the store's own making only.
    pub(crate) async fn forget(&self, key: &str) -> Result<(), sqlx::Error> {
        self.changed(&self.statements.forget, &[Text(key)]).await?;
        Ok(())
    }

    /// The database's clock, in microseconds since the Unix epoch.
    pub(crate) async fn clock(&self) -> Result<Option<i64>, sqlx::Error> {
        on_pool!(&self.pool, pool => pool.number(&self.statements.clock, &[]).await)
    }

    /// The latest migration applied to the token table, by its tracking table.
    pub(crate) async fn applied_migration(&self) -> Result<Option<i64>, sqlx::Error> {
        let applied = &self.statements.applied_migration;
        on_pool!(&self.pool, pool => pool.number(applied, &[]).await)
    }

    /// The latest migration this version ships for the database.
    pub(crate) fn shipped_migration(&self) -> i64 {
        let shipped = match &self.pool {
            #[cfg(feature = "postgres")]
            SqlPool::Postgres(_) => postgres::MIGRATIONS,
            #[cfg(feature = "mysql")]
            SqlPool::MySql(_) => mysql::MIGRATIONS,
            #[cfg(feature = "sqlite")]
            SqlPool::Sqlite(_) => sqlite::MIGRATIONS,
        };
        shipped
            .iter()
            .map(|migration| migration.version)
            .max()
            .unwrap_or(0)
    }

    /// Runs `statement`; the rows it changed (matched, on MySQL, whose connections sqlx opens
    /// with `CLIENT_FOUND_ROWS`).
    async fn changed(
        &self,
        statement: &Statement,
        values: &[Value<'_>],
    ) -> Result<u64, sqlx::Error> {
        on_pool!(&self.pool, pool => Ok(pool.execute(statement, values).await?.rows_affected()))
    }
}

/// One statement's SQL with placeholders (see [`Statements::render`]), and, where the database
/// takes the operation's values in another order (MySQL's positional `?`, which also takes some
/// of them twice), that order: indexes into the values as the operation lists them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sql {
    text: &'static str,
    order: Option<&'static [usize]>,
}

impl Sql {
    /// A statement that takes the operation's values as listed (numbered placeholders).
    pub(crate) const fn new(text: &'static str) -> Self {
        Self { text, order: None }
    }

    /// A statement that takes the operation's values in `order`.
    #[cfg(feature = "mysql")]
    pub(crate) const fn ordered(text: &'static str, order: &'static [usize]) -> Self {
        Self {
            text,
            order: Some(order),
        }
    }
}

/// The SQL of a database: `{table}` (the quoted token table), `{tracking}` (its migrations
/// table), `{now}` (the database clock, in the unit its time columns use), and whatever else it
/// fills in (see [`Statements::render`]).
/// The values each operation binds are listed on the [`Backend`] method that runs it.
#[derive(Debug)]
pub(crate) struct Templates {
    /// What `{now}` stands for.
    pub(crate) now: &'static str,
    pub(crate) load: Sql,
    pub(crate) claim: Sql,
    /// The holder of the live lease and the time left on it.
    pub(crate) lease: Sql,
    pub(crate) release: Sql,
    pub(crate) commit: Sql,
    pub(crate) invalidate: Sql,
    pub(crate) set_cooldown: Sql,
    /// The last key of the rows a sweep examines next, and how many they are.
    pub(crate) batch_end: Sql,
    /// Clears the expired tokens of the rows between two keys.
    pub(crate) clear_expired: Sql,
    /// A page of rows in the byte order of their keys.
    pub(crate) page: Sql,
    pub(crate) reseal: Sql,
    pub(crate) forget: Sql,
    /// `{now}` as microseconds since the Unix epoch.
    pub(crate) clock: Sql,
    /// The latest version recorded in `{tracking}`, the table's migrations table.
    pub(crate) applied_migration: Sql,
}

/// A rendered statement, as sent.
#[derive(Debug)]
pub(crate) struct Statement {
    text: Arc<str>,
    order: Option<&'static [usize]>,
}

impl Statement {
    /// The SQL, as sqlx takes it.
    fn sql(&self) -> AssertSqlSafe<Arc<str>> {
        AssertSqlSafe(Arc::clone(&self.text))
    }

    /// `values`, as the operation lists them, in the order the statement takes them.
    fn values<'a>(&self, values: &[Value<'a>]) -> Vec<Value<'a>> {
        match self.order {
            None => values.to_vec(),
            Some(order) => order
                .iter()
                .filter_map(|&at| values.get(at).copied())
                .collect(),
        }
    }
}

/// [`Templates`] rendered for one table: the statements a store sends, built once.
#[derive(Debug)]
struct Statements {
    load: Statement,
    claim: Statement,
    lease: Statement,
    release: Statement,
    commit: Statement,
    invalidate: Statement,
    set_cooldown: Statement,
    batch_end: Statement,
    clear_expired: Statement,
    page: Statement,
    reseal: Statement,
    forget: Statement,
    clock: Statement,
    applied_migration: Statement,
}

impl Statements {
    /// `templates` for `table` (quoted for `kind`), with `{now}` and each placeholder of
    /// `extra` replaced. The values are checked, quoted identifiers ([`TableRef`]) and constant
    /// expressions, so the result is safe SQL.
    fn render(
        templates: &Templates,
        table: &TableRef,
        kind: BackendKind,
        extra: &[(&str, &str)],
    ) -> Self {
        let quoted = table.quoted(kind);
        let tracking = table.tracking_quoted(kind);
        let fill = [
            &[
                ("{table}", quoted.as_str()),
                ("{tracking}", tracking.as_str()),
                ("{now}", templates.now),
            ],
            extra,
        ]
        .concat();
        let render = |sql: Sql| Statement {
            text: fill
                .iter()
                .fold(sql.text.to_owned(), |text, (placeholder, value)| {
                    text.replace(placeholder, value)
                })
                .into(),
            order: sql.order,
        };
        Self {
            load: render(templates.load),
            claim: render(templates.claim),
            lease: render(templates.lease),
            release: render(templates.release),
            commit: render(templates.commit),
            invalidate: render(templates.invalidate),
            set_cooldown: render(templates.set_cooldown),
            batch_end: render(templates.batch_end),
            clear_expired: render(templates.clear_expired),
            page: render(templates.page),
            reseal: render(templates.reseal),
            forget: render(templates.forget),
            clock: render(templates.clock),
            applied_migration: render(templates.applied_migration),
        }
    }
}
