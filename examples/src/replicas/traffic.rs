//! A replica's request loops.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::task::{JoinError, JoinSet};

/// Concurrent loops, each sending one request after another with a pause between, until
/// stopped.
#[derive(Debug)]
pub struct Traffic {
    stop: Arc<AtomicBool>,
    workers: JoinSet<()>,
}

impl Traffic {
    /// Starts `workers` loops, each awaiting `request()` and then sleeping `pause`, over and over.
    pub fn start<F, R>(workers: usize, pause: Duration, request: F) -> Self
    where
        F: Fn() -> R + Clone + Send + 'static,
        R: Future<Output = ()> + Send + 'static,
    {
        let stop = Arc::new(AtomicBool::new(false));
        let mut set = JoinSet::new();
        for _ in 0..workers {
            let (stop, request) = (Arc::clone(&stop), request.clone());
            set.spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    request().await;
                    tokio::time::sleep(pause).await;
                }
            });
        }
        Self { stop, workers: set }
    }

    /// Stops the loops once their requests in progress have ended.
    pub async fn stop(mut self) -> Result<(), JoinError> {
        self.stop.store(true, Ordering::Relaxed);
        while let Some(done) = self.workers.join_next().await {
            done?;
        }
        Ok(())
    }
}
