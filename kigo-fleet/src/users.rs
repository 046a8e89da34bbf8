//! `kigo-fleet users`: the million-user load. Replica processes on one store ask for the
//! user-level tokens of users drawn from a Zipf distribution over a population (a million by
//! default); the mock Kigo API counts the tokens it creates per user. kigo's promise: each user
//! asked for is created once, fleet-wide, however many replicas ask for them at once.

use std::collections::HashMap;
use std::fmt::Write as _;

use examples::replicas::Fleet;
use kigo_core::{InvalidId, PartnerId, TokenKey, UserId};
use kigo_testkit::mock::{Counters, MockKigo};
use rand_distr::Zipf;
use serde::Serialize;
use tokio::time::{Instant, sleep_until};

use crate::measure::{Percentiles, highest_mib};
use crate::run::{TICK, progress};
use crate::store::FleetStore;
use crate::user_replica::UserReplicaReport;
use crate::{Failure, UsersArgs};

/// The ID of user `index` of the population: the same in every replica and in the count.
pub(crate) fn user_id(index: u32) -> Result<UserId, InvalidId> {
    UserId::new(format!("user-{index}"))
}

/// The run broke kigo's promise (the report above says where).
#[derive(Debug, thiserror::Error)]
#[error(
    "some users' tokens were not created exactly once, or requests failed: see the report above"
)]
pub(crate) struct NotOnce;

/// What one invocation measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Outcome {
    pub(crate) store: String,
    pub(crate) population: u32,
    pub(crate) zipf_exponent: f64,
    pub(crate) replicas: usize,
    pub(crate) workers: usize,
    pub(crate) seconds: f64,
    /// Sessions asked for, and those not served.
    pub(crate) requests: u64,
    pub(crate) failures: u64,
    pub(crate) requests_per_second: f64,
    #[serde(flatten)]
    pub(crate) latency: Percentiles,
    /// Distinct users asked for, fleet-wide.
    pub(crate) users_requested: u64,
    /// Users asked for by more than one replica: where replicas raced to create one token.
    pub(crate) users_shared: u64,
    /// User-level tokens the server created.
    pub(crate) user_tokens_created: u64,
    /// Users whose token the server created more than once (0: once, fleet-wide).
    pub(crate) created_more_than_once: u64,
    /// The most tokens the server created for one user.
    pub(crate) most_for_one_user: u64,
    /// Users asked for whose token the server never created.
    pub(crate) never_created: u64,
    /// Partner-level tokens the server created (1: one for the fleet).
    pub(crate) partner_tokens_created: u64,
    /// The most user keys one replica's manager held at the end.
    pub(crate) most_cached_keys: usize,
    /// The highest peak memory of one replica, if known.
    pub(crate) peak_memory_mib: Option<f64>,
}

/// Runs the load and counts what the server created.
pub(crate) async fn run(args: &UsersArgs) -> Result<Outcome, Failure> {
    // Refused here, before any process starts, rather than by every replica.
    Zipf::new(f64::from(args.users), args.zipf)?;
    let store = FleetStore::from_env(args.load.replicas)?;
    store.migrate().await?;
    let mock = MockKigo::builder()
        .partner(
            format!("users-{:08x}", fastrand::u32(..)),
            format!("key-{}", fastrand::u64(..)),
        )
        .start()
        .await?;
    let (users, zipf) = (args.users.to_string(), args.zipf.to_string());
    let workers = args.load.workers.to_string();
    let replica = |n: usize| {
        let name = format!("users-{n}");
        let args = [
            "user-replica",
            "--name",
            &name,
            "--users",
            &users,
            "--zipf",
            &zipf,
            "--workers",
            &workers,
        ];
        let process = store.replica(args, &mock, store.url());
        (name, process)
    };
    let mut fleet = Fleet::start((0..args.load.replicas).map(replica)).await?;
    let progress = progress(args.load.json);
    progress.set_message(format!("{} users:", args.users));
    let duration = args.load.duration();
    progress.set_length(duration.as_millis() as u64);
    let started = Instant::now();
    fleet.go().await?;
    while started.elapsed() < duration {
        sleep_until((Instant::now() + TICK).min(started + duration)).await;
        progress.set_position(started.elapsed().as_millis() as u64);
    }
    let seconds = started.elapsed().as_secs_f64();
    // The server's count is read after the reports: every request has ended by then.
    let reports: Vec<UserReplicaReport> = fleet.reports().await?;
    let counters = mock.counters();
    fleet.finish().await?;
    mock.shutdown();
    progress.finish_and_clear();
    let load = Measured {
        args,
        store: store.kind(),
        seconds,
    };
    Ok(Outcome::of(&load, &reports, &counters, mock.partner_id())?)
}

/// The load as it ran.
struct Measured<'a> {
    args: &'a UsersArgs,
    store: String,
    seconds: f64,
}

impl Outcome {
    /// The figures of `load`'s `reports`, against the tokens the server created for `partner`'s
    /// keys (`counters`).
    fn of(
        load: &Measured<'_>,
        reports: &[UserReplicaReport],
        counters: &Counters,
        partner: &PartnerId,
    ) -> Result<Self, InvalidId> {
        let mut askers: HashMap<u32, usize> = HashMap::new();
        for index in reports.iter().flat_map(|r| r.users.iter().copied()) {
            *askers.entry(index).or_default() += 1;
        }
        let partner_key = TokenKey::partner(partner.clone());
        let partner_tokens_created = counters.creations_for(&partner_key);
        let partner_entry = partner_key.storage_id();
        let (mut never_created, mut created_more_than_once) = (0, 0);
        for &index in askers.keys() {
            let key = TokenKey::user(partner.clone(), user_id(index)?);
            match counters.creations_for(&key) {
                0 => never_created += 1,
                1 => {}
                _ => created_more_than_once += 1,
            }
        }
        let requests = reports.iter().map(|r| r.requests).sum::<u64>();
        Ok(Self {
            store: load.store.clone(),
            population: load.args.users,
            zipf_exponent: load.args.zipf,
            replicas: reports.len(),
            workers: load.args.load.workers,
            seconds: load.seconds,
            requests,
            failures: reports.iter().map(|r| r.failures).sum(),
            requests_per_second: requests as f64 / load.seconds,
            latency: Percentiles::of(reports.iter().map(|r| r.latencies_micros.as_slice())),
            users_requested: askers.len() as u64,
            users_shared: askers.values().filter(|&&askers| askers > 1).count() as u64,
            user_tokens_created: counters
                .total_creations()
                .saturating_sub(partner_tokens_created),
            created_more_than_once,
            most_for_one_user: counters
                .creations
                .iter()
                .filter(|(key, _)| **key != partner_entry)
                .map(|(_, count)| *count)
                .max()
                .unwrap_or_default(),
            never_created,
            partner_tokens_created,
            most_cached_keys: reports.iter().map(|r| r.cached_keys).max().unwrap_or(0),
            peak_memory_mib: highest_mib(reports.iter().map(|r| r.peak_memory_kib)),
        })
    }

    /// Whether kigo kept its promise: every user asked for created exactly once, no other user
    /// created, one partner-level token, every request served.
    pub(crate) fn holds(&self) -> bool {
        self.failures == 0
            && self.created_more_than_once == 0
            && self.never_created == 0
            && self.user_tokens_created == self.users_requested
            && self.partner_tokens_created == 1
    }

    /// The report as Markdown.
    pub(crate) fn markdown(&self) -> String {
        let mut text = format!(
            "{} users (Zipf, exponent {}), {} replicas x {} workers on {}, {:.0} s\n\n\
             | users asked for | by several replicas | user tokens created | created more than once | never created | partner tokens | requests | failed | requests/s | p50 ms | p99 ms | p99.9 ms | user keys cached (most) | peak MiB/replica |\n\
             |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
            self.population,
            self.zipf_exponent,
            self.replicas,
            self.workers,
            self.store,
            self.seconds,
        );
        let memory = self
            .peak_memory_mib
            .map_or_else(|| "n/a".to_owned(), |mib| format!("{mib:.1}"));
        let _ = writeln!(
            text,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {memory} |",
            self.users_requested,
            self.users_shared,
            self.user_tokens_created,
            self.created_more_than_once,
            self.never_created,
            self.partner_tokens_created,
            self.requests,
            self.failures,
            self.requests_per_second,
            self.latency.p50_ms,
            self.latency.p99_ms,
            self.latency.p999_ms,
            self.most_cached_keys,
        );
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Load;

    fn args() -> UsersArgs {
        UsersArgs {
            load: Load {
                replicas: 2,
                workers: 1,
                duration: 1.0,
                short: false,
                json: false,
            },
            users: 10,
            zipf: 1.0,
        }
    }

    fn asked(users: &[u32]) -> UserReplicaReport {
        UserReplicaReport {
            requests: users.len() as u64,
            users: users.to_vec(),
            latencies_micros: vec![1_000; users.len()],
            ..UserReplicaReport::default()
        }
    }

    /// The server's count: `created[i]` tokens for user i, and one partner-level token.
    fn server(partner: &PartnerId, created: &[u64]) -> Counters {
        let mut counters = Counters::default();
        let partner_key = TokenKey::partner(partner.clone());
        counters.creations.insert(partner_key.storage_id(), 1);
        for (index, &count) in (0..).zip(created) {
            let key = TokenKey::user(partner.clone(), user_id(index).unwrap());
            counters.creations.insert(key.storage_id(), count);
        }
        counters
    }

    fn outcome(reports: &[UserReplicaReport], created: &[u64]) -> Outcome {
        let partner = PartnerId::new("acme").unwrap();
        let args = args();
        let load = Measured {
            args: &args,
            store: "redis".to_owned(),
            seconds: 1.0,
        };
        Outcome::of(&load, reports, &server(&partner, created), &partner).unwrap()
    }

    #[test]
    fn users_asked_for_by_several_replicas_and_created_once_keep_the_promise() {
        let outcome = outcome(&[asked(&[0, 1]), asked(&[0, 2])], &[1, 1, 1]);
        assert_eq!(outcome.users_requested, 3);
        assert_eq!(outcome.users_shared, 1);
        assert_eq!(outcome.user_tokens_created, 3);
        assert_eq!(outcome.requests_per_second, 4.0);
        assert!(outcome.holds(), "{outcome:?}");
    }

    #[test]
    fn a_user_created_twice_breaks_the_promise() {
        let outcome = outcome(&[asked(&[0, 1]), asked(&[0])], &[2, 1]);
        assert_eq!(
            (outcome.created_more_than_once, outcome.most_for_one_user),
            (1, 2)
        );
        assert!(!outcome.holds());
    }

    #[test]
    fn a_user_asked_for_and_never_created_breaks_the_promise() {
        let outcome = outcome(&[asked(&[0, 1])], &[1]);
        assert_eq!(outcome.never_created, 1);
        assert!(!outcome.holds());
    }

    #[test]
    fn the_table_has_a_cell_per_column() {
        let table = outcome(&[asked(&[0])], &[1]).markdown();
        let cells: Vec<usize> = table
            .lines()
            .filter(|line| line.starts_with('|'))
            .map(|line| line.matches('|').count())
            .collect();
        assert_eq!(cells.len(), 3, "{table}");
        assert!(cells.iter().all(|&count| count == cells[0]), "{table}");
    }
}
