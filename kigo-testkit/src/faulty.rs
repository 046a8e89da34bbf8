//! A store wrapper that fails on demand, for tests of store outages.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use kigo_core::store::{
    ChangeFeed, CommitOutcome, HolderId, InvalidateOutcome, Lease, LeaseAttempt, Snapshot,
};
use kigo_core::{Fingerprint, StoreError, Token, TokenKey, TokenStore};

/// Wraps a store; while failing, every operation returns [`StoreError::Unavailable`]; while
/// hanging, it never answers.
///
/// Clones share the switches, so a test keeps one clone to flip them.
#[derive(Debug, Clone)]
pub struct FaultyStore {
    store: Arc<dyn TokenStore>,
    switches: Arc<Switches>,
}

#[derive(Debug, Default)]
struct Switches {
    failing: AtomicBool,
    hanging: AtomicBool,
    mute_changes: AtomicBool,
    calls: AtomicU64,
}

/// The injected failure.
#[derive(Debug, thiserror::Error)]
#[error("injected store failure")]
pub struct InjectedFault;

impl FaultyStore {
    /// Wraps `store`, healthy at first.
    pub fn new(store: Arc<dyn TokenStore>) -> Self {
        Self {
            store,
            switches: Arc::default(),
        }
    }

    /// Makes every operation fail (or work again).
    pub fn set_failing(&self, failing: bool) {
        self.switches.failing.store(failing, Ordering::SeqCst);
    }

    /// Makes every operation hang without an answer (or answer again), as a black-holed
    /// connection would; calls already hanging stay so.
    pub fn set_hanging(&self, hanging: bool) {
        self.switches.hanging.store(hanging, Ordering::SeqCst);
    }

    /// Drops every change notice (or delivers them again), as a lost notification would.
    pub fn mute_changes(&self, mute: bool) {
        self.switches.mute_changes.store(mute, Ordering::SeqCst);
    }

    /// How many operations were attempted, failing or not.
    pub fn calls(&self) -> u64 {
        self.switches.calls.load(Ordering::SeqCst)
    }

    async fn check(&self) -> Result<(), StoreError> {
        self.switches.calls.fetch_add(1, Ordering::SeqCst);
        if self.switches.hanging.load(Ordering::SeqCst) {
            // A store that accepted the request and never answers (a network black hole).
            std::future::pending::<()>().await;
        }
        if self.switches.failing.load(Ordering::SeqCst) {
            return Err(StoreError::unavailable(InjectedFault));
        }
        Ok(())
    }
}

#[async_trait]
impl TokenStore for FaultyStore {
    async fn load(&self, key: &TokenKey) -> Result<Snapshot, StoreError> {
        self.check().await?;
        self.store.load(key).await
    }

    async fn acquire_lease(
        &self,
        key: &TokenKey,
        holder: &HolderId,
        ttl: Duration,
    ) -> Result<LeaseAttempt, StoreError> {
        self.check().await?;
        self.store.acquire_lease(key, holder, ttl).await
    }

    async fn release_lease(&self, lease: &Lease) -> Result<(), StoreError> {
        self.check().await?;
        self.store.release_lease(lease).await
    }

    async fn commit(&self, lease: &Lease, token: &Token) -> Result<CommitOutcome, StoreError> {
        self.check().await?;
        self.store.commit(lease, token).await
    }

    async fn invalidate(
        &self,
        key: &TokenKey,
        fingerprint: &Fingerprint,
    ) -> Result<InvalidateOutcome, StoreError> {
        self.check().await?;
        self.store.invalidate(key, fingerprint).await
    }

    async fn set_cooldown(&self, key: &TokenKey, duration: Duration) -> Result<(), StoreError> {
        self.check().await?;
        self.store.set_cooldown(key, duration).await
    }

    fn changes(&self) -> Option<ChangeFeed> {
        let switches = Arc::clone(&self.switches);
        let feed = self.store.changes()?;
        Some(Box::pin(feed.filter(move |_| {
            std::future::ready(!switches.mute_changes.load(Ordering::SeqCst))
        })))
    }
}
