//! What the manager counts: its own counters ([`MetricsSnapshot`]), and the same events through
//! the `metrics` facade (feature `metrics`) for the application's recorder. Slow path only: the
//! hot path counts nothing, so that it writes no shared memory.
//!
//! The series, their labels and what they count are listed in the crate's README ("Metrics");
//! labels are low-cardinality: never a user ID or a partner's token.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use crate::{StoreError, TokenKey};

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident,)*) => {
        #[derive(Debug, Default)]
        pub(super) struct Counters {
            $($name: AtomicU64,)*
        }

        /// A reading of one manager's counters.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        #[non_exhaustive]
        pub struct MetricsSnapshot {
            $($(#[$doc])* pub $name: u64,)*
        }

        impl Counters {
            fn snapshot(&self) -> MetricsSnapshot {
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
    /// Refresh flights started (ahead of expiry, on demand, after a 401, or on a store notice).
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

/// Why a refresh runs, as the `reason` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RefreshReason {
    /// The refresh point came.
    Ahead,
    /// A caller found no valid token.
    Needed,
    /// A caller found none because a 401 dropped it.
    Rejected,
    /// The store announced a change.
    StoreChange,
}

impl RefreshReason {
    /// As the `reason` label and the refresh span say it.
    pub(super) fn label(self) -> &'static str {
        match self {
            Self::Ahead => "ahead",
            Self::Needed => "needed",
            Self::Rejected => "rejected",
            Self::StoreChange => "store_change",
        }
    }
}

/// What became of a claim of the refresh lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LeaseOutcome {
    /// Granted to this replica.
    Acquired,
    /// Another replica holds it.
    Held,
    /// Granted, but the commit under it was rejected (it lapsed, or passed to another holder).
    Lost,
}

/// A store operation, as the `op` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StoreOp {
    Load,
    Acquire,
    Release,
    Commit,
    Invalidate,
    Cooldown,
}

impl StoreOp {
    fn label(self) -> &'static str {
        match self {
            Self::Load => "load",
            Self::Acquire => "acquire",
            Self::Release => "release",
            Self::Commit => "commit",
            Self::Invalidate => "invalidate",
            Self::Cooldown => "cooldown",
        }
    }
}

/// The manager's counters, and the facade's series when the feature is on.
#[derive(Debug, Default)]
pub(super) struct Metrics {
    counters: Counters,
}

impl Metrics {
    pub(super) fn snapshot(&self) -> MetricsSnapshot {
        self.counters.snapshot()
    }

    pub(super) fn refresh_started(&self, key: &TokenKey, reason: RefreshReason) {
        bump(&self.counters.flights);
        let reason = match reason {
            RefreshReason::Ahead => "ahead",
            RefreshReason::Needed => "needed",
            RefreshReason::Rejected => "rejected",
            RefreshReason::StoreChange => "store_change",
        };
        facade::count(
            "kigo_refreshes_total",
            &[("level", level(key)), ("reason", reason)],
        );
    }

    pub(super) fn created(&self, key: &TokenKey, without_store: bool) {
        bump(&self.counters.creations);
        if without_store {
            bump(&self.counters.local_creations);
        }
        let store = if without_store { "bypassed" } else { "shared" };
        facade::count(
            "kigo_creations_total",
            &[
                ("level", level(key)),
                ("outcome", "created"),
                ("store", store),
            ],
        );
    }

    pub(super) fn creation_failed(&self, key: &TokenKey, transient: bool) {
        bump(&self.counters.creation_failures);
        let class = if transient { "transient" } else { "permanent" };
        facade::count(
            "kigo_creations_total",
            &[
                ("level", level(key)),
                ("outcome", class),
                ("store", "shared"),
            ],
        );
    }

    pub(super) fn adopted(&self, key: &TokenKey) {
        bump(&self.counters.adoptions);
        facade::count("kigo_adoptions_total", &[("level", level(key))]);
    }

    pub(super) fn lease(&self, key: &TokenKey, outcome: LeaseOutcome) {
        let outcome = match outcome {
            LeaseOutcome::Acquired => "acquired",
            LeaseOutcome::Held => "held",
            LeaseOutcome::Lost => {
                bump(&self.counters.rejected_commits);
                "lost"
            }
        };
        facade::count(
            "kigo_leases_total",
            &[("level", level(key)), ("outcome", outcome)],
        );
    }

    /// A flight waits for another replica's commit.
    pub(super) fn waiting_for_holder(&self) {
        bump(&self.counters.lease_waits);
    }

    pub(super) fn store_op(&self, op: StoreOp, outcome: Result<(), &StoreError>) {
        let outcome = match outcome {
            Ok(()) => "ok",
            Err(StoreError::Misconfigured { .. }) => "misconfigured",
            Err(_) => "unavailable",
        };
        if outcome != "ok" {
            bump(&self.counters.store_errors);
        }
        facade::count(
            "kigo_store_operations_total",
            &[("op", op.label()), ("outcome", outcome)],
        );
    }

    pub(super) fn waited(&self, key: &TokenKey, waited: Duration, served: bool) {
        bump(&self.counters.waits);
        let outcome = if served { "served" } else { "failed" };
        facade::record(
            "kigo_wait_seconds",
            &[("level", level(key)), ("outcome", outcome)],
            waited.as_secs_f64(),
        );
    }

    pub(super) fn rejection(&self, key: &TokenKey, dropped: bool) {
        bump(if dropped {
            &self.counters.invalidations
        } else {
            &self.counters.ignored_rejections
        });
        let outcome = if dropped { "dropped" } else { "kept_young" };
        facade::count(
            "kigo_rejections_total",
            &[("level", level(key)), ("outcome", outcome)],
        );
    }

    pub(super) fn cooldown(&self, key: &TokenKey, started_here: bool) {
        let origin = if started_here { "here" } else { "fleet" };
        facade::count(
            "kigo_cooldowns_total",
            &[("level", level(key)), ("origin", origin)],
        );
    }

    pub(super) fn panicked(&self) {
        bump(&self.counters.panics);
        facade::count("kigo_panics_total", &[]);
    }

    /// A partner-level token was installed: its expiry, as a gauge an alert compares with now.
    pub(super) fn installed(&self, key: &TokenKey, expires_at: SystemTime) {
        if level(key) == "partner" {
            let unix = expires_at
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default();
            facade::gauge("kigo_partner_token_expires_at_seconds", unix.as_secs_f64());
        }
    }

    /// Whether this manager is degraded: its store failing, or a key without a token.
    pub(super) fn degraded(&self, degraded: bool) {
        facade::gauge("kigo_degraded", f64::from(u8::from(degraded)));
    }
}

fn level(key: &TokenKey) -> &'static str {
    match key {
        TokenKey::Partner(_) => "partner",
        TokenKey::User { .. } => "user",
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// The `metrics` facade, or nothing without the feature.
#[cfg(feature = "metrics")]
mod facade {
    pub(super) fn count(name: &'static str, labels: &[(&'static str, &'static str)]) {
        ::metrics::counter!(name, labels).increment(1);
    }

    pub(super) fn record(name: &'static str, labels: &[(&'static str, &'static str)], value: f64) {
        ::metrics::histogram!(name, labels).record(value);
    }

    pub(super) fn gauge(name: &'static str, value: f64) {
        ::metrics::gauge!(name).set(value);
    }
}

#[cfg(not(feature = "metrics"))]
mod facade {
    pub(super) fn count(_: &'static str, _: &[(&'static str, &'static str)]) {}

    pub(super) fn record(_: &'static str, _: &[(&'static str, &'static str)], _: f64) {}

    pub(super) fn gauge(_: &'static str, _: f64) {}
}
