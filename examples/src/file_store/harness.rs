//! The conformance harness of [`FileStore`].

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use kigo_core::codec::{Keyring, Sealing};
use kigo_core::runtime::TimeSource;
use kigo_core::{TokenKey, TokenStore};
use kigo_testkit::ManualClock;
use kigo_testkit::conformance::{StoreHarness, test_keyring};
use tempfile::TempDir;

use super::FileStore;
use super::record::Record;

/// A fresh temporary directory, a manual clock and a test keyring. Every
/// [`StoreHarness::handle`] is a [`FileStore`] of its own on the directory, as another process
/// would open it: they share nothing but the files.
#[derive(Debug)]
pub struct FileStoreHarness {
    directory: TempDir,
    clock: ManualClock,
    keyring: Keyring,
}

impl FileStoreHarness {
    /// A harness on a new temporary directory (removed when the harness is dropped).
    ///
    /// # Panics
    ///
    /// If no temporary directory can be made: a test cannot run then.
    pub fn new() -> Self {
        Self {
            directory: tempfile::tempdir().expect("a temporary directory"),
            clock: ManualClock::new(),
            keyring: test_keyring(),
        }
    }

    /// A store on the directory, as one more process would open it.
    ///
    /// # Panics
    ///
    /// If the store cannot be built on the temporary directory.
    pub fn store(&self) -> FileStore {
        FileStore::builder(self.directory.path())
            .sealing(Sealing::Keyring(self.keyring.clone()))
            .clock(Arc::new(self.clock.clone()))
            .build()
            .expect("a file store on a temporary directory")
    }

    /// The clock of the stores.
    pub fn clock(&self) -> &ManualClock {
        &self.clock
    }
}

impl Default for FileStoreHarness {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl StoreHarness for FileStoreHarness {
    async fn handle(&self) -> Arc<dyn TokenStore> {
        Arc::new(self.store())
    }

    async fn write_raw(&self, key: &TokenKey, raw: &[u8]) {
        let raw = raw.to_vec();
        self.store()
            .change(key, move |record, _| record.plant(&raw))
            .await
            .expect("a raw write");
    }

    async fn read_raw(&self, key: &TokenKey) -> Option<Vec<u8>> {
        let key = key.clone();
        let bytes = self
            .store()
            .run(move |shared| shared.directory.read(&key))
            .await
            .expect("a raw read")?;
        Record::parse(&bytes)?.entry()
    }

    async fn pass(&self, duration: Duration) {
        self.clock.advance(duration);
    }

    fn now(&self) -> SystemTime {
        self.clock.now()
    }
}
