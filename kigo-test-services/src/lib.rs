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
//!
//! This crate is the workspace's own: the published `kigo-testkit` holds what a user's tests
//! need (the conformance suites, fakes, the mock Kigo API).
#![deny(missing_docs)]

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

use std::fmt;
use std::net::TcpListener;
use std::path::{Path, PathBuf};

/// No server could be provided.
#[derive(Debug, thiserror::Error)]
#[error("no {service} server for the tests: {reason}. {}", Remedies(remedies))]
pub struct ServiceError {
    /// "Redis", "PostgreSQL", ...
    pub service: &'static str,
    /// What went wrong trying each way.
    pub reason: String,
    /// The ways of providing a server that this fixture would have used.
    pub remedies: Vec<Remedy>,
}

/// A way of providing a server to a fixture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Remedy {
    /// Set this environment variable to the URL of a server you run.
    EnvVar(&'static str),
    /// Install these server binaries (named with the package that has them).
    Binaries(&'static str),
    /// Enable the `testcontainers` feature and make a Docker engine reachable.
    Container,
}

impl ServiceError {
    /// A server started from the local binaries failed, and nothing else would do (the test
    /// kills and restarts it).
    pub fn local_only(service: &'static str, binaries: &'static str, reason: String) -> Self {
        Self {
            service,
            reason: format!(
                "{reason} (this test kills and restarts the server, so it needs the local binaries)"
            ),
            remedies: vec![Remedy::Binaries(binaries)],
        }
    }
}

/// The remedies of a [`ServiceError`] as one sentence.
struct Remedies<'a>(&'a [Remedy]);

impl fmt::Display for Remedies<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, remedy) in self.0.iter().enumerate() {
            f.write_str(if index == 0 {
                "To provide one: "
            } else {
                "; or "
            })?;
            match remedy {
                Remedy::EnvVar(var) => write!(f, "set {var} to the URL of a server you run")?,
                Remedy::Binaries(binaries) => write!(f, "install {binaries}")?,
                Remedy::Container => f.write_str(
                    "enable the `testcontainers` feature of kigo-test-services with a reachable Docker \
                     engine",
                )?,
            }
        }
        Ok(())
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_error_offers_only_the_ways_its_fixture_would_use() {
        let local_only = ServiceError::local_only(
            "Redis",
            "redis-server",
            "redis-server is not on PATH".to_owned(),
        )
        .to_string();
        assert!(local_only.contains("To provide one: install redis-server"));
        assert!(!local_only.contains("testcontainers"), "{local_only}");
        assert!(!local_only.contains(" set "), "{local_only}");

        let any = ServiceError {
            service: "Redis",
            reason: "nothing worked".to_owned(),
            remedies: vec![
                Remedy::EnvVar("KIGO_TEST_REDIS_URL"),
                Remedy::Binaries("redis-server"),
                Remedy::Container,
            ],
        }
        .to_string();
        assert_eq!(
            any,
            "no Redis server for the tests: nothing worked. To provide one: set \
             KIGO_TEST_REDIS_URL to the URL of a server you run; or install redis-server; or \
             enable the `testcontainers` feature of kigo-test-services with a reachable Docker engine"
        );
    }
}
