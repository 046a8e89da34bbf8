//! `SqlStore::from_env`: the database URL from `KIGO_STORE_URL`, every other setting its default
//! (the `kigo_tokens` table, entries sealed with the keys in `KIGO_SEALING_KEYS`, the pool size
//! of `KIGO_STORE_MAX_CONNECTIONS` if set).
//!
//! The variables are set only in child processes (this test binary again, running the same test
//! with [`CASE`] set), never in the test process: changing the environment of a multi-threaded
//! process is unsound.

use std::ffi::OsString;

use kigo_core::codec::{Keyring, SEALING_KEYS_VAR, SealingKey};
use kigo_core::{PartnerId, StoreError, Token, TokenKey, TokenStore};
use kigo_store_sql::{MAX_CONNECTIONS_VAR, STORE_URL_VAR, SqlPool, SqlStore};
use secrecy::{ExposeSecret, SecretString};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::common::fleet::{commit_token, token};

/// Set in the environment of a child process: what it expects of `from_env` (see [`child`]).
const CASE: &str = "KIGO_TEST_SQLITE_FROM_ENV_CASE";
/// What the child prints once its case held.
const HELD: &str = "kigo-from-env-case-held";

/// Runs the test `name` of this binary in a child process with `case`, `url` (or nothing) in
/// `KIGO_STORE_URL`, `keys` in `KIGO_SEALING_KEYS` and `pool_size` (or nothing) in
/// `KIGO_STORE_MAX_CONNECTIONS`; fails unless the child's case held.
async fn run_child(
    name: &str,
    case: &str,
    url: Option<&str>,
    keys: &SecretString,
    pool_size: Option<&str>,
) {
    let mut child = Command::new(std::env::current_exe().unwrap());
    child
        .args(crate::only(&format!("from_env::{name}")))
        .env(CASE, case)
        .env(SEALING_KEYS_VAR, keys.expose_secret());
    match pool_size {
        Some(size) => child.env(MAX_CONNECTIONS_VAR, size),
        None => child.env_remove(MAX_CONNECTIONS_VAR),
    };
    match url {
        Some(url) => child.env(STORE_URL_VAR, url),
        None => child.env_remove(STORE_URL_VAR),
    };
    let output = child.output().await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains(HELD),
        "case {case}: {stdout}"
    );
}

#[tokio::test]
async fn without_kigo_store_url_from_env_is_refused_with_a_hint_naming_it() {
    if let Some(case) = std::env::var_os(CASE) {
        return child(case).await;
    }
    let keys = SealingKey::generate_base64();
    for url in [None, Some(""), Some("  ")] {
        run_child(
            "without_kigo_store_url_from_env_is_refused_with_a_hint_naming_it",
            "missing",
            url,
            &keys,
            None,
        )
        .await;
    }
}

#[tokio::test]
async fn from_env_checks_the_url_of_kigo_store_url_and_keeps_its_password_out_of_the_error() {
    if let Some(case) = std::env::var_os(CASE) {
        return child(case).await;
    }
    run_child(
        "from_env_checks_the_url_of_kigo_store_url_and_keeps_its_password_out_of_the_error",
        "refused db.internal pa55-secret",
        Some("postgres://kigo:pa55-secret@db.internal/app"),
        &SealingKey::generate_base64(),
        None,
    )
    .await;
}

/// The child reads, with nothing but the two variables, a token that a store with the default
/// table and the same key committed to an SQLite file.
#[tokio::test]
async fn from_env_opens_the_database_of_kigo_store_url_with_the_default_settings() {
    if let Some(case) = std::env::var_os(CASE) {
        return child(case).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens.db");
    let keys = SealingKey::generate_base64();
    let writer = SqlStore::builder()
        .sqlite_file(&file)
        .keyring(Keyring::parse(keys.expose_secret()).unwrap())
        .migrate_on_connect(true)
        .build()
        .await
        .unwrap();
    let partner = format!("from-env-{:016x}", fastrand::u64(..));
    let committed = token("from-env");
    commit_token(&writer, &partner_key(&partner), &committed).await;

    let url = format!("sqlite://{}", file.display());
    let case = format!("reads {partner} {}", committed.fingerprint());
    run_child(
        "from_env_opens_the_database_of_kigo_store_url_with_the_default_settings",
        &case,
        Some(&url),
        &keys,
        None,
    )
    .await;
}

/// The pool of a store from the environment has the size `KIGO_STORE_MAX_CONNECTIONS` gives (a
/// fleet's replicas must fit the server's connection limit); a value that is no size is refused
/// with a hint naming the variable, and an empty one means the default.
#[tokio::test]
async fn from_env_sizes_its_pool_by_kigo_store_max_connections_and_refuses_a_bad_size() {
    if let Some(case) = std::env::var_os(CASE) {
        return child(case).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("tokens.db").display());
    let keys = SealingKey::generate_base64();
    let name = "from_env_sizes_its_pool_by_kigo_store_max_connections_and_refuses_a_bad_size";
    for (size, case) in [
        (Some("3"), "pool 3"),
        (Some(" 1 "), "pool 1"),
        (None, "pool 10"),
        (Some(""), "pool 10"),
        (Some("0"), "bad-pool"),
        (Some("lots"), "bad-pool"),
    ] {
        run_child(name, case, Some(&url), &keys, size).await;
    }
}

fn partner_key(partner: &str) -> TokenKey {
    TokenKey::partner(PartnerId::new(partner).unwrap())
}

/// The child side: opens a store with `SqlStore::from_env` and checks it against `case`:
/// `missing`, `refused <host> <password>`, `reads <partner> <fingerprint>`, `pool <size>` or
/// `bad-pool`.
async fn child(case: OsString) {
    let case = case.into_string().unwrap();
    let opened = SqlStore::from_env().await;
    let words: Vec<&str> = case.split(' ').collect();
    match (words.as_slice(), opened) {
        (["reads", partner, fingerprint], Ok(store)) => {
            let loaded = store.load(&partner_key(partner)).await.unwrap();
            let stored = loaded.token().map(Token::fingerprint);
            assert_eq!(stored.map(|f| f.to_string()).as_deref(), Some(*fingerprint));
        }
        (["pool", size], Ok(store)) => {
            let SqlPool::Sqlite(pool) = store.pool() else {
                panic!("not an SQLite pool");
            };
            assert_eq!(pool.options().get_max_connections().to_string(), *size);
        }
        (["bad-pool"], Err(StoreError::Misconfigured { hint, .. })) => {
            assert!(hint.contains(MAX_CONNECTIONS_VAR), "{hint}");
        }
        (["missing"], Err(StoreError::Misconfigured { hint, .. })) => {
            assert!(hint.contains(STORE_URL_VAR), "{hint}");
        }
        (["refused", host, password], Err(error)) => {
            let StoreError::Misconfigured { hint, .. } = &error else {
                panic!("{error:?}");
            };
            assert!(hint.contains("sslmode"), "{hint}");
            let shown = format!("{error} {error:?}");
            assert!(shown.contains(host), "{shown}");
            assert!(!shown.contains(password), "the error repeats the password");
        }
        (_, other) => panic!("case {case}: opened {:?}", other.map(|_| "a store")),
    }
    let mut stdout = tokio::io::stdout();
    stdout
        .write_all(format!("{HELD}\n").as_bytes())
        .await
        .unwrap();
    stdout.flush().await.unwrap();
}
