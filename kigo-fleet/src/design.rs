//! The designs measured side by side: kigo, and the ones a user would otherwise pick, each small.
//! The alternatives renew a token once a quarter of its life is left (about where kigo's
//! refresh-ahead point lies) and write to the shared store through a lease taken only for the
//! write: the `TokenStore` trait has no unfenced write, and no alternative waits for it.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use kigo_core::runtime::SystemClock;
use kigo_core::store::{HolderId, LeaseAttempt};
use kigo_core::{CreateRequest, Token, TokenKey, TokenSource, TokenStore};
use kigo_http::PartnerTokenSource;
use serde::{Deserialize, Serialize};

/// Failure of a step of an alternative design.
pub(crate) type Failure = Box<dyn std::error::Error + Send + Sync>;

/// How long the write-back lease of the alternatives lasts.
const WRITE_LEASE: Duration = Duration::from_secs(2);

/// A way of getting the token for each request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Design {
    /// A `TokenManager` per replica on the shared store.
    Kigo,
    /// A token cached per replica behind a mutex held across the creation (Go oauth2 style).
    PerReplica,
    /// The shared store read on every request; whoever finds no fresh token creates one.
    StoreRead,
    /// A local cache over the shared store, filled from it, created without a lock
    /// (Duende / HybridCache style).
    NoLock,
}

impl Design {
    /// Every design, kigo first.
    pub(crate) const ALL: [Self; 4] = [Self::Kigo, Self::PerReplica, Self::StoreRead, Self::NoLock];

    /// The alternative this design is, or `None` for kigo.
    pub(crate) fn alternative(self) -> Option<Shape> {
        match self {
            Self::Kigo => None,
            Self::PerReplica => Some(Shape::PerReplica),
            Self::StoreRead => Some(Shape::StoreRead),
            Self::NoLock => Some(Shape::NoLock),
        }
    }

    /// Its name on the command line and in reports.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Kigo => "kigo",
            Self::PerReplica => "per-replica",
            Self::StoreRead => "store-read",
            Self::NoLock => "no-lock",
        }
    }
}

/// The designs other than kigo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// See [`Design::PerReplica`].
    PerReplica,
    /// See [`Design::StoreRead`].
    StoreRead,
    /// See [`Design::NoLock`].
    NoLock,
}

/// One replica's token for an alternative design: what it keeps, and how it creates and shares.
#[derive(Debug)]
pub(crate) struct Alternative {
    shape: Shape,
    key: TokenKey,
    source: PartnerTokenSource,
    store: std::sync::Arc<dyn TokenStore>,
    holder: HolderId,
    local: Mutex<Option<Token>>,
    creating: tokio::sync::Mutex<()>,
}

impl Alternative {
    pub(crate) fn new(
        shape: Shape,
        key: TokenKey,
        source: PartnerTokenSource,
        store: std::sync::Arc<dyn TokenStore>,
        name: &str,
    ) -> Self {
        Self {
            shape,
            key,
            source,
            store,
            holder: HolderId::new(name),
            local: Mutex::new(None),
            creating: tokio::sync::Mutex::new(()),
        }
    }

    /// The token for the next request.
    pub(crate) async fn token(&self) -> Result<Token, Failure> {
        match self.shape {
            Shape::PerReplica => {
                let _creating = self.creating.lock().await;
                match self.cached() {
                    Some(token) => Ok(token),
                    None => self.create_locally().await,
                }
            }
            Shape::StoreRead => match self.stored().await? {
                Some(token) => Ok(token),
                None => self.create_and_share().await,
            },
            Shape::NoLock => {
                if let Some(token) = self.cached() {
                    return Ok(token);
                }
                let token = match self.stored().await? {
                    Some(token) => token,
                    None => self.create_and_share().await?,
                };
                *self.local.lock().unwrap_or_else(PoisonError::into_inner) = Some(token.clone());
                Ok(token)
            }
        }
    }

    fn cached(&self) -> Option<Token> {
        let local = self.local.lock().unwrap_or_else(PoisonError::into_inner);
        local.clone().filter(fresh)
    }

    async fn stored(&self) -> Result<Option<Token>, Failure> {
        let snapshot = self.store.load(&self.key).await?;
        Ok(snapshot.token().cloned().filter(fresh))
    }

    async fn create(&self) -> Result<Token, Failure> {
        let clock = SystemClock::new();
        let request = CreateRequest::new(&self.key, None, &clock);
        Ok(self.source.create(request).await?)
    }

    async fn create_locally(&self) -> Result<Token, Failure> {
        let token = self.create().await?;
        *self.local.lock().unwrap_or_else(PoisonError::into_inner) = Some(token.clone());
        Ok(token)
    }

    /// Creates a token and writes it to the store unless another writer holds the write lease.
    async fn create_and_share(&self) -> Result<Token, Failure> {
        let token = self.create().await?;
        let attempt = self
            .store
            .acquire_lease(&self.key, &self.holder, WRITE_LEASE)
            .await?;
        if let LeaseAttempt::Acquired(lease) = attempt {
            self.store.commit(&lease, &token).await?;
        }
        Ok(token)
    }
}

/// Whether `token` has more than a quarter of its life left.
fn fresh(token: &Token) -> bool {
    SystemTime::now() + token.lifetime() / 4 < token.expires_at()
}
