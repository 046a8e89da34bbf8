//! Collects what the crate logs, to check what it says (and never says).

use std::sync::Arc;

use tempfile::NamedTempFile;

/// Every event of the subscriber [`Log::subscriber`] gives, written into a temporary file.
pub(crate) struct Log(NamedTempFile);

impl Log {
    pub(crate) fn new() -> Self {
        Self(NamedTempFile::new().unwrap())
    }

    /// A subscriber writing every event, DEBUG included, into this log.
    pub(crate) fn subscriber(&self) -> impl tracing::Subscriber + Send + Sync + use<> {
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(Arc::new(self.0.reopen().unwrap()))
            .with_ansi(false)
            .finish()
    }

    /// What was written so far.
    pub(crate) fn text(&self) -> String {
        std::fs::read_to_string(self.0.path()).unwrap()
    }
}
