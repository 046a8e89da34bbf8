//! A small Redis Cluster for tests: three masters from local `redis-server` processes on free
//! loopback ports, joined with `CLUSTER ADDSLOTSRANGE` and `CLUSTER MEET`.

use std::io;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use ::redis::aio::MultiplexedConnection;
use ::redis::{Client, RedisResult, cmd};

use super::redis::{shared, start_local_redis};
use super::{LocalServer, ServiceError, free_port, unique_suffix, url_from_env};

/// The variable naming the nodes of a Redis Cluster the tests may use, comma-separated
/// (`redis://127.0.0.1:7000,redis://127.0.0.1:7001`).
pub const REDIS_CLUSTER_URLS_VAR: &str = "KIGO_TEST_REDIS_CLUSTER_URLS";

const MASTERS: usize = 3;
const SLOTS: usize = 16384;
/// How long the nodes may take to agree that the cluster is up.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const READY_POLL: Duration = Duration::from_millis(100);

/// A Redis Cluster for one test, and the key prefix that isolates the test on it.
#[derive(Debug, Clone)]
pub struct RedisClusterService {
    urls: Vec<String>,
    prefix: String,
    _local: Option<Arc<LocalCluster>>,
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
    let prefix = format!("kigo-test-{}:", unique_suffix());
    if let Some(urls) = url_from_env(REDIS_CLUSTER_URLS_VAR) {
        let urls = urls.split(',').map(|url| url.trim().to_owned()).collect();
        return Ok(RedisClusterService {
            urls,
            prefix,
            _local: None,
        });
    }
    static SHARED: Mutex<Weak<LocalCluster>> = Mutex::new(Weak::new());
    let cluster = shared(&SHARED, start_local_cluster)
        .await
        .map_err(|error| ServiceError {
            service: "Redis Cluster",
            env_var: REDIS_CLUSTER_URLS_VAR,
            binaries: "redis-server 7 or newer, Debian package `redis-server`",
            reason: error.to_string(),
        })?;
    let urls = cluster
        .nodes
        .iter()
        .map(|node| format!("redis://127.0.0.1:{}", node.port()))
        .collect();
    Ok(RedisClusterService {
        urls,
        prefix,
        _local: Some(cluster),
    })
}

async fn start_local_cluster() -> io::Result<LocalCluster> {
    let mut nodes = Vec::with_capacity(MASTERS);
    let mut bus_ports = Vec::with_capacity(MASTERS);
    for _ in 0..MASTERS {
        let bus = free_port()?.to_string();
        let args = [
            "--cluster-enabled",
            "yes",
            "--cluster-port",
            &bus,
            "--cluster-node-timeout",
            "5000",
        ];
        nodes.push(start_local_redis(&args).await?);
        bus_ports.push(bus);
    }
    join(&nodes, &bus_ports).await.map_err(io::Error::other)?;
    Ok(LocalCluster { nodes })
}

/// Gives each node a third of the slots, introduces them to each other and waits until every
/// node reports the cluster up.
async fn join(nodes: &[LocalServer], bus_ports: &[String]) -> RedisResult<()> {
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
