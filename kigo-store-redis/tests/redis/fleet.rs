//! Single flight across a fleet: 16 replicas with 64 concurrent callers each, token expired,
//! create exactly one token.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::future::join_all;
use kigo_core::store::{CommitOutcome, Entry};
use kigo_core::{Token, TokenSecret, TokenStore};
use kigo_testkit::conformance::fresh_key;

use super::support::{RedisHarness, acquire, replica, slow_source};

const REPLICAS: usize = 16;
const CALLERS: usize = 64;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_replicas_of_sixty_four_callers_create_one_token() {
    let harness = RedisHarness::standalone().await;
    let key = fresh_key();

    // The fleet's last token has expired: Redis dropped it at its PXAT.
    let seeder = harness.store();
    let lease = acquire(&seeder, &key, Duration::from_secs(10)).await;
    let issued = SystemTime::now() - Duration::from_secs(31 * 60);
    let expired = Token::new(
        TokenSecret::new("expired"),
        issued,
        issued + Duration::from_secs(30 * 60),
    )
    .unwrap();
    assert_eq!(
        seeder.commit(&lease, &expired).await.unwrap(),
        CommitOutcome::Committed
    );
    assert!(matches!(
        seeder.load(&key).await.unwrap().entry,
        Entry::Absent
    ));

    // Creating takes a while, so that every replica finds the lease held and waits.
    let source = slow_source(Duration::from_millis(300));
    let managers: Vec<_> = (0..REPLICAS)
        .map(|index| {
            replica(
                &source,
                Arc::new(harness.store()),
                &format!("replica-{index}"),
            )
            .build()
            .unwrap()
        })
        .collect();
    let callers = managers.iter().flat_map(|manager| {
        (0..CALLERS).map(|_| {
            let handle = manager.handle(key.clone());
            tokio::spawn(async move { handle.token().await.map(|token| token.fingerprint()) })
        })
    });
    let results = join_all(callers).await;

    let fingerprints: Vec<_> = results
        .into_iter()
        .map(|joined| joined.unwrap().unwrap_or_else(|error| panic!("{error}")))
        .collect();
    assert_eq!(fingerprints.len(), REPLICAS * CALLERS);
    assert_eq!(source.creations(), 1, "{:?}", source.calls());
    assert!(fingerprints.iter().all(|fp| *fp == fingerprints[0]));
    let stored = seeder.load(&key).await.unwrap();
    assert_eq!(
        stored.token().map(Token::fingerprint),
        Some(fingerprints[0])
    );
    assert!(stored.token().unwrap().generation() > lease.fence());
    for manager in &managers {
        manager.shutdown().await;
    }
}
