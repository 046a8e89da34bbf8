//! The quickstart: no configuration, no external service.
//!
//! Starts a mock Kigo API in this process, runs several simulated replicas (token managers)
//! sharing one store, with 2-second tokens, and drives traffic through the authenticated client
//! for a few seconds across several renewals, revoking the token once on the way. Then it prints
//! what happened: requests, failures, token creations per renewal, 401s recovered. It exits
//! non-zero if a request failed or the fleet created more than one token per renewal.
//!
//! `--store-per-replica` gives each replica its own store instead, to show what sharing saves:
//! every replica then creates its own tokens, and the run fails the one-token-per-renewal check.
//!
//! With `KIGO_API_KEY`, `KIGO_PARTNER_ID` and `KIGO_BASE_URL` set, it creates one real
//! partner-level token instead and prints its expiry (never the token).

use std::collections::HashSet;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use examples::{real_api_requested, say, seconds_until};
use kigo_core::{Fingerprint, MemoryStore, TokenManager, TokenStore};
use kigo_http::{KigoApi, KigoClient};
use kigo_testkit::mock::{MockKigo, PROTECTED_PATH};

const REPLICAS: usize = 4;
const WORKERS_PER_REPLICA: usize = 4;
const LIFETIME: Duration = Duration::from_secs(2);
const RUN_FOR: Duration = Duration::from_secs(5);
const REVOKE_AT: Duration = Duration::from_millis(2500);
/// How long to wait after the traffic for every created token to be seen by a replica.
const SETTLE_FOR: Duration = Duration::from_secs(1);

#[tokio::main]
async fn main() -> ExitCode {
    let outcome = if real_api_requested() {
        real_token().await
    } else {
        let shared_store = match std::env::args().nth(1).as_deref() {
            None => true,
            Some("--store-per-replica") => false,
            Some(other) => {
                say(format_args!(
                    "unknown argument {other}; the only one is --store-per-replica"
                ));
                return ExitCode::from(2);
            }
        };
        simulate(shared_store).await
    };
    match outcome {
        Ok(code) => code,
        Err(error) => {
            say(format_args!("quickstart failed: {error}"));
            let mut source = error.source();
            while let Some(cause) = source {
                say(format_args!("  caused by: {cause}"));
                source = cause.source();
            }
            ExitCode::FAILURE
        }
    }
}

type Failure = Box<dyn std::error::Error>;

/// Creates one real token with the credentials from the environment.
async fn real_token() -> Result<ExitCode, Failure> {
    let api = KigoApi::from_env()?;
    let manager = TokenManager::builder(Arc::new(api.partner_source())).build()?;
    let token = manager.token(&api.partner_key()).await?;
    say(format_args!(
        "Created a partner-level session token for {} at {}",
        api.partner_key(),
        api.base_url()
    ));
    say(format_args!("  fingerprint  {}", token.fingerprint()));
    say(format_args!(
        "  expires in   {:.0} s (lifetime {:.0} s); renewed from {:.0} s on",
        seconds_until(token.expires_at()),
        token.lifetime().as_secs_f64(),
        seconds_until(manager.refresh_at(&token))
    ));
    drop(token);
    manager.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

/// What the workers saw: requests, failures, and the tokens each replica used.
struct Tally {
    requests: AtomicU64,
    failures: AtomicU64,
    /// Per replica, the fingerprints of the tokens it used.
    used: Vec<Mutex<HashSet<Fingerprint>>>,
}

impl Tally {
    fn new(replicas: usize) -> Self {
        Self {
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            used: (0..replicas).map(|_| Mutex::default()).collect(),
        }
    }

    fn record(&self, replica: usize, token: Fingerprint) {
        if let Some(used) = self.used.get(replica) {
            used.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(token);
        }
    }

    /// Renewals the fleet needed: the most tokens any one replica used. With one shared store
    /// every replica moves through the same tokens; with a store each, they each have their own.
    fn renewals(&self) -> usize {
        self.used
            .iter()
            .map(|used| used.lock().unwrap_or_else(PoisonError::into_inner).len())
            .max()
            .unwrap_or_default()
    }
}

async fn simulate(shared_store: bool) -> Result<ExitCode, Failure> {
    let mock = MockKigo::builder().lifetime(LIFETIME).start().await?;
    let api = kigo_http::KigoApi::builder(kigo_http::Credentials::new(
        kigo_http::ApiKey::new(mock.api_key())?,
        mock.partner_id().clone(),
        mock.base_url(),
    )?)
    .build()?;
    let sharing = if shared_store {
        "share one store and one token"
    } else {
        "each have their own store (--store-per-replica)"
    };
    say(format_args!(
        "kigo-rs quickstart: {REPLICAS} replicas {sharing}; tokens live {} s; \
         {} s of traffic against a mock Kigo API at {}",
        LIFETIME.as_secs(),
        RUN_FOR.as_secs(),
        mock.base_url()
    ));

    // One store for the whole fleet: in production Redis or SQL, here the in-memory store.
    let store: Arc<dyn TokenStore> = Arc::new(MemoryStore::new());
    let mut replicas = Vec::new();
    for n in 0..REPLICAS {
        let store = if shared_store {
            Arc::clone(&store)
        } else {
            Arc::new(MemoryStore::new())
        };
        let manager = TokenManager::builder(Arc::new(api.partner_source()))
            .store(store)
            .replica_name(format!("replica-{n}"))
            .lease_ttl(Duration::from_secs(2))
            .create_timeout(Duration::from_secs(1))
            .poll_interval(Duration::from_millis(50))
            .build()?;
        let client = api.client(manager.handle(api.partner_key()));
        replicas.push((manager, client));
    }

    let tally = Arc::new(Tally::new(REPLICAS));
    let deadline = tokio::time::Instant::now() + RUN_FOR;
    let mut workers = Vec::new();
    for (replica, (_, client)) in replicas.iter().enumerate() {
        for _ in 0..WORKERS_PER_REPLICA {
            workers.push(tokio::spawn(traffic(
                replica,
                client.clone(),
                Arc::clone(&tally),
                deadline,
            )));
        }
    }
    tokio::time::sleep(REVOKE_AT).await;
    let revoked = mock.revoke_all();
    for worker in workers {
        worker.await?;
    }
    // Tokens created before this count; let the replicas pick up the last of them.
    let creations = mock.creations(&mock.partner_key());
    let settled = tokio::time::Instant::now() + SETTLE_FOR;
    while (tally.renewals() as u64) < creations && tokio::time::Instant::now() < settled {
        for (replica, (_, client)) in replicas.iter().enumerate() {
            if let Ok(token) = client.handle().token().await {
                tally.record(replica, token.fingerprint());
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for (manager, _) in &replicas {
        manager.shutdown().await;
    }

    let recovered: u64 = replicas.iter().map(|(_, c)| c.metrics().recovered).sum();
    let rejected: u64 = replicas.iter().map(|(_, c)| c.metrics().unauthorized).sum();
    let renewals = tally.renewals();
    let failures = tally.failures.load(Ordering::Relaxed);
    say("");
    say(format_args!(
        "  requests sent           {:>6}   failed: {failures}",
        tally.requests.load(Ordering::Relaxed)
    ));
    say(format_args!(
        "  401s recovered          {recovered:>6}   of {rejected} rejected after revoking {revoked} token(s) at {:.1} s",
        REVOKE_AT.as_secs_f64()
    ));
    say(format_args!(
        "  tokens created          {creations:>6}   (counted by the mock Kigo server)"
    ));
    say(format_args!(
        "  renewals                {renewals:>6}   (the most tokens one replica went through)"
    ));
    let per_renewal = creations as f64 / renewals.max(1) as f64;
    say(format_args!(
        "  creations per renewal   {per_renewal:>6.2}   (1.00: one token per renewal for the whole fleet)"
    ));
    say("");
    if failures > 0 {
        say("Some requests failed: see above.");
        return Ok(ExitCode::FAILURE);
    }
    if creations > renewals as u64 {
        say("The fleet created more than one token per renewal: see above.");
        return Ok(ExitCode::FAILURE);
    }
    say(
        "Every request succeeded. Next: point KIGO_API_KEY, KIGO_PARTNER_ID and KIGO_BASE_URL at the real API.",
    );
    Ok(ExitCode::SUCCESS)
}

/// Sends requests until `deadline`, recording outcomes and the tokens `replica` used.
async fn traffic(
    replica: usize,
    client: KigoClient,
    tally: Arc<Tally>,
    deadline: tokio::time::Instant,
) {
    while tokio::time::Instant::now() < deadline {
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
            tally.record(replica, token.fingerprint());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
