//! Measuring a replica: its latencies, its memory, its shared tallies.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};

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

/// Request latencies at the median, the 99th and the 99.9th percentile (nearest rank).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Percentiles {
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) p999_ms: f64,
}

impl Percentiles {
    /// Over every latency of every replica (each replica's in microseconds).
    pub(crate) fn of<'a>(replicas: impl IntoIterator<Item = &'a [u32]>) -> Self {
        let mut micros: Vec<u32> = replicas.into_iter().flatten().copied().collect();
        micros.sort_unstable();
        Self {
            p50_ms: quantile_ms(&micros, 0.5),
            p99_ms: quantile_ms(&micros, 0.99),
            p999_ms: quantile_ms(&micros, 0.999),
        }
    }
}

/// The highest of the replicas' peak memories (in KiB, where known), in MiB.
pub(crate) fn highest_mib(peaks_kib: impl IntoIterator<Item = Option<u64>>) -> Option<f64> {
    let highest = peaks_kib.into_iter().flatten().max()?;
    Some(highest as f64 / 1024.0)
}

/// The latency at `share` of the sorted `micros`, in milliseconds (nearest rank).
fn quantile_ms(micros: &[u32], share: f64) -> f64 {
    if micros.is_empty() {
        return 0.0;
    }
    let rank = (share * micros.len() as f64).ceil() as usize;
    f64::from(micros[rank.clamp(1, micros.len()) - 1]) / 1_000.0
}
