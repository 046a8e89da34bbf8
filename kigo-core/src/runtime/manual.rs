//! A clock that moves only when a test says so (feature `test-util`).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime};

use super::{AsyncSleep, Sleep, TimeSource};

/// A manual clock: `now()` changes only through [`ManualClock::advance`], and sleeps complete when
/// the clock is advanced past their deadline. Thirty-minute token lifetimes run in microseconds.
///
/// Clones share the same time. [`ManualClock::skewed`] gives a view whose readings are offset, for
/// replicas whose clocks disagree, while sleeps still follow the shared time.
#[derive(Debug, Clone)]
pub struct ManualClock {
    shared: Arc<Mutex<State>>,
    /// Signed offset of this view, in milliseconds.
    offset_ms: i64,
}

#[derive(Debug)]
struct State {
    now: SystemTime,
    next_id: u64,
    sleepers: BTreeMap<(SystemTime, u64), Option<Waker>>,
}

impl ManualClock {
    /// A clock at 2030-01-01T00:00:00Z, so that runs are reproducible.
    pub fn new() -> Self {
        Self::starting_at(SystemTime::UNIX_EPOCH + Duration::from_secs(1_893_456_000))
    }

    /// A clock at `start`.
    pub fn starting_at(start: SystemTime) -> Self {
        Self {
            shared: Arc::new(Mutex::new(State {
                now: start,
                next_id: 0,
                sleepers: BTreeMap::new(),
            })),
            offset_ms: 0,
        }
    }

    /// Moves time forward by `by` and wakes every sleep whose deadline has come.
    pub fn advance(&self, by: Duration) {
        let due: Vec<Waker> = {
            let mut state = self.state();
            state.now += by;
            let now = state.now;
            state
                .sleepers
                .iter_mut()
                .take_while(|((deadline, _), _)| *deadline <= now)
                .filter_map(|(_, waker)| waker.take())
                .collect()
        };
        due.into_iter().for_each(Waker::wake);
    }

    /// A view of the same clock that reads `offset_ms` milliseconds later (negative: earlier).
    pub fn skewed(&self, offset_ms: i64) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            offset_ms: self.offset_ms.saturating_add(offset_ms),
        }
    }

    /// How many sleeps are waiting for the clock.
    pub fn sleepers(&self) -> usize {
        self.state().sleepers.len()
    }

    /// The earliest deadline among waiting sleeps, on the shared (unskewed) time.
    pub fn next_deadline(&self) -> Option<SystemTime> {
        self.state()
            .sleepers
            .keys()
            .next()
            .map(|(deadline, _)| *deadline)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl TimeSource for ManualClock {
    fn now(&self) -> SystemTime {
        let now = self.state().now;
        let offset = Duration::from_millis(self.offset_ms.unsigned_abs());
        if self.offset_ms >= 0 {
            now + offset
        } else {
            now - offset
        }
    }
}

impl AsyncSleep for ManualClock {
    fn sleep(&self, duration: Duration) -> Sleep {
        let mut state = self.state();
        let id = state.next_id;
        state.next_id += 1;
        let deadline = state.now + duration;
        state.sleepers.insert((deadline, id), None);
        Box::pin(ManualSleep {
            shared: Arc::clone(&self.shared),
            key: (deadline, id),
        })
    }
}

struct ManualSleep {
    shared: Arc<Mutex<State>>,
    key: (SystemTime, u64),
}

impl ManualSleep {
    fn state(&self) -> MutexGuard<'_, State> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Future for ManualSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let key = self.key;
        let mut state = self.state();
        if state.now >= key.0 {
            state.sleepers.remove(&key);
            return Poll::Ready(());
        }
        state.sleepers.insert(key, Some(cx.waker().clone()));
        Poll::Pending
    }
}

impl Drop for ManualSleep {
    fn drop(&mut self) {
        let key = self.key;
        self.state().sleepers.remove(&key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    #[test]
    fn sleeps_complete_only_when_advanced_past() {
        let clock = ManualClock::new();
        let start = clock.now();
        let mut sleep = clock.sleep(Duration::from_secs(60));
        assert!((&mut sleep).now_or_never().is_none());
        clock.advance(Duration::from_secs(59));
        assert!((&mut sleep).now_or_never().is_none());
        clock.advance(Duration::from_secs(1));
        assert!(sleep.now_or_never().is_some());
        assert_eq!(clock.now(), start + Duration::from_secs(60));
        assert_eq!(clock.sleepers(), 0);
    }

    #[test]
    fn dropped_sleeps_are_forgotten() {
        let clock = ManualClock::new();
        drop(clock.sleep(Duration::from_secs(1)));
        assert_eq!(clock.sleepers(), 0);
    }

    #[test]
    fn skewed_views_share_time() {
        let clock = ManualClock::new();
        let ahead = clock.skewed(60_000);
        let behind = clock.skewed(-60_000);
        clock.advance(Duration::from_secs(5));
        assert_eq!(ahead.now(), clock.now() + Duration::from_secs(60));
        assert_eq!(behind.now(), clock.now() - Duration::from_secs(60));
    }
}
