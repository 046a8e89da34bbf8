//! The worked custom store: the whole conformance suite on a fresh directory per test, two
//! "processes" sharing one token through one directory, and what it does with bad files, an
//! unusable directory and no runtime.

use std::collections::HashSet;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use examples::file_store::{FileStore, FileStoreError, FileStoreHarness};
use kigo_core::codec::{CorruptEntry, Sealing};
use kigo_core::runtime::{RuntimeEnv, TimeSource};
use kigo_core::store::{CommitOutcome, Entry, HolderId, LeaseAttempt};
use kigo_core::{KeyScope, StoreError, Token, TokenManager, TokenSecret, TokenStore};
use kigo_testkit::conformance::{fresh_key, test_keyring};
use kigo_testkit::{FakeSource, settle};

kigo_testkit::store_conformance_tests!(async { FileStoreHarness::new() });

/// How long the fake token endpoint takes, in manual time.
const LATENCY: Duration = Duration::from_secs(2);
/// How far the manual clock moves between two looks at the callers.
const STEP: Duration = Duration::from_millis(100);
/// Far more steps than a creation and a few polls need, yet well inside a lease.
const MAX_STEPS: u32 = 200;

#[tokio::test(start_paused = true)]
async fn two_processes_on_one_directory_share_one_token_through_two_managers() {
    let harness = FileStoreHarness::new();
    let clock = harness.clock().clone();
    let source = FakeSource::new().with_latency(LATENCY, Arc::new(clock.clone()));
    let managers: Vec<TokenManager> = (0..2)
        .map(|seed| {
            // Each manager on a store of its own: they share the directory, nothing else.
            TokenManager::builder(source.clone())
                .store(harness.store())
                .scope(KeyScope::AnyPartner)
                .runtime(RuntimeEnv::manual(&clock).unwrap())
                .seed(seed)
                .build()
                .unwrap()
        })
        .collect();
    let key = fresh_key();
    let callers: Vec<_> = managers
        .iter()
        .map(|manager| {
            let handle = manager.handle(key.clone()).unwrap();
            tokio::spawn(async move { handle.token().await.map(|token| token.fingerprint()) })
        })
        .collect();

    // Paused tokio time ends `settle` only when every task waits and no file I/O runs: the
    // manual clock moves only then.
    let mut steps = 0;
    loop {
        settle().await;
        if callers.iter().all(|caller| caller.is_finished()) {
            break;
        }
        assert!(
            steps < MAX_STEPS,
            "callers still waiting after {steps} steps"
        );
        clock.advance(STEP);
        steps += 1;
    }
    let mut served = HashSet::new();
    for caller in callers {
        served.insert(caller.await.unwrap().expect("every caller gets a token"));
    }

    assert_eq!(source.creations(), 1, "one creation for both processes");
    assert_eq!(served.len(), 1, "both managers serve the one token");
    let third = harness.store().load(&key).await.unwrap();
    assert_eq!(
        third.token().map(Token::fingerprint),
        served.into_iter().next(),
        "a third process reads it from the directory"
    );
    for manager in &managers {
        manager.shutdown().await;
    }
}

/// Each change holds the key's lock from its read to its write, also while other processes
/// replace the record: grants racing on 8 stores never hand out one fence twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_grants_across_processes_never_share_a_fence() {
    let harness = FileStoreHarness::new();
    let key = fresh_key();
    let racers = (0..8).map(|_| {
        let (store, key) = (harness.store(), key.clone());
        tokio::spawn(async move {
            let mut fences = Vec::new();
            for _ in 0..40 {
                let attempt = store
                    .acquire_lease(&key, &HolderId::random(), Duration::from_secs(30))
                    .await
                    .unwrap();
                if let LeaseAttempt::Acquired(lease) = attempt {
                    fences.push(lease.fence());
                    store.release_lease(&lease).await.unwrap();
                }
            }
            fences
        })
    });
    let mut granted = Vec::new();
    for racer in racers.collect::<Vec<_>>() {
        granted.extend(racer.await.unwrap());
    }
    let distinct: HashSet<u64> = granted.iter().copied().collect();
    assert_eq!(distinct.len(), granted.len(), "a fence granted twice");
    assert_eq!(distinct.iter().max().copied(), Some(granted.len() as u64));
}

#[tokio::test]
async fn a_file_of_garbage_is_a_corrupt_entry_until_a_commit_replaces_it() {
    let harness = FileStoreHarness::new();
    let store = harness.store();
    for garbage in [&b""[..], b"\x00\xff not a record", br#"{"fence":"many"}"#] {
        let key = fresh_key();
        std::fs::write(store.record_file(&key), garbage).unwrap();
        let entry = store.load(&key).await.unwrap().entry;
        assert!(
            matches!(entry, Entry::Corrupt(CorruptEntry::Malformed)),
            "{garbage:?} loaded as {entry:?}"
        );

        let LeaseAttempt::Acquired(lease) = store
            .acquire_lease(&key, &HolderId::random(), Duration::from_secs(30))
            .await
            .unwrap()
        else {
            panic!("the lease of a garbage file is held");
        };
        let now = harness.clock().now();
        let token = Token::new(
            TokenSecret::new("replacement"),
            now,
            now + Duration::from_secs(1800),
        )
        .unwrap();
        assert_eq!(
            store.commit(&lease, &token).await.unwrap(),
            CommitOutcome::Committed
        );
        let loaded = store.load(&key).await.unwrap();
        assert_eq!(
            loaded.token().map(Token::fingerprint),
            Some(token.fingerprint())
        );
    }
}

#[tokio::test]
async fn a_directory_the_store_cannot_use_is_misconfigured_with_a_hint() {
    let parent = tempfile::tempdir().unwrap();
    let builder = |path| FileStore::builder(path).sealing(Sealing::Keyring(test_keyring()));

    // A file where the directory should be.
    let file = parent.path().join("a-file");
    std::fs::write(&file, b"").unwrap();
    assert_misconfigured(builder(file.clone()).build().unwrap_err());
    assert_misconfigured(builder(file.join("below")).build().unwrap_err());

    // The directory removed under a running store.
    let removed = parent.path().join("removed");
    let store = builder(removed.clone()).build().unwrap();
    std::fs::remove_dir(&removed).unwrap();
    let error = store
        .acquire_lease(&fresh_key(), &HolderId::random(), Duration::from_secs(30))
        .await
        .unwrap_err();
    assert_misconfigured(error);
}

fn assert_misconfigured(error: StoreError) {
    match &error {
        StoreError::Misconfigured { hint, .. } => {
            assert!(hint.contains("directory"), "{hint}");
        }
        other => panic!("expected a misconfiguration, got {other:?}"),
    }
    assert!(
        matches!(
            error.cause().downcast_ref::<FileStoreError>(),
            Some(FileStoreError::Io { .. })
        ),
        "{:?}",
        error.cause()
    );
}

#[cfg(unix)]
#[tokio::test]
async fn the_directory_and_its_files_are_for_their_owner_only() {
    use std::os::unix::fs::PermissionsExt;

    let parent = tempfile::tempdir().unwrap();
    let directory = parent.path().join("tokens");
    let store = FileStore::builder(&directory)
        .sealing(Sealing::Keyring(test_keyring()))
        .build()
        .unwrap();
    let key = fresh_key();
    store
        .set_cooldown(&key, Duration::from_secs(60))
        .await
        .unwrap();

    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&directory), 0o700);
    let files: Vec<_> = std::fs::read_dir(&directory)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    assert!(files.contains(&store.record_file(&key)), "{files:?}");
    for file in &files {
        assert_eq!(mode(file), 0o600, "{}", file.display());
    }
}

#[test]
fn outside_a_tokio_runtime_an_operation_fails_as_misconfigured_without_a_panic() {
    let harness = FileStoreHarness::new();
    let store = harness.store();
    let key = fresh_key();
    let mut load = pin!(store.load(&key));
    let Poll::Ready(outcome) = load.as_mut().poll(&mut Context::from_waker(Waker::noop())) else {
        panic!("the load waits for a runtime that is not there");
    };
    match outcome {
        Err(StoreError::Misconfigured { hint, .. }) => assert!(hint.contains("tokio"), "{hint}"),
        other => panic!("expected a misconfiguration, got {other:?}"),
    }
}
