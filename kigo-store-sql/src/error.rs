//! Mapping sqlx errors into [`StoreError`]: by error variant here, by each database's codes in its
//! backend module, never by message text.

use kigo_core::StoreError;

/// What to tell the operator when the token table is missing or outdated.
pub(crate) const MIGRATE_HINT: &str = "the token table is missing or outdated: run \
     `SqlStore::migrate()` or build the store with `SqlStoreBuilder::migrate_on_connect(true)`";

/// What to tell the operator when the applied migrations do not match the shipped ones.
pub(crate) const HISTORY_HINT: &str = "the token table's migration history does not match this \
     version of kigo-store-sql (a migration was changed, is missing, or failed half-way): see the \
     source error and the `<table>_migrations` table";

/// What to tell the operator when the database refuses the store.
pub(crate) const ACCESS_HINT: &str =
    "the database refused the store: check the URL, the user's privileges and file permissions";

/// What to tell the operator when the store's settings are wrong.
pub(crate) const CONFIG_HINT: &str = "invalid store configuration: check the database URL, the \
     table and schema names, and the enabled database features";

/// What to tell the operator when a database on another host would be reached without TLS.
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(crate) const TRANSPORT_HINT: &str = "the database is on another host and its connections \
     would not be encrypted: require TLS in the URL (PostgreSQL: sslmode=verify-full, verify-ca or \
     require; MySQL/MariaDB: ssl-mode=VERIFY_IDENTITY, VERIFY_CA or REQUIRED), or, on a network \
     you trust, opt out with SqlStoreBuilder::allow_insecure_transport()";

/// What to tell the operator when the connect options require TLS that this build lacks.
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(crate) const TLS_FEATURE_HINT: &str = "the database URL requires TLS, which this build of \
     kigo-store-sql lacks: enable its feature `tls-rustls` (on by default) or `tls-native-tls`";

/// How a failed statement is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// The database rolled the statement back to break a deadlock or a serialization conflict:
    /// running it again is safe.
    Retry,
    /// The database could not be reached or did not answer; it may work later.
    Transient,
    /// The token table (or a column of it) does not exist: migrations were not run.
    SchemaMissing,
    /// Credentials, privileges or file permissions.
    Denied,
    /// Settings the database cannot work with.
    Config,
    /// A database error code this store does not know: the caller probes the schema.
    Unknown,
}

/// The errors this crate reports as the source of a [`StoreError`].
#[derive(Debug, thiserror::Error)]
pub(crate) enum SqlError {
    /// A statement failed.
    #[error("{what} ({code})")]
    Statement {
        what: &'static str,
        /// SQLSTATE, error number or SQLite result code; "-" if the error had none.
        code: String,
        #[source]
        source: sqlx::Error,
    },
    /// An operation did not finish within the operation timeout.
    #[error("the database did not answer within the operation timeout ({after:?})")]
    TimedOut { after: std::time::Duration },
    /// The SQLite file could not be created.
    #[cfg(all(feature = "sqlite", unix))]
    #[error("cannot create the SQLite file")]
    CreateFile(#[source] std::io::Error),
    /// Connections to a database on another host that would not be encrypted.
    #[cfg(any(feature = "postgres", feature = "mysql"))]
    #[error("{what} would reach the database on {host:?} without requiring TLS")]
    InsecureTransport {
        /// Which connections: the store's, or the one listening for notices.
        what: &'static str,
        /// Only the host: the URL may hold a password.
        host: String,
    },
    /// Connect options that require TLS, in a build without it.
    #[cfg(any(feature = "postgres", feature = "mysql"))]
    #[error("{what} require TLS, and this build has none")]
    NoTls {
        /// Which connections: the store's, or the one listening for notices.
        what: &'static str,
    },
    /// No keyring to seal entries with (`KIGO_SEALING_KEYS` missing or invalid).
    #[error("the store has no usable keyring to seal its entries")]
    Keyring(#[source] kigo_core::codec::InvalidKeyring),
    /// An operation timeout of zero: every operation would time out at once.
    #[error("the operation timeout must be positive")]
    ZeroTimeout,
    /// The builder was given no database.
    #[error("no database was given")]
    NoTarget,
    /// The pool size in [`crate::MAX_CONNECTIONS_VAR`] is not a whole number from 1 up.
    #[error(
        "{} must be a whole number from 1 up, not {value:?}",
        crate::MAX_CONNECTIONS_VAR
    )]
    InvalidMaxConnections {
        /// What the variable holds (a count, never a secret).
        value: String,
    },
    /// [`crate::SqlStore::from_env`] found no URL in its variable.
    #[error("{} is not set", crate::STORE_URL_VAR)]
    NoUrlInEnv,
    /// Applying the migrations failed.
    #[error("applying the token table migrations failed")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    /// A table or schema name that cannot be used.
    #[error(transparent)]
    InvalidName(#[from] crate::names::InvalidName),
    /// A URL whose scheme names no enabled database.
    #[error(
        "unsupported database URL scheme {scheme:?}: use postgres://, mysql:// or sqlite: (each \
         behind the crate feature of that name)"
    )]
    UnsupportedScheme {
        /// Only the scheme: the URL may hold a password.
        scheme: String,
    },
    /// A database URL without a scheme; nothing of it is shown, since it may hold a password.
    #[error(
        "the database URL is not a URL: use postgres://, mysql:// or sqlite: (each behind the \
         crate feature of that name)"
    )]
    NotAUrl,
    /// An option that the chosen database does not support.
    #[cfg(any(feature = "mysql", feature = "sqlite"))]
    #[error("{0}")]
    Unsupported(&'static str),
}

impl Class {
    /// The variant-level class of errors that are not database error responses.
    pub(crate) fn of_driver(error: &sqlx::Error) -> Self {
        match error {
            sqlx::Error::Database(_) => Self::Unknown,
            sqlx::Error::Configuration(_) => Self::Config,
            sqlx::Error::ColumnNotFound(_)
            | sqlx::Error::ColumnIndexOutOfBounds { .. }
            | sqlx::Error::ColumnDecode { .. }
            | sqlx::Error::TypeNotFound { .. } => Self::SchemaMissing,
            _ => Self::Transient,
        }
    }

    /// The [`StoreError`] for `error` of this class.
    pub(crate) fn into_store_error(self, error: sqlx::Error) -> StoreError {
        let code = match &error {
            sqlx::Error::Database(db) => db.code().map_or_else(|| "-".to_owned(), Into::into),
            _ => "-".to_owned(),
        };
        let wrap = |what| SqlError::Statement {
            what,
            code: code.clone(),
            source: error,
        };
        match self {
            Self::Retry => {
                StoreError::unavailable(wrap("the database aborted a conflicting statement"))
            }
            Self::Transient => StoreError::unavailable(wrap("the database is unavailable")),
            Self::Unknown => StoreError::unavailable(wrap("the database failed a statement")),
            Self::SchemaMissing => StoreError::misconfigured(
                MIGRATE_HINT,
                wrap("the token table is missing or outdated"),
            ),
            Self::Denied => {
                StoreError::misconfigured(ACCESS_HINT, wrap("the database refused access"))
            }
            Self::Config => {
                StoreError::misconfigured(CONFIG_HINT, wrap("the database settings are invalid"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_variants() {
        assert_eq!(
            Class::of_driver(&sqlx::Error::PoolTimedOut),
            Class::Transient
        );
        assert_eq!(
            Class::of_driver(&sqlx::Error::Io(std::io::Error::other("reset"))),
            Class::Transient
        );
        assert_eq!(
            Class::of_driver(&sqlx::Error::ColumnNotFound("entry".into())),
            Class::SchemaMissing
        );
        let error = Class::SchemaMissing.into_store_error(sqlx::Error::RowNotFound);
        assert!(matches!(error, StoreError::Misconfigured { hint, .. } if hint == MIGRATE_HINT));
        let error = Class::Retry.into_store_error(sqlx::Error::PoolTimedOut);
        assert!(matches!(error, StoreError::Unavailable { .. }));
    }
}
