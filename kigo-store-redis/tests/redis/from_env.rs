//! `RedisStore::from_env`: the Redis URL from `KIGO_STORE_URL`, every other setting its default
//! (the `kigo:` prefix, entries sealed with the keys in `KIGO_SEALING_KEYS`).
//!
//! The variables are set only in child processes (this test binary, running the ignored
//! [`child_opens_a_store_from_its_environment`]), never in the test process: changing the
//! environment of a multi-threaded process is unsound.

use std::time::Duration;

use kigo_core::codec::{SEALING_KEYS_VAR, SealingKey};
use kigo_core::store::CommitOutcome;
use kigo_core::{PartnerId, TokenKey, TokenStore};
use kigo_store_redis::{DEFAULT_PREFIX, Keyring, RedisStore, STORE_URL_VAR};
use secrecy::{ExposeSecret, SecretString};

use super::support::{self, RedisHarness, acquire, child_case, misconfiguration, token_valid_for};

const CHILD_TEST: &str = "from_env::child_opens_a_store_from_its_environment";

/// Runs the child test with `url` (or nothing) in `KIGO_STORE_URL` and a sealing key in
/// `KIGO_SEALING_KEYS`, expecting `case` (see the child).
fn run_child(url: Option<&str>, key: &SecretString, case: &str) {
    support::run_child(
        CHILD_TEST,
        case,
        &[
            (STORE_URL_VAR, url),
            (SEALING_KEYS_VAR, Some(key.expose_secret())),
        ],
    );
}

#[test]
fn without_kigo_store_url_from_env_is_refused_with_a_hint_naming_it() {
    let key = SealingKey::generate_base64();
    for url in [None, Some(""), Some("  ")] {
        run_child(url, &key, "missing");
    }
}

#[test]
fn from_env_checks_the_url_of_kigo_store_url_and_keeps_its_password_out_of_the_error() {
    run_child(
        Some("redis://app:hunter2-secret@10.0.0.1:6379"),
        &SealingKey::generate_base64(),
        "refused 10.0.0.1:6379 hunter2-secret",
    );
}

/// The child reads, with nothing but the two variables, a token that a store with the default
/// prefix and the same key committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_env_opens_the_redis_of_kigo_store_url_with_the_default_settings() {
    let harness = RedisHarness::private().await;
    let key = SealingKey::generate_base64();
    let writer = harness
        .builder()
        .prefix(DEFAULT_PREFIX)
        .keyring(Keyring::new(
            SealingKey::from_base64(key.expose_secret()).unwrap(),
        ))
        .build()
        .unwrap();
    let partner = format!("from-env-{:016x}", fastrand::u64(..));
    let token_key = TokenKey::partner(PartnerId::new(partner.as_str()).unwrap());
    let lease = acquire(&writer, &token_key, Duration::from_secs(30)).await;
    let token = token_valid_for("from-env", Duration::from_secs(1800));
    assert_eq!(
        writer.commit(&lease, &token).await.unwrap(),
        CommitOutcome::Committed
    );

    let url = harness.service().url().to_owned();
    let case = format!("reads {partner} {}", token.fingerprint());
    // The child process blocks this thread, not the runtime's workers.
    tokio::task::spawn_blocking(move || run_child(Some(&url), &key, &case))
        .await
        .unwrap();
}

/// Run by the tests above as a child process, with the variables set (or not) for it; never
/// alone. Opens a store with `RedisStore::from_env` and checks it against the case: `missing`,
/// `refused <address> <password>`, or `reads <partner> <fingerprint>`.
#[tokio::test]
#[ignore = "the child process of the from_env tests"]
async fn child_opens_a_store_from_its_environment() {
    // Run alone (`--include-ignored`), there is no case to run.
    let Some(case) = child_case() else {
        return;
    };
    let opened = RedisStore::from_env();
    let words: Vec<&str> = case.split(' ').collect();
    match (words.as_slice(), opened) {
        (["reads", partner, fingerprint], Ok(store)) => {
            let token_key = TokenKey::partner(PartnerId::new(*partner).unwrap());
            let loaded = store.load(&token_key).await.unwrap();
            let token = loaded.token().expect("the stored token");
            assert_eq!(token.fingerprint().to_string(), *fingerprint);
        }
        (["missing"], Err(error)) => {
            let (hint, _) = misconfiguration(&error);
            assert!(hint.contains(STORE_URL_VAR), "{hint}");
        }
        (["refused", address, password], Err(error)) => {
            let (hint, shown) = misconfiguration(&error);
            assert!(hint.contains("rediss://"), "{hint}");
            assert!(shown.contains(address), "{shown}");
            assert!(!shown.contains(password), "the error repeats the password");
        }
        (_, other) => panic!("case {case}: opened {:?}", other.map(|_| "a store")),
    }
}
