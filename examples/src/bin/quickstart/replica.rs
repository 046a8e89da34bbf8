//! A replica process: what one server of a partner backend's fleet does. It reads its Kigo
//! credentials from the `KIGO_*` variables (the quickstart points them at its mock), opens the
//! SQLite file it was given, runs one token manager on it, and on [`Command::Go`] sends requests
//! through the authenticated client until told to report. It answers on standard output only:
//! errors go to standard error.

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use kigo_core::{Fingerprint, TokenManager};
use kigo_http::{KigoApi, KigoClient};
use kigo_store_sql::SqlStore;
use kigo_testkit::mock::PROTECTED_PATH;
use tokio::sync::mpsc;

use crate::Failure;
use examples::replicas::{Answer, Command, Traffic, answer, commands, loopback_manager};

use crate::protocol::ReplicaReport;

/// Concurrent request loops per replica.
const WORKERS: usize = 4;
/// Each worker's pause between requests.
const PAUSE: Duration = Duration::from_millis(10);
/// A command a replica does not expect.
#[derive(Debug, thiserror::Error)]
#[error("unexpected command {0:?}")]
struct UnexpectedCommand(String);

/// Runs replica `name` on the SQLite `file` until its standard input ends.
pub(crate) async fn run(name: &str, file: &Path) -> Result<(), Failure> {
    let api = KigoApi::from_env()?;
    let store = SqlStore::sqlite(file).await?;
    let manager = loopback_manager(&api, store, name).build()?;
    let client = api.client(manager.handle(api.partner_key())?);
    let mut commands = commands();
    answer(&Answer::<ReplicaReport>::Ready)?;
    let served = serve(&manager, &client, &mut commands).await;
    manager.shutdown().await;
    served
}

/// Follows the commands until standard input ends.
async fn serve(
    manager: &TokenManager,
    client: &KigoClient,
    commands: &mut mpsc::Receiver<String>,
) -> Result<(), Failure> {
    let tally = Arc::new(Tally::default());
    let mut traffic = None;
    let mut started = false;
    while let Some(line) = commands.recv().await {
        match Command::parse(&line) {
            Some(Command::Go) if !started => {
                started = true;
                let (client, tally) = (client.clone(), Arc::clone(&tally));
                traffic = Some(Traffic::start(WORKERS, PAUSE, move || {
                    request(client.clone(), Arc::clone(&tally))
                }));
            }
            Some(Command::Report) => {
                if let Some(traffic) = traffic.take() {
                    traffic.stop().await?;
                }
                // The token the next request would use, renewed if due: a token created since
                // the last request shows up here.
                if let Ok(token) = client.handle().token().await {
                    tally.record(token.fingerprint());
                }
                let metrics = client.metrics();
                answer(&Answer::Report(ReplicaReport {
                    requests: tally.requests.load(Ordering::Relaxed),
                    failures: tally.failures.load(Ordering::Relaxed),
                    unauthorized: metrics.unauthorized,
                    recovered: metrics.recovered,
                    created: manager.metrics().creations,
                    tokens: tally.tokens(),
                }))?;
            }
            _ => return Err(UnexpectedCommand(line).into()),
        }
    }
    // The quickstart is gone or done: dropping the traffic aborts its requests in progress.
    Ok(())
}

/// What this replica's workers saw.
#[derive(Debug, Default)]
struct Tally {
    requests: AtomicU64,
    failures: AtomicU64,
    used: Mutex<HashSet<Fingerprint>>,
}

impl Tally {
    fn record(&self, token: Fingerprint) {
        self.used
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(token);
    }

    fn tokens(&self) -> Vec<String> {
        let used = self.used.lock().unwrap_or_else(PoisonError::into_inner);
        used.iter().map(Fingerprint::to_string).collect()
    }
}

/// Sends one request, noting its outcome and the token the client holds after it.
async fn request(client: KigoClient, tally: Arc<Tally>) {
    tally.requests.fetch_add(1, Ordering::Relaxed);
    let ok = match client.get(PROTECTED_PATH) {
        Ok(request) => client
            .send(request)
            .await
            .is_ok_and(|response| response.status().is_success()),
        Err(_) => false,
    };
    if !ok {
        tally.failures.fetch_add(1, Ordering::Relaxed);
    }
    if let Some(token) = client.handle().cached() {
        tally.record(token.fingerprint());
    }
}
