//! The pool a store sends its statements through: one of sqlx's, whichever the database.

use std::fmt;

use crate::BackendKind;

/// A connection pool of one of the supported databases, as
/// [`SqlStoreBuilder::pool`](crate::SqlStoreBuilder::pool) takes it (`From` each sqlx pool type).
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
