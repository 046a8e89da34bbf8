//! The tokio implementations of [`AsyncSleep`] and [`Spawn`] (feature `rt-tokio`).

use std::time::Duration;

use super::{AsyncSleep, Sleep, Spawn, Task};

/// Sleeps with `tokio::time::sleep`.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioSleep;

impl AsyncSleep for TokioSleep {
    fn sleep(&self, duration: Duration) -> Sleep {
        Box::pin(::tokio::time::sleep(duration))
    }
}

/// Spawns on a tokio runtime.
#[derive(Debug, Clone)]
pub struct TokioSpawn(::tokio::runtime::Handle);

impl TokioSpawn {
    /// Spawns on the runtime of the caller; `None` outside a runtime.
    pub fn current() -> Option<Self> {
        ::tokio::runtime::Handle::try_current().ok().map(Self)
    }

    /// Spawns on the runtime behind `handle`.
    pub fn new(handle: ::tokio::runtime::Handle) -> Self {
        Self(handle)
    }
}

impl Spawn for TokioSpawn {
    fn spawn(&self, task: Task) {
        drop(self.0.spawn(task));
    }
}
