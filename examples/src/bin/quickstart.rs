//! The quickstart: no configuration, no external service.
//!
//! Starts a mock Kigo API in this process, runs several simulated replicas (token managers)
//! sharing one store, with 2-second tokens, and drives traffic through the authenticated client
//! for a few seconds across several renewals, revoking the token once on the way. Then it prints
//! what happened: requests, failures, token creations per renewal, 401s recovered.
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

#[tokio::main]
async fn main() -> ExitCode {
    let outcome = if real_api_requested() {
        real_token().await
    } else {
        simulate().await
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

/// What the workers saw.
#[derive(Default)]
struct Tally {
    requests: AtomicU64,
    failures: AtomicU64,
    tokens: Mutex<HashSet<Fingerprint>>,
}

async fn simulate() -> Result<ExitCode, Failure> {
    let mock = MockKigo::builder().lifetime(LIFETIME).start().await?;
    let api = kigo_http::KigoApi::builder(kigo_http::Credentials::new(
        kigo_http::ApiKey::new(mock.api_key())?,
        mock.partner_id().clone(),
        mock.base_url(),
    )?)
    .build()?;
    say(format_args!(
        "kigo-rs quickstart: {REPLICAS} replicas share one store and one token; tokens live {} s; \
         {} s of traffic against a mock Kigo API at {}",
        LIFETIME.as_secs(),
        RUN_FOR.as_secs(),
        mock.base_url()
    ));

    // One store for the whole fleet: in production Redis or SQL, here the in-memory store.
    let store: Arc<dyn TokenStore> = Arc::new(MemoryStore::new());
    let mut replicas = Vec::new();
    for n in 0..REPLICAS {
        let manager = TokenManager::builder(Arc::new(api.partner_source()))
            .store(Arc::clone(&store))
            .replica_name(format!("replica-{n}"))
            .lease_ttl(Duration::from_secs(2))
            .create_timeout(Duration::from_secs(1))
            .poll_interval(Duration::from_millis(50))
            .build()?;
        let client = api.client(manager.handle(api.partner_key()));
        replicas.push((manager, client));
    }

    let tally = Arc::new(Tally::default());
    let deadline = tokio::time::Instant::now() + RUN_FOR;
    let mut workers = Vec::new();
    for (_, client) in &replicas {
        for _ in 0..WORKERS_PER_REPLICA {
            workers.push(tokio::spawn(traffic(
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
    for (manager, _) in &replicas {
        manager.shutdown().await;
    }

    let recovered: u64 = replicas.iter().map(|(_, c)| c.metrics().recovered).sum();
    let rejected: u64 = replicas.iter().map(|(_, c)| c.metrics().unauthorized).sum();
    let creations = mock.creations(&mock.partner_key());
    let used = tally
        .tokens
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .len();
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
        "  distinct tokens used    {used:>6}   by {} workers on {REPLICAS} replicas",
        REPLICAS * WORKERS_PER_REPLICA
    ));
    let renewals = used.max(1) as f64;
    say(format_args!(
        "  creations per renewal   {:>6.2}   (one token per renewal for the whole fleet)",
        creations as f64 / renewals
    ));
    say("");
    if failures > 0 {
        say("Some requests failed: see above.");
        return Ok(ExitCode::FAILURE);
    }
    say(
        "Every request succeeded. Next: point KIGO_API_KEY, KIGO_PARTNER_ID and KIGO_BASE_URL at the real API.",
    );
    Ok(ExitCode::SUCCESS)
}

/// Sends requests until `deadline`, recording outcomes and the tokens in use.
async fn traffic(client: KigoClient, tally: Arc<Tally>, deadline: tokio::time::Instant) {
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
            let fingerprint = token.fingerprint();
            drop(token);
            tally
                .tokens
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(fingerprint);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
