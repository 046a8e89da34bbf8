//! Time arithmetic that never panics: values from the token endpoint, the store or the
//! configuration can be absurd (a `Retry-After` of years, an expiry at the end of time), and one
//! of them must not bring down a refresh.

use std::time::{Duration, SystemTime};

/// The latest instant this crate computes: far beyond any token's life, and representable on
/// every platform.
fn end_of_time() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(10_000 * 365 * 24 * 3600)
}

/// `time + duration`, saturating at a far future instead of overflowing.
pub(crate) fn after(time: SystemTime, duration: Duration) -> SystemTime {
    time.checked_add(duration)
        .map_or_else(end_of_time, |later| later.min(end_of_time()))
}

/// `time - duration`, saturating at the Unix epoch.
pub(crate) fn before(time: SystemTime, duration: Duration) -> SystemTime {
    time.checked_sub(duration)
        .map_or(SystemTime::UNIX_EPOCH, |earlier| {
            earlier.max(SystemTime::UNIX_EPOCH)
        })
}

/// `duration × factor`, saturating instead of panicking on overflow; `factor` in `[0, 1]`.
pub(crate) fn share(duration: Duration, factor: f64) -> Duration {
    let factor = if factor.is_nan() {
        0.0
    } else {
        factor.clamp(0.0, 1.0)
    };
    Duration::try_from_secs_f64(duration.as_secs_f64() * factor).unwrap_or(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absurd_values_saturate() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(after(now, Duration::MAX), end_of_time());
        assert_eq!(
            after(now, Duration::from_secs(1)),
            now + Duration::from_secs(1)
        );
        assert_eq!(before(now, Duration::MAX), SystemTime::UNIX_EPOCH);
        assert!(share(Duration::MAX, 0.5) >= Duration::MAX / 3);
        assert_eq!(share(Duration::from_secs(10), f64::NAN), Duration::ZERO);
    }
}
