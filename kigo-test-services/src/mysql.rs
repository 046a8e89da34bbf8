//! MySQL/MariaDB for tests: a fresh database per test, on the server named by
//! `KIGO_TEST_MYSQL_URL` (its user needs `CREATE` and `DROP` on databases), else on a private
//! MariaDB server started from the local binaries (`mariadb-install-db` and `mariadbd`, as the
//! `mysql` user when running as root), else in a container (feature `testcontainers`).
//!
//! ```no_run
//! # async fn demo() -> Result<(), kigo_test_services::ServiceError> {
//! let db = kigo_test_services::mysql::database().await?;
//! let url = db.url(); // mysql://root@.../kigo_test_...
//! # Ok(()) }
//! ```

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use sqlx::MySqlConnection;
use tokio::sync::OnceCell;

#[cfg(feature = "testcontainers")]
use super::database::Image;
use super::database::{
    Engine, Instance, Names, PrivateServer, TestDatabase, as_user, execute_on, running_as_root,
    system_user,
};
use super::{LocalServer, ServerSpec, find_binary};

/// The environment variable naming a MySQL or MariaDB server for the tests.
pub const ENV_VAR: &str = "KIGO_TEST_MYSQL_URL";

static SHARED: OnceCell<Result<Arc<Instance>, String>> = OnceCell::const_new();

/// A fresh database on the MySQL/MariaDB server the tests of this binary share.
pub async fn database() -> Result<TestDatabase, super::ServiceError> {
    super::database::database(&MariaDb, &SHARED).await
}

/// A MariaDB server for one test alone, started from the local binaries, which the test may kill
/// and restart.
pub async fn private_server() -> Result<PrivateServer, super::ServiceError> {
    super::database::private_server(&MariaDb).await
}

struct MariaDb;

const NAMES: Names = Names {
    service: "MySQL/MariaDB",
    env_var: ENV_VAR,
    binaries: "`mariadb-install-db` and `mariadbd`, e.g. Debian's `mariadb-server` package",
};

#[async_trait]
impl Engine for MariaDb {
    fn names(&self) -> &'static Names {
        &NAMES
    }

    async fn start_local(&self) -> Result<Instance, String> {
        let sbin = [PathBuf::from("/usr/sbin")];
        let install = find_binary("mariadb-install-db", &sbin)
            .or_else(|| find_binary("mysql_install_db", &sbin))
            .ok_or("no `mariadb-install-db` on PATH")?;
        let server = find_binary("mariadbd", &sbin)
            .or_else(|| find_binary("mysqld", &sbin))
            .ok_or("no `mariadbd` on PATH or in /usr/sbin")?;
        // As root: run as `mysql` if there is one, else tell the server that root is meant.
        let (user, as_root) = match running_as_root().then(|| system_user("mysql")) {
            None => (None, false),
            Some(Some(mysql)) => (Some(mysql), false),
            Some(None) => (None, true),
        };
        let dir = LocalServer::temp_dir(user).map_err(|error| error.to_string())?;
        let path = |name: &str| dir.path().join(name).display().to_string();
        let root_flag = as_root.then(|| "--user=root".to_owned());
        let mut install_args = vec![
            "--no-defaults".to_owned(),
            format!("--datadir={}", path("data")),
            "--auth-root-authentication-method=normal".to_owned(),
            "--skip-test-db".to_owned(),
        ];
        install_args.extend(root_flag.clone());
        let install = as_user(ServerSpec::new(install, install_args), user);
        let log = dir.path().join("install.log");
        tokio::task::spawn_blocking(move || install.run_to_end(&log))
            .await
            .map_err(|error| error.to_string())?
            .map_err(|error| error.to_string())?;
        let files = [
            format!("--datadir={}", path("data")),
            format!("--socket={}", path("mysqld.sock")),
            format!("--pid-file={}", path("mariadbd.pid")),
        ];
        let spec_for = |port: u16| {
            let mut args = vec!["--no-defaults".to_owned()];
            args.extend(files.iter().cloned());
            args.extend([
                format!("--port={port}"),
                "--bind-address=127.0.0.1".to_owned(),
                "--skip-name-resolve".to_owned(),
                "--skip-log-bin".to_owned(),
                "--max-connections=500".to_owned(),
                "--innodb-buffer-pool-size=64M".to_owned(),
                // Each commit reaches the kernel (a killed server loses nothing); flushes once a
                // second.
                "--innodb-flush-log-at-trx-commit=2".to_owned(),
            ]);
            args.extend(root_flag.clone());
            Ok(as_user(ServerSpec::new(&server, args), user))
        };
        let server = LocalServer::start(dir, spec_for)
            .await
            .map_err(|error| error.to_string())?;
        Ok(Instance::local(
            format!("mysql://root@127.0.0.1:{}/mysql", server.port()),
            server,
        ))
    }

    #[cfg(feature = "testcontainers")]
    fn image(&self) -> Image {
        Image {
            name: "mariadb",
            tag: "11",
            port: 3306,
            ready: "ready for connections",
            env: ("MARIADB_ALLOW_EMPTY_ROOT_PASSWORD", "1"),
            admin_url: |host, port| format!("mysql://root@{host}:{port}/mysql"),
        }
    }

    async fn execute(&self, url: &str, statement: String) -> Result<(), sqlx::Error> {
        execute_on::<MySqlConnection>(url, statement).await
    }

    fn create_statement(&self, name: &str) -> String {
        format!("CREATE DATABASE `{name}`")
    }

    fn drop_statement(&self, name: &str) -> String {
        format!("DROP DATABASE IF EXISTS `{name}`")
    }
}
