#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

pub mod admin_conformance;
pub mod conformance;
mod faulty;
pub mod logs;
#[cfg(feature = "mock")]
pub mod mock;
#[cfg(feature = "mockall")]
mod mock_source;
mod source;

pub use faulty::{FaultyStore, Gate, InjectedFault};
pub use kigo_core::runtime::ManualClock;
#[cfg(feature = "mockall")]
pub use mock_source::{MockRespond, MockTokenSource, Respond};
pub use source::{FakeFailure, FakeSource, Scripted, SourceCall};

use std::time::Duration;

/// Lets every task that can make progress run until all are waiting (on the manual clock, a
/// notice, or a caller).
///
/// Needs a current-thread tokio runtime with paused time (`#[tokio::test(start_paused = true)]`):
/// tokio then moves its own clock only when no task can run, so this sleep ends exactly when the
/// runtime is idle. It does not move the [`ManualClock`].
pub async fn settle() {
    tokio::time::sleep(Duration::from_millis(1)).await;
}

/// Waits until `condition` holds, checking every 10 ms, and fails the test naming `what` once
/// `limit` has passed: for what real servers and processes do in their own time. What a manager
/// does belongs on the [`ManualClock`] instead.
pub async fn eventually<F, Fut>(what: &str, limit: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = tokio::time::Instant::now() + limit;
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < until,
            "{what}: not within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
