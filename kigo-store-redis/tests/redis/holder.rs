//! A replica that wins the lease and then dies or pauses before its commit.
//!
//! The holder runs on a tokio runtime of its own, as another process would: shutting that
//! runtime down aborts every task of the replica (its refresh, its store connection) at once,
//! with no chance to release the lease, as a crash would. Its timers stand still while it is
//! paused, as a stopped process's do: otherwise its store timeout, which must fit in its lease,
//! would end the commit before the lease lapsed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use kigo_core::runtime::{AsyncSleep, RuntimeEnv, Sleep, SystemClock, TokioSpawn};
use kigo_core::{Fingerprint, Token, TokenKey, TokenManager, TokenStore};
use kigo_testkit::conformance::fresh_key;
use kigo_testkit::{FakeSource, FaultyStore, Gate, eventually};
use tokio::runtime::Runtime;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::support::{RedisHarness, refresh_at_share, replica, within};

const LEASE_TTL: Duration = Duration::from_secs(5);
const LIFETIME: Duration = Duration::from_secs(60);
/// The holder renews after 3 s; the others after 6 s, 3 s later, while the holder's lease
/// (until about 8 s) still runs.
const HOLDER_REFRESH_SHARE: f64 = 0.05;
const OTHERS_REFRESH_SHARE: f64 = 0.1;

/// The holder's timers: tokio's, except that none fires while the holder is paused.
#[derive(Debug, Clone)]
struct PausableSleep(watch::Sender<bool>);

impl PausableSleep {
    fn new() -> Self {
        Self(watch::Sender::new(false))
    }

    fn pause(&self) {
        self.0.send_replace(true);
    }

    fn resume(&self) {
        self.0.send_replace(false);
    }
}

impl AsyncSleep for PausableSleep {
    fn sleep(&self, duration: Duration) -> Sleep {
        let elapsed = tokio::time::sleep(duration);
        let mut paused = self.0.subscribe();
        Box::pin(async move {
            elapsed.await;
            let _ = paused.wait_for(|paused| !paused).await;
        })
    }
}

/// Three replicas holding the fleet's token, and a fourth (the holder) that reaches its refresh
/// point first, wins the lease, creates a token and is held before its commit.
struct Scenario {
    harness: RedisHarness,
    key: TokenKey,
    source: FakeSource,
    holder_store: FaultyStore,
    holder_timers: PausableSleep,
    holder: TokenManager,
    /// Where the holder's tasks run; `None` once the holder died.
    holder_runtime: Option<Runtime>,
    others: Vec<TokenManager>,
    first: Fingerprint,
}

impl Scenario {
    async fn start() -> Self {
        let harness = RedisHarness::standalone().await;
        let key = fresh_key();
        let source = FakeSource::with_lifetime(LIFETIME);
        let holder_store = FaultyStore::new(Arc::new(harness.store()));
        let holder_runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let holder_timers = PausableSleep::new();
        let holder_env = RuntimeEnv::new(
            Arc::new(SystemClock::new()),
            Arc::new(holder_timers.clone()),
            Arc::new(TokioSpawn::new(holder_runtime.handle().clone())),
        );
        let holder = replica(&source, Arc::new(holder_store.clone()), "holder")
            .runtime(holder_env)
            .expiry(refresh_at_share(HOLDER_REFRESH_SHARE))
            .lease_ttl(LEASE_TTL)
            .build()
            .unwrap();
        let others: Vec<_> = (0..3)
            .map(|index| {
                replica(
                    &source,
                    Arc::new(harness.store()),
                    &format!("other-{index}"),
                )
                .expiry(refresh_at_share(OTHERS_REFRESH_SHARE))
                .lease_ttl(LEASE_TTL)
                .build()
                .unwrap()
            })
            .collect();
        let first = holder.token(&key).await.unwrap().fingerprint();
        for other in &others {
            assert_eq!(other.token(&key).await.unwrap().fingerprint(), first);
        }
        assert_eq!(source.creations(), 1);
        holder_store.hold(Gate::BeforeCommit);
        Self {
            harness,
            key,
            source,
            holder_store,
            holder_timers,
            holder,
            holder_runtime: Some(holder_runtime),
            others,
            first,
        }
    }

    /// Requests on the other replicas every 10 ms until stopped: each must get a token. Returns
    /// the tokens each replica served, in order.
    fn traffic(&self, stop: &Arc<AtomicBool>) -> Vec<JoinHandle<Vec<Fingerprint>>> {
        self.others
            .iter()
            .map(|other| {
                let handle = other.handle(self.key.clone()).unwrap();
                let stop = Arc::clone(stop);
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    loop {
                        // Read the flag first: the request after it is set sees the new token.
                        let stopping = stop.load(Ordering::SeqCst);
                        let token = handle.token().await.unwrap_or_else(|error| {
                            panic!("a request failed while a token was valid: {error}")
                        });
                        if seen.last() != Some(&token.fingerprint()) {
                            seen.push(token.fingerprint());
                        }
                        if stopping {
                            return seen;
                        }
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                })
            })
            .collect()
    }

    /// Waits until another replica took over and every other replica serves its token.
    async fn taken_over(&self) -> Token {
        let store = self.harness.store();
        eventually("a replica takes over", Duration::from_secs(20), || async {
            self.source.creations() == 3
        })
        .await;
        let stored = || async { store.load(&self.key).await.unwrap().token().cloned() };
        eventually(
            "the new token is stored",
            Duration::from_secs(5),
            || async {
                stored()
                    .await
                    .is_some_and(|token| token.fingerprint() != self.first)
            },
        )
        .await;
        let stored = stored().await.unwrap();
        for other in &self.others {
            let handle = other.handle(self.key.clone()).unwrap();
            eventually(
                "every replica serves it",
                Duration::from_secs(5),
                || async {
                    handle.cached().map(|token| token.fingerprint()) == Some(stored.fingerprint())
                },
            )
            .await;
        }
        stored
    }

    /// When the holder and the replica that took over called the token endpoint.
    fn creation_times(&self) -> (SystemTime, SystemTime) {
        let calls = self.source.calls();
        assert_eq!(calls.len(), 3, "{calls:?}");
        (calls[1].at, calls[2].at)
    }

    async fn shutdown(self) {
        for other in &self.others {
            other.shutdown().await;
        }
        drop(self.holder);
        if let Some(runtime) = self.holder_runtime {
            runtime.shutdown_background();
        }
    }
}

/// What becomes of the holder once it waits before its commit.
enum Holder {
    /// It dies: every task of it is aborted, and its lease stays until it lapses.
    Dies,
    /// It stays paused until the test lets it commit.
    Pauses,
}

/// Runs the scenario from the holder's claim to the takeover and checks what both holder tests
/// need.
async fn until_takeover(scenario: &mut Scenario, holder: Holder) -> Token {
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = scenario.traffic(&stop);
    assert!(
        scenario
            .holder_store
            .reached(Gate::BeforeCommit, Duration::from_secs(20))
            .await,
        "the holder claims the lease and creates a token"
    );
    // Paused before its commit's store timeout could run out.
    scenario.holder_timers.pause();
    if let Holder::Dies = holder
        && let Some(runtime) = scenario.holder_runtime.take()
    {
        runtime.shutdown_background();
    }
    let taken_over = scenario.taken_over().await;
    stop.store(true, Ordering::SeqCst);
    for replica_seen in traffic {
        let seen = within("the traffic stops", replica_seen).await.unwrap();
        assert_eq!(
            seen,
            [scenario.first, taken_over.fingerprint()],
            "each replica served the old token, then the new one, and nothing failed"
        );
    }
    let (claimed, replaced) = scenario.creation_times();
    let waited = replaced.duration_since(claimed).unwrap();
    assert!(
        waited >= LEASE_TTL - Duration::from_millis(100),
        "the takeover came {waited:?} after the claim, before the {LEASE_TTL:?} lease lapsed"
    );
    taken_over
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_that_dies_after_claiming_is_replaced_once_its_lease_lapses() {
    let mut scenario = Scenario::start().await;
    let taken_over = until_takeover(&mut scenario, Holder::Dies).await;
    assert!(taken_over.generation() > 1);
    assert_eq!(scenario.harness.lease_pttl(&scenario.key).await, -2);
    scenario.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_paused_past_its_lease_has_its_commit_rejected() {
    let mut scenario = Scenario::start().await;
    let taken_over = until_takeover(&mut scenario, Holder::Pauses).await;

    scenario.holder_store.open(Gate::BeforeCommit);
    eventually(
        "the late commit reaches Redis and is rejected",
        Duration::from_secs(5),
        || async { scenario.holder.metrics().rejected_commits == 1 },
    )
    .await;
    scenario.holder_timers.resume();
    let holder = scenario.holder.handle(scenario.key.clone()).unwrap();
    eventually(
        "the paused holder adopts the stored token",
        Duration::from_secs(5),
        || async {
            holder.cached().map(|token| token.fingerprint()) == Some(taken_over.fingerprint())
        },
    )
    .await;
    assert_eq!(scenario.holder.metrics().rejected_commits, 1);
    let stored = scenario.harness.store().load(&scenario.key).await.unwrap();
    let stored = stored.token().unwrap();
    assert_eq!(stored.fingerprint(), taken_over.fingerprint());
    assert_eq!(stored.generation(), taken_over.generation());
    // Two creations for one renewal is the documented worst case; one token is stored.
    assert_eq!(scenario.source.creations(), 3);
    scenario.shutdown().await;
}
