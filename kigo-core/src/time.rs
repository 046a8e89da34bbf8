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

/// `duration` in whole milliseconds, saturating.
pub(crate) fn millis_of(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Whole milliseconds since the Unix epoch, saturating: 0 before it. What tokens, statuses and
/// the coarse clock record.
pub(crate) fn unix_ms(time: SystemTime) -> u64 {
    millis_of(
        time.duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default(),
    )
}

/// Nanoseconds since the Unix epoch, saturating: 0 before it, `u64::MAX` after the year 2554.
/// The hot path compares these integers where it would compare `SystemTime`s.
pub(crate) fn unix_nanos(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
        })
}

/// The instant `nanos` after the Unix epoch: [`unix_nanos`] undone.
pub(crate) fn from_unix_nanos(nanos: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_nanos(nanos)
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

    #[test]
    fn unix_ms_truncate_and_saturate() {
        let now = SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
        assert_eq!(unix_ms(now), 1_700_000_000_123);
        assert_eq!(unix_ms(SystemTime::UNIX_EPOCH - Duration::from_secs(1)), 0);
        assert_eq!(millis_of(Duration::MAX), u64::MAX);
    }

    #[test]
    fn unix_nanos_saturate_and_round_trip() {
        let now = SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
        assert_eq!(unix_nanos(now), 1_700_000_000_123_456_789);
        assert_eq!(from_unix_nanos(unix_nanos(now)), now);
        assert_eq!(
            unix_nanos(SystemTime::UNIX_EPOCH - Duration::from_secs(1)),
            0
        );
        assert_eq!(unix_nanos(end_of_time()), u64::MAX);
    }
}
