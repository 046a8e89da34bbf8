//! Capturing what a test's code logs, to assert on it: that a warning was given, that a secret
//! never was.

use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::FmtSpan;

/// Everything logged through [`Capture::subscriber`], as text. Clones share the text.
#[derive(Debug, Clone, Default)]
pub struct Capture(Arc<Mutex<Vec<u8>>>);

impl Capture {
    /// A subscriber writing every event (TRACE included) and every span's close, with its fields,
    /// into this capture. Install it for a test with `tracing::subscriber::set_default` (this
    /// thread) or `set_global_default` (the process).
    pub fn subscriber(&self) -> impl tracing::Subscriber + Send + Sync + use<> {
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_span_events(FmtSpan::CLOSE)
            .with_writer(self.clone())
            .with_ansi(false)
            .finish()
    }

    /// What is logged on this thread while `run` runs.
    pub fn while_running(run: impl FnOnce()) -> String {
        let capture = Self::default();
        tracing::subscriber::with_default(capture.subscriber(), run);
        capture.text()
    }

    /// What was written so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.lock()).into_owned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Write for Capture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.lock().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Capture;

    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

/// Fails if `text` holds any of `secrets` (name, value), saying which and where, never the text
/// itself (which would print the secret).
pub fn assert_no_secret(text: &str, secrets: &[(&str, &str)]) {
    for (name, secret) in secrets {
        if let Some(at) = text.find(secret) {
            panic!("{name} leaked at byte {at} of {} bytes", text.len());
        }
    }
}
