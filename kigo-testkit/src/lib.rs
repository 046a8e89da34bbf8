#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

pub mod conformance;
mod faulty;
#[cfg(feature = "mock")]
pub mod mock;
pub mod services;
mod source;

pub use faulty::{FaultyStore, Gate, InjectedFault};
pub use kigo_core::runtime::ManualClock;
pub use source::{
    FakeFailure, FakeSource, MockRespond, MockTokenSource, Respond, Scripted, SourceCall,
};

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
