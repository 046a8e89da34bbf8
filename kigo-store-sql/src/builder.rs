//! How a [`SqlStore`] is configured: which database (a URL, a pool, an SQLite file), the table,
//! how entries are sealed, timeouts; and the shortcuts that take every default
//! ([`SqlStore::connect`], [`SqlStore::sqlite`], [`SqlStore::from_env`]).

use std::fmt;
use std::time::Duration;

use kigo_core::StoreError;
use kigo_core::codec::{EntryCodec, KEYRING_HINT, Keyring, Sealing};

use crate::backend::Backend;
use crate::error::{CONFIG_HINT, Class, SqlError};
use crate::names::{DEFAULT_TABLE, TableRef};
use crate::{BackendKind, SqlPool, SqlStore};

pub use kigo_core::store::STORE_URL_VAR;

/// What an operator is told when [`SqlStore::from_env`] finds no URL.
const STORE_URL_HINT: &str = "set KIGO_STORE_URL to the database URL (postgres://..., \
    mysql://... or sqlite://<file>), or configure the store in code with SqlStore::builder()";

/// The pool size of a store built from a URL or file, unless the builder sets one
/// ([`SqlStoreBuilder::max_connections`]); read by [`SqlStoreBuilder::build`], so it applies to
/// [`SqlStore::connect`], [`SqlStore::from_env`] and `kigo_stores` alike.
///
/// Each replica opens up to this many connections, plus one listening for change notices on
/// PostgreSQL: a fleet's replicas together must stay under the server's limit (PostgreSQL's
/// `max_connections` is 100 by default; MySQL's `max_connections` 151). Sixteen replicas at the
/// default 10 need 176, and a refused connection is a store outage for the replica that asked.
pub const MAX_CONNECTIONS_VAR: &str = "KIGO_STORE_MAX_CONNECTIONS";

/// The pool size when neither the builder nor [`MAX_CONNECTIONS_VAR`] sets one.
const DEFAULT_MAX_CONNECTIONS: u32 = 10;

/// What an operator is told when [`MAX_CONNECTIONS_VAR`] holds no pool size.
const MAX_CONNECTIONS_HINT: &str = "set KIGO_STORE_MAX_CONNECTIONS to the most connections one \
    replica may open (a whole number from 1 up), or unset it for the default of 10";

/// What an operator is told when a builder was given no database.
const TARGET_HINT: &str = "give the store a database: SqlStore::builder().url(...) \
    (postgres://, mysql:// or sqlite:), .pool(...) for a pool you built, or .sqlite_file(...)";

/// Configures a [`SqlStore`]; made by [`SqlStore::builder`]. Give it a database with one of
/// [`Self::url`], [`Self::pool`] or `sqlite_file` (feature `sqlite`); each replaces the one
/// given before. Setters never fail: [`Self::build`] checks everything, the URL included.
/// Entries are sealed with the keys in `KIGO_SEALING_KEYS` unless [`Self::keyring`] or
/// [`Self::plaintext`] says otherwise.
///
/// ```no_run
/// # #[cfg(feature = "postgres")]
/// # async fn demo() -> Result<(), kigo_core::StoreError> {
/// use kigo_store_sql::SqlStore;
///
/// // Entries sealed under the keyring in KIGO_SEALING_KEYS (the default).
/// let store = SqlStore::builder()
///     .url("postgres://kigo@db.internal/app?sslmode=verify-full")
///     .schema("auth")
///     .table("kigo_tokens")
///     .migrate_on_connect(true)
///     .build()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SqlStoreBuilder {
    target: Target,
    table: String,
    schema: Option<String>,
    sealing: Sealing,
    migrate: bool,
    /// Set by [`Self::max_connections`]; else [`MAX_CONNECTIONS_VAR`] or the default, in `build`.
    max_connections: Option<u32>,
    acquire_timeout: Duration,
    busy_timeout: Duration,
    operation_timeout: Duration,
    listen_url: Option<String>,
    allow_insecure_transport: bool,
}

/// The database a builder was given, as given: a URL is parsed by [`SqlStoreBuilder::build`].
#[derive(Clone)]
enum Target {
    Missing,
    /// A database URL; it may hold a password.
    Url(String),
    Pool(SqlPool),
    #[cfg(feature = "sqlite")]
    SqliteFile(std::path::PathBuf),
}

impl Target {
    /// What the builder's `Debug` output shows of it: never a URL.
    fn kind(&self) -> &'static str {
        match self {
            Self::Missing => "none",
            Self::Url(_) => "url",
            Self::Pool(_) => "pool",
            #[cfg(feature = "sqlite")]
            Self::SqliteFile(_) => "sqlite file",
        }
    }
}

impl fmt::Debug for SqlStoreBuilder {
    // Hand-written: URLs may hold a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlStoreBuilder")
            .field("target", &self.target.kind())
            .field("table", &self.table)
            .field("schema", &self.schema)
            .field("sealing", &self.sealing)
            .field("migrate", &self.migrate)
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("busy_timeout", &self.busy_timeout)
            .field("operation_timeout", &self.operation_timeout)
            .field(
                "listen_url",
                &self.listen_url.as_ref().map(|_| "[redacted]"),
            )
            .field("allow_insecure_transport", &self.allow_insecure_transport)
            .finish()
    }
}

impl SqlStore {
    /// A builder with no database yet and every default: table `kigo_tokens` in the connection's
    /// default schema, entries sealed under the keyring in `KIGO_SEALING_KEYS` (see
    /// [`Keyring::from_env`]), no migrations at construction, up to 10 connections; see
    /// [`SqlStoreBuilder`].
    pub fn builder() -> SqlStoreBuilder {
        SqlStoreBuilder {
            target: Target::Missing,
            table: DEFAULT_TABLE.to_owned(),
            schema: None,
            sealing: Sealing::default(),
            migrate: false,
            max_connections: None,
            acquire_timeout: Duration::from_secs(5),
            busy_timeout: Duration::from_secs(5),
            operation_timeout: Duration::from_secs(5),
            listen_url: None,
            allow_insecure_transport: false,
        }
    }

    /// A store on a new pool for `url`, with the default settings: entries sealed under the
    /// keyring in `KIGO_SEALING_KEYS`, no migrations at construction (call
    /// [`SqlStore::migrate`]). The same as `SqlStore::builder().url(url).build()`.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::builder().url(url).build().await
    }

    /// [`Self::connect`] on the URL in [`STORE_URL_VAR`] (`KIGO_STORE_URL`). A missing or empty
    /// variable is [`StoreError::Misconfigured`], with a hint that names it.
    pub async fn from_env() -> Result<Self, StoreError> {
        let url = std::env::var(STORE_URL_VAR)
            .ok()
            .filter(|url| !url.trim().is_empty())
            .ok_or_else(|| StoreError::misconfigured(STORE_URL_HINT, SqlError::NoUrlInEnv))?;
        Self::connect(url.trim()).await
    }

    /// The embedded default in one line: the SQLite file at `path`, created if missing, in WAL
    /// mode with a busy timeout, with the migrations applied, its entries sealed under the
    /// keyring in `KIGO_SEALING_KEYS` (without one it is refused with
    /// [`StoreError::Misconfigured`] before the file is touched). Every process on this machine
    /// that opens the same file with the same keys shares one token. The same as
    /// `SqlStore::builder().sqlite_file(path).migrate_on_connect(true).build()`.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), kigo_core::StoreError> {
    /// let store = kigo_store_sql::SqlStore::sqlite("kigo-tokens.db").await?;
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "sqlite")]
    pub async fn sqlite(path: impl AsRef<std::path::Path>) -> Result<Self, StoreError> {
        Self::builder()
            .sqlite_file(path)
            .migrate_on_connect(true)
            .build()
            .await
    }
}

impl SqlStoreBuilder {
    /// The database at `url`: `postgres://` (or `postgresql://`), `mysql://` (or `mariadb://`),
    /// or `sqlite:` (the file is created if missing, in WAL mode). The store opens a pool of
    /// its own for it; connections are opened on first use. The URL never appears in errors or
    /// `Debug` output: it may hold a password.
    #[must_use]
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.target = Target::Url(url.into());
        self
    }

    /// The database of a pool you built, its settings left as they are (the pool settings of
    /// this builder do not apply). Its connect options must require TLS to a database on
    /// another host (see [`Self::allow_insecure_transport`]).
    #[must_use]
    pub fn pool(mut self, pool: impl Into<SqlPool>) -> Self {
        self.target = Target::Pool(pool.into());
        self
    }

    /// The SQLite file at `path`: created if missing (readable and writable by its owner only),
    /// in write-ahead-log mode, with the busy timeout (see [`SqlStore::sqlite`], which also
    /// migrates).
    #[cfg(feature = "sqlite")]
    #[must_use]
    pub fn sqlite_file(mut self, path: impl AsRef<std::path::Path>) -> Self {
        self.target = Target::SqliteFile(path.as_ref().to_owned());
        self
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

    /// Writes entries in the clear instead of sealing them: anyone who can read the table,
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

    /// The most connections a pool built from a URL or file opens (default:
    /// [`MAX_CONNECTIONS_VAR`] if set, else 10). Each store operation holds one connection for
    /// one statement.
    #[must_use]
    pub fn max_connections(mut self, max: u32) -> Self {
        self.max_connections = Some(max.max(1));
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
    /// operation timeout bounds it too).
    #[must_use]
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// How long one store operation may take, whole (default 5 s): the wait for a pooled
    /// connection, every attempt at its statement (one the database rolled back to break a
    /// deadlock is sent again) and the pauses between them. Then it reports
    /// [`StoreError::Unavailable`], so that a statement stuck behind a lock or on a connection
    /// that no longer answers cannot hold up the manager, whose store-failure policy then
    /// applies. Pools built from a URL also have the server give up: PostgreSQL's
    /// `statement_timeout` and `lock_timeout`, MySQL's `lock_wait_timeout` and
    /// `innodb_lock_wait_timeout` (whole seconds, rounded up) are set to it for their sessions.
    /// A pool given with [`Self::pool`] keeps its own server settings: a statement the store
    /// gave up on may then hold its connection until the server ends it.
    #[must_use]
    pub fn operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = timeout;
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

    /// Accepts connections to a database on another host that are not encrypted: its password
    /// and every token then cross the network readable and changeable.
    ///
    /// Without this, [`Self::build`] refuses ([`StoreError::Misconfigured`]) connect options that
    /// reach another host without requiring TLS: PostgreSQL needs `sslmode` `require`,
    /// `verify-ca` or `verify-full`, MySQL/MariaDB `ssl-mode` `REQUIRED`, `VERIFY_CA` or
    /// `VERIFY_IDENTITY`. Unix sockets, loopback addresses and `localhost` count as this machine
    /// and need no TLS. This applies to pools built from a URL, to pools given with
    /// [`Self::pool`] (through their connect options) and to the
    /// [`listen_url`](Self::listen_url). With it, a store built against a remote host without
    /// TLS logs a warning instead: only for a network you trust.
    #[must_use]
    pub fn allow_insecure_transport(mut self) -> Self {
        self.allow_insecure_transport = true;
        self
    }

    /// Checks every setting, the URL included, and builds the store, applying the migrations if
    /// [`Self::migrate_on_connect`] says so: what cannot work (no database given, an invalid URL,
    /// a remote database without TLS, no sealing keys, ...) is [`StoreError::Misconfigured`],
    /// refused before any connection or file is opened. Connections are opened on first use,
    /// so a database that is down at start-up shows as [`StoreError::Unavailable`] on the
    /// operations, not here (unless migrations run here).
    pub async fn build(mut self) -> Result<SqlStore, StoreError> {
        let (pool, settings) = match std::mem::replace(&mut self.target, Target::Missing) {
            Target::Missing => {
                return Err(StoreError::misconfigured(TARGET_HINT, SqlError::NoTarget));
            }
            Target::Url(url) => {
                let kind = kind_of(&url)?;
                let settings = self.settings(kind)?;
                (self.pool_for(&url, kind).await?, settings)
            }
            Target::Pool(pool) => {
                let settings = self.settings(pool.kind())?;
                (pool, settings)
            }
            #[cfg(feature = "sqlite")]
            Target::SqliteFile(path) => {
                let settings = self.settings(BackendKind::Sqlite)?;
                let options = sqlx::sqlite::SqliteConnectOptions::new().filename(path);
                (self.sqlite_pool(options, false).await?, settings)
            }
        };
        self.finish(pool, settings).await
    }

    /// Checks the settings that do not depend on the pool, for a store on `kind`, and makes the
    /// codec: entries are bound to the database kind and the table, as named in the settings.
    fn settings(&self, kind: BackendKind) -> Result<Settings, StoreError> {
        if self.operation_timeout.is_zero() {
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
    async fn finish(self, pool: SqlPool, settings: Settings) -> Result<SqlStore, StoreError> {
        let Settings { table, codec } = settings;
        let backend = self.backend(pool, table)?;
        let store = SqlStore::new(backend, codec, self.operation_timeout);
        if self.migrate {
            store.migrate().await?;
        }
        Ok(store)
    }

    /// The pool size: the builder's, else [`MAX_CONNECTIONS_VAR`]'s, else the default.
    fn pool_size(&self) -> Result<u32, StoreError> {
        if let Some(max) = self.max_connections {
            return Ok(max);
        }
        let value = std::env::var(MAX_CONNECTIONS_VAR).unwrap_or_default();
        if value.trim().is_empty() {
            return Ok(DEFAULT_MAX_CONNECTIONS);
        }
        match value.trim().parse::<u32>() {
            Ok(max) if max >= 1 => Ok(max),
            _ => Err(StoreError::misconfigured(
                MAX_CONNECTIONS_HINT,
                SqlError::InvalidMaxConnections { value },
            )),
        }
    }

    /// A pool for `url`, a URL of `kind` (see [`kind_of`]).
    async fn pool_for(&self, url: &str, kind: BackendKind) -> Result<SqlPool, StoreError> {
        let invalid = |error: sqlx::Error| Class::Config.into_store_error(error);
        match kind {
            #[cfg(feature = "postgres")]
            BackendKind::Postgres => {
                let timeout = self.operation_timeout.as_millis().max(1).to_string();
                let options = url
                    .parse::<sqlx::postgres::PgConnectOptions>()
                    .map_err(invalid)?
                    .options([("statement_timeout", &timeout), ("lock_timeout", &timeout)]);
                Ok(SqlPool::Postgres(
                    sqlx::postgres::PgPoolOptions::new()
                        .max_connections(self.pool_size()?)
                        .acquire_timeout(self.acquire_timeout)
                        .connect_lazy_with(options),
                ))
            }
            #[cfg(feature = "mysql")]
            BackendKind::MySql => {
                let options = url
                    .parse::<sqlx::mysql::MySqlConnectOptions>()
                    .map_err(invalid)?;
                let seconds = self.operation_timeout.as_secs_f64().ceil().max(1.0);
                let timeouts: std::sync::Arc<str> = format!(
                    "SET SESSION lock_wait_timeout = {seconds}, \
                     innodb_lock_wait_timeout = {seconds}"
                )
                .into();
                Ok(SqlPool::MySql(
                    sqlx::mysql::MySqlPoolOptions::new()
                        .max_connections(self.pool_size()?)
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
                .max_connections(self.pool_size()?)
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
    use kigo_core::StoreError;
    use kigo_core::codec::{Keyring, SealingKey};
    use kigo_testkit::conformance::test_keyring;

    use crate::SqlStore;

    /// The hint of a refused build.
    fn refusal(built: Result<SqlStore, StoreError>) -> &'static str {
        match built {
            Err(StoreError::Misconfigured { hint, .. }) => hint,
            other => panic!("expected a misconfiguration, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_builder_given_no_database_is_refused_at_build_with_a_hint_naming_the_choices() {
        let builder = SqlStore::builder().keyring(test_keyring());
        assert!(format!("{builder:?}").contains(r#"target: "none""#));
        let hint = refusal(builder.build().await);
        for choice in [".url(", ".pool(", ".sqlite_file("] {
            assert!(hint.contains(choice), "{hint}");
        }
    }

    /// Setters never fail; what cannot work is refused by `build`, URLs included.
    #[tokio::test]
    async fn unusable_settings_are_refused_at_build() {
        let builder = || SqlStore::builder().keyring(test_keyring());
        for unusable in [
            builder().url("not a url"),
            builder().url("redis://127.0.0.1/0"),
            builder().url("postgres://127.0.0.1/app").table("bad name"),
            builder()
                .url("postgres://127.0.0.1/app")
                .operation_timeout(std::time::Duration::ZERO),
        ] {
            refusal(unusable.build().await);
        }
    }

    /// The last database given replaces the ones before: the first, remote and in plain text,
    /// would be refused.
    #[cfg(all(feature = "postgres", feature = "sqlite"))]
    #[tokio::test]
    async fn the_last_database_given_is_the_one_used() {
        use crate::BackendKind;

        let dir = tempfile::tempdir().unwrap();
        let store = SqlStore::builder()
            .url("postgres://kigo@db.internal/app")
            .sqlite_file(dir.path().join("tokens.db"))
            .url("postgres://kigo@127.0.0.1/app")
            .keyring(test_keyring())
            .build()
            .await
            .unwrap();
        assert_eq!(store.kind(), BackendKind::Postgres);
        let store = SqlStore::builder()
            .url("postgres://kigo@db.internal/app")
            .sqlite_file(dir.path().join("tokens.db"))
            .keyring(test_keyring())
            .build()
            .await
            .unwrap();
        assert_eq!(store.kind(), BackendKind::Sqlite);
    }

    #[test]
    fn debug_names_the_sealing_key_and_shows_no_secret() {
        let key = SealingKey::from_bytes([0x5a; 32]);
        let id = key.id().to_string();
        let builder = SqlStore::builder()
            .url("postgres://kigo:pa55-secret@db.internal/app")
            .keyring(Keyring::new(key))
            .listen_url("postgres://kigo:pa55-secret@db.internal/app");
        let shown = format!("{builder:?}");
        assert!(shown.contains(&id), "{shown}");
        assert!(shown.contains(r#"target: "url""#), "{shown}");
        // The key as bytes (0x5a is 90) or as base64, and the password.
        for secret in ["90, 90", "WlpaWlpa", "pa55-secret"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        let plaintext = format!("{:?}", SqlStore::builder().plaintext());
        assert!(plaintext.contains("Plaintext"), "{plaintext}");
    }
}
