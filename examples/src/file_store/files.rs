//! The directory: which files belong to a key, and the three things done to them (lock, read,
//! replace), each so that another process never sees half a change.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, ErrorKind, Write};
use std::path::{Path, PathBuf};

use kigo_core::TokenKey;
use sha2::{Digest, Sha256};

use super::FileStoreError;

/// The store's directory, by its canonical path.
#[derive(Debug)]
pub(super) struct Directory {
    path: PathBuf,
}

impl Directory {
    /// The directory at `path`, created (owner-only) if it is missing.
    pub(super) fn open(path: &Path) -> Result<Self, FileStoreError> {
        let mut builder = DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder
            .create(path)
            .map_err(FileStoreError::io("create the directory"))?;
        let path = path
            .canonicalize()
            .map_err(FileStoreError::io("resolve the directory"))?;
        Ok(Self { path })
    }

    /// The canonical path.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// The file that holds the record of `key`.
    pub(super) fn record_file(&self, key: &TokenKey) -> PathBuf {
        self.file(key, "json")
    }

    /// A file of `key`, named by the SHA-256 of its storage ID: the ID itself could be longer
    /// than a file name may be, and a file system that folds case would give `Acme` and `acme`
    /// one file.
    fn file(&self, key: &TokenKey, extension: &str) -> PathBuf {
        let digest = Sha256::digest(key.storage_id().as_bytes());
        let name: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
        self.path.join(format!("{name}.{extension}"))
    }

    /// Takes the exclusive lock of `key`, waiting while another process holds it. The lock is
    /// held until the returned file is dropped.
    ///
    /// It is the lock of a file of its own, never replaced: [`Directory::replace`] puts a new
    /// file at the record's path, and a lock on the old one would guard nothing.
    pub(super) fn lock(&self, key: &TokenKey) -> Result<File, FileStoreError> {
        let file = owner_only()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(self.file(key, "lock"))
            .map_err(FileStoreError::io("open the lock file"))?;
        file.lock().map_err(FileStoreError::io("lock"))?;
        Ok(file)
    }

    /// The record file of `key`, if there is one. Needs no lock: the file at the path is always
    /// a whole record, the old one or the new one.
    pub(super) fn read(&self, key: &TokenKey) -> Result<Option<Vec<u8>>, FileStoreError> {
        match fs::read(self.record_file(key)) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(error) if error.kind() == ErrorKind::NotFound => Ok(None),
            Err(error) => Err(FileStoreError::io("read a record")(error)),
        }
    }

    /// Replaces the record of `key` with `bytes` at once: written to a temporary file in the
    /// same directory (a rename across file systems is no rename), flushed to the disk, then
    /// renamed over the record. A crash leaves the old record or the new one, never a part.
    /// Called under the key's lock, so one temporary name per key is enough.
    pub(super) fn replace(&self, key: &TokenKey, bytes: &[u8]) -> Result<(), FileStoreError> {
        let temporary = self.file(key, "tmp");
        let write = |path: &Path| -> io::Result<()> {
            let mut file = owner_only()
                .write(true)
                .create(true)
                .truncate(true)
                .open(path)?;
            file.write_all(bytes)?;
            file.sync_all()
        };
        write(&temporary).map_err(FileStoreError::io("write a record"))?;
        fs::rename(&temporary, self.record_file(key))
            .map_err(FileStoreError::io("replace a record"))
    }
}

/// Options that create files readable and writable by their owner only (0600 on Unix; other
/// systems create them as they do).
fn owner_only() -> OpenOptions {
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
}
