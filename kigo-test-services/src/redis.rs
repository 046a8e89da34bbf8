//! Redis for tests: a server found from `KIGO_TEST_REDIS_URL`, a private `redis-server` from the
//! local binary, or a container; each test gets a key prefix of its own.

use std::fmt;
use std::io;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use super::{
    LocalServer, Remedy, ServerSpec, ServiceError, find_binary, free_port, unique_suffix,
    url_from_env,
};

/// The variable naming a Redis server the tests may use (`redis://127.0.0.1:6379`).
pub const REDIS_URL_VAR: &str = "KIGO_TEST_REDIS_URL";

/// The binaries a local Redis needs, for error messages.
pub(super) const BINARIES: &str = "redis-server (Debian package `redis-server`)";

/// A Redis server for one test, and the key prefix that isolates the test on it.
#[derive(Clone)]
pub struct RedisService {
    url: String,
    prefix: String,
    server: Server,
}

impl fmt::Debug for RedisService {
    /// Without the URL: one from the environment may hold a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisService")
            .field("prefix", &self.prefix)
            .field("server", &self.server)
            .finish()
    }
}

#[derive(Debug, Clone)]
enum Server {
    /// Named by the environment: run by someone else.
    External,
    /// A `redis-server` process of this test run, shared with other tests.
    Shared { _server: Arc<LocalServer> },
    /// A `redis-server` process of this test only.
    Private(Arc<LocalServer>),
    /// A container of this test run.
    #[cfg(feature = "testcontainers")]
    Container {
        _container: Arc<container::RedisContainer>,
    },
}

impl RedisService {
    /// The URL to connect to (`redis://127.0.0.1:<port>`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A key prefix no other test uses, ending in `:`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The server process of a [`private_redis`]: kill and restart it to inject faults.
    pub fn local_server(&self) -> Option<&LocalServer> {
        match &self.server {
            Server::Private(server) => Some(server),
            _ => None,
        }
    }

    /// A client for the same server, for reaching behind the store under test.
    pub fn client(&self) -> ::redis::RedisResult<::redis::Client> {
        ::redis::Client::open(self.url.as_str())
    }

    fn new(url: String, server: Server) -> Self {
        Self {
            url,
            prefix: format!("kigo-test-{}:", unique_suffix()),
            server,
        }
    }
}

/// A Redis server for a test that does not kill it: `KIGO_TEST_REDIS_URL` if set, else a
/// `redis-server` of this test run (shared by the tests running at the same time, stopped when
/// the last of them ends), else a container when the `testcontainers` feature is on and Docker is
/// reachable.
pub async fn redis() -> Result<RedisService, ServiceError> {
    if let Some(url) = url_from_env(REDIS_URL_VAR) {
        return Ok(RedisService::new(url, Server::External));
    }
    static SHARED: Mutex<Weak<LocalServer>> = Mutex::new(Weak::new());
    match shared(&SHARED, start_local_redis).await {
        Ok(server) => Ok(local_service(server, |server| Server::Shared {
            _server: server,
        })),
        Err(error) => from_container(error).await,
    }
}

/// A `redis-server` of this test only, which the test may kill and restart.
pub async fn private_redis() -> Result<RedisService, ServiceError> {
    let server = start_local_redis()
        .await
        .map_err(|error| ServiceError::local_only("Redis", BINARIES, error.to_string()))?;
    Ok(local_service(Arc::new(server), Server::Private))
}

/// The value in `slot` if a test still uses it, else a new one from `start`, left there for the
/// tests that start while this one runs. It is dropped (its servers stopped) with the last user.
pub(super) async fn shared<T, F>(
    slot: &Mutex<Weak<T>>,
    start: impl FnOnce() -> F,
) -> io::Result<Arc<T>>
where
    F: Future<Output = io::Result<T>>,
{
    let live = slot
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .upgrade();
    if let Some(value) = live {
        return Ok(value);
    }
    let value = Arc::new(start().await?);
    *slot.lock().unwrap_or_else(PoisonError::into_inner) = Arc::downgrade(&value);
    Ok(value)
}

fn local_service(server: Arc<LocalServer>, kind: fn(Arc<LocalServer>) -> Server) -> RedisService {
    let url = format!("redis://127.0.0.1:{}", server.port());
    RedisService::new(url, kind(server))
}

/// Starts `redis-server` on a free loopback port in a temp dir, without persistence.
pub async fn start_local_redis() -> io::Result<LocalServer> {
    start_local_redis_with(|| Ok(Vec::new())).await
}

/// Starts `redis-server` as [`start_local_redis`] does, with the extra arguments `extra` makes
/// for each attempt: an attempt that finds its port taken is made again on another port, so any
/// further port (a TLS port, a cluster bus port) must be chosen in `extra` too.
pub async fn start_local_redis_with(
    extra: impl FnMut() -> io::Result<Vec<String>>,
) -> io::Result<LocalServer> {
    start_on_ports(free_port, extra).await
}

/// [`start_local_redis_with`] on the ports `next_port` gives.
async fn start_on_ports(
    next_port: impl FnMut() -> io::Result<u16>,
    mut extra: impl FnMut() -> io::Result<Vec<String>>,
) -> io::Result<LocalServer> {
    let program = find_binary("redis-server", &[])
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "redis-server is not on PATH"))?;
    let dir = LocalServer::temp_dir(None)?;
    let dir_arg = dir.path().display().to_string();
    LocalServer::start_on(dir, next_port, |port| {
        let mut args = vec![
            "--port".to_owned(),
            port.to_string(),
            "--bind".to_owned(),
            "127.0.0.1".to_owned(),
            "--dir".to_owned(),
            dir_arg.clone(),
            "--save".to_owned(),
            String::new(),
            "--appendonly".to_owned(),
            "no".to_owned(),
            "--daemonize".to_owned(),
            "no".to_owned(),
        ];
        args.extend(extra()?);
        Ok(ServerSpec::new(&program, args))
    })
    .await
}

#[cfg(feature = "testcontainers")]
async fn from_container(local_error: io::Error) -> Result<RedisService, ServiceError> {
    if !super::docker_reachable() {
        return Err(no_redis(local_error, "no Docker engine is reachable"));
    }
    match container::RedisContainer::start().await {
        Ok((container, url)) => Ok(RedisService::new(
            url,
            Server::Container {
                _container: Arc::new(container),
            },
        )),
        Err(error) => Err(no_redis(local_error, &error.to_string())),
    }
}

#[cfg(not(feature = "testcontainers"))]
async fn from_container(local_error: io::Error) -> Result<RedisService, ServiceError> {
    Err(no_redis(local_error, "the `testcontainers` feature is off"))
}

fn no_redis(local_error: io::Error, container: &str) -> ServiceError {
    ServiceError {
        service: "Redis",
        reason: format!("starting redis-server failed ({local_error}); {container}"),
        remedies: vec![
            Remedy::EnvVar(REDIS_URL_VAR),
            Remedy::Binaries(BINARIES),
            Remedy::Container,
        ],
    }
}

#[cfg(feature = "testcontainers")]
mod container {
    use testcontainers::core::{IntoContainerPort, WaitFor};
    use testcontainers::runners::AsyncRunner;
    use testcontainers::{ContainerAsync, GenericImage, TestcontainersError};

    /// A Redis container, removed when dropped.
    #[derive(Debug)]
    pub(super) struct RedisContainer {
        _container: ContainerAsync<GenericImage>,
    }

    impl RedisContainer {
        /// Starts `redis:7` and returns it with its URL.
        pub(super) async fn start() -> Result<(Self, String), TestcontainersError> {
            let container = GenericImage::new("redis", "7")
                .with_exposed_port(6379.tcp())
                .with_wait_for(WaitFor::message_on_stdout("Ready to accept connections"))
                .start()
                .await?;
            let host = container.get_host().await?;
            let port = container.get_host_port_ipv4(6379.tcp()).await?;
            Ok((
                Self {
                    _container: container,
                },
                format!("redis://{host}:{port}"),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The process id of the Redis server on `port`, as it reports it (`INFO server`).
    async fn process_id(port: u16) -> u32 {
        let client = ::redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
        let mut connection = client.get_multiplexed_async_connection().await.unwrap();
        let info: String = ::redis::cmd("INFO")
            .arg("server")
            .query_async(&mut connection)
            .await
            .unwrap();
        info.lines()
            .find_map(|line| line.trim().strip_prefix("process_id:"))
            .and_then(|pid| pid.parse().ok())
            .unwrap()
    }

    /// A port another Redis took between `free_port` and the start is not mistaken for the
    /// started server's: with no other port to go to, the start fails.
    #[tokio::test]
    async fn a_port_served_by_another_server_is_not_taken_for_ours() {
        let stranger = start_local_redis().await.unwrap();
        let error = start_on_ports(|| Ok(stranger.port()), || Ok(Vec::new()))
            .await
            .unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::AddrInUse, "{error}");
        assert_eq!(process_id(stranger.port()).await, stranger.pid().unwrap());
    }

    #[tokio::test]
    async fn a_start_that_finds_its_port_taken_moves_to_another_port() {
        let stranger = start_local_redis().await.unwrap();
        let mut ports = [Ok(stranger.port())].into_iter();
        let server = start_on_ports(|| ports.next().unwrap_or_else(free_port), || Ok(Vec::new()))
            .await
            .unwrap();
        assert_ne!(server.port(), stranger.port());
        assert_eq!(process_id(server.port()).await, server.pid().unwrap());
    }
}
