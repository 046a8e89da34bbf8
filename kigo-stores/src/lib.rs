#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

#[cfg(not(any(
    feature = "redis",
    feature = "postgres",
    feature = "mysql",
    feature = "sqlite"
)))]
compile_error!(
    "kigo-stores needs at least one of the features `redis`, `postgres`, `mysql`, `sqlite`"
);

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use kigo_core::store::{
    ChangeFeed, CommitOutcome, HolderId, InvalidateOutcome, KeyPage, Lease, LeaseAttempt, Resealed,
    STORE_URL_VAR, Snapshot, StoreAdmin, StoreCheck,
};
use kigo_core::{Fingerprint, StoreError, Token, TokenKey, TokenStore};

mod url;

pub use url::{InvalidStoreUrl, StoreKind};

/// The pool size of an SQL store, if set: the most connections each replica opens to the
/// database (default 10; see [`kigo_store_sql::MAX_CONNECTIONS_VAR`]).
#[cfg(any(feature = "postgres", feature = "mysql", feature = "sqlite"))]
pub use kigo_store_sql::MAX_CONNECTIONS_VAR;

/// A store of any of the kinds a URL can name.
#[derive(Clone)]
#[non_exhaustive]
pub enum AnyStore {
    /// A Redis server or Cluster.
    #[cfg(feature = "redis")]
    Redis(kigo_store_redis::RedisStore),
    /// PostgreSQL, MySQL/MariaDB or SQLite.
    #[cfg(any(feature = "postgres", feature = "mysql", feature = "sqlite"))]
    Sql(kigo_store_sql::SqlStore),
}

impl fmt::Debug for AnyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.admin(), f)
    }
}

/// The store `url` names, with its defaults (sealed with `KIGO_SEALING_KEYS`; TLS required for a
/// remote server). Nothing connects yet, but an SQLite file is created if missing.
pub async fn open(url: &str) -> Result<AnyStore, StoreError> {
    let kind = StoreKind::of(url).map_err(misconfigured)?;
    match kind {
        #[cfg(feature = "redis")]
        StoreKind::Redis => Ok(AnyStore::Redis(kigo_store_redis::RedisStore::open(url)?)),
        #[cfg(feature = "redis")]
        StoreKind::RedisCluster => {
            let nodes = url::cluster_nodes(url).map_err(misconfigured)?;
            let store = kigo_store_redis::RedisStore::builder()
                .cluster_nodes(nodes)
                .build()?;
            Ok(AnyStore::Redis(store))
        }
        #[cfg(any(feature = "postgres", feature = "mysql", feature = "sqlite"))]
        StoreKind::Postgres | StoreKind::MySql | StoreKind::Sqlite => {
            Ok(AnyStore::Sql(kigo_store_sql::SqlStore::connect(url).await?))
        }
        #[allow(unreachable_patterns)]
        other => Err(misconfigured(InvalidStoreUrl::NotCompiledIn(other))),
    }
}

/// The store `KIGO_STORE_URL` names (see [`open`]).
pub async fn from_env() -> Result<AnyStore, StoreError> {
    let url = std::env::var(STORE_URL_VAR)
        .ok()
        .filter(|url| !url.trim().is_empty())
        .ok_or_else(|| misconfigured(InvalidStoreUrl::Missing))?;
    open(url.trim()).await
}

fn misconfigured(error: InvalidStoreUrl) -> StoreError {
    StoreError::misconfigured(url::HINT, error)
}

impl AnyStore {
    /// The store, for what every kind does.
    fn admin(&self) -> &(dyn StoreAdmin + 'static) {
        match self {
            #[cfg(feature = "redis")]
            Self::Redis(store) => store,
            #[cfg(any(feature = "postgres", feature = "mysql", feature = "sqlite"))]
            Self::Sql(store) => store,
        }
    }
}

#[async_trait]
impl TokenStore for AnyStore {
    async fn load(&self, key: &TokenKey) -> Result<Snapshot, StoreError> {
        self.admin().load(key).await
    }

    async fn acquire_lease(
        &self,
        key: &TokenKey,
        holder: &HolderId,
        ttl: Duration,
    ) -> Result<LeaseAttempt, StoreError> {
        self.admin().acquire_lease(key, holder, ttl).await
    }

    async fn release_lease(&self, lease: &Lease) -> Result<(), StoreError> {
        self.admin().release_lease(lease).await
    }

    async fn commit(&self, lease: &Lease, token: &Token) -> Result<CommitOutcome, StoreError> {
        self.admin().commit(lease, token).await
    }

    async fn invalidate(
        &self,
        key: &TokenKey,
        fingerprint: &Fingerprint,
    ) -> Result<InvalidateOutcome, StoreError> {
        self.admin().invalidate(key, fingerprint).await
    }

    async fn set_cooldown(&self, key: &TokenKey, duration: Duration) -> Result<(), StoreError> {
        self.admin().set_cooldown(key, duration).await
    }

    async fn cooldown(&self, key: &TokenKey) -> Result<Option<Duration>, StoreError> {
        self.admin().cooldown(key).await
    }

    async fn lease_holder(
        &self,
        key: &TokenKey,
    ) -> Result<Option<(HolderId, Option<Duration>)>, StoreError> {
        self.admin().lease_holder(key).await
    }

    fn changes(&self) -> Option<ChangeFeed> {
        self.admin().changes()
    }
}

#[async_trait]
impl StoreAdmin for AnyStore {
    async fn keys(&self, after: Option<&TokenKey>, limit: usize) -> Result<KeyPage, StoreError> {
        self.admin().keys(after, limit).await
    }

    async fn reseal(&self, key: &TokenKey) -> Result<Resealed, StoreError> {
        self.admin().reseal(key).await
    }

    async fn purge_expired(&self) -> Result<u64, StoreError> {
        self.admin().purge_expired().await
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        self.admin().migrate().await
    }

    async fn check(&self) -> Result<StoreCheck, StoreError> {
        self.admin().check().await
    }
}
