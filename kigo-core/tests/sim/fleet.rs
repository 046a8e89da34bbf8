//! The simulated world: one manual clock, one token endpoint, one store with fault switches, and
//! eight replicas, each a `TokenManager` on its own (possibly skewed) view of the clock and its
//! own link to the store, which a crash cuts.

use std::sync::Arc;
use std::time::SystemTime;

use kigo_core::runtime::{RuntimeEnv, Spawn, Task, TimeSource, TokioSpawn};
use kigo_core::{KeyScope, PartnerId, TokenHandle, TokenKey, TokenManager};
use kigo_testkit::{FakeSource, FaultyStore, ManualClock};
use tracing::Instrument;

use super::faults::CrashKind;
use super::recorders::{RecordingSource, SharedJournal, TrueTime, ledger};
use super::schedule::{PARTNERS, REPLICAS, Schedule};

pub struct Fleet {
    pub clock: ManualClock,
    pub time: TrueTime,
    pub endpoint: FakeSource,
    /// The store every replica reaches, where fleet-wide faults are switched.
    pub store: FaultyStore,
    pub journal: SharedJournal,
    pub keys: Vec<TokenKey>,
    replicas: Vec<Option<Replica>>,
    /// How many times each replica was started: callers of an earlier life are told apart.
    lives: [u32; REPLICAS],
}

/// A running replica.
pub struct Replica {
    pub manager: TokenManager,
    /// One per partner, in the order of [`PARTNERS`].
    pub handles: Vec<TokenHandle>,
    /// Its own connection to the store: a kill makes it hang, so that nothing the dead
    /// replica still has in flight reaches the store.
    link: FaultyStore,
    clock: ManualClock,
}

impl Replica {
    /// The time by this replica's clock.
    pub fn now(&self) -> SystemTime {
        self.clock.now()
    }

    /// Its own connection to the store.
    pub fn link(&self) -> &FaultyStore {
        &self.link
    }
}

impl Fleet {
    /// The world of `schedule`, every replica started. Call it inside the run's runtime.
    pub fn new(schedule: &Schedule) -> Self {
        let clock = ManualClock::new();
        let time = TrueTime::new(clock.clone());
        let journal = SharedJournal::default();
        let endpoint = FakeSource::with_lifetime(schedule.lifetime)
            .with_latency(schedule.endpoint_latency, Arc::new(clock.clone()));
        let store = FaultyStore::new(Arc::new(ledger(&time, &journal)));
        let keys = PARTNERS
            .iter()
            .map(|id| TokenKey::partner(PartnerId::new(*id).expect("a valid partner ID")))
            .collect();
        let mut fleet = Self {
            clock,
            time,
            endpoint,
            store,
            journal,
            keys,
            replicas: (0..REPLICAS).map(|_| None).collect(),
            lives: [0; REPLICAS],
        };
        for replica in 0..REPLICAS {
            fleet.start(
                replica,
                schedule.skews_ms[replica],
                schedule.manager_seeds[replica],
            );
        }
        fleet
    }

    pub fn replica(&self, replica: usize) -> Option<&Replica> {
        self.replicas[replica].as_ref()
    }

    /// Which life of `replica` this is.
    pub fn life(&self, replica: usize) -> u32 {
        self.lives[replica]
    }

    /// Starts `replica` as a new manager with the production defaults, on a clock `skew_ms`
    /// off the true time.
    pub fn start(&mut self, replica: usize, skew_ms: i64, seed: u64) {
        let clock = self.clock.skewed(skew_ms);
        let env = RuntimeEnv::new(
            Arc::new(clock.clone()),
            Arc::new(clock.clone()),
            Arc::new(ReplicaSpawn {
                spawn: TokioSpawn::current().expect("inside the run's runtime"),
                span: tracing::info_span!("replica", name = %format_args!("r{replica}")),
            }),
        );
        let source = RecordingSource {
            endpoint: self.endpoint.clone(),
            replica,
            time: self.time.clone(),
            journal: Arc::clone(&self.journal),
        };
        let link = FaultyStore::new(Arc::new(self.store.clone()));
        let manager = TokenManager::builder(source)
            .store(link.clone())
            .scope(KeyScope::AnyPartner)
            .runtime(env)
            .seed(seed)
            .replica_name(format!("r{replica}"))
            .build()
            .expect("the defaults build");
        let handles = self
            .keys
            .iter()
            .map(|key| manager.handle(key.clone()).expect("a partner key"))
            .collect();
        self.lives[replica] += 1;
        self.replicas[replica] = Some(Replica {
            manager,
            handles,
            link,
            clock,
        });
    }

    /// Ends `replica` the way `how` says.
    pub fn crash(&mut self, replica: usize, how: CrashKind) {
        let Some(dead) = self.replicas[replica].take() else {
            return;
        };
        if how == CrashKind::Killed {
            dead.link.set_hanging(true);
        }
        if matches!(how, CrashKind::Killed | CrashKind::ShutDown) {
            // Its shutdown waits for lease releases, which take store time: let it run.
            let manager = dead.manager.clone();
            tokio::spawn(async move { manager.shutdown().await });
        }
    }
}

/// Runs a replica's tasks in a span that names it, so that the managers' logs say whose they are.
#[derive(Debug)]
struct ReplicaSpawn {
    spawn: TokioSpawn,
    span: tracing::Span,
}

impl Spawn for ReplicaSpawn {
    fn spawn(&self, task: Task) {
        self.spawn
            .spawn(Box::pin(task.instrument(self.span.clone())));
    }
}
