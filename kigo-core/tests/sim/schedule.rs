//! A run's schedule: the clocks of the replicas, the faults and the callers, all drawn from one
//! seed, so that a seed names one run exactly.

use std::fmt;
use std::time::Duration;

use kigo_testkit::Scripted;

use super::faults::{CrashKind, Fault, FaultKind, StoreFault};

/// Replicas in the fleet.
pub const REPLICAS: usize = 8;
/// The partners whose tokens the fleet shares.
pub const PARTNERS: [&str; 2] = ["acme", "globex"];
/// How long faults may happen: long enough for two or three renewals of 30-minute tokens.
pub const ACTIVE: Duration = Duration::from_secs(75 * 60);
/// The quiet tail after it: no faults, callers only. Longer than the longest backoff a fault
/// leaves behind (the 10-minute permanent-failure backoff).
pub const TAIL: Duration = Duration::from_secs(20 * 60);
/// When in the tail every replica is asked for every key once more: after every fault's
/// aftermath (see [`FaultKind::aftermath`]), so that keys paused by a permanent failure, which
/// are not retried in the background, get a caller that restarts them.
pub const PROBE: Duration = Duration::from_secs(12 * 60);
/// The largest clock offset of a replica: two replicas then differ by at most 30 s, the
/// expiry policy's default skew allowance.
pub const MAX_SKEW_MS: i64 = 15_000;

pub const SECOND: Duration = Duration::from_secs(1);
pub const MINUTE: Duration = Duration::from_secs(60);

/// Everything that happens in one run, from one seed.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub seed: u64,
    /// Each replica's clock offset from the true time, in ms, at the start.
    pub skews_ms: [i64; REPLICAS],
    /// Each replica's manager seed (jitter, backoff draws), at the start.
    pub manager_seeds: [u64; REPLICAS],
    /// How long the token endpoint takes to answer.
    pub endpoint_latency: Duration,
    /// How long the tokens it creates live: Kigo's 30 minutes in half the runs, else 5 to 30
    /// minutes, for more renewals to disturb and the policy's margin cap.
    pub lifetime: Duration,
    pub faults: Vec<Fault>,
    pub calls: Vec<Call>,
}

/// Callers on one replica asking for one partner's token at once, each then making a request
/// with it that takes `request`: a 401 comes back that much later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Call {
    pub at: Duration,
    pub replica: usize,
    pub partner: usize,
    pub callers: u32,
    pub request: Duration,
}

impl Schedule {
    /// The run that `seed` names. One seed in eight is fault-free: clock skew and callers only.
    pub fn generate(seed: u64) -> Self {
        let mut rng = fastrand::Rng::with_seed(seed);
        let skews_ms = std::array::from_fn(|_| skew(&mut rng));
        let manager_seeds = std::array::from_fn(|_| rng.u64(..));
        let endpoint_latency = Duration::from_millis(rng.u64(100..=3_000));
        let lifetime = if rng.bool() {
            30 * MINUTE
        } else {
            between(&mut rng, 5 * MINUTE, 30 * MINUTE)
        };
        let fault_count = if rng.u8(..8) == 0 {
            0
        } else {
            rng.usize(1..=6)
        };
        let mut calls = active_calls(&mut rng);
        calls.extend(tail_calls(&mut rng));
        calls.sort_by_key(|call| call.at);
        let renewals = Renewals::expected(&calls, endpoint_latency, lifetime);
        let mut faults: Vec<Fault> = (0..fault_count)
            .map(|_| fault(&mut rng, &renewals))
            .collect();
        faults.sort_by_key(|fault| fault.from);
        Self {
            seed,
            skews_ms,
            manager_seeds,
            endpoint_latency,
            lifetime,
            faults,
            calls,
        }
    }

    /// Whether nothing goes wrong in this run but clock skew.
    pub fn fault_free(&self) -> bool {
        self.faults.is_empty()
    }

    /// Creations that may be wasted in this run, per partner (0 when no fault may waste any).
    pub fn creations_it_may_waste(&self) -> u64 {
        self.faults.iter().map(Fault::creations_it_may_waste).sum()
    }

    /// Whether a fault explains trouble in `from..=to` (since the start of the run).
    pub fn explained(&self, from: Duration, to: Duration) -> Option<&Fault> {
        self.faults.iter().find(|fault| fault.explains(from, to))
    }

    /// Whether a store fault explains trouble in `from..=to`.
    pub fn store_failed(&self, from: Duration, to: Duration) -> bool {
        self.faults
            .iter()
            .any(|fault| fault.kind.is_store() && fault.explains(from, to))
    }
}

/// A replica's clock offset, in ms: none half the time, else up to `MAX_SKEW_MS` either way.
fn skew(rng: &mut fastrand::Rng) -> i64 {
    if rng.bool() {
        rng.i64(-MAX_SKEW_MS..=MAX_SKEW_MS)
    } else {
        0
    }
}

/// A random time before `within`, to the millisecond.
fn moment(rng: &mut fastrand::Rng, within: Duration) -> Duration {
    Duration::from_millis(rng.u64(..within.as_millis() as u64))
}

/// A random time from `low` to `high`, to the millisecond.
fn between(rng: &mut fastrand::Rng, low: Duration, high: Duration) -> Duration {
    Duration::from_millis(rng.u64(low.as_millis() as u64..=high.as_millis() as u64))
}

/// When the fleet is expected to renew each partner's token, to aim faults at: a fault in a
/// quiet stretch proves little. The first token comes with a partner's first caller; the fleet
/// renews it when the replica with the earliest refresh point (of eight, near 65 % of the
/// lifetime) reaches it, and so on.
struct Renewals {
    first: [Option<Duration>; PARTNERS.len()],
    period: Duration,
}

/// A little more than 65 % of the lifetime: the earliest of eight refresh points.
const RENEWAL_SHARE: f64 = 0.661;

impl Renewals {
    fn expected(calls: &[Call], latency: Duration, lifetime: Duration) -> Self {
        let first = std::array::from_fn(|partner| {
            calls
                .iter()
                .find(|call| call.partner == partner)
                .map(|call| call.at + latency)
        });
        Self {
            first,
            period: lifetime.mul_f64(RENEWAL_SHARE),
        }
    }

    /// A moment near one of the renewals of the active phase, or any moment if none is known.
    fn near_one(&self, rng: &mut fastrand::Rng) -> Duration {
        let renewal = self.first[rng.usize(..PARTNERS.len())]
            .map(|first| first + self.period * rng.u32(1..=3))
            .filter(|at| *at < ACTIVE);
        match renewal {
            Some(at) => between(rng, at.saturating_sub(MINUTE), at + MINUTE).min(ACTIVE - MINUTE),
            None => moment(rng, ACTIVE - MINUTE),
        }
    }
}

fn fault(rng: &mut fastrand::Rng, renewals: &Renewals) -> Fault {
    let from = if rng.bool() {
        renewals.near_one(rng)
    } else {
        moment(rng, ACTIVE - MINUTE)
    };
    let replica = rng.usize(..REPLICAS);
    let partner = rng.usize(..PARTNERS.len());
    let (kind, length) = match rng.u8(..16) {
        0 => (
            FaultKind::Store(StoreFault::Down),
            between(rng, 5 * SECOND, 5 * MINUTE),
        ),
        1 => (
            FaultKind::Store(StoreFault::Hangs),
            between(rng, 5 * SECOND, 3 * MINUTE),
        ),
        2 => {
            // Half the time within the manager's 5-s store timeout, else beyond it: requests
            // still arrive, a commit perhaps after its lease lapsed.
            let latency = if rng.bool() {
                between(rng, Duration::from_millis(50), 5 * SECOND)
            } else {
                between(rng, 5 * SECOND, 40 * SECOND)
            };
            (
                FaultKind::Store(StoreFault::Slow(latency)),
                between(rng, 10 * SECOND, 5 * MINUTE),
            )
        }
        3 => (
            FaultKind::Store(StoreFault::Flaky(rng.u64(1..=20))),
            between(rng, MINUTE, 20 * MINUTE),
        ),
        4 => (
            FaultKind::Store(StoreFault::CommitsFail(rng.u64(1..=3))),
            between(rng, MINUTE, 30 * MINUTE),
        ),
        5 => (
            FaultKind::Store(StoreFault::CommitAnswersLost(rng.u64(1..=3))),
            between(rng, MINUTE, 30 * MINUTE),
        ),
        6 => (FaultKind::NoticesLost, between(rng, MINUTE, 40 * MINUTE)),
        7 => (FaultKind::FeedsCut, Duration::ZERO),
        8 => (FaultKind::NoticeForged { partner }, Duration::ZERO),
        9 => {
            let action = match rng.u8(..4) {
                0 => Scripted::Transient(None),
                1 => Scripted::Transient(Some(between(rng, 5 * SECOND, 2 * MINUTE))),
                2 => Scripted::Permanent,
                _ => Scripted::Hang,
            };
            (
                FaultKind::EndpointDown(action),
                between(rng, 5 * SECOND, 10 * MINUTE),
            )
        }
        10 => {
            let how = match rng.u8(..3) {
                0 => CrashKind::Killed,
                1 => CrashKind::ShutDown,
                _ => CrashKind::Dropped,
            };
            let kind = FaultKind::Crash {
                replica,
                how,
                skew_ms: skew(rng),
                seed: rng.u64(..),
            };
            (kind, between(rng, SECOND, 5 * MINUTE))
        }
        11 | 12 => (FaultKind::Rejected { replica, partner }, Duration::ZERO),
        13 => {
            let latency = between(rng, 5 * SECOND, MINUTE);
            let kind = FaultKind::Store(StoreFault::LinkSlow { replica, latency });
            (kind, between(rng, 10 * SECOND, 3 * MINUTE))
        }
        14 => {
            let kind = FaultKind::Store(StoreFault::CommitsStalled { replica });
            (kind, between(rng, 10 * SECOND, 3 * MINUTE))
        }
        _ => (FaultKind::Revoked { partner }, Duration::ZERO),
    };
    Fault {
        from,
        until: (from + length).min(ACTIVE),
        kind,
    }
}

/// Callers at random times of the active phase, alone or in small groups; one time in five, a
/// burst on every replica at once.
fn active_calls(rng: &mut fastrand::Rng) -> Vec<Call> {
    let mut calls = Vec::new();
    for _ in 0..rng.usize(40..=80) {
        let at = moment(rng, ACTIVE);
        let partner = rng.usize(..PARTNERS.len());
        let callers = rng.u32(1..=4);
        let request = request(rng);
        let call = |replica| Call {
            at,
            replica,
            partner,
            callers,
            request,
        };
        if rng.u8(..5) == 0 {
            calls.extend((0..REPLICAS).map(call));
        } else {
            calls.push(call(rng.usize(..REPLICAS)));
        }
    }
    calls
}

/// How long a request with the token takes: instant half the time, else up to 3 s.
fn request(rng: &mut fastrand::Rng) -> Duration {
    if rng.bool() {
        Duration::ZERO
    } else {
        between(rng, Duration::from_millis(1), 3 * SECOND)
    }
}

/// In the quiet tail: a few random callers, and one probe per replica and partner.
fn tail_calls(rng: &mut fastrand::Rng) -> Vec<Call> {
    let random = (0..rng.usize(5..=15)).map(|_| Call {
        at: ACTIVE + moment(rng, TAIL),
        replica: rng.usize(..REPLICAS),
        partner: rng.usize(..PARTNERS.len()),
        callers: 1,
        request: request(rng),
    });
    let probes = (0..REPLICAS).flat_map(|replica| {
        (0..PARTNERS.len()).map(move |partner| Call {
            at: ACTIVE + PROBE,
            replica,
            partner,
            callers: 1,
            request: Duration::ZERO,
        })
    });
    random.chain(probes).collect()
}

/// A time since the start of the run, as `+hh:mm:ss.mmm`.
pub struct At(pub Duration);

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        let (h, m, s) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60);
        write!(f, "+{h:02}:{m:02}:{s:02}.{:03}", ms % 1000)
    }
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}  {} caller(s) on r{} ask for {}, requests of {:?}",
            At(self.at),
            self.callers,
            self.replica,
            PARTNERS[self.partner],
            self.request
        )
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "seed {}", self.seed)?;
        let clocks: Vec<String> = self
            .skews_ms
            .iter()
            .enumerate()
            .map(|(replica, skew)| format!("r{replica} {skew:+} ms"))
            .collect();
        writeln!(f, "clocks: {}", clocks.join(", "))?;
        writeln!(f, "token endpoint latency: {:?}", self.endpoint_latency)?;
        writeln!(f, "token lifetime: {:?}", self.lifetime)?;
        writeln!(f, "faults ({}):", self.faults.len())?;
        for fault in &self.faults {
            writeln!(f, "  {fault}")?;
        }
        writeln!(f, "callers ({} events):", self.calls.len())?;
        for call in &self.calls {
            writeln!(f, "  {call}")?;
        }
        Ok(())
    }
}
