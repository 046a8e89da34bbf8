//! What can go wrong in a run, how long its effects last, and what it may cost.

use std::fmt;
use std::time::Duration;

use kigo_testkit::Scripted;

use super::schedule::{At, MINUTE, PARTNERS, REPLICAS, SECOND};

/// A fault, from `from` until `until` (equal for an instant one), since the start of the run.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    pub from: Duration,
    pub until: Duration,
    pub kind: FaultKind,
}

/// What goes wrong.
#[derive(Debug, Clone, PartialEq)]
pub enum FaultKind {
    /// The store, or one replica's link to it.
    Store(StoreFault),
    /// Change notices are lost.
    NoticesLost,
    /// Every change feed ends (a lost connection); the managers subscribe again.
    FeedsCut,
    /// A notice for a partner whose token did not change.
    NoticeForged { partner: usize },
    /// Every call to the token endpoint does this.
    EndpointDown(Scripted),
    /// A replica dies; it starts again as a new manager at `until`.
    Crash {
        replica: usize,
        how: CrashKind,
        skew_ms: i64,
        seed: u64,
    },
    /// A request on a replica gets a 401 with its cached token: it reports it and asks again.
    Rejected { replica: usize, partner: usize },
    /// The API revokes every token of a partner issued so far: every request with one gets a
    /// 401, reports it and asks again.
    Revoked { partner: usize },
}

/// What goes wrong with the store.
#[derive(Debug, Clone, PartialEq)]
pub enum StoreFault {
    /// Every store operation fails.
    Down,
    /// Every store operation hangs (a black-holed connection).
    Hangs,
    /// Every store operation takes this long (half there, half back).
    Slow(Duration),
    /// One replica's connection to the store is this slow (half there, half back): a holder
    /// whose commit arrives after its lease lapsed, as a paused process's would.
    LinkSlow { replica: usize, latency: Duration },
    /// One replica's commits stall on the way to the store and arrive when the fault ends: a
    /// holder paused between its creation and its commit, past its lease.
    CommitsStalled { replica: usize },
    /// The next this many store operations fail.
    Flaky(u64),
    /// The next this many commits fail before reaching the store.
    CommitsFail(u64),
    /// The next this many commits are made, but their answer is lost.
    CommitAnswersLost(u64),
}

/// How a replica dies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashKind {
    /// SIGKILL: nothing it sends reaches the store any more; its tasks stop where they are.
    Killed,
    /// `shutdown()` while it works: flights cancelled, leases released.
    ShutDown,
    /// The last `TokenManager` dropped while a flight runs: the flight ends on its own.
    Dropped,
}

impl FaultKind {
    /// Whether the store misbehaves.
    pub fn is_store(&self) -> bool {
        matches!(self, Self::Store(_))
    }

    /// Whether the fault may cost creations that are never committed: the store losing or
    /// refusing a holder's commit, a lease lapsing while the store is slow, a replica that
    /// creates without the store, a replica dying between creation and commit.
    pub fn may_waste_creations(&self) -> bool {
        self.is_store() || matches!(self, Self::Crash { .. })
    }

    /// How long after the fault ends its effects may still hold a renewal back, by the
    /// manager's defaults; `None` for faults that must never make a caller wait (lost, forged
    /// or cut notices: the poll and the re-read cover them), or that a caller's own state
    /// explains (a 401 drops that replica's token).
    pub fn aftermath(&self) -> Option<Duration> {
        // A poll interval (500 ms) and a clock step of slack.
        let settle = SECOND;
        let store = Duration::from_secs(
            30 // the store backoff's cap
                + 5 // one store timeout
                + 30 // a lease claimed during the fault, lapsing
                + 30, // the local creation interval
        );
        match self {
            Self::Store(_) => Some(store + settle),
            // The transient backoff's cap, and the server's delay if it gave one.
            Self::EndpointDown(Scripted::Transient(retry_after)) => {
                Some(retry_after.unwrap_or_default() + 30 * SECOND + settle)
            }
            // A hang is cut by the 10-s creation timeout, then backs off as a transient failure.
            Self::EndpointDown(Scripted::Hang) => Some(40 * SECOND + settle),
            // The permanent backoff's cap (10 minutes), shared through the store.
            Self::EndpointDown(_) => Some(10 * MINUTE + settle),
            // The dead replica's lease lapses (30 s).
            Self::Crash { .. } => Some(30 * SECOND + settle),
            Self::NoticesLost
            | Self::FeedsCut
            | Self::NoticeForged { .. }
            | Self::Rejected { .. }
            | Self::Revoked { .. } => None,
        }
    }
}

impl Fault {
    /// Whether this fault, or what it leaves behind, overlaps `from..=to`: it then explains a
    /// token that went stale, a caller that waited or failed, in that span.
    pub fn explains(&self, from: Duration, to: Duration) -> bool {
        // A dead replica troubles the others only through the lease it held when it died.
        let end = match self.kind {
            FaultKind::Crash { .. } => self.from,
            _ => self.until,
        };
        self.kind
            .aftermath()
            .is_some_and(|aftermath| self.from <= to && from <= end + aftermath)
    }

    /// Creations the fault may waste, per partner: each replica once per 30-s local creation
    /// interval while it lasts, and once more at either edge (a flight cut by its start, a
    /// lease claimed before its end); one for a replica that dies.
    pub fn creations_it_may_waste(&self) -> u64 {
        match self.kind {
            _ if !self.kind.may_waste_creations() => 0,
            FaultKind::Crash { .. } => 1,
            _ => {
                let intervals = (self.until - self.from).as_secs() / 30;
                REPLICAS as u64 * (2 + intervals)
            }
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}  {}", At(self.from), self.kind)?;
        if self.until > self.from {
            write!(f, ", until {}", At(self.until))?;
        }
        Ok(())
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Store(fault) => write!(f, "{fault}"),
            Self::NoticesLost => write!(f, "change notices lost"),
            Self::FeedsCut => write!(f, "every change feed cut"),
            Self::NoticeForged { partner } => {
                write!(f, "a forged change notice for {}", PARTNERS[*partner])
            }
            Self::EndpointDown(action) => write!(f, "token endpoint: every call {action:?}"),
            Self::Crash {
                replica,
                how,
                skew_ms,
                ..
            } => write!(
                f,
                "r{replica} {how:?}; restarts (clock {skew_ms:+} ms) at the end"
            ),
            Self::Rejected { replica, partner } => write!(
                f,
                "a request on r{replica} gets a 401 with its {} token",
                PARTNERS[*partner]
            ),
            Self::Revoked { partner } => {
                write!(
                    f,
                    "the API revokes every {} token so far",
                    PARTNERS[*partner]
                )
            }
        }
    }
}

impl fmt::Display for StoreFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Down => write!(f, "store down (every operation fails)"),
            Self::Hangs => write!(f, "store hangs (no operation answers)"),
            Self::Slow(latency) => write!(f, "store slow ({latency:?} per operation)"),
            Self::LinkSlow { replica, latency } => {
                write!(
                    f,
                    "r{replica}'s link to the store slow ({latency:?} per operation)"
                )
            }
            Self::CommitsStalled { replica } => {
                write!(f, "r{replica}'s commits stall on the way to the store")
            }
            Self::Flaky(n) => write!(f, "store flaky (the next {n} operations fail)"),
            Self::CommitsFail(n) => write!(f, "the next {n} commits fail"),
            Self::CommitAnswersLost(n) => {
                write!(f, "the next {n} commits are made but their answers lost")
            }
        }
    }
}
