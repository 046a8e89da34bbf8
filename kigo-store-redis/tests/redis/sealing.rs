//! Entries sealed at rest by default: Redis holds no readable token, each entry names the key
//! that sealed it, and a store takes its keys from `KIGO_SEALING_KEYS` unless it is given a
//! keyring or told to write plaintext by name.
//!
//! The variable is set only in child processes (this test binary, running the ignored
//! [`child_builds_a_store_from_its_environment`]), never in the test process: changing the
//! environment of a multi-threaded process is unsound.

use std::time::Duration;

use kigo_core::codec::{InvalidKeyring, KEYRING_HINT, SEALING_KEYS_VAR, SealingKey};
use kigo_core::store::CommitOutcome;
use kigo_core::{StoreError, TokenSecret, TokenStore};
use kigo_store_redis::RedisStore;
use kigo_testkit::conformance::{StoreHarness, fresh_key};
use secrecy::ExposeSecret;

use super::support::{
    self, Capture, RedisHarness, acquire, child_case, misconfiguration, token_valid_for,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_entries_hold_no_readable_token_and_name_their_key() {
    let harness = RedisHarness::standalone().await;
    let store = harness.store();
    let key = fresh_key();
    let lease = acquire(&store, &key, Duration::from_secs(30)).await;
    let token = token_valid_for("sealed-secret", Duration::from_secs(1800))
        .with_refresh_token(TokenSecret::new("sealed-refresh-secret"));
    assert_eq!(
        store.commit(&lease, &token).await.unwrap(),
        CommitOutcome::Committed
    );

    let raw = harness.read_raw(&key).await.expect("an entry");
    let text = String::from_utf8_lossy(&raw);
    // On failure, the stored value's length only: it could hold the token.
    assert!(
        !text.contains(token.secret().expose()) && !text.contains("sealed-refresh-secret"),
        "a token is readable in the {}-byte stored value",
        raw.len()
    );
    assert_eq!(
        harness.sealed_with(&key).await,
        Some(harness.keyring().current().id())
    );
    let peer = harness.store();
    let loaded = peer.load(&key).await.unwrap();
    assert_eq!(loaded.token().unwrap().fingerprint(), token.fingerprint());
}

#[test]
fn a_plaintext_store_is_chosen_by_name_and_says_so_at_warn_level() {
    let logged = Capture::while_running(|| {
        RedisStore::builder()
            .url("redis://127.0.0.1:6379")
            .prefix("plain:")
            .plaintext()
            .build()
            .unwrap();
    });
    let warnings: Vec<&str> = logged
        .lines()
        .filter(|line| line.contains("WARN") && line.contains("plaintext"))
        .collect();
    assert_eq!(warnings.len(), 1, "{logged}");
    assert!(warnings[0].contains("redis:plain:"), "{logged}");
}

#[test]
fn without_kigo_sealing_keys_a_store_is_refused_at_build_with_the_hint() {
    run_child(None, "missing");
    run_child(Some(" , "), "missing");
}

#[test]
fn an_unusable_kigo_sealing_keys_is_refused_without_being_repeated() {
    let key = SealingKey::generate_base64();
    run_child(Some("not-a-sealing-key!"), "invalid");
    // A second key of five bytes.
    run_child(
        Some(&format!("{},c2hvcnQ=", key.expose_secret())),
        "invalid",
    );
}

#[test]
fn a_store_seals_with_the_keys_of_kigo_sealing_keys_the_first_current() {
    let (new, old) = (SealingKey::generate_base64(), SealingKey::generate_base64());
    let id = |text: &str| SealingKey::from_base64(text).unwrap().id();
    let (new, old) = (new.expose_secret(), old.expose_secret());
    run_child(
        Some(&format!("{new},{old}")),
        &format!("sealed {} {}", id(new), id(old)),
    );
}

const CHILD_TEST: &str = "sealing::child_builds_a_store_from_its_environment";

/// Runs the child test with `keys` (or nothing) in `KIGO_SEALING_KEYS`, expecting `case`:
/// `missing`, `invalid`, or `sealed <current ID> <older ID>`.
fn run_child(keys: Option<&str>, case: &str) {
    support::run_child(CHILD_TEST, case, &[(SEALING_KEYS_VAR, keys)]);
}

/// Run by the tests above as a child process, with `KIGO_SEALING_KEYS` set (or not) for it;
/// never alone. Builds a store with the default settings and checks it against the case.
#[test]
#[ignore = "the child process of the sealing environment tests"]
fn child_builds_a_store_from_its_environment() {
    // Run alone (`--include-ignored`), there is no case to run.
    let Some(case) = child_case() else {
        return;
    };
    let built = RedisStore::builder().url("redis://127.0.0.1:6379").build();
    let words: Vec<&str> = case.split(' ').collect();
    match (words.as_slice(), built) {
        (["sealed", current, older], Ok(store)) => {
            let shown = format!("{store:?}");
            assert!(
                shown.contains(&format!("current: KeyId({current})"))
                    && shown.contains(&format!("older: [KeyId({older})]")),
                "{shown}"
            );
        }
        ([expected], Err(error)) => {
            let StoreError::Misconfigured { hint, source } = &error else {
                panic!("expected a misconfiguration, got {error:?}");
            };
            assert_eq!(*hint, KEYRING_HINT);
            let cause = source.downcast_ref::<InvalidKeyring>();
            match *expected {
                "missing" => assert_eq!(cause, Some(&InvalidKeyring::Missing)),
                "invalid" => assert!(
                    matches!(
                        cause,
                        Some(InvalidKeyring::NotBase64 | InvalidKeyring::WrongLength { .. })
                    ),
                    "{cause:?}"
                ),
                _ => panic!("unknown case {case}"),
            }
            let keys = std::env::var(SEALING_KEYS_VAR).unwrap_or_default();
            let (_, shown) = misconfiguration(&error);
            for key in keys.split(',').map(str::trim).filter(|key| !key.is_empty()) {
                assert!(!shown.contains(key), "the error repeats a key");
            }
        }
        (_, other) => panic!("case {case}: built {:?}", other.map(|_| "a store")),
    }
}
