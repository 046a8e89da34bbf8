//! The SQLite file holds the fleet's tokens: it is created readable and writable by its owner
//! only (0600 on Unix), whatever the process's umask. SQLite creates the `-wal` and `-shm` files
//! with the database file's mode, so they follow. A file that already exists is the operator's:
//! it is left as it is, with a warning if others may read or write it.

use std::path::Path;

use kigo_core::StoreError;

/// The database file SQLite opens for `name`, if it is one: not `:memory:`, not the empty name
/// (a temporary database) and not an SQLite URI (`file:...`, which SQLite resolves itself, as it
/// does sqlx's in-memory databases).
#[cfg(unix)]
fn database_file(name: &Path) -> Option<&Path> {
    let text = name.to_str().unwrap_or_default();
    let special = text.is_empty() || text == ":memory:" || text.starts_with("file:");
    (!special).then_some(name)
}

/// Whether an `sqlite:` URL asks sqlx for an in-memory database through its `mode` parameter:
/// its name, however plain, is then no file.
pub(crate) fn asks_for_memory(url: &str) -> bool {
    url.split_once('?')
        .is_some_and(|(_, query)| query.split('&').any(|pair| pair == "mode=memory"))
}

/// Creates the database file `name` names, if it is missing, with mode 0600 (see the module
/// doc); warns about an existing file open to others.
#[cfg(unix)]
pub(crate) fn prepare(name: &Path) -> Result<(), StoreError> {
    use std::fs::{OpenOptions, Permissions};
    use std::io::ErrorKind;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};

    let Some(path) = database_file(name) else {
        return Ok(());
    };
    let created = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        // The umask may have taken bits of 0600 too: set it exactly, on the file just created.
        .and_then(|file| file.set_permissions(Permissions::from_mode(0o600)));
    match created {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == ErrorKind::AlreadyExists => {
            warn_if_open_to_others(path);
            Ok(())
        }
        Err(error) => Err(cannot_create(error)),
    }
}

/// Non-Unix systems have no mode bits: SQLite creates the file as the platform does.
#[cfg(not(unix))]
pub(crate) fn prepare(_name: &Path) -> Result<(), StoreError> {
    Ok(())
}

/// Warns when the existing file at `path` may be read or written by others than its owner,
/// naming the file (not its directory) and its mode.
#[cfg(unix)]
fn warn_if_open_to_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;

    let Ok(metadata) = std::fs::metadata(path) else {
        return;
    };
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        tracing::warn!(
            file = %path.file_name().unwrap_or_default().display(),
            mode = format_args!("{mode:o}"),
            "the SQLite token file may be read or written by others than its owner: the store \
             leaves it as it is; restrict it (chmod 600, and its -wal and -shm files)"
        );
    }
}

/// The error for a database file that could not be created: the operator's to fix when the
/// directory is missing or not writable.
#[cfg(unix)]
fn cannot_create(error: std::io::Error) -> StoreError {
    use std::io::ErrorKind;

    use crate::error::{ACCESS_HINT, SqlError};

    let denied = matches!(
        error.kind(),
        ErrorKind::PermissionDenied | ErrorKind::NotFound | ErrorKind::ReadOnlyFilesystem
    );
    let error = SqlError::CreateFile(error);
    if denied {
        StoreError::misconfigured(ACCESS_HINT, error)
    } else {
        StoreError::unavailable(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn only_plain_names_are_files() {
        for special in [
            "",
            ":memory:",
            "file:sqlx-in-memory-3",
            "file:tokens.db?mode=rwc",
        ] {
            assert_eq!(database_file(Path::new(special)), None, "{special:?}");
        }
        for file in ["tokens.db", "/srv/kigo/tokens.db", "./memory.db"] {
            assert_eq!(database_file(Path::new(file)), Some(Path::new(file)));
        }
    }

    #[test]
    fn memory_urls_are_told_by_their_mode() {
        assert!(asks_for_memory("sqlite://tokens?mode=memory"));
        assert!(asks_for_memory("sqlite:tokens?cache=shared&mode=memory"));
        assert!(!asks_for_memory("sqlite://tokens.db?mode=rwc"));
        assert!(!asks_for_memory("sqlite://memory.db"));
    }
}
