//! A replica process: `kigo-fleet replica`, started by `kigo-fleet run` with the `KIGO_*`
//! variables of a production replica (credentials pointed at the mock, `KIGO_STORE_URL`,
//! `KIGO_SEALING_KEYS`). It gets its token the way its design does, and on `go` sends requests
//! from its workers until told to report. Answers go to standard output only.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use examples::replicas::{Answer, Command, Traffic, answer, commands, loopback_manager};
use kigo_core::runtime::{RuntimeEnv, TimeSource, TokioSleep, TokioSpawn};
use kigo_core::{Fingerprint, TokenManager, TokenStore};
use kigo_http::{Credentials, KigoApi, KigoClient};
use kigo_testkit::FaultyStore;
use kigo_testkit::mock::PROTECTED_PATH;
use reqwest::header::{HeaderValue, USER_AGENT};
use tokio::time::Instant;

use crate::design::Alternative;
use crate::measure::{lock, micros, peak_memory_kib};
use crate::report::{ReplicaReport, WAITED_FROM_MICROS};
use crate::{Failure, ReplicaArgs};

/// The system clock, this far ahead: a replica whose clock is wrong.
#[derive(Debug)]
struct ClockAhead(Duration);

impl TimeSource for ClockAhead {
    fn now(&self) -> SystemTime {
        SystemTime::now() + self.0
    }
}

/// How this replica gets its token and sends a request.
enum Caller {
    Kigo {
        manager: TokenManager,
        client: KigoClient,
    },
    Alternative {
        api: KigoApi,
        token: Box<Alternative>,
    },
}

/// What one request did.
struct Outcome {
    ok: bool,
    unauthorized: bool,
    token_micros: u64,
    token: Option<Fingerprint>,
}

impl Caller {
    async fn call(&self) -> Outcome {
        let started = Instant::now();
        match self {
            Self::Kigo { client, .. } => {
                let token = client.handle().token().await.ok().map(|t| t.fingerprint());
                let token_micros = micros(started.elapsed());
                let sent = match client.get(PROTECTED_PATH) {
                    Ok(request) => client.send(request).await.ok(),
                    Err(_) => None,
                };
                Outcome {
                    ok: sent.is_some_and(|response| response.status().is_success()),
                    unauthorized: false,
                    token_micros,
                    token,
                }
            }
            Self::Alternative { api, token } => {
                let Ok(token) = token.token().await else {
                    let token_micros = micros(started.elapsed());
                    return Outcome {
                        ok: false,
                        unauthorized: false,
                        token_micros,
                        token: None,
                    };
                };
                let token_micros = micros(started.elapsed());
                let url = api.base_url().join(PROTECTED_PATH);
                let status = match url {
                    Ok(url) => api
                        .http_client()
                        .get(url)
                        .header("authorization", token.bearer().expose())
                        .send()
                        .await
                        .map(|response| response.status())
                        .ok(),
                    Err(_) => None,
                };
                Outcome {
                    ok: status.is_some_and(|status| status.is_success()),
                    unauthorized: status.is_some_and(|status| status.as_u16() == 401),
                    token_micros,
                    token: Some(token.fingerprint()),
                }
            }
        }
    }

    fn client_unauthorized(&self) -> u64 {
        match self {
            Self::Kigo { client, .. } => client.metrics().unauthorized,
            Self::Alternative { .. } => 0,
        }
    }

    fn store_errors(&self) -> u64 {
        match self {
            Self::Kigo { manager, .. } => manager.metrics().store_errors,
            Self::Alternative { .. } => 0,
        }
    }
}

/// Runs replica `args.name` until its standard input ends.
pub(crate) async fn run(args: &ReplicaArgs) -> Result<(), Failure> {
    // Its token requests carry its name as User-Agent: the mock notes it, so that the holder of
    // a creation in progress can be found and killed (the `--faults` phase).
    let api = KigoApi::builder(Credentials::from_env()?)
        .token_request_header(USER_AGENT, HeaderValue::from_str(&args.name)?)
        .build()?;
    // Every store operation of the replica goes through this wrapper, which counts them.
    let counted = FaultyStore::new(Arc::new(kigo_stores::from_env().await?));
    let store: Arc<dyn TokenStore> = Arc::new(counted.clone());
    let caller = match args.design.alternative() {
        None => {
            let mut manager = loopback_manager(&api, store, &args.name);
            if args.clock_ahead_ms > 0 {
                let ahead = Duration::from_millis(args.clock_ahead_ms);
                manager = manager.runtime(RuntimeEnv::new(
                    Arc::new(ClockAhead(ahead)),
                    Arc::new(TokioSleep),
                    Arc::new(TokioSpawn::current().ok_or("no tokio runtime")?),
                ));
            }
            let manager = manager.build()?;
            let client = api.client(manager.handle(api.partner_key())?);
            Caller::Kigo { manager, client }
        }
        Some(shape) => {
            let token = Box::new(Alternative::new(
                shape,
                api.partner_key(),
                api.partner_source(),
                store,
                &args.name,
            ));
            Caller::Alternative { api, token }
        }
    };
    let caller = Arc::new(caller);
    let mut commands = commands();
    answer(&Answer::<ReplicaReport>::Ready)?;
    let tally = Arc::new(Tally::default());
    let mut traffic = None;
    while let Some(line) = commands.recv().await {
        match Command::parse(&line) {
            Some(Command::Go) if traffic.is_none() => {
                let (caller, tally) = (Arc::clone(&caller), Arc::clone(&tally));
                let pause = Duration::from_millis(args.pause_ms);
                traffic = Some(Traffic::start(args.workers, pause, move || {
                    request(Arc::clone(&caller), Arc::clone(&tally))
                }));
            }
            Some(Command::Report) => {
                if let Some(traffic) = traffic.take() {
                    traffic.stop().await?;
                }
                if let Caller::Kigo { client, .. } = &*caller {
                    // The token the next request would use: one created since the last request
                    // shows up here.
                    if let Ok(token) = client.handle().token().await {
                        tally.record(token.fingerprint());
                    }
                }
                answer(&Answer::Report(tally.report(&caller, counted.calls())))?;
            }
            _ => return Err(format!("unexpected command {line:?}").into()),
        }
    }
    if let Ok(Caller::Kigo { manager, .. }) = Arc::try_unwrap(caller) {
        manager.shutdown().await;
    }
    Ok(())
}

/// What this replica's workers saw.
#[derive(Debug, Default)]
struct Tally {
    requests: AtomicU64,
    failures: AtomicU64,
    unauthorized: AtomicU64,
    waited: AtomicU64,
    waited_micros: AtomicU64,
    latencies: Mutex<Vec<u32>>,
    used: Mutex<HashSet<Fingerprint>>,
}

impl Tally {
    fn note(&self, outcome: &Outcome, latency: Duration) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if !outcome.ok {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
        if outcome.unauthorized {
            self.unauthorized.fetch_add(1, Ordering::Relaxed);
        }
        if outcome.token_micros >= WAITED_FROM_MICROS {
            self.waited.fetch_add(1, Ordering::Relaxed);
            self.waited_micros
                .fetch_add(outcome.token_micros, Ordering::Relaxed);
        }
        let latency = u32::try_from(micros(latency)).unwrap_or(u32::MAX);
        lock(&self.latencies).push(latency);
        if let Some(token) = outcome.token {
            self.record(token);
        }
    }

    fn record(&self, token: Fingerprint) {
        lock(&self.used).insert(token);
    }

    fn report(&self, caller: &Caller, store_ops: u64) -> ReplicaReport {
        ReplicaReport {
            requests: self.requests.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            unauthorized: self.unauthorized.load(Ordering::Relaxed) + caller.client_unauthorized(),
            waited: self.waited.load(Ordering::Relaxed),
            waited_micros: self.waited_micros.load(Ordering::Relaxed),
            latencies_micros: lock(&self.latencies).clone(),
            store_ops,
            store_errors: caller.store_errors(),
            tokens: lock(&self.used)
                .iter()
                .map(Fingerprint::to_string)
                .collect(),
            peak_memory_kib: peak_memory_kib(),
        }
    }
}

/// Sends one request and notes what it did.
async fn request(caller: Arc<Caller>, tally: Arc<Tally>) {
    let started = Instant::now();
    let outcome = caller.call().await;
    tally.note(&outcome, started.elapsed());
}
