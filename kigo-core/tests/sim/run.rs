//! Drives one run: steps the manual clock from one moment to the next that matters (a fault, a
//! caller, or the earliest sleep a manager waits on), lets every task run, and checks the
//! invariants after each step.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use kigo_core::{Fingerprint, TokenKey};
use kigo_testkit::settle;

use super::callers::{Pending, Reply};
use super::checks::{Holding, Violation};
use super::fleet::Fleet;
use super::recorders::lock;
use super::schedule::{ACTIVE, At, Call, PARTNERS, REPLICAS, Schedule, TAIL};

/// What one seed did.
#[derive(Debug)]
pub struct Outcome {
    pub schedule: Schedule,
    /// What happened, in order, readable.
    pub trace: Vec<String>,
    pub result: Result<Summary, Violation>,
}

/// Counts of a run that kept every invariant.
#[derive(Debug, Default, Clone, Copy)]
pub struct Summary {
    pub steps: u64,
    pub calls: u64,
    pub waits: u64,
    pub errors: u64,
    pub creations: u64,
    pub commits: u64,
    /// Commits the store refused (a lapsed lease, a newer generation).
    pub refused_commits: u64,
    /// Tokens that went stale on a replica before their renewal landed (a fault explained it).
    pub went_stale: u64,
    /// Creations never committed, and how many the faults allowed.
    pub wasted: u64,
    pub may_waste: u64,
}

impl std::ops::AddAssign for Summary {
    /// Adds every count; destructured without `..`, so that a new field cannot be left out.
    fn add_assign(&mut self, other: Self) {
        let Self {
            steps,
            calls,
            waits,
            errors,
            creations,
            commits,
            refused_commits,
            went_stale,
            wasted,
            may_waste,
        } = other;
        self.steps += steps;
        self.calls += calls;
        self.waits += waits;
        self.errors += errors;
        self.creations += creations;
        self.commits += commits;
        self.refused_commits += refused_commits;
        self.went_stale += went_stale;
        self.wasted += wasted;
        self.may_waste += may_waste;
    }
}

/// Runs the schedule of `seed` on a runtime of its own (one thread, tokio's time paused so that
/// [`settle`] returns once every task waits).
pub fn run(seed: u64) -> Outcome {
    let schedule = Schedule::generate(seed);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a runtime");
    let (trace, result) = runtime.block_on(async {
        let mut sim = Sim::new(&schedule);
        let result = sim.run().await;
        (std::mem::take(&mut sim.trace), result)
    });
    Outcome {
        schedule,
        trace,
        result,
    }
}

/// Something that happens at a moment of the schedule.
enum Happening {
    Ends(usize),
    Begins(usize),
    Call(Call),
}

struct Event {
    at: Duration,
    what: Happening,
}

/// The schedule as one list of moments: at the same moment, faults end before others begin,
/// and callers come last.
fn timeline(schedule: &Schedule) -> Vec<Event> {
    let mut events = Vec::new();
    for (index, fault) in schedule.faults.iter().enumerate() {
        events.push(Event {
            at: fault.from,
            what: Happening::Begins(index),
        });
        if fault.until > fault.from {
            events.push(Event {
                at: fault.until,
                what: Happening::Ends(index),
            });
        }
    }
    events.extend(schedule.calls.iter().map(|call| Event {
        at: call.at,
        what: Happening::Call(*call),
    }));
    let rank = |what: &Happening| match what {
        Happening::Ends(_) => 0,
        Happening::Begins(_) => 1,
        Happening::Call(_) => 2,
    };
    events.sort_by_key(|event| (event.at, rank(&event.what)));
    events
}

/// What the simulation knows of one replica's token for one partner.
pub(super) struct View {
    pub(super) holding: Holding,
    /// Tokens a request on this replica reported rejected, and the manager took note of.
    pub(super) rejected: HashSet<Fingerprint>,
}

impl View {
    fn new() -> Self {
        Self {
            holding: Holding::Never,
            rejected: HashSet::new(),
        }
    }
}

pub(super) struct Sim<'a> {
    pub(super) schedule: &'a Schedule,
    pub(super) fleet: Fleet,
    /// Per replica, per partner.
    pub(super) views: Vec<Vec<View>>,
    /// Tokens the API rejects.
    pub(super) revoked: HashSet<Fingerprint>,
    /// Tokens some replica took note of as rejected: they may be renewed early.
    pub(super) reported: HashSet<Fingerprint>,
    pub(super) pending: Vec<Pending>,
    /// 401s to come, in order.
    pub(super) replies: Vec<Reply>,
    /// How far the journal has been read.
    pub(super) cursor: usize,
    pub(super) last_commit: HashMap<TokenKey, (u64, Fingerprint)>,
    pub(super) committed: HashSet<Fingerprint>,
    pub(super) trace: Vec<String>,
    pub(super) summary: Summary,
    /// Whether a caller acted since the last look.
    pub(super) acted: bool,
}

impl<'a> Sim<'a> {
    fn new(schedule: &'a Schedule) -> Self {
        Self {
            schedule,
            fleet: Fleet::new(schedule),
            views: (0..REPLICAS).map(|_| fresh_views()).collect(),
            revoked: HashSet::new(),
            reported: HashSet::new(),
            pending: Vec::new(),
            replies: Vec::new(),
            cursor: 0,
            last_commit: HashMap::new(),
            committed: HashSet::new(),
            trace: Vec::new(),
            summary: Summary::default(),
            acted: false,
        }
    }

    pub(super) fn now(&self) -> Duration {
        self.fleet.time.elapsed()
    }

    pub(super) fn note(&mut self, what: impl std::fmt::Display) {
        let line = format!("{}  {what}", At(self.now()));
        self.trace.push(line);
    }

    pub(super) fn key(&self, partner: usize) -> &TokenKey {
        &self.fleet.keys[partner]
    }

    pub(super) fn label(&self, fingerprint: &Fingerprint) -> String {
        lock(&self.fleet.journal).label(fingerprint)
    }

    async fn run(&mut self) -> Result<Summary, Violation> {
        let events = timeline(self.schedule);
        let end = ACTIVE + TAIL;
        let mut next = 0;
        loop {
            let now = self.now();
            let deadline = self
                .fleet
                .clock
                .next_deadline()
                .map(|at| self.fleet.time.since_start(at));
            // The clock names only its earliest sleep: one past its deadline that nobody polls
            // would hide the later ones, and the run would jump past them.
            assert!(
                deadline.is_none_or(|at| at > now),
                "seed {}: a sleep due at {} is never polled",
                self.schedule.seed,
                At(now)
            );
            let event = events.get(next).map(|event| event.at);
            let reply = self.replies.first().map(|reply| reply.at);
            let target = [deadline, event, reply, Some(end)]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(end);
            if target > now {
                self.fleet.clock.advance(target - now);
            }
            self.quiesce().await?;
            if self.now() >= end {
                break;
            }
            while let Some(event) = events.get(next).filter(|event| event.at <= self.now()) {
                self.apply(&event.what)?;
                next += 1;
            }
            while self
                .replies
                .first()
                .is_some_and(|reply| reply.at <= self.now())
            {
                let reply = self.replies.remove(0);
                self.got_401(reply.asked, &reply.token)?;
            }
            self.quiesce().await?;
        }
        self.after_the_quiet_tail()?;
        Ok(self.summary)
    }

    /// Lets every task run and looks, again for as long as looking made callers act (a 401
    /// reported, a retry), so that the next deadline is read only once nothing can run.
    async fn quiesce(&mut self) -> Result<(), Violation> {
        loop {
            settle().await;
            self.acted = false;
            self.observe()?;
            if !self.acted {
                return Ok(());
            }
        }
    }

    /// Everything there is to see after a step.
    fn observe(&mut self) -> Result<(), Violation> {
        self.summary.steps += 1;
        self.read_journal()?;
        self.collect_callers()?;
        for replica in 0..REPLICAS {
            for partner in 0..PARTNERS.len() {
                self.look_at(replica, partner)?;
            }
        }
        Ok(())
    }

    fn read_journal(&mut self) -> Result<(), Violation> {
        let records = lock(&self.fleet.journal).since(self.cursor).to_vec();
        self.cursor += records.len();
        records
            .into_iter()
            .try_for_each(|record| self.check_record(record))
    }

    fn apply(&mut self, what: &Happening) -> Result<(), Violation> {
        let schedule = self.schedule;
        match what {
            Happening::Call(call) => {
                self.note(format!(
                    "{} caller(s) on r{} ask for {}",
                    call.callers, call.replica, PARTNERS[call.partner]
                ));
                for _ in 0..call.callers {
                    self.ask(call.replica, call.partner, call.request, false)?;
                }
                Ok(())
            }
            Happening::Begins(index) => self.begin(&schedule.faults[*index]),
            Happening::Ends(index) => {
                self.end(&schedule.faults[*index]);
                Ok(())
            }
        }
    }
}

pub(super) fn fresh_views() -> Vec<View> {
    (0..PARTNERS.len()).map(|_| View::new()).collect()
}
