//! `--faults`: named phases, each a run of kigo's fleet with one fault from a third of the run
//! on. What a fault does to the fleet is in its doc comment.

use std::time::Duration;

use examples::replicas::Fleet;
use kigo_test_services::LocalServer;
use kigo_testkit::mock::{Endpoint, Fault as MockFault, MockKigo, RetryAfter};
use tokio::process::Command as Process;
use tokio::time::{Instant, sleep};

use crate::Failure;
use crate::proxy::Proxy;
use crate::report::ReplicaReport;

/// Replicas while the fleet is scaled up.
pub(crate) const SCALED_TO: usize = 16;
/// How far ahead one replica's clock is.
pub(crate) const CLOCK_AHEAD: Duration = Duration::from_secs(60);
/// How often to look for the creation in progress whose holder is to be killed.
const LOOK_EVERY: Duration = Duration::from_millis(5);

/// A fault injected during kigo's run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Every token is revoked once: a 401 storm that must cost one renewal.
    Revocation,
    /// The token endpoint answers 503 for a while.
    Endpoint5xx,
    /// The token endpoint answers 429 with `Retry-After: 1` for a while.
    TooManyRequests,
    /// The replica creating the token is killed (SIGKILL) while its creation is in progress
    /// (slowed by the mock): its lease must lapse and another replica take over.
    KilledHolder,
    /// One replica is stopped (SIGSTOP) past its lease, then resumed (SIGCONT).
    PausedReplica,
    /// The fleet grows from 1 replica to 16, then shrinks to 1 again.
    Scaled,
    /// The store (a private `redis-server` of this run) is killed, then restarted.
    StoreRestarted,
    /// One replica's clock is 60 s ahead for the whole run.
    ClockAhead,
    /// One replica's connections to the store (a private `redis-server`, through a TCP proxy)
    /// are cut, and new ones refused, for a while.
    ConnectionCut,
}

impl Fault {
    /// Every fault, in the order run.
    pub(crate) const ALL: [Self; 9] = [
        Self::Revocation,
        Self::Endpoint5xx,
        Self::TooManyRequests,
        Self::KilledHolder,
        Self::PausedReplica,
        Self::Scaled,
        Self::StoreRestarted,
        Self::ClockAhead,
        Self::ConnectionCut,
    ];

    /// Its name in reports.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Revocation => "revocation of every token",
            Self::Endpoint5xx => "endpoint 503 for a while",
            Self::TooManyRequests => "endpoint 429 + Retry-After: 1",
            Self::KilledHolder => "lease holder SIGKILLed mid-creation",
            Self::PausedReplica => "one replica SIGSTOPped past its lease",
            Self::Scaled => "replicas scaled 1 -> 16 -> 1",
            Self::StoreRestarted => "store (redis-server) killed and restarted",
            Self::ClockAhead => "one replica's clock 60 s ahead",
            Self::ConnectionCut => "one replica's store connection cut",
        }
    }

    /// Replicas at the start of the phase, for a fleet of `replicas`.
    pub(crate) fn replicas_at_start(self, replicas: usize) -> usize {
        match self {
            Self::Scaled => 1,
            _ => replicas,
        }
    }

    /// Whether the phase runs on a private Redis of its own, to kill.
    pub(crate) fn needs_private_store(self) -> bool {
        matches!(self, Self::StoreRestarted | Self::ConnectionCut)
    }

    /// The fault over a run of `duration` with tokens of `lifetime`, from a third of the run on.
    ///
    /// An outage (of the endpoint, the store, or one replica's connection) starts 60 % into the
    /// life of the token created next, so that it covers the first replica's refresh point
    /// (65 to 75 %), and lasts 15 % of it, ending before the stale point (80 %): a valid token
    /// exists throughout, unless a `Retry-After` asks for longer. A paused replica outlasts the
    /// replicas' 2-second lease; the scaled fleet lasts a third of the run.
    pub(crate) fn schedule(self, duration: Duration, lifetime: Duration) -> Schedule {
        let outage = matches!(
            self,
            Self::Endpoint5xx | Self::TooManyRequests | Self::StoreRestarted | Self::ConnectionCut
        );
        let long = match self {
            Self::PausedReplica => Duration::from_millis(2_500),
            Self::Scaled => duration / 3,
            _ => lifetime.mul_f64(0.15),
        };
        Schedule {
            fault: self,
            lifetime,
            from: duration / 3,
            long,
            state: if outage {
                State::Armed { after: None }
            } else {
                State::Before
            },
        }
    }
}

/// What a fault acts on while the phase runs.
pub(crate) struct Live<'a> {
    pub(crate) mock: &'a MockKigo,
    pub(crate) fleet: &'a mut Fleet,
    /// The reports of replicas taken out of the fleet on the way.
    pub(crate) retired: &'a mut Vec<ReplicaReport>,
    /// The store's server, when the phase has a private one.
    pub(crate) store: Option<&'a LocalServer>,
    /// The proxy between the first replica and the store, when the phase has one.
    pub(crate) proxy: Option<&'a Proxy>,
    /// Replica `n` of the phase, to start.
    pub(crate) replica: &'a dyn Fn(usize) -> (String, Process),
}

/// Where a scheduled fault is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Starts at `from`.
    Before,
    /// Starts 60 % into the life of the first token created after `from` (the count of
    /// creations then, once `from` has come).
    Armed {
        after: Option<u64>,
    },
    /// Starts at this point of the run.
    Due(Duration),
    /// On until this point of the run.
    During(Duration),
    After,
}

/// A fault and when it starts and ends, counted from the start of the traffic.
#[derive(Debug)]
pub(crate) struct Schedule {
    fault: Fault,
    lifetime: Duration,
    from: Duration,
    long: Duration,
    state: State,
}

impl Schedule {
    /// Starts or ends the fault if `elapsed` says so.
    pub(crate) async fn step(
        &mut self,
        elapsed: Duration,
        live: &mut Live<'_>,
    ) -> Result<(), Failure> {
        let creations = live.mock.creations(&live.mock.partner_key());
        self.state = match self.state {
            State::Before if elapsed >= self.from => State::Due(elapsed),
            State::Armed { after: None } if elapsed >= self.from => State::Armed {
                after: Some(creations),
            },
            State::Armed { after: Some(count) } if creations > count => {
                State::Due(elapsed + self.lifetime.mul_f64(0.6))
            }
            state => state,
        };
        if let State::Due(at) = self.state
            && elapsed >= at
        {
            self.state = State::During(elapsed + self.long);
            self.begin(live).await?;
        }
        if let State::During(until) = self.state
            && elapsed >= until
        {
            self.end(live).await?;
        }
        Ok(())
    }

    async fn begin(&self, live: &mut Live<'_>) -> Result<(), Failure> {
        let mock = live.mock;
        match self.fault {
            Fault::Revocation => {
                mock.revoke_all();
            }
            Fault::Endpoint5xx => {
                mock.inject_always(Endpoint::PartnerSession, Some(MockFault::Status(503)));
            }
            Fault::TooManyRequests => {
                let fault = MockFault::TooManyRequests(Some(RetryAfter::Seconds(1)));
                mock.inject_always(Endpoint::PartnerSession, Some(fault));
            }
            Fault::KilledHolder => self.kill_next_creator(live).await?,
            Fault::PausedReplica => signal(live.fleet, "-STOP")?,
            Fault::Scaled => {
                let more = (live.fleet.replicas().len()..SCALED_TO).map(live.replica);
                live.fleet.add(more.collect::<Vec<_>>()).await?;
            }
            Fault::StoreRestarted => {
                if let Some(server) = live.store {
                    server.kill();
                }
            }
            Fault::ClockAhead => {}
            Fault::ConnectionCut => {
                if let Some(proxy) = live.proxy {
                    proxy.cut(true);
                }
            }
        }
        Ok(())
    }

    /// Ends the fault if it is on.
    pub(crate) async fn end(&mut self, live: &mut Live<'_>) -> Result<(), Failure> {
        if !matches!(self.state, State::During(_)) {
            return Ok(());
        }
        self.state = State::After;
        match self.fault {
            Fault::Revocation | Fault::KilledHolder | Fault::ClockAhead => {}
            Fault::Endpoint5xx | Fault::TooManyRequests => {
                live.mock.inject_always(Endpoint::PartnerSession, None);
            }
            Fault::PausedReplica => signal(live.fleet, "-CONT")?,
            Fault::Scaled => {
                let retired = live.fleet.retire::<ReplicaReport>(1).await?;
                live.retired.extend(retired);
            }
            Fault::StoreRestarted => {
                if let Some(server) = live.store {
                    server.restart().await?;
                }
            }
            Fault::ConnectionCut => {
                if let Some(proxy) = live.proxy {
                    proxy.cut(false);
                }
            }
        }
        Ok(())
    }

    /// Slows the next creation down to half a token's life, waits for it to start, and kills
    /// the replica that sent it (its name is its token requests' User-Agent).
    async fn kill_next_creator(&self, live: &mut Live<'_>) -> Result<(), Failure> {
        let mock = live.mock;
        let creations = |mock: &MockKigo| {
            let seen = mock.seen();
            let mut sent = seen
                .into_iter()
                .filter(|request| request.endpoint == Endpoint::PartnerSession);
            (
                sent.clone().count(),
                sent.next_back().and_then(|r| r.user_agent),
            )
        };
        let (before, _) = creations(mock);
        mock.inject(
            Endpoint::PartnerSession,
            [MockFault::Latency(self.lifetime / 2)],
        );
        let deadline = Instant::now() + self.lifetime * 2;
        while Instant::now() < deadline {
            if let (count, Some(holder)) = creations(mock)
                && count > before
            {
                live.fleet.kill(&holder).await;
                return Ok(());
            }
            sleep(LOOK_EVERY).await;
        }
        Err("no creation started within two token lifetimes".into())
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
