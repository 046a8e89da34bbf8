//! How a store is built: from a URL or an existing pool, for which table, sealing its entries
//! under which keyring, and whether it applies its migrations at once.

use std::fmt;
use std::time::Duration;

use kigo_core::StoreError;
use kigo_core::codec::{EntryCodec, KEYRING_HINT, Keyring, Sealing};

use crate::backend::Backend;
use crate::error::{CONFIG_HINT, Class, SqlError};
use crate::names::{DEFAULT_TABLE, TableRef};
use crate::{BackendKind, SqlStore};

/// A connection pool of one of the supported databases, as [`SqlStoreOptions::with_pool`]
/// takes it (`From` each sqlx pool type).
#[derive(Clone)]
#[non_exhaustive]
pub enum SqlPool {
    /// A PostgreSQL pool.
    #[cfg(feature = "postgres")]
    Postgres(sqlx::PgPool),
    /// A MySQL or MariaDB pool.
    #[cfg(feature = "mysql")]
    MySql(sqlx::MySqlPool),
    /// An SQLite pool.
    #[cfg(feature = "sqlite")]
    Sqlite(sqlx::SqlitePool),
}

impl SqlPool {
    /// Which database the pool connects to.
    pub fn kind(&self) -> BackendKind {
        match self {
            #[cfg(feature = "postgres")]
            Self::Postgres(_) => BackendKind::Postgres,
            #[cfg(feature = "mysql")]
            Self::MySql(_) => BackendKind::MySql,
            #[cfg(feature = "sqlite")]
            Self::Sqlite(_) => BackendKind::Sqlite,
        }
    }
}

impl fmt::Debug for SqlPool {
    /// Only the kind: a pool's options hold the database password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SqlPool").field(&self.kind()).finish()
    }
}

#[cfg(feature = "postgres")]
impl From<sqlx::PgPool> for SqlPool {
    fn from(pool: sqlx::PgPool) -> Self {
        Self::Postgres(pool)
    }
}

#[cfg(feature = "mysql")]
impl From<sqlx::MySqlPool> for SqlPool {
    fn from(pool: sqlx::MySqlPool) -> Self {
        Self::MySql(pool)
    }
}

#[cfg(feature = "sqlite")]
impl From<sqlx::SqlitePool> for SqlPool {
    fn from(pool: sqlx::SqlitePool) -> Self {
        Self::Sqlite(pool)
    }
}

/// Settings of a [`SqlStore`].
///
/// ```no_run
/// # async fn demo() -> Result<(), kigo_core::StoreError> {
/// use kigo_store_sql::SqlStoreOptions;
///
/// // Entries sealed under the keyring in KIGO_SEALING_KEYS (the default).
/// let store = SqlStoreOptions::new()
///     .schema("auth")
///     .table("kigo_tokens")
///     .migrate_on_connect(true)
///     .connect("postgres://kigo@db.internal/app?sslmode=verify-full")
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SqlStoreOptions {
    table: String,
    schema: Option<String>,
    sealing: Sealing,
    migrate: bool,
    max_connections: u32,
    acquire_timeout: Duration,
    busy_timeout: Duration,
    statement_timeout: Duration,
    listen_url: Option<String>,
    allow_insecure_transport: bool,
}

impl fmt::Debug for SqlStoreOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlStoreOptions")
            .field("table", &self.table)
            .field("schema", &self.schema)
            .field("sealing", &self.sealing)
            .field("migrate", &self.migrate)
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("busy_timeout", &self.busy_timeout)
            .field("statement_timeout", &self.statement_timeout)
            .field(
                "listen_url",
                &self.listen_url.as_ref().map(|_| "[redacted]"),
            )
            .field("allow_insecure_transport", &self.allow_insecure_transport)
            .finish()
    }
}

impl Default for SqlStoreOptions {
    fn default() -> Self {
        Self {
            table: DEFAULT_TABLE.to_owned(),
            schema: None,
            sealing: Sealing::default(),
            migrate: false,
            max_connections: 10,
            acquire_timeout: Duration::from_secs(5),
            busy_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(5),
            listen_url: None,
            allow_insecure_transport: false,
        }
    }
}

impl SqlStoreOptions {
    /// The defaults: table `kigo_tokens` in the connection's default schema, entries sealed under
    /// the keyring in `KIGO_SEALING_KEYS` (see [`Keyring::from_env`]), no migrations at
    /// construction, up to 10 connections.
    pub fn new() -> Self {
        Self::default()
    }

    /// The token table (default `kigo_tokens`): ASCII letters, digits and underscores, at most
    /// 52 bytes. Its migrations are tracked in `<table>_migrations`.
    #[must_use]
    pub fn table(mut self, table: impl Into<String>) -> Self {
        self.table = table.into();
        self
    }

    /// The schema of the token table: a PostgreSQL schema (created by the migrations if
    /// missing) or a MySQL database. Not available on SQLite.
    #[must_use]
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = Some(schema.into());
        self
    }

    /// Seals entries under `keyring` instead of the one in `KIGO_SEALING_KEYS`: its current key
    /// seals, all of its keys open. Every replica sharing the table needs the keys that sealed
    /// its entries (see [`Keyring`] for rotating them).
    #[must_use]
    pub fn keyring(mut self, keyring: Keyring) -> Self {
        self.sealing = Sealing::Keyring(keyring);
        self
    }

    /// Writes entries as plaintext JSON instead of sealing them: anyone who can read the table,
    /// its backups or the database's statement log can read the tokens (the partner-level token
    /// and users' refresh tokens) and plant tokens the fleet adopts. Logged at warn when the
    /// store is built. Every replica sharing the table must choose so too: a sealing replica
    /// takes plaintext entries for planted ones and replaces them, and a plaintext replica
    /// cannot open sealed entries and hands out no token.
    #[must_use]
    pub fn plaintext(mut self) -> Self {
        self.sealing = Sealing::Plaintext;
        self
    }

    /// Applies the migrations while building the store (default: no; call
    /// [`SqlStore::migrate`] from a deploy step instead if the application's database user may
    /// not change the schema).
    #[must_use]
    pub fn migrate_on_connect(mut self, migrate: bool) -> Self {
        self.migrate = migrate;
        self
    }

    /// The most connections a pool built from a URL opens (default 10). Each store operation
    /// holds one connection for one statement.
    #[must_use]
    pub fn max_connections(mut self, max: u32) -> Self {
        self.max_connections = max.max(1);
        self
    }

    /// How long an operation of a pool built from a URL waits for a connection (default 5 s):
    /// how soon a store that is down reports it.
    #[must_use]
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// How long an SQLite statement waits for another process's write lock (default 5 s; the
    /// statement timeout bounds it too).
    #[must_use]
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// How long one store operation may take (default 5 s), the wait for a pooled connection
    /// included: then it reports [`StoreError::Unavailable`], so that a statement stuck behind a
    /// lock or on a connection that no longer answers cannot hold up the manager, whose
    /// store-failure policy then applies. Pools built from a URL also have the server give up:
    /// PostgreSQL's `statement_timeout` and `lock_timeout`, MySQL's `lock_wait_timeout` and
    /// `innodb_lock_wait_timeout` (whole seconds, rounded up) are set for their sessions. A pool
    /// passed to [`SqlStoreOptions::with_pool`] keeps its own server settings: a statement the
    /// store gave up on may then hold its connection until the server ends it.
    #[must_use]
    pub fn statement_timeout(mut self, timeout: Duration) -> Self {
        self.statement_timeout = timeout;
        self
    }

    /// PostgreSQL only: the server the connection that listens for change notices goes to
    /// (default: the pool's). `LISTEN` needs a session of its own on the server, which a pooler
    /// in transaction mode (PgBouncer) does not give: with the store's pool behind one, give the
    /// server's direct URL here. Like the store's URL, it never appears in errors or logs.
    #[must_use]
    pub fn listen_url(mut self, url: impl Into<String>) -> Self {
        self.listen_url = Some(url.into());
        self
    }

    /// Allows connections to a database on another host that are not encrypted (default: no).
    ///
    /// By default a store refuses ([`StoreError::Misconfigured`]) connect options that reach
    /// another host without requiring TLS: PostgreSQL needs `sslmode` `require`, `verify-ca` or
    /// `verify-full`, MySQL/MariaDB `ssl-mode` `REQUIRED`, `VERIFY_CA` or `VERIFY_IDENTITY`.
    /// Unix sockets, loopback addresses and `localhost` count as this machine and need no TLS.
    /// This applies to pools built from a URL, to pools passed to
    /// [`SqlStoreOptions::with_pool`] (through their connect options) and to the
    /// [`listen_url`](SqlStoreOptions::listen_url). With `true`, a store built against a
    /// remote host without TLS logs a warning instead: only for a network you trust.
    #[must_use]
    pub fn allow_insecure_transport(mut self, allow: bool) -> Self {
        self.allow_insecure_transport = allow;
        self
    }

    /// Builds a store on a new pool for `url`: `postgres://` (or `postgresql://`), `mysql://`
    /// (or `mariadb://`), or `sqlite:` (the file is created if missing, in WAL mode).
    ///
    /// Connections are opened on first use, so a database that is down at start-up shows as
    /// [`StoreError::Unavailable`] on the operations, not here (unless migrations run here).
    /// The URL never appears in errors: it may hold a password. Settings that cannot work (a
    /// missing or invalid keyring among them) are refused before anything is opened.
    pub async fn connect(self, url: &str) -> Result<SqlStore, StoreError> {
        let kind = kind_of(url)?;
        let settings = self.settings(kind)?;
        let pool = self.pool_for(url, kind).await?;
        self.build(pool, settings).await
    }

    /// Builds a store on an existing pool (its settings are left as they are). Its connect
    /// options must require TLS to a database on another host (see
    /// [`SqlStoreOptions::allow_insecure_transport`]).
    pub async fn with_pool(self, pool: impl Into<SqlPool>) -> Result<SqlStore, StoreError> {
        let pool = pool.into();
        let settings = self.settings(pool.kind())?;
        self.build(pool, settings).await
    }

    /// A store on the SQLite file at `path` (see [`SqlStore::sqlite`]).
    #[cfg(feature = "sqlite")]
    pub async fn sqlite(self, path: impl AsRef<std::path::Path>) -> Result<SqlStore, StoreError> {
        let settings = self.settings(BackendKind::Sqlite)?;
        let options = sqlx::sqlite::SqliteConnectOptions::new().filename(path);
        let pool = self.sqlite_pool(options, false).await?;
        self.build(pool, settings).await
    }

    /// Checks the settings that do not depend on the pool, for a store on `kind`, and makes the
    /// codec: entries are bound to the database kind and the table, as named in the settings.
    fn settings(&self, kind: BackendKind) -> Result<Settings, StoreError> {
        if self.statement_timeout.is_zero() {
            return Err(StoreError::misconfigured(
                CONFIG_HINT,
                SqlError::ZeroTimeout,
            ));
        }
        let table = TableRef::new(self.schema.as_deref(), &self.table)
            .map_err(|error| StoreError::misconfigured(CONFIG_HINT, SqlError::from(error)))?;
        let codec = self
            .sealing
            .clone()
            .codec("kigo-store-sql", &table.namespace(kind))
            .map_err(|error| StoreError::misconfigured(KEYRING_HINT, SqlError::Keyring(error)))?;
        Ok(Settings { table, codec })
    }

    /// The store on `pool`, migrated if asked.
    async fn build(self, pool: SqlPool, settings: Settings) -> Result<SqlStore, StoreError> {
        let Settings { table, codec } = settings;
        let backend = self.backend(pool, table)?;
        let store = SqlStore::new(backend, codec, self.statement_timeout);
        if self.migrate {
            store.migrate().await?;
        }
        Ok(store)
    }

    /// A pool for `url`, a URL of `kind` (see [`kind_of`]).
    async fn pool_for(&self, url: &str, kind: BackendKind) -> Result<SqlPool, StoreError> {
        let invalid = |error: sqlx::Error| Class::Config.into_store_error(error);
        match kind {
            #[cfg(feature = "postgres")]
            BackendKind::Postgres => {
                let timeout = self.statement_timeout.as_millis().max(1).to_string();
                let options = url
                    .parse::<sqlx::postgres::PgConnectOptions>()
                    .map_err(invalid)?
                    .options([("statement_timeout", &timeout), ("lock_timeout", &timeout)]);
                Ok(SqlPool::Postgres(
                    sqlx::postgres::PgPoolOptions::new()
                        .max_connections(self.max_connections)
                        .acquire_timeout(self.acquire_timeout)
                        .connect_lazy_with(options),
                ))
            }
            #[cfg(feature = "mysql")]
            BackendKind::MySql => {
                let options = url
                    .parse::<sqlx::mysql::MySqlConnectOptions>()
                    .map_err(invalid)?;
                let seconds = self.statement_timeout.as_secs_f64().ceil().max(1.0);
                let timeouts: std::sync::Arc<str> = format!(
                    "SET SESSION lock_wait_timeout = {seconds}, \
                     innodb_lock_wait_timeout = {seconds}"
                )
                .into();
                Ok(SqlPool::MySql(
                    sqlx::mysql::MySqlPoolOptions::new()
                        .max_connections(self.max_connections)
                        .acquire_timeout(self.acquire_timeout)
                        .after_connect(move |connection, _| {
                            let timeouts = sqlx::AssertSqlSafe(std::sync::Arc::clone(&timeouts));
                            Box::pin(async move {
                                sqlx::raw_sql(timeouts).execute(connection).await?;
                                Ok(())
                            })
                        })
                        .connect_lazy_with(options),
                ))
            }
            #[cfg(feature = "sqlite")]
            BackendKind::Sqlite => {
                let options = url
                    .parse::<sqlx::sqlite::SqliteConnectOptions>()
                    .map_err(invalid)?;
                let in_memory = crate::owner_only::asks_for_memory(url);
                self.sqlite_pool(options, in_memory).await
            }
            // Only with some database features off: `kind_of` returns enabled kinds only.
            #[allow(unreachable_patterns)]
            _ => Err(unsupported_scheme(kind.name())),
        }
    }

    /// The backend of `pool`'s database for `table`.
    fn backend(&self, pool: SqlPool, table: TableRef) -> Result<Backend, StoreError> {
        #[cfg(any(feature = "mysql", feature = "sqlite"))]
        if self.listen_url.is_some() && pool.kind() != BackendKind::Postgres {
            return Err(unsupported(
                "only PostgreSQL sends change notices: leave `listen_url` unset",
            ));
        }
        match pool {
            #[cfg(feature = "postgres")]
            SqlPool::Postgres(pool) => {
                let options = self
                    .listen_url
                    .as_deref()
                    .map(str::parse::<sqlx::postgres::PgConnectOptions>)
                    .transpose()
                    .map_err(|error| Class::Config.into_store_error(error))?;
                let rule = self.transport_rule();
                rule.check_postgres(&pool.connect_options(), STORE_CONNECTIONS)?;
                if let Some(options) = &options {
                    rule.check_postgres(options, "the connection listening for notices")?;
                }
                let listen = crate::backend::postgres::Listen {
                    options,
                    acquire_timeout: self.acquire_timeout,
                };
                Ok(crate::backend::postgres::backend(pool, table, listen))
            }
            #[cfg(feature = "mysql")]
            SqlPool::MySql(pool) => {
                let rule = self.transport_rule();
                rule.check_mysql(&pool.connect_options(), STORE_CONNECTIONS)?;
                Ok(crate::backend::mysql::backend(pool, table))
            }
            #[cfg(feature = "sqlite")]
            SqlPool::Sqlite(pool) => {
                if table.schema().is_some() {
                    return Err(unsupported("SQLite has no schemas: leave `schema` unset"));
                }
                Ok(crate::backend::sqlite::backend(pool, table))
            }
        }
    }

    /// Whether connections to another host may go unencrypted.
    #[cfg(any(feature = "postgres", feature = "mysql"))]
    fn transport_rule(&self) -> crate::transport::TransportRule {
        crate::transport::TransportRule {
            allow_insecure: self.allow_insecure_transport,
        }
    }

    /// A pool on an SQLite file shared by processes: created if missing (readable and writable
    /// by its owner only), in write-ahead-log mode (readers never wait for the writer), with a
    /// busy timeout for the write lock. `in_memory`: no file at all.
    #[cfg(feature = "sqlite")]
    async fn sqlite_pool(
        &self,
        options: sqlx::sqlite::SqliteConnectOptions,
        in_memory: bool,
    ) -> Result<SqlPool, StoreError> {
        use sqlx::sqlite::{SqlitePoolOptions, SqliteSynchronous};
        if !in_memory {
            crate::owner_only::prepare(options.get_filename())?;
        }
        let options = options
            .create_if_missing(true)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(self.busy_timeout);
        crate::backend::sqlite::use_wal(&options, self.busy_timeout).await?;
        Ok(SqlPool::Sqlite(
            SqlitePoolOptions::new()
                .max_connections(self.max_connections)
                .acquire_timeout(self.acquire_timeout.max(self.busy_timeout))
                .connect_lazy_with(options),
        ))
    }
}

/// How errors and logs name the store's own connections (as opposed to the listening one).
#[cfg(any(feature = "postgres", feature = "mysql"))]
const STORE_CONNECTIONS: &str = "the store's connections";

/// What a store checked and made before it has a pool.
struct Settings {
    table: TableRef,
    codec: EntryCodec,
}

/// The database a URL names by its scheme, if its feature is enabled.
fn kind_of(url: &str) -> Result<BackendKind, StoreError> {
    let Some(scheme) = scheme(url) else {
        return Err(StoreError::misconfigured(CONFIG_HINT, SqlError::NotAUrl));
    };
    match scheme.as_str() {
        #[cfg(feature = "postgres")]
        "postgres" | "postgresql" => Ok(BackendKind::Postgres),
        #[cfg(feature = "mysql")]
        "mysql" | "mariadb" => Ok(BackendKind::MySql),
        #[cfg(feature = "sqlite")]
        "sqlite" => Ok(BackendKind::Sqlite),
        _ => Err(unsupported_scheme(&scheme)),
    }
}

fn unsupported_scheme(scheme: &str) -> StoreError {
    StoreError::misconfigured(
        CONFIG_HINT,
        SqlError::UnsupportedScheme {
            scheme: scheme.to_owned(),
        },
    )
}

/// The scheme of `url`, lower-cased, if it has one (RFC 3986: a letter, then letters, digits,
/// `+`, `-` or `.`, before the first `:`). Anything else is not shown: a connection string
/// such as `password=... host=...` would put a secret where the scheme should be.
fn scheme(url: &str) -> Option<String> {
    let (scheme, _) = url.split_once(':')?;
    let mut chars = scheme.chars();
    let valid = chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then(|| scheme.to_ascii_lowercase())
}

/// An option that the database of the pool does not support.
#[cfg(any(feature = "mysql", feature = "sqlite"))]
fn unsupported(what: &'static str) -> StoreError {
    StoreError::misconfigured(CONFIG_HINT, SqlError::Unsupported(what))
}

#[cfg(test)]
mod tests {
    use kigo_core::codec::{Keyring, SealingKey};

    use super::SqlStoreOptions;

    #[test]
    fn debug_names_the_sealing_key_and_shows_no_secret() {
        let key = SealingKey::from_bytes([0x5a; 32]);
        let id = key.id().to_string();
        let options = SqlStoreOptions::new()
            .keyring(Keyring::new(key))
            .listen_url("postgres://kigo:pa55-secret@db.internal/app");
        let shown = format!("{options:?}");
        assert!(shown.contains(&id), "{shown}");
        // The key as bytes (0x5a is 90) or as base64, and the password.
        for secret in ["90, 90", "WlpaWlpa", "pa55-secret"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        let plaintext = format!("{:?}", SqlStoreOptions::new().plaintext());
        assert!(plaintext.contains("Plaintext"), "{plaintext}");
    }
}
