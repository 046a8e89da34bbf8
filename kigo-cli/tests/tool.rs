//! The `kigo` binary against real stores (Redis, PostgreSQL, MariaDB, SQLite), next to running
//! managers and the mock Kigo API: `renew` costs the fleet one creation, `status` never prints a
//! token, `rotate-key` on a live fleet fails no request, and the exit codes are as documented.

use std::any::Any;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use kigo_core::codec::{Keyring, SealingKey};
use kigo_core::store::Entry;
use kigo_core::{TokenManager, TokenStore};
use kigo_http::{ApiKey, Credentials, KigoApi};
use kigo_stores::StoreKind;
use kigo_testkit::mock::MockKigo;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

/// A store for the fleet, the keys it seals with, and the mock Kigo API.
struct Fleet {
    url: String,
    mock: MockKigo,
    /// Servers, databases or temp dirs the fleet's store lives on, kept until the test ends.
    _keep: Box<dyn Any + Send>,
}

/// A fresh sealing key, as text (for the tool) and as a keyring (for the managers).
fn new_key() -> (SecretString, Keyring) {
    let text = SealingKey::generate_base64();
    let keyring = Keyring::parse(text.expose_secret()).unwrap();
    (text, keyring)
}

impl Fleet {
    async fn on(kind: StoreKind) -> Self {
        let (url, keep): (String, Box<dyn Any + Send>) = match kind {
            StoreKind::Redis => {
                let redis = kigo_test_services::redis::private_redis().await.unwrap();
                (redis.url().to_owned(), Box::new(redis))
            }
            StoreKind::Postgres => {
                let db = kigo_test_services::postgres::database().await.unwrap();
                (db.url().to_owned(), Box::new(db))
            }
            StoreKind::MySql => {
                let db = kigo_test_services::mysql::database().await.unwrap();
                (db.url().to_owned(), Box::new(db))
            }
            StoreKind::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite:{}", dir.path().join("kigo.db").display());
                (url, Box::new(dir))
            }
            other => panic!("no fixture for {other}"),
        };
        let mock = MockKigo::start().await.unwrap();
        Self {
            url,
            mock,
            _keep: keep,
        }
    }

    /// Runs `kigo args...` with the fleet's variables and `keys`.
    fn kigo(&self, keys: &SecretString, args: &[&str]) -> Output {
        self.kigo_with(keys, args, &[])
    }

    fn kigo_with(&self, keys: &SecretString, args: &[&str], extra: &[(&str, &str)]) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_kigo"));
        command
            .args(args)
            .env("KIGO_STORE_URL", &self.url)
            .env("KIGO_SEALING_KEYS", keys.expose_secret())
            .env("KIGO_PARTNER_ID", self.mock.partner_id().as_str())
            .env("KIGO_API_KEY", self.mock.api_key())
            .env("KIGO_BASE_URL", self.mock.base_url());
        for (name, value) in extra {
            command.env(name, value);
        }
        command.output().unwrap()
    }

    /// A store handle as a replica opens it, sealing with `keyring`.
    async fn store(&self, keyring: &Keyring) -> Arc<dyn TokenStore> {
        match StoreKind::of(&self.url).unwrap() {
            StoreKind::Redis => Arc::new(
                kigo_store_redis::RedisStore::builder()
                    .url(&self.url)
                    .keyring(keyring.clone())
                    .build()
                    .unwrap(),
            ),
            _ => Arc::new(
                kigo_store_sql::SqlStore::builder()
                    .url(&self.url)
                    .keyring(keyring.clone())
                    .migrate_on_connect(true)
                    .build()
                    .await
                    .unwrap(),
            ),
        }
    }

    fn api(&self) -> KigoApi {
        let credentials = Credentials::new(
            ApiKey::new(self.mock.api_key()).unwrap(),
            self.mock.partner_id().clone(),
            self.mock.base_url(),
        )
        .unwrap();
        KigoApi::builder(credentials).build().unwrap()
    }

    /// A replica: a partner-level manager on a store sealing with `keyring`.
    async fn replica(&self, keyring: &Keyring) -> TokenManager {
        self.api()
            .partner_manager()
            .store(self.store(keyring).await)
            .build()
            .unwrap()
    }

    fn creations(&self) -> u64 {
        self.mock.creations(&self.mock.partner_key())
    }
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn succeeded(output: &Output) -> bool {
    output.status.success()
}

async fn renew_costs_the_fleet_one_creation(kind: StoreKind) {
    let fleet = Fleet::on(kind).await;
    let (keys, keyring) = new_key();
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(fleet.replica(&keyring).await);
    }
    let key = fleet.api().partner_key();
    let first = replicas[0].token(&key).await.unwrap().fingerprint();
    for replica in &replicas[1..] {
        assert_eq!(replica.token(&key).await.unwrap().fingerprint(), first);
    }
    assert_eq!(fleet.creations(), 1);

    let output = fleet.kigo(&keys, &["--json", "renew"]);
    assert!(
        succeeded(&output),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let renewed: Value = serde_json::from_str(&stdout(&output)).unwrap();
    let fingerprint = renewed["fingerprint"].as_str().unwrap().to_owned();
    assert_ne!(fingerprint, first.to_string());
    assert_eq!(fleet.creations(), 2, "one creation for the whole fleet");
    // The store holds the new token; a replica that reads it takes it.
    let late = fleet.replica(&keyring).await;
    assert_eq!(
        late.token(&key).await.unwrap().fingerprint().to_string(),
        fingerprint
    );
    assert_eq!(fleet.creations(), 2);
}

async fn status_shows_the_fleets_token_but_never_the_token(kind: StoreKind) {
    let fleet = Fleet::on(kind).await;
    let (keys, keyring) = new_key();
    let replica = fleet.replica(&keyring).await;
    let token = replica.token(&fleet.api().partner_key()).await.unwrap();
    let secret = token.secret().expose().to_owned();
    for args in [
        &["status"][..],
        &["--json", "status", "--user", "alice"][..],
    ] {
        let output = fleet.kigo(&keys, args);
        assert!(succeeded(&output), "{args:?}");
        let shown = format!(
            "{}{}",
            stdout(&output),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            shown.contains(&token.fingerprint().to_string()),
            "{args:?}: {shown}"
        );
        assert!(shown.contains("present"), "{args:?}");
        assert!(!shown.contains(&secret), "{args:?}: the token was printed");
    }
    let json: Value =
        serde_json::from_str(&stdout(&fleet.kigo(&keys, &["--json", "status"]))).unwrap();
    assert_eq!(json["keys"][0]["generation"], token.generation());
}

async fn rotate_key_on_a_live_fleet_fails_no_request(kind: StoreKind) {
    let fleet = Fleet::on(kind).await;
    let (old_text, old) = new_key();
    let key = fleet.api().partner_key();
    // The fleet's token, sealed with the old key.
    fleet.replica(&old).await.token(&key).await.unwrap();
    // Step 2 of a rotation: every replica seals with the new key and still opens the old one.
    let new = SealingKey::generate_base64();
    let both_text = SecretString::from(format!(
        "{},{}",
        new.expose_secret(),
        old_text.expose_secret()
    ));
    let both = Keyring::parse(both_text.expose_secret()).unwrap();
    let replicas = [fleet.replica(&both).await, fleet.replica(&both).await];
    let failed = Arc::new(AtomicU64::new(0));
    let served = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let callers: Vec<_> = replicas
        .iter()
        .map(|replica| {
            let (replica, key) = (replica.clone(), key.clone());
            let (failed, served, stop) = (failed.clone(), served.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    match replica.token(&key).await {
                        Ok(_) => served.fetch_add(1, Ordering::Relaxed),
                        Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                    };
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            })
        })
        .collect();

    let output = fleet.kigo(&both_text, &["--json", "store", "rotate-key"]);
    stop.store(true, Ordering::Relaxed);
    for caller in callers {
        caller.await.unwrap();
    }
    assert!(
        succeeded(&output),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let rotation: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(rotation["resealed"], 1, "{rotation}");
    assert_eq!(failed.load(Ordering::Relaxed), 0, "no request failed");
    assert!(served.load(Ordering::Relaxed) > 0);
    assert_eq!(fleet.creations(), 1, "no creation");
    // Step 3: a replica with the new key alone opens the entry.
    let new_only = Keyring::parse(new.expose_secret()).unwrap();
    let store = fleet.store(&new_only).await;
    assert!(matches!(
        store.load(&key).await.unwrap().entry,
        Entry::Present(_)
    ));
    // Resumable and idempotent: a second run finds nothing to do.
    let again: Value = serde_json::from_str(&stdout(
        &fleet.kigo(&both_text, &["--json", "store", "rotate-key"]),
    ))
    .unwrap();
    assert_eq!(again["resealed"], 0);
    assert_eq!(again["already_current"], 1);
}

async fn exit_codes_are_as_documented(kind: StoreKind) {
    let fleet = Fleet::on(kind).await;
    let (keys, keyring) = new_key();
    fleet
        .replica(&keyring)
        .await
        .token(&fleet.api().partner_key())
        .await
        .unwrap();

    assert_eq!(
        fleet.kigo(&keys, &["store", "check"]).status.code(),
        Some(0)
    );
    assert_eq!(
        fleet.kigo(&keys, &["store", "purge"]).status.code(),
        Some(0)
    );
    assert_eq!(
        fleet.kigo(&keys, &["store", "migrate"]).status.code(),
        Some(0)
    );
    assert_eq!(
        fleet.kigo(&keys, &["no-such-command"]).status.code(),
        Some(2)
    );
    // The fleet's entries do not open with another key: a problem the check reports.
    let (stranger, _) = new_key();
    let check = fleet.kigo(&stranger, &["--json", "store", "check"]);
    assert_eq!(check.status.code(), Some(4), "{}", stdout(&check));
    let report: Value = serde_json::from_str(&stdout(&check)).unwrap();
    assert_eq!(report["check"]["entries_unreadable"], 1);
    // No store named: misconfigured, with what to do.
    let unset = fleet.kigo_with(&keys, &["status"], &[("KIGO_STORE_URL", "")]);
    assert_eq!(unset.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&unset.stderr).contains("what to do"));
    let json = fleet.kigo_with(
        &keys,
        &["--json", "status"],
        &[("KIGO_STORE_URL", "ftp://x")],
    );
    assert_eq!(json.status.code(), Some(3));
    let error: Value = serde_json::from_str(&stdout(&json)).unwrap();
    assert_eq!(error["exit_code"], 3);
    assert!(error["hint"].is_string());
}

/// The tool reaches a database on another host over TLS, and refuses it without: built as
/// `cargo install` builds it, it has the TLS every remote store requires. The host does not
/// exist, so an encrypted URL fails as unreachable (1), a plain one as misconfigured (3).
#[test]
fn a_remote_database_is_reached_over_tls_and_refused_without() {
    let (keys, _) = new_key();
    let run = |url: &str| {
        Command::new(env!("CARGO_BIN_EXE_kigo"))
            .args(["store", "check"])
            .env("KIGO_STORE_URL", url)
            .env("KIGO_SEALING_KEYS", keys.expose_secret())
            .output()
            .unwrap()
    };
    for (encrypted, plain) in [
        (
            "postgres://kigo@db.example.invalid/kigo?sslmode=verify-full",
            "postgres://kigo@db.example.invalid/kigo",
        ),
        (
            "mysql://kigo@db.example.invalid/kigo?ssl-mode=VERIFY_IDENTITY",
            "mysql://kigo@db.example.invalid/kigo",
        ),
    ] {
        let over_tls = run(encrypted);
        let said = String::from_utf8_lossy(&over_tls.stderr);
        assert_eq!(over_tls.status.code(), Some(1), "{encrypted}: {said}");
        assert!(!said.contains("tls-rustls"), "{encrypted}: {said}");
        let without = run(plain);
        let said = String::from_utf8_lossy(&without.stderr);
        assert_eq!(without.status.code(), Some(3), "{plain}: {said}");
        assert!(said.contains("TLS"), "{plain}: {said}");
    }
}

/// The four scenarios on each store.
macro_rules! on_every_store {
    ($($store:ident: $kind:expr;)*) => {
        $(
            mod $store {
                use super::*;

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn renew_costs_the_fleet_one_creation() {
                    super::renew_costs_the_fleet_one_creation($kind).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn status_shows_the_fleets_token_but_never_the_token() {
                    super::status_shows_the_fleets_token_but_never_the_token($kind).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn rotate_key_on_a_live_fleet_fails_no_request() {
                    super::rotate_key_on_a_live_fleet_fails_no_request($kind).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn exit_codes_are_as_documented() {
                    super::exit_codes_are_as_documented($kind).await;
                }
            }
        )*
    };
}

on_every_store! {
    redis: StoreKind::Redis;
    postgres: StoreKind::Postgres;
    mariadb: StoreKind::MySql;
    sqlite: StoreKind::Sqlite;
}
