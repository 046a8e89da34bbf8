//! The main job: a mock Kigo API in this process, replica processes sharing one SQLite file in a
//! temporary directory, traffic with one revocation midway, then the verdict.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use examples::replicas::Fleet;
use examples::say;
use kigo_core::codec::SEALING_KEYS_VAR;
use kigo_core::codec::{Keyring, SealingKey};
use kigo_store_sql::SqlStore;
use kigo_testkit::mock::MockKigo;
use secrecy::{ExposeSecret, SecretString};
use tokio::process::Command as Process;
use tokio::time::{Instant, sleep_until};

use crate::Failure;
use crate::protocol::REPLICA_ARG;
use crate::report::{FleetReport, renewals};

/// Replica processes.
const REPLICAS: usize = 4;
/// How long a token lives. The replica that renews first does so at 65 to 75 % of a token's
/// life (its jittered refresh point), and no replica hands a token out past 80 % (its stale
/// point): with 2 s, a renewal window of 100 to 300 ms. A renewal takes a SQLite lease claim, a
/// creation over loopback and a fenced commit, a few milliseconds (about 1 ms typical, 15 ms at
/// worst in a debug build), and the other replicas find the new token within a poll interval
/// (50 ms), so the window holds it many times over even on a busy machine. Process start-up (tens
/// to a few hundred milliseconds, printed) takes nothing from it: the replicas start sending
/// together once all are ready. And 2 s is short enough for several renewals in [`RUN_FOR`]:
/// the first token, a renewal ahead of expiry every 1.3 to 1.5 s, and one after the revocation,
/// 4 or 5 tokens in all.
const LIFETIME: Duration = Duration::from_secs(2);
/// How long the replicas send requests.
const RUN_FOR: Duration = Duration::from_secs(5);
/// When the mock revokes every token, counted from the start of the traffic: between renewals.
/// The fleet has moved to the second token by 1.5 s (the latest refresh point) and the first has
/// expired by 2 s; the second is renewed from 2.6 s on (65 % of its life). So at 2.1 s every
/// replica holds the same token, with at least 0.5 s to spare either side. (A revocation during a
/// handover, while a replica still holds the older token, costs that replica failed requests:
/// its one retry adopts the newer token from the store, which is revoked too.)
const REVOKE_AT: Duration = Duration::from_millis(2100);
/// Where the replicas keep the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    /// One SQLite file for the fleet: one token.
    SharedFile,
    /// A file per replica (`--store-per-replica`): a token each, to show what sharing saves.
    FilePerReplica,
}

impl Layout {
    /// The file of each replica, in `dir`.
    fn files(self, dir: &Path) -> Vec<PathBuf> {
        (0..REPLICAS)
            .map(|n| match self {
                Self::SharedFile => dir.join("kigo-tokens.db"),
                Self::FilePerReplica => dir.join(format!("replica-{n}.db")),
            })
            .collect()
    }
}

/// Runs the fleet on `layout` and says whether it created one token per renewal.
pub(crate) async fn run(layout: Layout) -> Result<ExitCode, Failure> {
    let mock = MockKigo::builder().lifetime(LIFETIME).start().await?;
    let dir = tempfile::Builder::new()
        .prefix("kigo-quickstart-")
        .tempdir()?;
    let files = layout.files(dir.path());
    // One sealing key for this run's fleet, handed to each replica in its environment, as a
    // production replica gets the fleet's key from its deployment.
    let keys = SealingKey::generate_base64();
    let keyring = Keyring::parse(keys.expose_secret())?;
    // Created and migrated once here, so that a file that cannot be made fails once, clearly.
    for file in files.iter().collect::<BTreeSet<_>>() {
        SqlStore::builder()
            .sqlite_file(file)
            .keyring(keyring.clone())
            .migrate_on_connect(true)
            .build()
            .await?;
    }
    let starting = Instant::now();
    let program = std::env::current_exe()?;
    let replicas = files.iter().enumerate().map(|(n, file)| {
        let name = format!("replica-{n}");
        let process = replica_process(&program, &name, file, &mock, &keys);
        (name, process)
    });
    let mut fleet = Fleet::start(replicas).await?;
    let pids: Vec<String> = fleet.pids().iter().map(u32::to_string).collect();
    say(format_args!(
        "kigo-rs quickstart: a mock Kigo API at {} (in this process); tokens live {} s",
        mock.base_url(),
        LIFETIME.as_secs()
    ));
    let (store, place) = match layout {
        Layout::SharedFile => ("share one SQLite file", files[0].as_path()),
        Layout::FilePerReplica => (
            "each have a SQLite file of their own (--store-per-replica)",
            dir.path(),
        ),
    };
    say(format_args!(
        "{REPLICAS} replica processes (pids {}), ready in {} ms, {store}:",
        pids.join(" "),
        starting.elapsed().as_millis()
    ));
    say(format_args!("  {} (removed at the end)", place.display()));
    say(format_args!(
        "Each sends requests through the authenticated client for {} s; every token is revoked at {:.1} s.",
        RUN_FOR.as_secs(),
        REVOKE_AT.as_secs_f64()
    ));

    let started = Instant::now();
    fleet.go().await?;
    sleep_until(started + REVOKE_AT).await;
    let revoked = mock.revoke_all();
    sleep_until(started + RUN_FOR).await;
    let (reports, creations) = fleet
        .settled_reports(|| mock.creations(&mock.partner_key()), renewals)
        .await?;
    fleet.finish().await?;
    dir.close()?;

    let report = FleetReport::new(&reports, creations);
    say("");
    report.print(revoked, REVOKE_AT.as_secs_f64());
    say("");
    if report.failures() > 0 {
        say("Some requests failed: see above.");
        return Ok(ExitCode::FAILURE);
    }
    if !report.one_per_renewal() {
        say("The fleet created more than one token per renewal: see above.");
        return Ok(ExitCode::FAILURE);
    }
    say(format_args!(
        "Every request succeeded, and {REPLICAS} processes created one token per renewal. \
         Next: point KIGO_API_KEY, KIGO_PARTNER_ID and KIGO_BASE_URL at the real API."
    ));
    Ok(ExitCode::SUCCESS)
}

/// This program again as replica `name` on the SQLite `file`, against `mock`, sealing with `keys`
/// (the value of `KIGO_SEALING_KEYS`, as a production replica gets it from its environment).
fn replica_process(
    program: &Path,
    name: &str,
    file: &Path,
    mock: &MockKigo,
    keys: &SecretString,
) -> Process {
    let mut process = Process::new(program);
    process
        .arg(REPLICA_ARG)
        .arg(name)
        .arg(file)
        .env(kigo_http::API_KEY_VAR, mock.api_key())
        .env(kigo_http::PARTNER_ID_VAR, mock.partner_id().as_str())
        .env(kigo_http::BASE_URL_VAR, mock.base_url())
        .env(SEALING_KEYS_VAR, keys.expose_secret());
    process
}
