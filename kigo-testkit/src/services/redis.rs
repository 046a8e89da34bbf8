//! Redis for tests: a server found from `KIGO_TEST_REDIS_URL`, a private `redis-server` from the
//! local binary, or a container; each test gets a key prefix of its own.

use std::io;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use super::{
    LocalServer, ServerSpec, ServiceError, find_binary, free_port, unique_suffix, url_from_env,
};

/// The variable naming a Redis server the tests may use (`redis://127.0.0.1:6379`).
pub const REDIS_URL_VAR: &str = "KIGO_TEST_REDIS_URL";

/// How many times a local server is started on a fresh port before giving up (another process
/// may take a free port between the check and the start).
const START_ATTEMPTS: usize = 3;

/// A Redis server for one test, and the key prefix that isolates the test on it.
#[derive(Debug, Clone)]
pub struct RedisService {
    url: String,
    prefix: String,
    server: Server,
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
    match shared(&SHARED, || start_local_redis(&[])).await {
        Ok(server) => Ok(local_service(server, |server| Server::Shared {
            _server: server,
        })),
        Err(error) => from_container(error).await,
    }
}

/// A `redis-server` of this test only, which the test may kill and restart.
pub async fn private_redis() -> Result<RedisService, ServiceError> {
    let server = start_local_redis(&[]).await.map_err(|error| ServiceError {
        service: "Redis",
        env_var: "(none: this test kills the server, so it needs a local one)",
        binaries: "redis-server",
        reason: error.to_string(),
    })?;
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

/// Starts `redis-server` on a free loopback port in a temp dir, without persistence, with
/// `extra` arguments.
pub async fn start_local_redis(extra: &[&str]) -> io::Result<LocalServer> {
    let program = find_binary("redis-server", &[])
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "redis-server is not on PATH"))?;
    let mut last_error = None;
    for _ in 0..START_ATTEMPTS {
        let port = free_port()?;
        let dir = LocalServer::temp_dir(None)?;
        let mut args = vec![
            "--port".to_owned(),
            port.to_string(),
            "--bind".to_owned(),
            "127.0.0.1".to_owned(),
            "--dir".to_owned(),
            dir.path().display().to_string(),
            "--save".to_owned(),
            String::new(),
            "--appendonly".to_owned(),
            "no".to_owned(),
            "--daemonize".to_owned(),
            "no".to_owned(),
        ];
        args.extend(extra.iter().map(|arg| (*arg).to_owned()));
        match LocalServer::start(port, dir, ServerSpec::new(&program, args)).await {
            Ok(server) => return Ok(server),
            Err(error) => last_error = Some(error),
        }
    }
    Err(last_error.unwrap_or_else(|| io::Error::other("redis-server did not start")))
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
        env_var: REDIS_URL_VAR,
        binaries: "redis-server, Debian package `redis-server`",
        reason: format!("starting redis-server failed ({local_error}); {container}"),
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
