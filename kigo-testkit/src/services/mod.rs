//! Real servers for tests, found in this order:
//!
//! 1. an environment variable with a URL (`KIGO_TEST_REDIS_URL`, ...): a server you run;
//! 2. a private instance started from local binaries on a free loopback port in a temp dir,
//!    stopped when the test ends, and killable and restartable by the test (fault injection);
//! 3. a container through testcontainers, when the `testcontainers` feature is on and a Docker
//!    engine is reachable;
//! 4. otherwise a [`ServiceError`] whose message says how to provide one. Never a silent skip.
//!
//! Every fixture isolates its test (random key prefix, schema or database), so tests can share
//! a server.

mod process;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(feature = "redis")]
pub mod redis_cluster;

pub use process::{LocalServer, ServerSpec};

#[cfg(any(feature = "postgres", feature = "mysql"))]
mod database;
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub use database::{PrivateServer, TestDatabase};
#[cfg(feature = "mysql")]
pub mod mysql;
#[cfg(feature = "postgres")]
pub mod postgres;

use std::net::TcpListener;
use std::path::{Path, PathBuf};

/// No server could be provided.
#[derive(Debug, thiserror::Error)]
#[error(
    "no {service} server for the tests: {reason}. Set {env_var} to the URL of a server you run, \
     install the server binaries ({binaries}), or enable the `testcontainers` feature with a \
     reachable Docker engine"
)]
pub struct ServiceError {
    /// "Redis", "PostgreSQL", ...
    pub service: &'static str,
    /// The environment variable that would name a server.
    pub env_var: &'static str,
    /// The binaries a local instance needs.
    pub binaries: &'static str,
    /// What went wrong trying the local binaries.
    pub reason: String,
}

/// The value of `var` if it is set and not empty.
pub fn url_from_env(var: &str) -> Option<String> {
    std::env::var(var).ok().filter(|url| !url.trim().is_empty())
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port())
}

/// The first of `name` on `PATH` or under `extra_dirs` (glob-free directories to look in too).
pub fn find_binary(name: &str, extra_dirs: &[PathBuf]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(extra_dirs.iter().cloned())
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// Whether a Docker engine looks reachable (a `DOCKER_HOST`, or the default socket).
pub fn docker_reachable() -> bool {
    url_from_env("DOCKER_HOST").is_some() || Path::new("/var/run/docker.sock").exists()
}

/// A short random suffix for isolating a test (key prefixes, schema and database names).
pub fn unique_suffix() -> String {
    format!("{:012x}", fastrand::u64(..) & 0xffff_ffff_ffff)
}
