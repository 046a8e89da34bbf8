//! When to stop: SIGTERM (what an orchestrator sends) or Ctrl-C.

use std::future::Future;

/// Installs the handlers now (a signal that arrives once the service listens is never lost) and
/// returns what completes at the first SIGTERM or Ctrl-C.
#[cfg(unix)]
pub(crate) fn signal() -> std::io::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = interrupt.recv() => tracing::info!("Ctrl-C: shutting down"),
        }
    })
}

/// Returns what completes at the first Ctrl-C.
#[cfg(not(unix))]
pub(crate) fn signal() -> std::io::Result<impl Future<Output = ()>> {
    Ok(async {
        if tokio::signal::ctrl_c().await.is_ok() {
            tracing::info!("Ctrl-C: shutting down");
        }
    })
}
