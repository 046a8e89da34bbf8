//! One module per database: the SQL of each store operation, rendered once for the configured
//! table, and how that database's errors are classified.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use kigo_core::store::ChangeFeed;
use sqlx::AssertSqlSafe;
use sqlx::error::DatabaseError;
use sqlx::migrate::MigrateError;

use crate::error::Class;
use crate::names::TableRef;
use crate::row::{NewEntry, StoredRow};

/// How long a migration waits for another replica's migration of the same table (the
/// statement timeout, meant for the store's quick statements, does not apply to it).
#[cfg(any(feature = "postgres", feature = "mysql"))]
const MIGRATION_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// The migrations shipped for `$database` (its folder under `migrations/`), in order.
macro_rules! migrations {
    ($database:literal) => {
        &[
            Template {
                version: 1,
                description: "create token table",
                sql: include_str!(concat!(
                    "../../migrations/",
                    $database,
                    "/0001_create_token_table.sql"
                )),
            },
            Template {
                version: 2,
                description: "index token expiry",
                sql: include_str!(concat!(
                    "../../migrations/",
                    $database,
                    "/0002_index_token_expiry.sql"
                )),
            },
        ]
    };
}

#[cfg(feature = "mysql")]
pub(crate) mod mysql;
#[cfg(feature = "postgres")]
pub(crate) mod postgres;
pub(crate) mod runner;
#[cfg(feature = "sqlite")]
pub(crate) mod sqlite;
mod standard;

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

/// The operations of a store on one database. Every method runs one statement (an upsert, an
/// update or a select), so no connection is held between them.
#[async_trait]
pub(crate) trait Backend: Send + Sync + fmt::Debug + 'static {
    fn kind(&self) -> BackendKind;

    /// The class of an error response of this database.
    fn classify(&self, error: &(dyn DatabaseError + 'static)) -> Class;

    /// Whether the token table exists, with every column this version uses where the database
    /// cannot tell a missing column by its error code (to tell a missing or outdated schema
    /// from other failures).
    async fn schema_current(&self) -> Result<bool, sqlx::Error>;

    /// Applies the migrations not yet applied to the token table.
    async fn migrate(&self) -> Result<(), MigrateError>;

    /// The row of `key`, with expiry and cool-down judged by the database clock.
    async fn load(&self, key: &str) -> Result<Option<StoredRow>, sqlx::Error>;

    /// Takes the lease of `key` for `holder` if it is free or lapsed, creating the row if
    /// needed, and clears the row's token if it has expired; the new fence if granted.
    async fn claim(&self, key: &str, holder: &str, ttl_us: i64)
    -> Result<Option<i64>, sqlx::Error>;

    /// The time left on the live lease of `key`, in microseconds.
    async fn lease_remaining(&self, key: &str) -> Result<Option<i64>, sqlx::Error>;

    /// Frees the lease of `key` if `holder` holds it under `fence`: a holder that claimed
    /// again (a refresh keeps its holder ID across attempts) is not freed by the late release
    /// of its earlier lease.
    async fn release(&self, key: &str, holder: &str, fence: i64) -> Result<(), sqlx::Error>;

    /// Stores `entry` with generation `fence` if `holder` holds a live lease granted with
    /// `fence` and the stored generation is older; ends the lease and the cool-down and
    /// notifies. Whether it did.
    async fn commit(
        &self,
        key: &str,
        holder: &str,
        fence: i64,
        entry: &NewEntry,
    ) -> Result<bool, sqlx::Error>;

    /// Removes the token of `key` if its fingerprint is `fingerprint`, keeping the generation;
    /// notifies. Whether it did.
    async fn invalidate(&self, key: &str, fingerprint: &[u8]) -> Result<bool, sqlx::Error>;

    /// Extends the cool-down of `key` to at least `duration_us` from now.
    async fn set_cooldown(&self, key: &str, duration_us: i64) -> Result<(), sqlx::Error>;

    /// Clears the token (entry, fingerprint, expiry) of at most `limit` rows whose token has
    /// expired, keeping their generation and fence; how many it cleared.
    async fn clear_expired(&self, limit: i64) -> Result<u64, sqlx::Error>;

    /// Change notices, if the database can push them.
    fn changes(&self) -> Option<ChangeFeed> {
        None
    }
}

/// The SQL of a backend with placeholders: `{table}` (the quoted token table), `{now}` (the
/// database clock, in the unit the backend's time columns use), and whatever else the backend
/// fills in (see [`Statements::render`]).
#[derive(Debug)]
pub(crate) struct Templates {
    /// What `{now}` stands for.
    pub(crate) now: &'static str,
    pub(crate) load: &'static str,
    pub(crate) claim: &'static str,
    pub(crate) lease_remaining: &'static str,
    pub(crate) release: &'static str,
    pub(crate) commit: &'static str,
    pub(crate) invalidate: &'static str,
    pub(crate) set_cooldown: &'static str,
    pub(crate) clear_expired: &'static str,
}

/// [`Templates`] rendered for one table: the statements a store sends, built once.
#[derive(Debug)]
pub(crate) struct Statements {
    pub(crate) load: Arc<str>,
    pub(crate) claim: Arc<str>,
    pub(crate) lease_remaining: Arc<str>,
    pub(crate) release: Arc<str>,
    pub(crate) commit: Arc<str>,
    pub(crate) invalidate: Arc<str>,
    pub(crate) set_cooldown: Arc<str>,
    pub(crate) clear_expired: Arc<str>,
}

impl Statements {
    /// `templates` for `table` (quoted for `kind`), with `{now}` and each placeholder of
    /// `extra` replaced. The values are checked, quoted identifiers ([`TableRef`]) and constant
    /// expressions, so the result is safe SQL.
    pub(crate) fn render(
        templates: &Templates,
        table: &TableRef,
        kind: BackendKind,
        extra: &[(&str, &str)],
    ) -> Self {
        let quoted = table.quoted(kind);
        let fill = [
            &[("{table}", quoted.as_str()), ("{now}", templates.now)],
            extra,
        ]
        .concat();
        let render = |template| render(template, &fill);
        Self {
            load: render(templates.load),
            claim: render(templates.claim),
            lease_remaining: render(templates.lease_remaining),
            release: render(templates.release),
            commit: render(templates.commit),
            invalidate: render(templates.invalidate),
            set_cooldown: render(templates.set_cooldown),
            clear_expired: render(templates.clear_expired),
        }
    }
}

/// One template with each placeholder of `fill` replaced (see [`Statements::render`]).
fn render(template: &str, fill: &[(&str, &str)]) -> Arc<str> {
    fill.iter()
        .fold(template.to_owned(), |sql, (placeholder, value)| {
            sql.replace(placeholder, value)
        })
        .into()
}

/// A rendered statement, as sqlx takes it.
pub(crate) fn sql(statement: &Arc<str>) -> AssertSqlSafe<Arc<str>> {
    AssertSqlSafe(Arc::clone(statement))
}
