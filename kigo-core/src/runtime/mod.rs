//! Time, sleep and spawn, injected so that the core runs on any executor and tests run on a
//! manual clock.
//!
//! Nothing else in the workspace reads the wall clock or sleeps: every component takes a
//! [`TimeSource`] and an [`AsyncSleep`].

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

mod system;
pub use system::SystemClock;

#[cfg(feature = "rt-tokio")]
mod tokio;
#[cfg(feature = "rt-tokio")]
pub use self::tokio::{TokioSleep, TokioSpawn};

#[cfg(feature = "test-util")]
mod manual;
#[cfg(feature = "test-util")]
pub use manual::ManualClock;

/// A boxed future that completes after a sleep.
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// A boxed background task.
pub type Task = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Where the time comes from.
pub trait TimeSource: Send + Sync + Debug + 'static {
    /// The current wall-clock time.
    fn now(&self) -> SystemTime;

    /// A reading cheap enough for the hot path, behind [`TimeSource::now`] by at most
    /// [`TimeSource::coarse_lag`].
    ///
    /// The default is `now()` itself; clocks whose `now()` costs a system call override it.
    fn now_coarse(&self) -> SystemTime {
        self.now()
    }

    /// [`TimeSource::now_coarse`] in nanoseconds since the Unix epoch (0 before it, `u64::MAX`
    /// after the year 2554): what a cached token's validity is checked against on the hot path,
    /// one integer comparison. Clocks that keep their coarse reading as an integer override it
    /// with the same reading, sparing the conversion.
    fn now_coarse_nanos(&self) -> u64 {
        crate::time::unix_nanos(self.now_coarse())
    }

    /// How far [`TimeSource::now_coarse`] may trail [`TimeSource::now`].
    fn coarse_lag(&self) -> Duration {
        Duration::ZERO
    }
}

/// Sleeps without blocking a thread.
pub trait AsyncSleep: Send + Sync + Debug + 'static {
    /// A future that completes once `duration` has passed on this sleeper's clock, counted from
    /// this call (not from the first poll).
    fn sleep(&self, duration: Duration) -> Sleep;
}

/// Runs background tasks (refresh ahead, change listeners, single flights).
pub trait Spawn: Send + Sync + Debug + 'static {
    /// Runs `task` to completion in the background, detached. It must not poll `task` before
    /// returning: the manager spawns while it holds a key's flight lock.
    fn spawn(&self, task: Task);
}

/// The time, sleep and spawn a manager or store runs on.
#[derive(Debug, Clone)]
pub struct RuntimeEnv {
    time: Arc<dyn TimeSource>,
    sleep: Arc<dyn AsyncSleep>,
    spawn: Arc<dyn Spawn>,
}

impl RuntimeEnv {
    /// Combines a clock, a sleeper and a spawner.
    ///
    /// The clock and the sleeper must agree: a manual clock is both.
    pub fn new(
        time: Arc<dyn TimeSource>,
        sleep: Arc<dyn AsyncSleep>,
        spawn: Arc<dyn Spawn>,
    ) -> Self {
        Self { time, sleep, spawn }
    }

    /// The system clock with tokio's timers, spawning on the tokio runtime of the caller.
    ///
    /// `None` outside a tokio runtime.
    #[cfg(feature = "rt-tokio")]
    pub fn tokio() -> Option<Self> {
        Some(Self::new(
            Arc::new(SystemClock::new()),
            Arc::new(TokioSleep),
            Arc::new(TokioSpawn::current()?),
        ))
    }

    /// A manual clock (as clock and sleeper) with tokio spawning, for deterministic tests.
    ///
    /// `None` outside a tokio runtime.
    #[cfg(all(feature = "rt-tokio", feature = "test-util"))]
    pub fn manual(clock: &ManualClock) -> Option<Self> {
        Some(Self::new(
            Arc::new(clock.clone()),
            Arc::new(clock.clone()),
            Arc::new(TokioSpawn::current()?),
        ))
    }

    /// The clock.
    pub fn time(&self) -> &Arc<dyn TimeSource> {
        &self.time
    }

    /// The sleeper.
    pub fn sleeper(&self) -> &Arc<dyn AsyncSleep> {
        &self.sleep
    }

    /// The spawner.
    pub fn spawner(&self) -> &Arc<dyn Spawn> {
        &self.spawn
    }

    /// `time().now()`.
    pub fn now(&self) -> SystemTime {
        self.time.now()
    }

    /// `sleeper().sleep(duration)`.
    pub fn sleep(&self, duration: Duration) -> Sleep {
        self.sleep.sleep(duration)
    }

    /// Sleeps until `deadline` on this clock; at once if it has passed.
    pub fn sleep_until(&self, deadline: SystemTime) -> Sleep {
        let remaining = deadline.duration_since(self.now()).unwrap_or_default();
        self.sleep.sleep(remaining)
    }

    /// `spawner().spawn(task)`.
    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.spawn.spawn(Box::pin(task));
    }
}
