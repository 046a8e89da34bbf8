//! A small Redis Cluster for tests: masters from local `redis-server` processes on free
//! loopback ports, joined with `CLUSTER ADDSLOTSRANGE` and `CLUSTER MEET`.

use std::fmt;
use std::io;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use ::redis::aio::MultiplexedConnection;
use ::redis::{Client, RedisResult, cmd};

use super::redis::{BINARIES, shared, start_local_redis_with};
use super::{LocalServer, Remedy, ServiceError, free_port, unique_suffix, url_from_env};

/// The variable naming the nodes of a Redis Cluster the tests may use, comma-separated
/// (`redis://127.0.0.1:7000,redis://127.0.0.1:7001`).
pub const REDIS_CLUSTER_URLS_VAR: &str = "KIGO_TEST_REDIS_CLUSTER_URLS";

const MASTERS: usize = 3;
const SLOTS: usize = 16384;
/// How long the nodes may take to agree that the cluster is up.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const READY_POLL: Duration = Duration::from_millis(100);

/// A Redis Cluster for one test, and the key prefix that isolates the test on it.
#[derive(Clone)]
pub struct RedisClusterService {
    urls: Vec<String>,
    prefix: String,
    local: Option<Arc<LocalCluster>>,
}

impl RedisClusterService {
    /// The URLs of the cluster's nodes.
    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    /// A key prefix no other test uses, ending in `:`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The node processes of a cluster started for the tests (none for one named by the
    /// environment).
    pub fn local_nodes(&self) -> &[LocalServer] {
        self.local
            .as_deref()
            .map_or(&[], |cluster| cluster.nodes.as_slice())
    }

    fn local(cluster: Arc<LocalCluster>) -> Self {
        let urls = cluster
            .nodes
            .iter()
            .map(|node| format!("redis://127.0.0.1:{}", node.port()))
            .collect();
        Self {
            urls,
            prefix: format!("kigo-test-{}:", unique_suffix()),
            local: Some(cluster),
        }
    }
}

impl fmt::Debug for RedisClusterService {
    /// Without the URLs: ones from the environment may hold a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisClusterService")
            .field("nodes", &self.urls.len())
            .field("prefix", &self.prefix)
            .field("local", &self.local.is_some())
            .finish()
    }
}

/// The `redis-server` processes of a cluster, stopped when dropped.
#[derive(Debug)]
struct LocalCluster {
    nodes: Vec<LocalServer>,
}

/// A Redis Cluster: `KIGO_TEST_REDIS_CLUSTER_URLS` if set, else three local `redis-server`
/// masters of this test run (shared by the tests running at the same time, stopped when the
/// last of them ends).
pub async fn redis_cluster() -> Result<RedisClusterService, ServiceError> {
    if let Some(urls) = url_from_env(REDIS_CLUSTER_URLS_VAR) {
        return Ok(RedisClusterService {
            urls: urls.split(',').map(|url| url.trim().to_owned()).collect(),
            prefix: format!("kigo-test-{}:", unique_suffix()),
            local: None,
        });
    }
    static SHARED: Mutex<Weak<LocalCluster>> = Mutex::new(Weak::new());
    let cluster = shared(&SHARED, || start_local_cluster(MASTERS))
        .await
        .map_err(|error| ServiceError {
            service: "Redis Cluster",
            reason: error.to_string(),
            remedies: vec![
                Remedy::EnvVar(REDIS_CLUSTER_URLS_VAR),
                Remedy::Binaries(BINARIES),
            ],
        })?;
    Ok(RedisClusterService::local(cluster))
}

/// A Redis Cluster of `masters` local `redis-server` masters for this test alone, which it may
/// reconfigure, kill and restart ([`RedisClusterService::local_nodes`]).
pub async fn private_redis_cluster(masters: usize) -> Result<RedisClusterService, ServiceError> {
    let cluster = start_local_cluster(masters)
        .await
        .map_err(|error| ServiceError::local_only("Redis Cluster", BINARIES, error.to_string()))?;
    Ok(RedisClusterService::local(Arc::new(cluster)))
}

async fn start_local_cluster(masters: usize) -> io::Result<LocalCluster> {
    let mut nodes = Vec::with_capacity(masters);
    for _ in 0..masters {
        // The bus port is chosen anew with every attempt, like the client port.
        let node = start_local_redis_with(|| {
            Ok(vec![
                "--cluster-enabled".to_owned(),
                "yes".to_owned(),
                "--cluster-port".to_owned(),
                free_port()?.to_string(),
                "--cluster-node-timeout".to_owned(),
                "5000".to_owned(),
            ])
        })
        .await?;
        nodes.push(node);
    }
    join(&nodes).await.map_err(io::Error::other)?;
    Ok(LocalCluster { nodes })
}

/// Gives each node an equal share of the slots, introduces them to each other and waits until
/// every node reports the cluster up.
async fn join(nodes: &[LocalServer]) -> RedisResult<()> {
    let mut connections = Vec::with_capacity(nodes.len());
    for (index, node) in nodes.iter().enumerate() {
        let client = Client::open(format!("redis://127.0.0.1:{}", node.port()))?;
        let mut connection = client.get_multiplexed_async_connection().await?;
        let first = index * SLOTS / nodes.len();
        let last = (index + 1) * SLOTS / nodes.len() - 1;
        cmd("CLUSTER")
            .arg("ADDSLOTSRANGE")
            .arg(first)
            .arg(last)
            .query_async::<()>(&mut connection)
            .await?;
        connections.push(connection);
    }
    let mut bus_ports = Vec::with_capacity(nodes.len());
    for connection in &mut connections {
        let (_, bus): (String, u16) = cmd("CONFIG")
            .arg("GET")
            .arg("cluster-port")
            .query_async(connection)
            .await?;
        bus_ports.push(bus);
    }
    if let Some(introducer) = connections.first_mut() {
        for (node, bus) in nodes.iter().zip(bus_ports).skip(1) {
            cmd("CLUSTER")
                .arg("MEET")
                .arg("127.0.0.1")
                .arg(node.port())
                .arg(bus)
                .query_async::<()>(introducer)
                .await?;
        }
    }
    let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
    while !all_up(&mut connections, nodes.len()).await? {
        if tokio::time::Instant::now() >= deadline {
            return Err(::redis::RedisError::from(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the local Redis Cluster was not up within {READY_TIMEOUT:?}"),
            )));
        }
        tokio::time::sleep(READY_POLL).await;
    }
    Ok(())
}

async fn all_up(connections: &mut [MultiplexedConnection], size: usize) -> RedisResult<bool> {
    for connection in connections {
        let info: String = cmd("CLUSTER").arg("INFO").query_async(connection).await?;
        let up = info.lines().any(|line| line.trim() == "cluster_state:ok")
            && info
                .lines()
                .any(|line| line.trim() == format!("cluster_known_nodes:{size}"));
        if !up {
            return Ok(false);
        }
    }
    Ok(true)
}
