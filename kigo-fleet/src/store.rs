//! Where a fleet keeps its tokens: the store `KIGO_STORE_URL` names (else a temporary SQLite
//! file), the sealing keys its replicas share, and how a replica process is told both.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use kigo_core::codec::{SEALING_KEYS_VAR, SealingKey};
use kigo_core::store::STORE_URL_VAR;
use kigo_stores::MAX_CONNECTIONS_VAR;
use kigo_testkit::mock::MockKigo;
use secrecy::{ExposeSecret, SecretString};
use tempfile::TempDir;
use tokio::process::Command as Process;

use crate::Failure;

/// The connections a whole fleet may open to a database: under PostgreSQL's default limit of
/// 100, with room for the listening connection of each replica and for an operator.
const FLEET_CONNECTIONS: usize = 80;
/// The pool size of the library's default.
const MOST_CONNECTIONS: usize = 10;

/// The store of one invocation, and this program to start its replicas with.
pub(crate) struct FleetStore {
    url: String,
    keys: SecretString,
    program: PathBuf,
    /// Each replica's database pool size, unless `KIGO_STORE_MAX_CONNECTIONS` gives one.
    pool_size: String,
    /// The temporary SQLite file's directory, if the default store is used: removed on drop.
    _dir: TempDir,
}

impl FleetStore {
    /// The store of `KIGO_STORE_URL` (else a SQLite file in a new temporary directory), sealed
    /// with the keys of `KIGO_SEALING_KEYS` (else one generated for this invocation), for a fleet
    /// of up to `most_replicas` processes at once.
    pub(crate) fn from_env(most_replicas: usize) -> Result<Self, Failure> {
        let dir = tempfile::Builder::new().prefix("kigo-fleet-").tempdir()?;
        let url = match std::env::var(STORE_URL_VAR) {
            Ok(url) if !url.trim().is_empty() => url,
            _ => sqlite_url(&dir.path().join("kigo-tokens.db")),
        };
        let keys = match std::env::var(SEALING_KEYS_VAR) {
            Ok(keys) if !keys.trim().is_empty() => SecretString::from(keys),
            _ => SealingKey::generate_base64(),
        };
        // The fleet's pools together stay under the database's connection limit: sixteen
        // replicas at the default of 10 (plus a listener each) would need 176, and a refused
        // connection is a store outage for the replica that asked.
        let per_replica = (FLEET_CONNECTIONS / most_replicas.max(1)).saturating_sub(1);
        let pool_size = match std::env::var(MAX_CONNECTIONS_VAR) {
            Ok(size) if !size.trim().is_empty() => size,
            _ => per_replica.clamp(1, MOST_CONNECTIONS).to_string(),
        };
        Ok(Self {
            url,
            keys,
            program: std::env::current_exe()?,
            pool_size,
            _dir: dir,
        })
    }

    /// The store's URL (never to be printed: it may hold a password).
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// The kind of store, never its URL.
    pub(crate) fn kind(&self) -> String {
        kigo_stores::StoreKind::of(&self.url)
            .map_or_else(|_| "an unknown store".to_owned(), |kind| kind.to_string())
    }

    /// Applies the store's migrations once, in a child process with the fleet's environment (the
    /// store opens with the sealing keys, as a replica's does).
    pub(crate) async fn migrate(&self) -> Result<(), Failure> {
        let status = Process::new(&self.program)
            .arg("migrate")
            .env(STORE_URL_VAR, &self.url)
            .env(SEALING_KEYS_VAR, self.keys.expose_secret())
            .status()
            .await?;
        if !status.success() {
            return Err(format!("the store's migration failed ({status}); see above").into());
        }
        Ok(())
    }

    /// This program with `args`, as a production replica would run: credentials pointed at
    /// `mock`, the store that `url` names (this one's, or a way to it such as a proxy), the
    /// fleet's sealing keys and pool size.
    pub(crate) fn replica<I, S>(&self, args: I, mock: &MockKigo, url: &str) -> Process
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut process = Process::new(&self.program);
        process
            .args(args)
            .env(kigo_http::API_KEY_VAR, mock.api_key())
            .env(kigo_http::PARTNER_ID_VAR, mock.partner_id().as_str())
            .env(kigo_http::BASE_URL_VAR, mock.base_url())
            .env(STORE_URL_VAR, url)
            .env(SEALING_KEYS_VAR, self.keys.expose_secret())
            .env(MAX_CONNECTIONS_VAR, &self.pool_size);
        process
    }
}

fn sqlite_url(file: &Path) -> String {
    format!("sqlite:{}", file.display())
}
