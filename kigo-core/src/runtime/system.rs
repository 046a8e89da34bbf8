//! The wall clock, with a coarse reading for the hot path.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, SystemTime};

use super::TimeSource;
use crate::time::{unix_ms, unix_nanos};

/// How often the coarse reading is refreshed.
const TICK: Duration = Duration::from_millis(10);

/// The lag the manager allows for: ten ticks, so that a briefly starved ticker thread does not
/// let a token through past its stale point.
const COARSE_LAG: Duration = Duration::from_millis(100);

const NANOS_PER_MILLI: u64 = 1_000_000;

/// The system's wall clock.
///
/// `now()` reads the clock each time (about 30 ns, a vDSO call). [`TimeSource::now_coarse`] reads
/// an atomic that one process-wide thread refreshes every 10 ms, so that checking a cached token's
/// validity costs about a nanosecond. The thread runs while any `SystemClock` is alive and stops
/// within a tick after the last one is dropped.
#[derive(Debug, Clone)]
pub struct SystemClock {
    coarse: Option<Arc<CoarseNow>>,
}

impl SystemClock {
    /// A handle on the system clock, starting the shared ticker thread if none runs.
    ///
    /// If no thread can be started, `now_coarse` falls back to `now`.
    pub fn new() -> Self {
        Self {
            coarse: CoarseNow::shared(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl TimeSource for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    fn now_coarse(&self) -> SystemTime {
        match &self.coarse {
            Some(coarse) => coarse.get(),
            None => SystemTime::now(),
        }
    }

    fn now_coarse_nanos(&self) -> u64 {
        match &self.coarse {
            Some(coarse) => coarse.reading_ms().saturating_mul(NANOS_PER_MILLI),
            None => unix_nanos(SystemTime::now()),
        }
    }

    fn coarse_lag(&self) -> Duration {
        if self.coarse.is_some() {
            COARSE_LAG
        } else {
            Duration::ZERO
        }
    }
}

/// Milliseconds since the epoch, refreshed by the ticker thread.
#[derive(Debug)]
struct CoarseNow(AtomicU64);

static SHARED: Mutex<Weak<CoarseNow>> = Mutex::new(Weak::new());

impl CoarseNow {
    fn shared() -> Option<Arc<Self>> {
        let mut shared = SHARED.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(existing) = shared.upgrade() {
            return Some(existing);
        }
        let coarse = Arc::new(Self(AtomicU64::new(unix_ms(SystemTime::now()))));
        let weak = Arc::downgrade(&coarse);
        std::thread::Builder::new()
            .name("kigo-coarse-clock".into())
            .spawn(move || tick(&weak))
            .ok()?;
        *shared = Arc::downgrade(&coarse);
        Some(coarse)
    }

    fn reading_ms(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    fn get(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(self.reading_ms())
    }
}

fn tick(coarse: &Weak<CoarseNow>) {
    loop {
        std::thread::sleep(TICK);
        match coarse.upgrade() {
            Some(coarse) => coarse
                .0
                .store(unix_ms(SystemTime::now()), Ordering::Relaxed),
            None => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coarse_reading_trails_by_at_most_the_lag() {
        let clock = SystemClock::new();
        let coarse = clock.now_coarse();
        let precise = clock.now();
        assert!(coarse <= precise);
        assert!(precise.duration_since(coarse).unwrap() <= clock.coarse_lag());
    }

    #[test]
    fn coarse_nanos_are_the_coarse_reading() {
        let clock = SystemClock::new();
        let before = clock.now_coarse_nanos();
        let coarse = unix_nanos(clock.now_coarse());
        let after = clock.now_coarse_nanos();
        // The ticker may move the reading forward between the three reads (the wall clock is
        // not stepped back while a test runs).
        assert!(
            before <= coarse && coarse <= after,
            "{before} {coarse} {after}"
        );
        assert_eq!(coarse % NANOS_PER_MILLI, 0);
    }

    #[test]
    fn handles_share_one_ticker() {
        let first = SystemClock::new();
        let second = SystemClock::new();
        let (Some(a), Some(b)) = (&first.coarse, &second.coarse) else {
            panic!("the ticker thread did not start");
        };
        assert!(Arc::ptr_eq(a, b));
    }
}
