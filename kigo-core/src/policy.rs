//! When to renew, when a token may no longer be handed out, how to back off, and what to do
//! without the store.

use std::time::{Duration, SystemTime};

use crate::{Token, time};

/// A policy value out of its range.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid policy: {0}")]
pub struct InvalidPolicy(&'static str);

/// The stale margin never exceeds this share of a token's lifetime, so that short-lived tokens
/// (seconds, in tests and demos) stay usable for most of their life.
const MAX_MARGIN_SHARE: f64 = 0.2;

/// When a token is renewed and until when it is handed out.
///
/// For a token of lifetime `L` issued at `I` and expiring at `E`:
/// - **refresh point**: `I + L × (refresh_share − jitter_share × u)`, where `u ∈ [0, 1)` is drawn
///   once per replica, so that the replicas of a fleet reach their refresh points spread over a
///   window of `jitter_share × L` ending at `refresh_share × L`. The first replica to get there
///   renews; the others find the new token in the store.
/// - **stale point**: `E − min(min_remaining + clock_skew, 20 % of L)`: from then on the token is
///   never handed out. `min_remaining` is what a request needs to finish with the token;
///   `clock_skew` allows for replicas whose clocks disagree with the one that created it.
///
/// The defaults, for Kigo's 30-minute tokens:
/// - `refresh_share` 0.75: renew after 22.5 minutes, leaving 7.5 minutes for retries with backoff
///   if the endpoint is down, far more than the 30-second lease a crashed renewer may hold.
/// - `jitter_share` 0.10: spread a fleet's refresh points over 3 minutes (19.5 to 22.5 minutes).
/// - `min_remaining` 60 s: longer than a request with the default timeouts and one retry.
/// - `clock_skew` 30 s: NTP keeps servers within milliseconds; 30 s covers a badly drifting one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExpiryPolicy {
    refresh_share: f64,
    jitter_share: f64,
    min_remaining: Duration,
    clock_skew: Duration,
}

impl Default for ExpiryPolicy {
    fn default() -> Self {
        Self {
            refresh_share: 0.75,
            jitter_share: 0.10,
            min_remaining: Duration::from_secs(60),
            clock_skew: Duration::from_secs(30),
        }
    }
}

impl ExpiryPolicy {
    /// Sets the refresh window, as shares of the lifetime: replicas renew between
    /// `refresh_share − jitter_share` and `refresh_share`. `refresh_share` must be in
    /// `(0, 0.8]` (the stale margin takes up to the last fifth), and `jitter_share` in
    /// `[0, refresh_share)`. Both at once, so that no order of calls is refused.
    pub fn with_shares(
        mut self,
        refresh_share: f64,
        jitter_share: f64,
    ) -> Result<Self, InvalidPolicy> {
        if !(refresh_share > 0.0 && refresh_share <= 1.0 - MAX_MARGIN_SHARE) {
            return Err(InvalidPolicy("refresh share must be in (0, 0.8]"));
        }
        if !(jitter_share >= 0.0 && jitter_share < refresh_share) {
            return Err(InvalidPolicy("jitter share must be in [0, refresh share)"));
        }
        self.refresh_share = refresh_share;
        self.jitter_share = jitter_share;
        Ok(self)
    }

    /// Sets the validity a handed-out token must still have.
    #[must_use]
    pub fn with_min_remaining(mut self, min_remaining: Duration) -> Self {
        self.min_remaining = min_remaining;
        self
    }

    /// Sets the clock difference between replicas to allow for.
    #[must_use]
    pub fn with_clock_skew(mut self, clock_skew: Duration) -> Self {
        self.clock_skew = clock_skew;
        self
    }

    /// The latest refresh point, as a share of the lifetime.
    pub fn refresh_share(&self) -> f64 {
        self.refresh_share
    }

    /// The width of the refresh window, as a share of the lifetime.
    pub fn jitter_share(&self) -> f64 {
        self.jitter_share
    }

    /// When this replica (with its draw `jitter` in `[0, 1)`) renews `token`.
    pub fn refresh_at(&self, token: &Token, jitter: f64) -> SystemTime {
        let share = self.refresh_share - self.jitter_share * jitter.clamp(0.0, 1.0);
        let point = time::after(token.issued_at(), time::share(token.lifetime(), share));
        point.min(self.stale_at(token))
    }

    /// From when `token` is no longer handed out.
    pub fn stale_at(&self, token: &Token) -> SystemTime {
        let cap = time::share(token.lifetime(), MAX_MARGIN_SHARE);
        let margin = self.min_remaining.saturating_add(self.clock_skew).min(cap);
        time::before(token.expires_at(), margin)
    }
}

/// The longest server-given delay honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// How long to wait between failed attempts: exponential with "equal jitter", so that a fleet's
/// retries spread out instead of arriving together.
///
/// The `n`-th consecutive failure waits a random time in `[d/2, d]` with
/// `d = min(initial × 2^(n−1), max)`; a server-given delay (`Retry-After`) is a floor, honoured up
/// to an hour (a longer one, from a bug or a bad header, must not stop renewals for days). Defaults:
/// 1 s initial (an endpoint blip passes quickly), 30 s max (about 15 attempts fit in the 7.5
/// minutes of validity left at the refresh point).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffPolicy {
    initial: Duration,
    max: Duration,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(30),
        }
    }
}

impl BackoffPolicy {
    /// The pace for permanent failures (bad credentials): 1 minute doubling up to 10 minutes,
    /// with the same jitter. Slow, because only an operator fixes them; bounded, so that a fixed
    /// key is picked up within minutes without a restart.
    pub fn permanent() -> Self {
        Self {
            initial: Duration::from_secs(60),
            max: Duration::from_secs(600),
        }
    }

    /// A policy from `initial` to `max`; `initial` must be positive and not above `max`.
    pub fn new(initial: Duration, max: Duration) -> Result<Self, InvalidPolicy> {
        if initial.is_zero() || initial > max {
            return Err(InvalidPolicy("backoff needs 0 < initial <= max"));
        }
        Ok(Self { initial, max })
    }

    /// The delay after the `failures`-th consecutive failure (1-based), with `draw` in `[0, 1)`,
    /// and no shorter than `floor` (at most an hour of it).
    pub fn delay(&self, failures: u32, draw: f64, floor: Option<Duration>) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        let ceiling = self.initial.saturating_mul(1 << doublings).min(self.max);
        let delay = ceiling / 2 + time::share(ceiling / 2, draw);
        delay.max(floor.unwrap_or_default().min(MAX_RETRY_AFTER))
    }
}

/// What a manager does when it needs a new token and the store cannot be reached.
///
/// While a cached token is still valid it is served either way; the policy only decides what
/// happens once a new one is needed. The manager tries the store again (with backoff) at every
/// later refresh and rejoins the fleet by itself when the store answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreFailurePolicy {
    /// Hand out nothing: callers get [`crate::Error::StoreUnavailable`]. For partners whose token
    /// endpoint must never see more than one creation per renewal.
    FailClosed,
    /// Create a token without the store, at most once per `min_interval` per key in this process
    /// (one flight at a time). A fleet of N replicas then creates at most N tokens per interval.
    CreateLocally {
        /// The shortest time between two local creations for one key.
        min_interval: Duration,
    },
}

impl Default for StoreFailurePolicy {
    /// Creating locally, once per 30 s per key: the API stays usable during a store outage, and
    /// the duplicate creations it costs are bounded by the fleet size.
    fn default() -> Self {
        Self::CreateLocally {
            min_interval: Duration::from_secs(30),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TokenSecret;

    fn token(lifetime: Duration) -> Token {
        let issued = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        Token::new(TokenSecret::new("t"), issued, issued + lifetime).unwrap()
    }

    fn at(token: &Token, point: SystemTime) -> Duration {
        point.duration_since(token.issued_at()).unwrap()
    }

    #[test]
    fn defaults_for_thirty_minute_tokens() {
        let policy = ExpiryPolicy::default();
        let token = token(Duration::from_secs(1800));
        assert_eq!(
            at(&token, policy.refresh_at(&token, 0.0)),
            Duration::from_secs(1350)
        );
        assert_eq!(
            at(&token, policy.refresh_at(&token, 1.0)),
            Duration::from_secs(1170)
        );
        assert_eq!(
            at(&token, policy.stale_at(&token)),
            Duration::from_secs(1710)
        );
    }

    #[test]
    fn short_lifetimes_keep_a_usable_window() {
        let policy = ExpiryPolicy::default();
        let token = token(Duration::from_secs(10));
        assert_eq!(at(&token, policy.stale_at(&token)), Duration::from_secs(8));
        assert!(policy.refresh_at(&token, 0.0) < policy.stale_at(&token));
    }

    #[test]
    fn out_of_range_shares_are_refused() {
        let policy = ExpiryPolicy::default();
        for (refresh, jitter) in [
            (0.0, 0.0),
            (0.9, 0.1),
            (0.05, 0.1),
            (0.75, 0.75),
            (0.75, -0.1),
            (0.75, f64::NAN),
            (f64::NAN, 0.1),
        ] {
            assert!(
                policy.with_shares(refresh, jitter).is_err(),
                "{refresh} {jitter}"
            );
        }
        // A window below the default jitter share, whichever was set first before.
        let narrow = policy.with_shares(0.05, 0.0).unwrap();
        assert_eq!((narrow.refresh_share(), narrow.jitter_share()), (0.05, 0.0));
    }

    #[test]
    fn backoff_doubles_within_equal_jitter_bounds_and_honours_the_floor() {
        let backoff = BackoffPolicy::default();
        for failures in 1..40 {
            let ceiling =
                Duration::from_secs(1 << (failures - 1).min(5)).min(Duration::from_secs(30));
            assert_eq!(backoff.delay(failures, 0.0, None), ceiling / 2);
            assert_eq!(backoff.delay(failures, 1.0, None), ceiling);
        }
        let floor = Duration::from_secs(120);
        assert_eq!(backoff.delay(1, 0.5, Some(floor)), floor);
        assert_eq!(backoff.delay(1, 0.5, Some(Duration::MAX)), MAX_RETRY_AFTER);
        assert!(BackoffPolicy::new(Duration::ZERO, Duration::from_secs(1)).is_err());
        assert!(BackoffPolicy::new(Duration::from_secs(2), Duration::from_secs(1)).is_err());
    }
}
