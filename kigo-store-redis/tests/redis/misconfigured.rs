//! A replica that cannot open the fleet's entries (it lacks the fleet's key, or was built for
//! plaintext) leaves them alone: its callers get `Error::StoreMisconfigured`, it says so at error
//! level, and the entry stays as it was, byte for byte, while the rest of the fleet keeps its
//! token.
//!
//! Current-thread runtimes: the log capture is the subscriber of the test's thread, where the
//! managers' tasks run too.

use std::sync::Arc;

use kigo_core::Error;
use kigo_store_redis::RedisStore;
use kigo_testkit::FakeSource;
use kigo_testkit::conformance::{StoreHarness, fresh_key, test_keyring};

use super::support::{Capture, RedisHarness, replica};

async fn the_fleets_entry_is_left_alone_by(
    misconfigured: impl FnOnce(&RedisHarness) -> RedisStore,
) {
    let capture = Capture::default();
    let _default = tracing::subscriber::set_default(capture.subscriber());
    let harness = RedisHarness::standalone().await;
    let key = fresh_key();
    let source = FakeSource::new();
    let good = replica(&source, Arc::new(harness.store()), "good")
        .build()
        .unwrap();
    let token = good.token(&key).await.unwrap();
    let entry = harness.read_raw(&key).await.expect("the fleet's entry");

    let bad = replica(&source, Arc::new(misconfigured(&harness)), "bad")
        .build()
        .unwrap();
    for _ in 0..3 {
        match bad.token(&key).await {
            Err(Error::StoreMisconfigured { .. }) => {}
            Err(error) => panic!("the misconfigured replica failed with {error:?}"),
            Ok(_) => panic!("the misconfigured replica handed out a token"),
        }
    }
    bad.shutdown().await;

    assert_eq!(
        harness.read_raw(&key).await.as_ref(),
        Some(&entry),
        "the stored entry changed"
    );
    assert_eq!(
        harness.lease_pttl(&key).await,
        -2,
        "a lease was left behind"
    );
    assert_eq!(source.creations(), 1);
    let kept = good.token(&key).await.unwrap();
    assert_eq!(kept.fingerprint(), token.fingerprint());
    good.shutdown().await;

    let logged = capture.text();
    assert!(
        logged
            .lines()
            .any(|line| line.contains("ERROR") && line.contains("misconfigured")),
        "{logged}"
    );
    assert!(
        !logged.contains(token.secret().expose()),
        "a token was logged"
    );
}

#[tokio::test]
async fn a_replica_without_the_fleets_key_leaves_its_entries_alone() {
    the_fleets_entry_is_left_alone_by(|harness| harness.store_with(test_keyring())).await;
}

#[tokio::test]
async fn a_plaintext_replica_leaves_the_fleets_sealed_entries_alone() {
    the_fleets_entry_is_left_alone_by(|harness| harness.builder().plaintext().build().unwrap())
        .await;
}
