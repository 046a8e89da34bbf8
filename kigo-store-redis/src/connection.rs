//! The way to Redis: a multiplexed connection that reconnects by itself (standalone) or a cluster
//! connection, opened on first use, and pub/sub subscriptions for change notices.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::stream::BoxStream;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, NodeAddress};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo, SingleNodeRoutingInfo};
use redis::{
    Client, Cmd, ErrorKind, FromRedisValue, Msg, RedisError, RedisResult, ScriptInvocation, Value,
};
use tokio::sync::OnceCell;

use crate::subscription;

/// Where the store connects to.
#[derive(Clone)]
pub(crate) enum Target {
    /// One Redis server (or a proxy in front of several).
    Standalone(Box<Client>),
    /// A Redis Cluster, and clients for its nodes to subscribe through (a regular `PUBLISH` in a
    /// cluster reaches the subscribers of every node).
    Cluster {
        client: Box<ClusterClient>,
        nodes: Vec<Client>,
    },
}

impl Target {
    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster { .. })
    }

    /// The clients the store connects through (for a cluster, those it subscribes through; the
    /// redis crate does not show a `ClusterClient`'s own nodes).
    pub(crate) fn clients(&self) -> &[Client] {
        match self {
            Self::Standalone(client) => std::slice::from_ref(client.as_ref()),
            Self::Cluster { nodes, .. } => nodes.as_slice(),
        }
    }
}

/// How long one connection attempt and one command may take, and how often the change-notice
/// connection is checked.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    pub(crate) connect: Duration,
    pub(crate) response: Duration,
    pub(crate) heartbeat: Duration,
}

#[derive(Clone)]
enum Open {
    Standalone(ConnectionManager),
    Cluster(ClusterConnection),
}

/// The connection of one store handle, shared by its clones.
pub(crate) struct Connection {
    target: Target,
    timeouts: Timeouts,
    open: OnceCell<Open>,
    /// Which node the next subscription tries first, so that a dead node is not tried forever.
    next_node: AtomicUsize,
}

impl Connection {
    pub(crate) fn new(target: Target, timeouts: Timeouts) -> Self {
        Self {
            target,
            timeouts,
            open: OnceCell::new(),
            next_node: AtomicUsize::new(0),
        }
    }

    pub(crate) fn target(&self) -> &Target {
        &self.target
    }

    /// The connection, opened on first use. A failed opening is tried again on the next call.
    async fn open(&self) -> RedisResult<Open> {
        let open = self
            .open
            .get_or_try_init(|| async {
                match &self.target {
                    Target::Standalone(client) => {
                        // One quick reconnect attempt per command: while Redis is down, callers
                        // fail fast and the manager's backoff decides when to try again.
                        let config = ConnectionManagerConfig::new()
                            .set_connection_timeout(Some(self.timeouts.connect))
                            .set_response_timeout(Some(self.timeouts.response))
                            .set_number_of_retries(1);
                        ConnectionManager::new_lazy_with_config(Client::clone(client), config)
                            .map(Open::Standalone)
                    }
                    Target::Cluster { client, .. } => {
                        client.get_async_connection().await.map(Open::Cluster)
                    }
                }
            })
            .await?;
        Ok(open.clone())
    }

    /// Runs a script, loading it first if the server does not know it (`NOSCRIPT`).
    pub(crate) async fn run<T: FromRedisValue>(
        &self,
        invocation: &ScriptInvocation<'_>,
    ) -> RedisResult<T> {
        match self.open().await? {
            Open::Standalone(mut connection) => invocation.invoke_async(&mut connection).await,
            Open::Cluster(mut connection) => invocation.invoke_async(&mut connection).await,
        }
    }

    /// Runs `command`; on a cluster, on the node it routes to (any node for a command without
    /// keys).
    pub(crate) async fn query<T: FromRedisValue>(&self, command: &Cmd) -> RedisResult<T> {
        match self.open().await? {
            Open::Standalone(mut connection) => command.query_async(&mut connection).await,
            Open::Cluster(mut connection) => command.query_async(&mut connection).await,
        }
    }

    /// Calls `each` with the name of every key matching `pattern`, on every master of a cluster:
    /// `SCAN` to the end of each. A name may come more than once (`SCAN` may repeat one), and
    /// keys written meanwhile may or may not come.
    pub(crate) async fn scan(&self, pattern: &str, mut each: impl FnMut(&[u8])) -> RedisResult<()> {
        match self.open().await? {
            Open::Standalone(connection) => Node::Server(connection).scan(pattern, &mut each).await,
            Open::Cluster(mut connection) => {
                for master in masters(&mut connection).await? {
                    let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                        host: master.host().to_owned(),
                        port: master.port(),
                    });
                    Node::Master(connection.clone(), route)
                        .scan(pattern, &mut each)
                        .await?;
                }
                Ok(())
            }
        }
    }

    /// Subscribes to `channel` on a fresh connection; the stream ends when it drops or stops
    /// answering.
    pub(crate) async fn subscribe(&self, channel: &str) -> RedisResult<BoxStream<'static, Msg>> {
        let nodes = self.target.clients();
        let first = self.next_node.fetch_add(1, Ordering::Relaxed);
        let mut last_error = None;
        for offset in 0..nodes.len() {
            let client = &nodes[(first + offset) % nodes.len()];
            match subscription::subscribe(client, channel, self.timeouts).await {
                Ok(stream) => return Ok(stream),
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error
            .unwrap_or_else(|| RedisError::from((ErrorKind::InvalidClientConfig, "no nodes"))))
    }
}

/// How many keys one `SCAN` step looks at: large enough that a walk takes few round trips, small
/// enough that one step holds Redis for well under a millisecond.
const SCAN_COUNT: u64 = 1000;

/// One node to `SCAN`: a server, or a master of a cluster.
enum Node {
    Server(ConnectionManager),
    Master(ClusterConnection, RoutingInfo),
}

impl Node {
    async fn send(&mut self, command: Cmd) -> RedisResult<Value> {
        match self {
            Self::Server(connection) => command.query_async(connection).await,
            Self::Master(connection, route) => {
                connection.route_command(command, route.clone()).await
            }
        }
    }

    /// `SCAN`s the node to the end.
    async fn scan(mut self, pattern: &str, each: &mut impl FnMut(&[u8])) -> RedisResult<()> {
        let mut cursor = 0_u64;
        loop {
            let mut step = redis::cmd("SCAN");
            step.arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(SCAN_COUNT);
            let reply = self.send(step).await?.extract_error()?;
            let (next, names): (u64, Vec<Vec<u8>>) = redis::from_redis_value(reply)?;
            names.iter().for_each(|name| each(name));
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }
}

/// The addresses of a cluster's masters, as its client knows them: those that answer a `PING`
/// sent to every master.
async fn masters(connection: &mut ClusterConnection) -> RedisResult<Vec<NodeAddress>> {
    let every_master = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None));
    let replies = connection
        .route_command(redis::cmd("PING"), every_master)
        .await?
        .extract_error()?;
    let replies: HashMap<String, Value> = redis::from_redis_value(replies)?;
    replies.keys().map(|address| address.parse()).collect()
}
