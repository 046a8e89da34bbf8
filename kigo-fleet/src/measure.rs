//! Measuring a replica: its latencies, its memory, its shared tallies.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// `mutex`'s guard, even if a worker panicked while holding it (a tally stays readable).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `duration` in whole microseconds, saturating.
pub(crate) fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

/// This process's peak resident memory, from `/proc/self/status` (Linux only).
pub(crate) fn peak_memory_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The latency at `share` of the sorted `micros`, in milliseconds (nearest rank).
pub(crate) fn quantile_ms(micros: &[u32], share: f64) -> f64 {
    if micros.is_empty() {
        return 0.0;
    }
    let rank = (share * micros.len() as f64).ceil() as usize;
    f64::from(micros[rank.clamp(1, micros.len()) - 1]) / 1_000.0
}
