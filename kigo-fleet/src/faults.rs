//! `--faults`: named phases, each a run of kigo's fleet with one fault from a third of the run
//! on. What a fault does to the fleet is in its doc comment.

use std::time::Duration;

use examples::replicas::Fleet;
use kigo_testkit::mock::{Endpoint, Fault as MockFault, MockKigo, RetryAfter};

use crate::Failure;

/// A fault injected during kigo's run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Every token is revoked once: a 401 storm that must cost one renewal.
    Revocation,
    /// The token endpoint answers 503 for a while.
    Endpoint5xx,
    /// The token endpoint answers 429 with `Retry-After: 1` for a while.
    TooManyRequests,
    /// One replica is stopped (SIGSTOP) past its lease, then resumed (SIGCONT).
    PausedReplica,
}

impl Fault {
    /// Every fault, in the order run.
    pub(crate) const ALL: [Self; 4] = [
        Self::Revocation,
        Self::Endpoint5xx,
        Self::TooManyRequests,
        Self::PausedReplica,
    ];

    /// Its name in reports.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Revocation => "revocation of every token",
            Self::Endpoint5xx => "endpoint 503 for a while",
            Self::TooManyRequests => "endpoint 429 + Retry-After for a while",
            Self::PausedReplica => "one replica SIGSTOPped past its lease",
        }
    }

    /// The fault over a run of `duration` with tokens of `lifetime`: from a third of the run on;
    /// an outage of the endpoint for a tenth of a token's life (shorter than the time between a
    /// token's refresh point and its stale point, so that a valid token exists throughout, unless
    /// a `Retry-After` asks for longer), a paused replica past the replicas' 2-second lease.
    pub(crate) fn schedule(self, duration: Duration, lifetime: Duration) -> Schedule {
        let long = match self {
            Self::PausedReplica => Duration::from_millis(2_500),
            _ => lifetime / 10,
        };
        Schedule {
            fault: self,
            from: duration / 3,
            until: duration / 3 + long,
            state: State::Before,
        }
    }
}

/// Where a scheduled fault is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Before,
    During,
    After,
}

/// A fault and when it starts and ends, counted from the start of the traffic.
#[derive(Debug)]
pub(crate) struct Schedule {
    fault: Fault,
    from: Duration,
    until: Duration,
    state: State,
}

impl Schedule {
    /// Starts or ends the fault if `elapsed` says so.
    pub(crate) fn step(
        &mut self,
        elapsed: Duration,
        mock: &MockKigo,
        fleet: &Fleet,
    ) -> Result<(), Failure> {
        if self.state == State::Before && elapsed >= self.from {
            self.state = State::During;
            self.begin(mock, fleet)?;
        }
        if self.state == State::During && elapsed >= self.until {
            self.end(mock, fleet)?;
        }
        Ok(())
    }

    fn begin(&self, mock: &MockKigo, fleet: &Fleet) -> Result<(), Failure> {
        match self.fault {
            Fault::Revocation => {
                mock.revoke_all();
            }
            Fault::Endpoint5xx => {
                mock.inject_always(Endpoint::PartnerSession, Some(MockFault::Status(503)));
            }
            Fault::TooManyRequests => {
                let retry = Some(RetryAfter::Seconds(1));
                let fault = MockFault::TooManyRequests(retry);
                mock.inject_always(Endpoint::PartnerSession, Some(fault));
            }
            Fault::PausedReplica => signal(fleet, "-STOP")?,
        }
        Ok(())
    }

    /// Ends the fault if it is on.
    pub(crate) fn end(&mut self, mock: &MockKigo, fleet: &Fleet) -> Result<(), Failure> {
        if self.state != State::During {
            return Ok(());
        }
        self.state = State::After;
        match self.fault {
            Fault::Revocation => {}
            Fault::Endpoint5xx | Fault::TooManyRequests => {
                mock.inject_always(Endpoint::PartnerSession, None);
            }
            Fault::PausedReplica => signal(fleet, "-CONT")?,
        }
        Ok(())
    }
}

/// Sends `signal` to the first replica, with the system's `kill` (no unsafe code here).
fn signal(fleet: &Fleet, signal: &str) -> Result<(), Failure> {
    let Some(pid) = fleet.pids().first().copied() else {
        return Ok(());
    };
    let status = std::process::Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()?;
    if !status.success() {
        return Err(format!("kill {signal} {pid} failed: {status}").into());
    }
    Ok(())
}
