//! What the tests share: harnesses on a standalone server and on a cluster, replicas built on
//! them, and waiting with deadlines.

use std::error::Error;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use kigo_core::codec::{KeyId, Keyring};
use kigo_core::runtime::TokioSleep;
use kigo_core::store::{HolderId, Lease, LeaseAttempt, StoreAdmin};
use kigo_core::{
    ExpiryPolicy, KeyScope, ManagerBuilder, StoreError, Token, TokenKey, TokenManager, TokenSecret,
    TokenSource, TokenStore,
};
use kigo_store_redis::redis;
use kigo_store_redis::{RedisStore, RedisStoreBuilder};
use kigo_test_services::LocalServer;
use kigo_test_services::redis::{RedisService, private_redis, redis as shared_redis};
use kigo_test_services::redis_cluster::{
    RedisClusterService, private_redis_cluster, redis_cluster,
};
use kigo_testkit::admin_conformance::AdminHarness;
use kigo_testkit::conformance::{StoreHarness, test_keyring};
pub(crate) use kigo_testkit::logs::Capture;
use kigo_testkit::{FakeSource, eventually};

/// Where a harness's stores connect.
enum Server {
    Standalone(RedisService),
    Cluster(RedisClusterService),
}

/// Redis stores on one server (or cluster) and key prefix, sealing with one keyring of this
/// test, and raw access behind them.
pub(crate) struct RedisHarness {
    server: Server,
    keyring: Keyring,
}

impl RedisHarness {
    fn on(server: Server) -> Self {
        Self {
            server,
            keyring: test_keyring(),
        }
    }

    /// On a Redis server shared with other tests (isolated by the key prefix).
    pub(crate) async fn standalone() -> Self {
        let service = shared_redis()
            .await
            .unwrap_or_else(|error| panic!("{error}"));
        Self::on(Server::Standalone(service))
    }

    /// On a Redis server of this test only, which it may kill and restart.
    pub(crate) async fn private() -> Self {
        let service = private_redis()
            .await
            .unwrap_or_else(|error| panic!("{error}"));
        Self::on(Server::Standalone(service))
    }

    /// On a local Redis Cluster.
    pub(crate) async fn cluster() -> Self {
        let service = redis_cluster()
            .await
            .unwrap_or_else(|error| panic!("{error}"));
        Self::on(Server::Cluster(service))
    }

    /// On a Redis Cluster of one node of this test only, which it may reconfigure.
    pub(crate) async fn private_cluster() -> Self {
        let service = private_redis_cluster(1)
            .await
            .unwrap_or_else(|error| panic!("{error}"));
        Self::on(Server::Cluster(service))
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

    /// The keyring this harness's stores seal with.
    pub(crate) fn keyring(&self) -> Keyring {
        self.keyring.clone()
    }

    pub(crate) fn builder_prefix(&self) -> &str {
        match &self.server {
            Server::Standalone(service) => service.prefix(),
            Server::Cluster(service) => service.prefix(),
        }
    }

    /// A builder for a store on this harness's server and prefix, sealing with its keyring.
    pub(crate) fn builder(&self) -> RedisStoreBuilder {
        let builder = RedisStore::builder();
        let builder = match &self.server {
            Server::Standalone(service) => builder.url(service.url()),
            Server::Cluster(service) => builder.cluster_nodes(service.urls().iter().cloned()),
        };
        // The shortest retention, so that keys left on a shared server go within an hour. A
        // test server named by the environment may be on another host (a CI service) and
        // speak plain text: the transport rule has tests of its own.
        builder
            .prefix(self.builder_prefix())
            .keyring(self.keyring())
            .retention(Duration::from_secs(3600))
            .allow_insecure_transport()
    }

    /// A new store handle with its own connection, as another replica would open it.
    pub(crate) fn store(&self) -> RedisStore {
        self.store_with(self.keyring())
    }

    /// [`RedisHarness::store`] sealing with `keyring`, as a replica with other keys would.
    pub(crate) fn store_with(&self, keyring: Keyring) -> RedisStore {
        self.builder()
            .keyring(keyring)
            .build()
            .unwrap_or_else(|error| panic!("building the store: {error}"))
    }

    /// The ID of the key that sealed the stored entry of `key`, read behind the store's back;
    /// `None` for no entry or one that names no key.
    pub(crate) async fn sealed_with(&self, key: &TokenKey) -> Option<KeyId> {
        kigo_core::codec::sealed_with(&self.read_raw(key).await?)
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

    /// Waits until a store of this harness is subscribed to the change channel.
    pub(crate) async fn subscribed(&self) {
        self.subscribers_until("the store subscribes", |count| count >= 1)
            .await;
    }

    /// Waits until the number of connections subscribed to the change channel is `enough`.
    pub(crate) async fn subscribers_until(&self, what: &str, enough: impl Fn(u64) -> bool) {
        let channel = self.store().channel().to_owned();
        eventually(what, Duration::from_secs(20), || async {
            let counts: Vec<(String, u64)> = self
                .raw(redis::cmd("PUBSUB").arg("NUMSUB").arg(&channel))
                .await;
            enough(counts.first().map_or(0, |(_, subscribers)| *subscribers))
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
        let record = self.store().key_names(key).record;
        let () = self.raw(&edit_record(&record, Edit::Entry(raw))).await;
    }

    async fn read_raw(&self, key: &TokenKey) -> Option<Vec<u8>> {
        let record = self.store().key_names(key).record;
        let value: Option<Vec<u8>> = self.raw(redis::cmd("GET").arg(record)).await;
        value
            .and_then(|value| value.get(RECORD_HEADER_LEN..).map(<[u8]>::to_vec))
            .filter(|entry| !entry.is_empty())
    }

    async fn pass(&self, duration: Duration) {
        tokio::time::sleep(duration).await;
    }

    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    /// Real Redis on a loaded machine: the suite's default of 500 ms leaves too little margin
    /// between the steps of a test that must all fall inside one TTL.
    fn short_ttl(&self) -> Duration {
        Duration::from_secs(2)
    }
}

#[async_trait]
impl AdminHarness for RedisHarness {
    async fn admin_with(&self, keyring: Keyring) -> Arc<dyn StoreAdmin> {
        Arc::new(self.store_with(keyring))
    }

    fn keyring(&self) -> Keyring {
        RedisHarness::keyring(self)
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

/// A manager builder for one replica on real time, with settings short enough for tests. It
/// serves partner-level keys: a fake source names none, and the tests use a fresh partner each.
pub(crate) fn replica(
    source: &FakeSource,
    store: Arc<dyn TokenStore>,
    name: &str,
) -> ManagerBuilder {
    replica_of(Arc::new(source.clone()), store, name).scope(KeyScope::AnyPartner)
}

/// [`replica`] with any token source. The lease covers a creation and two store operations
/// (as the manager requires) and lapses soon after.
pub(crate) fn replica_of(
    source: Arc<dyn TokenSource>,
    store: Arc<dyn TokenStore>,
    name: &str,
) -> ManagerBuilder {
    TokenManager::builder(source)
        .store(store)
        .replica_name(name)
        .lease_ttl(Duration::from_secs(5))
        .create_timeout(Duration::from_secs(1))
        .store_timeout(Duration::from_millis(1500))
        .poll_interval(Duration::from_millis(500))
}

/// Refresh at `share` of the lifetime exactly (no per-replica jitter).
pub(crate) fn refresh_at_share(share: f64) -> ExpiryPolicy {
    ExpiryPolicy::default()
        .with_shares(share, 0.0)
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

/// The length of a record's header (the crate's `scripts` module describes the layout).
pub(crate) const RECORD_HEADER_LEN: usize = 15;

/// A field of a record rewritten behind the store's back by [`edit_record`].
pub(crate) enum Edit<'a> {
    /// The stored generation.
    Generation(u64),
    /// The last fence granted.
    Fence(u64),
    /// The entry; a record without a token gets an expiry far ahead (in 2100).
    Entry(&'a [u8]),
}

/// The command that rewrites one field of the record named `record`, the others (and its TTL)
/// kept; a missing record is created empty, without a TTL.
pub(crate) fn edit_record(record: &str, edit: Edit<'_>) -> redis::Cmd {
    const SCRIPT: &str = r"
local HEADER = '>BI5I5I4'
local value = redis.call('GET', KEYS[1])
local generation, fence, expiry, entry = 0, 0, 0, ''
if value then
  local _
  _, generation, fence, expiry = struct.unpack(HEADER, value)
  entry = string.sub(value, 16)
end
if ARGV[1] == 'generation' then generation = tonumber(ARGV[2]) end
if ARGV[1] == 'fence' then fence = tonumber(ARGV[2]) end
if ARGV[1] == 'entry' then
  entry = ARGV[2]
  if expiry == 0 then expiry = 4102444800 end
end
local header = struct.pack(HEADER, 1, generation, fence, expiry)
redis.call('SET', KEYS[1], header .. entry, 'KEEPTTL')
return 0
";
    let mut command = redis::cmd("EVAL");
    command.arg(SCRIPT).arg(1).arg(record);
    match edit {
        Edit::Generation(generation) => command.arg("generation").arg(generation),
        Edit::Fence(fence) => command.arg("fence").arg(fence),
        Edit::Entry(entry) => command.arg("entry").arg(entry),
    };
    command
}

/// `future`'s output, failing the test if it takes longer than 10 s.
pub(crate) async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    const DEADLINE: Duration = Duration::from_secs(10);
    tokio::time::timeout(DEADLINE, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: not within {DEADLINE:?}"))
}

/// The hint of `error`, which must be a misconfiguration, and its whole error chain as shown
/// (each cause's Display and Debug): what it names, and what it must not repeat.
pub(crate) fn misconfiguration(error: &StoreError) -> (&'static str, String) {
    let StoreError::Misconfigured { hint, .. } = error else {
        panic!("expected a misconfiguration, got {error:?}");
    };
    let shown = std::iter::successors(Some(error as &dyn Error), |&cause| cause.source())
        .map(|cause| format!("{cause} {cause:?} "))
        .collect();
    (hint, shown)
}

/// Tells a child process (see [`run_child`]) which case to check.
const CHILD_CASE_VAR: &str = "KIGO_TEST_CHILD_CASE";

/// Runs the ignored test `test` of this binary in a child process, with `case` for
/// [`child_case`] and each of `vars` set (`Some`) or removed (`None`), and fails unless it
/// passed. For tests of what the store reads from the environment: changing the environment of
/// this multi-threaded test process would be unsound.
pub(crate) fn run_child(test: &str, case: &str, vars: &[(&str, Option<&str>)]) {
    let mut child = Command::new(std::env::current_exe().unwrap());
    child
        .args(["--ignored", "--exact", test, "--test-threads=1"])
        .env(CHILD_CASE_VAR, case);
    for (name, value) in vars {
        match value {
            Some(value) => child.env(name, value),
            None => child.env_remove(name),
        };
    }
    let output = child.output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "the child for {case} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The case given to this child process by [`run_child`]; `None` in a test process run by
/// hand (`--include-ignored`), which has no case to check.
pub(crate) fn child_case() -> Option<String> {
    std::env::var(CHILD_CASE_VAR).ok()
}
