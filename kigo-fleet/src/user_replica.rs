//! A replica of the million-user load: `kigo-fleet user-replica`, started by `kigo-fleet users`
//! with a production replica's `KIGO_*` variables. Its workers ask for the user-level tokens of
//! users drawn from a Zipf distribution (a few users often, most rarely), each request for one
//! user's front-end session, until told to report. Answers go to standard output only.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use examples::replicas::{Answer, Command, Traffic, answer, commands};
use kigo_http::{KigoApi, UserTokens};
use rand_distr::{Distribution, Zipf};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::measure::{lock, micros, peak_memory_kib};
use crate::users::user_id;
use crate::{Failure, UserReplicaArgs};

/// What one replica of the million-user load saw.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct UserReplicaReport {
    /// Sessions asked for.
    pub(crate) requests: u64,
    /// Sessions not served.
    pub(crate) failures: u64,
    /// Each request's latency, in microseconds.
    pub(crate) latencies_micros: Vec<u32>,
    /// The users it asked for, by index (each once).
    pub(crate) users: Vec<u32>,
    /// User keys its manager holds at the end.
    pub(crate) cached_keys: usize,
    /// Its peak resident memory (`VmHWM`), where the system tells.
    pub(crate) peak_memory_kib: Option<u64>,
}

/// Runs replica `args.name` until its standard input ends.
pub(crate) async fn run(args: &UserReplicaArgs) -> Result<(), Failure> {
    let api = KigoApi::from_env()?;
    let store = kigo_stores::from_env().await?;
    // The library's defaults: the mock's partner-level token lives 30 minutes, like Kigo's (the
    // loopback settings of the other runs fit 2-second tokens, and a store slower than their
    // 400 ms under this load would make a replica create its own).
    let partners = api
        .partner_manager()
        .store(store.clone())
        .replica_name(&args.name)
        .build()?;
    let users = api.user_tokens(&partners, |manager| {
        manager
            .store(store)
            .replica_name(&args.name)
            .user_key_capacity(args.users as usize)
    })?;
    let draw = Zipf::new(f64::from(args.users), args.zipf)?;
    let tally = Arc::new(Tally::default());
    let mut commands = commands();
    answer(&Answer::<UserReplicaReport>::Ready)?;
    let mut traffic = None;
    while let Some(line) = commands.recv().await {
        match Command::parse(&line) {
            Some(Command::Go) if traffic.is_none() => {
                let (users, tally) = (users.clone(), Arc::clone(&tally));
                traffic = Some(Traffic::start(args.workers, Duration::ZERO, move || {
                    // Zipf draws 1 ..= users; users are numbered from 0.
                    let index = draw.sample(&mut rand::rng()) as u32 - 1;
                    request(users.clone(), index, Arc::clone(&tally))
                }));
            }
            Some(Command::Report) => {
                if let Some(traffic) = traffic.take() {
                    traffic.stop().await?;
                }
                answer(&Answer::Report(tally.report(&users)))?;
            }
            _ => return Err(format!("unexpected command {line:?}").into()),
        }
    }
    users.manager().shutdown().await;
    partners.shutdown().await;
    Ok(())
}

/// Asks for user `index`'s front-end session and notes what happened.
async fn request(users: UserTokens, index: u32, tally: Arc<Tally>) {
    let started = Instant::now();
    let served = match user_id(index) {
        Ok(user) => users.session(user).await.is_ok(),
        Err(_) => false,
    };
    tally.note(index, served, started.elapsed());
}

/// What this replica's workers saw.
#[derive(Debug, Default)]
struct Tally {
    requests: AtomicU64,
    failures: AtomicU64,
    latencies: Mutex<Vec<u32>>,
    users: Mutex<HashSet<u32>>,
}

impl Tally {
    fn note(&self, user: u32, served: bool, latency: Duration) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if !served {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
        let latency = u32::try_from(micros(latency)).unwrap_or(u32::MAX);
        lock(&self.latencies).push(latency);
        lock(&self.users).insert(user);
    }

    fn report(&self, users: &UserTokens) -> UserReplicaReport {
        UserReplicaReport {
            requests: self.requests.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            latencies_micros: lock(&self.latencies).clone(),
            users: lock(&self.users).iter().copied().collect(),
            cached_keys: users.manager().user_keys(),
            peak_memory_kib: peak_memory_kib(),
        }
    }
}
