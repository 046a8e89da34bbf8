#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

pub mod admin_conformance;
pub mod conformance;
mod faulty;
pub mod fill;
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

use std::fmt;
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
/// does belongs on the [`ManualClock`] instead. `what` is shown only on failure, so it may
/// describe the state of that moment (a `Display` that reads it).
pub async fn eventually(
    what: impl fmt::Display,
    limit: Duration,
    mut condition: impl AsyncFnMut() -> bool,
) {
    eventually_some(what, limit, async || condition().await.then_some(())).await;
}

/// [`eventually`] for a wait that ends with a value: waits until `attempt` returns `Some`, and
/// returns what it holds.
pub async fn eventually_some<T>(
    what: impl fmt::Display,
    limit: Duration,
    mut attempt: impl AsyncFnMut() -> Option<T>,
) -> T {
    let until = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = attempt().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "{what}: not within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn eventually_some_returns_the_first_value_the_attempt_gives() {
        let attempts = Cell::new(0);
        let found = eventually_some("the third attempt", Duration::from_secs(1), || {
            attempts.set(attempts.get() + 1);
            let attempt = attempts.get();
            async move { (attempt == 3).then_some(attempt * 10) }
        })
        .await;
        assert_eq!(found, 30);
    }

    #[tokio::test(start_paused = true)]
    #[should_panic(expected = "the answer, seen 3 times: not within 15ms")]
    async fn a_wait_that_runs_out_names_what_it_waited_for_as_of_then() {
        let seen = Cell::new(0);
        let what = Shown(|| format!("the answer, seen {} times", seen.get()));
        eventually(what, Duration::from_millis(15), || {
            seen.set(seen.get() + 1);
            async { false }
        })
        .await;
    }

    /// A description written when it is shown.
    struct Shown<F>(F);

    impl<F: Fn() -> String> fmt::Display for Shown<F> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(&(self.0)())
        }
    }
}
