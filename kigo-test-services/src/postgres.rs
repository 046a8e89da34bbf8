//! PostgreSQL for tests: a fresh database per test, on the server named by
//! `KIGO_TEST_POSTGRES_URL` (its user needs `CREATEDB`), else on a private server started from
//! the local binaries (`initdb`, `postgres`; as the `postgres` user when running as root, since
//! PostgreSQL refuses root), else in a container (feature `testcontainers`).
//!
//! ```no_run
//! # async fn demo() -> Result<(), kigo_test_services::ServiceError> {
//! let db = kigo_test_services::postgres::database().await?;
//! let url = db.url(); // postgres://.../kigo_test_...
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use sqlx::PgConnection;
use tokio::sync::OnceCell;

#[cfg(feature = "testcontainers")]
use super::database::Image;
use super::database::{
    Engine, Instance, Names, PrivateServer, TestDatabase, as_user, execute_on, running_as_root,
    system_user,
};
use super::{LocalServer, ServerSpec, find_binary};

/// The environment variable naming a PostgreSQL server for the tests.
pub const ENV_VAR: &str = "KIGO_TEST_POSTGRES_URL";

static SHARED: OnceCell<Result<Arc<Instance>, String>> = OnceCell::const_new();

/// A fresh database on the PostgreSQL server the tests of this binary share.
pub async fn database() -> Result<TestDatabase, super::ServiceError> {
    super::database::database(&PostgreSql, &SHARED).await
}

/// A PostgreSQL server for one test alone, started from the local binaries, which the test may
/// kill and restart.
pub async fn private_server() -> Result<PrivateServer, super::ServiceError> {
    super::database::private_server(&PostgreSql).await
}

struct PostgreSql;

const NAMES: Names = Names {
    service: "PostgreSQL",
    env_var: ENV_VAR,
    binaries: "`initdb` and `postgres`, e.g. Debian's `postgresql` package",
};

#[async_trait]
impl Engine for PostgreSql {
    fn names(&self) -> &'static Names {
        &NAMES
    }

    async fn start_local(&self) -> Result<Instance, String> {
        let extra = versioned_bin_dirs(Path::new("/usr/lib/postgresql"));
        let initdb = find_binary("initdb", &extra)
            .ok_or("no `initdb` on PATH or under /usr/lib/postgresql/*/bin")?;
        let postgres = find_binary("postgres", &extra)
            .ok_or("no `postgres` on PATH or under /usr/lib/postgresql/*/bin")?;
        let user = if running_as_root() {
            Some(system_user("postgres").ok_or(
                "PostgreSQL refuses to run as root, and there is no `postgres` user to run it as",
            )?)
        } else {
            None
        };
        let dir = LocalServer::temp_dir(user).map_err(|error| error.to_string())?;
        let data = dir.path().join("data");
        let init = as_user(
            ServerSpec::new(
                initdb,
                [
                    "-D".as_ref(),
                    data.as_os_str(),
                    "-U".as_ref(),
                    "postgres".as_ref(),
                    "-A".as_ref(),
                    "trust".as_ref(),
                    "-E".as_ref(),
                    "UTF8".as_ref(),
                    "--locale=C".as_ref(),
                    "--no-sync".as_ref(),
                ],
            ),
            user,
        );
        let log = dir.path().join("initdb.log");
        tokio::task::spawn_blocking(move || init.run_to_end(&log))
            .await
            .map_err(|error| error.to_string())?
            .map_err(|error| error.to_string())?;
        let setting = |name: &str, value: &str| ["-c".to_owned(), format!("{name}={value}")];
        let socket_dir = dir.path().display().to_string();
        let spec_for = |port: u16| {
            let mut args = vec![
                "-D".to_owned(),
                data.display().to_string(),
                "-p".to_owned(),
                port.to_string(),
                "-k".to_owned(),
                socket_dir.clone(),
            ];
            // Fast but crash-safe for a killed server process: commits reach the kernel before
            // they are acknowledged (synchronous_commit stays on), only disk flushes are skipped.
            for (name, value) in [
                ("listen_addresses", "127.0.0.1"),
                ("max_connections", "300"),
                ("fsync", "off"),
                ("full_page_writes", "off"),
            ] {
                args.extend(setting(name, value));
            }
            Ok(as_user(ServerSpec::new(&postgres, args), user))
        };
        let server = LocalServer::start(dir, spec_for)
            .await
            .map_err(|error| error.to_string())?;
        Ok(Instance::local(
            format!("postgres://postgres@127.0.0.1:{}/postgres", server.port()),
            server,
        ))
    }

    #[cfg(feature = "testcontainers")]
    fn image(&self) -> Image {
        Image {
            name: "postgres",
            tag: "16-alpine",
            port: 5432,
            ready: "database system is ready to accept connections",
            env: ("POSTGRES_HOST_AUTH_METHOD", "trust"),
            admin_url: |host, port| format!("postgres://postgres@{host}:{port}/postgres"),
        }
    }

    async fn execute(&self, url: &str, statement: String) -> Result<(), sqlx::Error> {
        execute_on::<PgConnection>(url, statement).await
    }

    fn create_statement(&self, name: &str) -> String {
        format!("CREATE DATABASE \"{name}\"")
    }

    fn drop_statement(&self, name: &str) -> String {
        format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")
    }
}

/// Directories to look for server binaries in besides `PATH`, under `root`: `root/<version>/bin`,
/// newest version first (Debian's layout for PostgreSQL).
pub(crate) fn versioned_bin_dirs(root: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| entry.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    dirs.reverse();
    dirs
}
