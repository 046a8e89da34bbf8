//! Counters of the slow path. The hot path counts nothing, so that it writes no shared memory.

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident,)*) => {
        #[derive(Debug, Default)]
        pub(super) struct Metrics {
            $(pub(super) $name: AtomicU64,)*
        }

        /// A reading of one manager's counters.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        #[non_exhaustive]
        pub struct MetricsSnapshot {
            $($(#[$doc])* pub $name: u64,)*
        }

        impl Metrics {
            pub(super) fn snapshot(&self) -> MetricsSnapshot {
                MetricsSnapshot {
                    $($name: self.$name.load(Ordering::Relaxed),)*
                }
            }
        }
    };
}

counters! {
    /// Calls that found no valid cached token and went to the slow path (waited).
    waits,
    /// Refresh flights started (ahead of expiry, on demand, or on a store notice).
    flights,
    /// Tokens the source created, through the store or not.
    creations,
    /// Tokens created without the store, under the store-failure policy.
    local_creations,
    /// Failed calls to the source.
    creation_failures,
    /// Tokens taken from the store that another replica committed.
    adoptions,
    /// Times a flight waited for another replica's lease.
    lease_waits,
    /// Commits the store rejected (lease lost).
    rejected_commits,
    /// Failed store operations.
    store_errors,
    /// Cached tokens dropped by `invalidate`.
    invalidations,
    /// 401s for a token younger than the minimum age, which kept it.
    ignored_rejections,
    /// Refreshes and background tasks that panicked (and were started afresh).
    panics,
}

pub(super) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}
