//! What the PostgreSQL and MySQL fixtures share: finding a server (environment variable, local
//! binaries, container), a fresh database per test, and private servers a test may kill.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::OnceCell;

use super::{
    LocalServer, Remedy, ServerSpec, ServiceError, docker_reachable, unique_suffix, url_from_env,
};

/// How long a server may take to answer queries once it accepts connections.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
const READY_POLL: Duration = Duration::from_millis(100);

/// A database of its own for one test, on a shared or private server. Dropping it drops the
/// database on a server named by an environment variable (private servers go away whole).
pub struct TestDatabase {
    url: String,
    name: String,
    cleanup: Option<Cleanup>,
    // Keeps the server (process or container) alive while the database is used.
    _instance: Arc<Instance>,
}

type Cleanup = Box<dyn FnOnce() + Send + Sync>;

impl TestDatabase {
    /// The URL of the database (the server's user, with the database's name as path).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database's name: `kigo_test_` and a random suffix.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Debug for TestDatabase {
    /// The name only: a URL may hold a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestDatabase")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Some(cleanup) = self.cleanup.take() {
            // Its own thread and runtime: drop may run inside or outside a runtime.
            let _ = std::thread::spawn(cleanup).join();
        }
    }
}

/// A server started for one test alone, so that the test can kill and restart it.
pub struct PrivateServer {
    engine: &'static dyn Engine,
    server: Arc<LocalServer>,
    instance: Arc<Instance>,
}

impl PrivateServer {
    /// A fresh database on this server.
    pub async fn database(&self) -> Result<TestDatabase, ServiceError> {
        fresh_database(self.engine, Arc::clone(&self.instance)).await
    }

    /// The server process: [`LocalServer::kill`] and [`LocalServer::restart`] it.
    pub fn server(&self) -> &LocalServer {
        &self.server
    }

    /// Waits until the server answers queries (after a restart: crash recovery takes a moment).
    pub async fn wait_ready(&self) -> Result<(), ServiceError> {
        wait_ready(self.engine, &self.instance.admin_url)
            .await
            .map_err(|reason| service_error(self.engine, reason))
    }
}

impl fmt::Debug for PrivateServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateServer")
            .field("service", &self.engine.names().service)
            .field("port", &self.server.port())
            .finish()
    }
}

/// A server the fixtures create databases on.
pub(crate) struct Instance {
    pub(crate) admin_url: String,
    /// Named by an environment variable: databases are dropped after each test.
    external: bool,
    local: Option<Arc<LocalServer>>,
    #[cfg(feature = "testcontainers")]
    _container: Option<testcontainers::ContainerAsync<testcontainers::GenericImage>>,
}

impl Instance {
    fn external(admin_url: String) -> Self {
        Self {
            admin_url,
            external: true,
            local: None,
            #[cfg(feature = "testcontainers")]
            _container: None,
        }
    }

    pub(crate) fn local(admin_url: String, server: LocalServer) -> Self {
        Self {
            admin_url,
            external: false,
            local: Some(Arc::new(server)),
            #[cfg(feature = "testcontainers")]
            _container: None,
        }
    }

    /// A container of `image`, once it says it is ready.
    #[cfg(feature = "testcontainers")]
    async fn container(image: Image) -> Result<Self, String> {
        use testcontainers::core::{IntoContainerPort, WaitFor};
        use testcontainers::runners::AsyncRunner;
        use testcontainers::{GenericImage, ImageExt};

        let (variable, value) = image.env;
        let container = GenericImage::new(image.name, image.tag)
            .with_exposed_port(image.port.tcp())
            .with_wait_for(WaitFor::message_on_stderr(image.ready))
            .with_env_var(variable, value)
            .start()
            .await
            .map_err(|error| error.to_string())?;
        let host = container
            .get_host()
            .await
            .map_err(|error| error.to_string())?;
        let port = container
            .get_host_port_ipv4(image.port)
            .await
            .map_err(|error| error.to_string())?;
        Ok(Self {
            admin_url: (image.admin_url)(&host.to_string(), port),
            external: false,
            local: None,
            _container: Some(container),
        })
    }
}

/// A server's container image, for the `testcontainers` fallback.
#[cfg(feature = "testcontainers")]
#[derive(Debug)]
pub(crate) struct Image {
    pub(crate) name: &'static str,
    pub(crate) tag: &'static str,
    /// The port the server listens on inside the container.
    pub(crate) port: u16,
    /// What the server writes to stderr once it accepts connections.
    pub(crate) ready: &'static str,
    /// An environment variable that lets the admin user in without a password.
    pub(crate) env: (&'static str, &'static str),
    /// The admin URL for the container's host and mapped port.
    pub(crate) admin_url: fn(&str, u16) -> String,
}

/// How a service is named in a [`ServiceError`].
#[derive(Debug)]
pub(crate) struct Names {
    /// "PostgreSQL", "MySQL/MariaDB".
    pub(crate) service: &'static str,
    /// The variable naming a server to use.
    pub(crate) env_var: &'static str,
    /// The binaries a local instance needs.
    pub(crate) binaries: &'static str,
}

/// What differs between PostgreSQL and MySQL.
#[async_trait]
pub(crate) trait Engine: Send + Sync + 'static {
    fn names(&self) -> &'static Names;
    /// Starts a private server from local binaries; `Err` says why not.
    async fn start_local(&self) -> Result<Instance, String>;
    /// The container image of the server.
    #[cfg(feature = "testcontainers")]
    fn image(&self) -> Image;
    /// Runs `statement` on a new connection to `url`.
    async fn execute(&self, url: &str, statement: String) -> Result<(), sqlx::Error>;
    /// `CREATE DATABASE` for `name`.
    fn create_statement(&self, name: &str) -> String;
    /// `DROP DATABASE` for `name`, even while connections to it are open.
    fn drop_statement(&self, name: &str) -> String;
}

/// A fresh database on the server this test binary shares: from the environment variable, else
/// a private server from local binaries (one per test binary), else a container per test.
pub(crate) async fn database(
    engine: &'static dyn Engine,
    shared: &'static OnceCell<Result<Arc<Instance>, String>>,
) -> Result<TestDatabase, ServiceError> {
    let found = shared
        .get_or_init(|| async {
            if let Some(url) = url_from_env(engine.names().env_var) {
                wait_ready(engine, &url)
                    .await
                    .map_err(|reason| format!("{} is set, but {reason}", engine.names().env_var))?;
                return Ok(Arc::new(Instance::external(url)));
            }
            let instance = engine.start_local().await?;
            wait_ready(engine, &instance.admin_url).await?;
            Ok(Arc::new(instance))
        })
        .await;
    let instance = match found {
        Ok(instance) => Arc::clone(instance),
        Err(reason) => container(engine, reason).await?,
    };
    fresh_database(engine, instance).await
}

/// A server for this test alone, from local binaries (a server named by an environment
/// variable or run in a container cannot be killed and restarted by the test).
pub(crate) async fn private_server(
    engine: &'static dyn Engine,
) -> Result<PrivateServer, ServiceError> {
    let names = engine.names();
    let local_only = |reason| ServiceError::local_only(names.service, names.binaries, reason);
    let instance = engine.start_local().await.map_err(local_only)?;
    wait_ready(engine, &instance.admin_url)
        .await
        .map_err(local_only)?;
    let Some(server) = instance.local.clone() else {
        return Err(local_only("no local server process".to_owned()));
    };
    Ok(PrivateServer {
        engine,
        server,
        instance: Arc::new(instance),
    })
}

#[cfg(feature = "testcontainers")]
async fn container(engine: &dyn Engine, reason: &str) -> Result<Arc<Instance>, ServiceError> {
    if !docker_reachable() {
        return Err(service_error(
            engine,
            format!("{reason}; and no Docker engine is reachable"),
        ));
    }
    let instance = Instance::container(engine.image()).await.map_err(|error| {
        service_error(
            engine,
            format!("{reason}; and the container failed: {error}"),
        )
    })?;
    wait_ready(engine, &instance.admin_url)
        .await
        .map_err(|error| service_error(engine, error))?;
    Ok(Arc::new(instance))
}

#[cfg(not(feature = "testcontainers"))]
async fn container(engine: &dyn Engine, reason: &str) -> Result<Arc<Instance>, ServiceError> {
    let docker = if docker_reachable() {
        "a Docker engine is reachable, but the `testcontainers` feature is off"
    } else {
        "no Docker engine is reachable"
    };
    Err(service_error(engine, format!("{reason}; and {docker}")))
}

async fn fresh_database(
    engine: &'static dyn Engine,
    instance: Arc<Instance>,
) -> Result<TestDatabase, ServiceError> {
    let name = format!("kigo_test_{}", unique_suffix());
    engine
        .execute(&instance.admin_url, engine.create_statement(&name))
        .await
        .map_err(|error| {
            service_error(engine, format!("creating database {name} failed: {error}"))
        })?;
    let cleanup: Option<Cleanup> = instance.external.then(|| {
        let admin_url = instance.admin_url.clone();
        let statement = engine.drop_statement(&name);
        Box::new(move || {
            if let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                let _ = runtime.block_on(engine.execute(&admin_url, statement));
            }
        }) as Cleanup
    });
    Ok(TestDatabase {
        url: with_database(&instance.admin_url, &name),
        name,
        cleanup,
        _instance: instance,
    })
}

/// Waits until the server at `url` runs a query.
async fn wait_ready(engine: &dyn Engine, url: &str) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
    loop {
        let error = match engine.execute(url, "SELECT 1".to_owned()).await {
            Ok(()) => return Ok(()),
            Err(error) => error,
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "the server did not answer within {READY_TIMEOUT:?}: {error}"
            ));
        }
        tokio::time::sleep(READY_POLL).await;
    }
}

pub(crate) fn service_error(engine: &dyn Engine, reason: String) -> ServiceError {
    let names = engine.names();
    ServiceError {
        service: names.service,
        reason,
        remedies: vec![
            Remedy::EnvVar(names.env_var),
            Remedy::Binaries(names.binaries),
            Remedy::Container,
        ],
    }
}

/// Runs `statement` on a new connection of type `C` to `url`.
pub(crate) async fn execute_on<C>(url: &str, statement: String) -> Result<(), sqlx::Error>
where
    C: sqlx::Connection,
    for<'c> &'c mut C: sqlx::Executor<'c, Database = C::Database>,
{
    let mut connection = C::connect(url).await?;
    sqlx::Executor::execute(&mut connection, sqlx::AssertSqlSafe(statement)).await?;
    connection.close().await
}

/// `url` with its database (path) replaced by `name`, keeping user, host and parameters.
pub(crate) fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let authority_start = base.find("://").map_or(0, |at| at + 3);
    let path_start = base[authority_start..]
        .find('/')
        .map_or(base.len(), |at| authority_start + at);
    let mut out = format!("{}/{name}", &base[..path_start]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

/// Whether this process runs as root (servers such as PostgreSQL then need another user).
pub(crate) fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    tempfile::tempfile()
        .and_then(|file| file.metadata())
        .is_ok_and(|meta| meta.uid() == 0)
}

/// The uid and gid of the system user `name`, from the password database.
pub(crate) fn system_user(name: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        if fields.next()? != name {
            return None;
        }
        let uid = fields.nth(1)?.parse().ok()?;
        let gid = fields.next()?.parse().ok()?;
        Some((uid, gid))
    })
}

/// `spec` run as `user`, if given.
pub(crate) fn as_user(spec: ServerSpec, user: Option<(u32, u32)>) -> ServerSpec {
    match user {
        Some((uid, gid)) => spec.run_as(uid, gid),
        None => spec,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_keep_everything_but_the_path() {
        assert_eq!(
            with_database("postgres://u:p@h:5432/postgres?sslmode=disable", "t1"),
            "postgres://u:p@h:5432/t1?sslmode=disable"
        );
        assert_eq!(
            with_database("mysql://root@127.0.0.1:3306", "t2"),
            "mysql://root@127.0.0.1:3306/t2"
        );
        assert_eq!(with_database("mysql://root@h/", "t3"), "mysql://root@h/t3");
    }

    #[test]
    fn system_users_are_read_from_the_password_database() {
        assert_eq!(system_user("root"), Some((0, 0)));
        assert_eq!(system_user("no-such-user-kigo"), None);
    }
}
