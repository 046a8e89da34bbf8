//! What the tests share: harnesses on a standalone server and on a cluster, replicas built on
//! them, and a store wrapper that holds an operation at a gate.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use kigo_core::runtime::TokioSleep;
use kigo_core::store::{
    ChangeFeed, CommitOutcome, HolderId, InvalidateOutcome, Lease, LeaseAttempt, Snapshot,
};
use kigo_core::{
    ExpiryPolicy, Fingerprint, ManagerBuilder, StoreError, Token, TokenKey, TokenManager,
    TokenSecret, TokenStore,
};
use kigo_store_redis::redis;
use kigo_store_redis::{RedisStore, RedisStoreBuilder};
use kigo_testkit::FakeSource;
use kigo_testkit::conformance::StoreHarness;
use kigo_testkit::services::LocalServer;
use kigo_testkit::services::redis::{RedisService, private_redis, redis as shared_redis};
use kigo_testkit::services::redis_cluster::{
    RedisClusterService, private_redis_cluster, redis_cluster,
};
use tokio::sync::watch;

/// Where a harness's stores connect.
enum Server {
    Standalone(RedisService),
    Cluster(RedisClusterService),
}

/// Redis stores on one server (or cluster) and key prefix, and raw access behind them.
pub(crate) struct RedisHarness {
    server: Server,
}

impl RedisHarness {
    /// On a Redis server shared with other tests (isolated by the key prefix).
    pub(crate) async fn standalone() -> Self {
        let service = shared_redis()
            .await
            .unwrap_or_else(|error| panic!("{error}"));
        Self {
            server: Server::Standalone(service),
        }
    }

    /// On a Redis server of this test only, which it may kill and restart.
    pub(crate) async fn private() -> Self {
        let service = private_redis()
            .await
            .unwrap_or_else(|error| panic!("{error}"));
        Self {
            server: Server::Standalone(service),
        }
    }

    /// On a local Redis Cluster.
    pub(crate) async fn cluster() -> Self {
        let service = redis_cluster()
            .await
            .unwrap_or_else(|error| panic!("{error}"));
        Self {
            server: Server::Cluster(service),
        }
    }

    /// On a Redis Cluster of one node of this test only, which it may reconfigure.
    pub(crate) async fn private_cluster() -> Self {
        let service = private_redis_cluster(1)
            .await
            .unwrap_or_else(|error| panic!("{error}"));
        Self {
            server: Server::Cluster(service),
        }
    }

    /// The server of a [`RedisHarness::private`] harness.
    pub(crate) fn service(&self) -> &RedisService {
        match &self.server {
            Server::Standalone(service) => service,
            Server::Cluster(_) => panic!("a cluster harness has no single server"),
        }
    }

    /// The node URLs of a cluster harness.
    pub(crate) fn cluster_urls(&self) -> &[String] {
        match &self.server {
            Server::Cluster(service) => service.urls(),
            Server::Standalone(_) => panic!("a server harness has no cluster nodes"),
        }
    }

    /// Whether the stores of this harness talk to a Redis Cluster.
    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self.server, Server::Cluster(_))
    }

    /// The one server process of a private server or private cluster.
    pub(crate) fn single_node(&self) -> &LocalServer {
        let node = match &self.server {
            Server::Standalone(service) => service.local_server(),
            Server::Cluster(service) => match service.local_nodes() {
                [node] => Some(node),
                _ => None,
            },
        };
        node.unwrap_or_else(|| panic!("the harness has no single server process of its own"))
    }

    pub(crate) fn builder_prefix(&self) -> &str {
        match &self.server {
            Server::Standalone(service) => service.prefix(),
            Server::Cluster(service) => service.prefix(),
        }
    }

    /// A builder for a store on this harness's server and prefix.
    pub(crate) fn builder(&self) -> RedisStoreBuilder {
        let builder = match &self.server {
            Server::Standalone(service) => RedisStoreBuilder::from_url(service.url()),
            Server::Cluster(service) => {
                RedisStoreBuilder::cluster(service.urls().iter().map(String::as_str))
            }
        };
        // The shortest retention, so that keys left on a shared server go within an hour.
        builder
            .unwrap_or_else(|error| panic!("store settings: {error}"))
            .prefix(self.builder_prefix())
            .retention(Duration::from_secs(3600))
    }

    /// A new store handle with its own connection, as another replica would open it.
    pub(crate) fn store(&self) -> RedisStore {
        self.builder()
            .build()
            .unwrap_or_else(|error| panic!("building the store: {error}"))
    }

    /// Runs `command` on the server directly, bypassing the store (on a one-node cluster, on
    /// that node: it holds every slot).
    pub(crate) async fn raw<T: redis::FromRedisValue>(&self, command: &redis::Cmd) -> T {
        let urls = match &self.server {
            Server::Standalone(service) => vec![service.url().to_owned()],
            Server::Cluster(service) => service.urls().to_vec(),
        };
        let result = if let [url] = urls.as_slice() {
            let client =
                redis::Client::open(url.as_str()).unwrap_or_else(|error| panic!("{error}"));
            let mut connection = client
                .get_multiplexed_async_connection()
                .await
                .unwrap_or_else(|error| panic!("admin connection: {error}"));
            command.query_async(&mut connection).await
        } else {
            let client =
                redis::cluster::ClusterClient::new(urls).unwrap_or_else(|error| panic!("{error}"));
            let mut connection = client
                .get_async_connection()
                .await
                .unwrap_or_else(|error| panic!("admin connection: {error}"));
            command.query_async(&mut connection).await
        };
        result.unwrap_or_else(|error| panic!("raw command failed: {error}"))
    }

    /// Whether the lease key of `key` exists, and its PTTL.
    pub(crate) async fn lease_pttl(&self, key: &TokenKey) -> i64 {
        let lease = self.store().key_names(key).lease;
        self.raw(redis::cmd("PTTL").arg(lease)).await
    }

    /// How many connections are subscribed to the change channel.
    async fn subscribers(&self) -> u64 {
        let channel = self.store().channel().to_owned();
        let counts: Vec<(String, u64)> = self
            .raw(redis::cmd("PUBSUB").arg("NUMSUB").arg(&channel))
            .await;
        counts.first().map_or(0, |(_, subscribers)| *subscribers)
    }

    /// Waits until a store of this harness is subscribed to the change channel.
    pub(crate) async fn subscribed(&self) {
        eventually("a store subscribes", Duration::from_secs(10), || async {
            self.subscribers().await >= 1
        })
        .await;
    }

    /// Waits until exactly `count` connections are subscribed to the change channel.
    pub(crate) async fn subscriber_count(&self, count: u64, what: &str) {
        eventually(what, Duration::from_secs(20), || async {
            self.subscribers().await == count
        })
        .await;
    }

    /// A plain connection to a standalone server, for commands a store must not share.
    pub(crate) async fn admin(&self) -> redis::aio::MultiplexedConnection {
        let client = self
            .service()
            .client()
            .unwrap_or_else(|error| panic!("{error}"));
        client
            .get_multiplexed_async_connection()
            .await
            .unwrap_or_else(|error| panic!("admin connection: {error}"))
    }
}

#[async_trait]
impl StoreHarness for RedisHarness {
    async fn handle(&self) -> Arc<dyn TokenStore> {
        Arc::new(self.store())
    }

    async fn write_raw(&self, key: &TokenKey, raw: &[u8]) {
        let token = self.store().key_names(key).token;
        let () = self.raw(redis::cmd("SET").arg(token).arg(raw)).await;
    }

    async fn pass(&self, duration: Duration) {
        tokio::time::sleep(duration).await;
    }

    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// Kills every normal client connection but the caller's (`CLIENT KILL TYPE normal SKIPME yes`):
/// the store connections of a private server.
pub(crate) async fn kill_client_connections(
    admin: &mut redis::aio::MultiplexedConnection,
) -> usize {
    redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .arg("SKIPME")
        .arg("yes")
        .query_async(admin)
        .await
        .unwrap_or_else(|error| panic!("CLIENT KILL failed: {error}"))
}

/// A manager builder for one replica on real time, with settings short enough for tests.
pub(crate) fn replica(
    source: &FakeSource,
    store: Arc<dyn TokenStore>,
    name: &str,
) -> ManagerBuilder {
    TokenManager::builder(Arc::new(source.clone()))
        .store(store)
        .replica_name(name)
        .lease_ttl(Duration::from_secs(2))
        .create_timeout(Duration::from_secs(1))
        .poll_interval(Duration::from_millis(500))
}

/// Refresh at `share` of the lifetime exactly (no per-replica jitter).
pub(crate) fn refresh_at_share(share: f64) -> ExpiryPolicy {
    ExpiryPolicy::default()
        .with_jitter_share(0.0)
        .and_then(|policy| policy.with_refresh_share(share))
        .unwrap_or_else(|error| panic!("{error}"))
}

/// A source whose creations take `latency` of real time.
pub(crate) fn slow_source(latency: Duration) -> FakeSource {
    FakeSource::new().with_latency(latency, Arc::new(TokioSleep))
}

/// A token issued now, valid for `lifetime`.
pub(crate) fn token_valid_for(name: &str, lifetime: Duration) -> Token {
    let now = SystemTime::now();
    Token::new(
        TokenSecret::new(format!("{name}-{:08x}", fastrand::u32(..))),
        now,
        now + lifetime,
    )
    .unwrap_or_else(|error| panic!("{error}"))
}

/// Acquires the lease of `key` on `store`, failing the test if it is held.
pub(crate) async fn acquire(store: &dyn TokenStore, key: &TokenKey, ttl: Duration) -> Lease {
    match store.acquire_lease(key, &HolderId::random(), ttl).await {
        Ok(LeaseAttempt::Acquired(lease)) => lease,
        other => panic!("expected to acquire the lease, got {other:?}"),
    }
}

/// `future`'s output, failing the test if it takes longer than 10 s.
pub(crate) async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    const DEADLINE: Duration = Duration::from_secs(10);
    tokio::time::timeout(DEADLINE, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: not within {DEADLINE:?}"))
}

/// Waits until `condition` holds, checking every 20 ms, failing after `deadline`.
pub(crate) async fn eventually<F, Fut>(what: &str, deadline: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let until = tokio::time::Instant::now() + deadline;
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < until,
            "{what}: not within {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Where a [`GatedStore`] can hold a replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Point {
    /// Right after a lease was granted (the claim is in Redis), before the caller sees it.
    AfterAcquire,
    /// Right before a commit is sent.
    BeforeCommit,
}

/// A store handle that can hold operations at a gate until the test opens it: a replica paused
/// there, or dead there if the gate never opens.
#[derive(Debug, Clone)]
pub(crate) struct GatedStore {
    store: Arc<dyn TokenStore>,
    gates: Arc<[Gate; 2]>,
}

#[derive(Debug)]
struct Gate {
    armed: AtomicBool,
    reached: watch::Sender<usize>,
    open: watch::Sender<bool>,
}

impl Gate {
    fn new() -> Self {
        Self {
            armed: AtomicBool::new(false),
            reached: watch::Sender::new(0),
            open: watch::Sender::new(false),
        }
    }

    async fn pass(&self) {
        if !self.armed.load(Ordering::SeqCst) {
            return;
        }
        self.reached.send_modify(|count| *count += 1);
        let mut open = self.open.subscribe();
        let _ = open.wait_for(|open| *open).await;
    }
}

impl GatedStore {
    /// Wraps `store` with all gates open.
    pub(crate) fn new(store: Arc<dyn TokenStore>) -> Self {
        Self {
            store,
            gates: Arc::new([Gate::new(), Gate::new()]),
        }
    }

    fn gate(&self, point: Point) -> &Gate {
        &self.gates[point as usize]
    }

    /// Closes the gate at `point`: operations that reach it wait.
    pub(crate) fn hold(&self, point: Point) {
        self.gate(point).armed.store(true, Ordering::SeqCst);
    }

    /// Waits until an operation waits at `point`.
    pub(crate) async fn reached(&self, point: Point) {
        let mut reached = self.gate(point).reached.subscribe();
        let _ = reached.wait_for(|count| *count > 0).await;
    }

    /// Lets the operations waiting at `point` (and later ones) through.
    pub(crate) fn open(&self, point: Point) {
        let gate = self.gate(point);
        gate.armed.store(false, Ordering::SeqCst);
        gate.open.send_replace(true);
    }
}

#[async_trait]
impl TokenStore for GatedStore {
    async fn load(&self, key: &TokenKey) -> Result<Snapshot, StoreError> {
        self.store.load(key).await
    }

    async fn acquire_lease(
        &self,
        key: &TokenKey,
        holder: &HolderId,
        ttl: Duration,
    ) -> Result<LeaseAttempt, StoreError> {
        let attempt = self.store.acquire_lease(key, holder, ttl).await?;
        if matches!(attempt, LeaseAttempt::Acquired(_)) {
            self.gate(Point::AfterAcquire).pass().await;
        }
        Ok(attempt)
    }

    async fn release_lease(&self, lease: &Lease) -> Result<(), StoreError> {
        self.store.release_lease(lease).await
    }

    async fn commit(&self, lease: &Lease, token: &Token) -> Result<CommitOutcome, StoreError> {
        self.gate(Point::BeforeCommit).pass().await;
        self.store.commit(lease, token).await
    }

    async fn invalidate(
        &self,
        key: &TokenKey,
        fingerprint: &Fingerprint,
    ) -> Result<InvalidateOutcome, StoreError> {
        self.store.invalidate(key, fingerprint).await
    }

    async fn set_cooldown(&self, key: &TokenKey, duration: Duration) -> Result<(), StoreError> {
        self.store.set_cooldown(key, duration).await
    }

    fn changes(&self) -> Option<ChangeFeed> {
        self.store.changes()
    }
}
