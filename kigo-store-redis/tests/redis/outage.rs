//! Redis going away: killed and restarted under steady traffic, and the store's connection
//! killed (`CLIENT KILL`) while a replica holds the lease or commits.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use kigo_core::{BackoffPolicy, Error, StoreFailurePolicy, TokenManager, TokenStore};
use kigo_testkit::conformance::fresh_key;
use kigo_testkit::{FakeSource, FaultyStore, Gate, eventually};

use super::support::{RedisHarness, kill_client_connections, replica};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_rides_out_a_redis_restart() {
    let harness = RedisHarness::private().await;
    let server = harness.service().local_server().unwrap();
    let key = fresh_key();
    let source = FakeSource::new();
    let backoff =
        BackoffPolicy::new(Duration::from_millis(100), Duration::from_millis(500)).unwrap();
    let build = |name: &str, policy| {
        replica(&source, Arc::new(harness.store()), name)
            .store_failure(policy)
            .backoff(backoff)
            // The 401s below come seconds after their token's creation, on real time.
            .min_token_age(Duration::ZERO)
            .build()
            .unwrap()
    };
    let steady = [
        build("steady-0", StoreFailurePolicy::FailClosed),
        build("steady-1", StoreFailurePolicy::FailClosed),
    ];
    let closed = build("fail-closed", StoreFailurePolicy::FailClosed);
    let local = build(
        "create-locally",
        StoreFailurePolicy::CreateLocally {
            min_interval: Duration::from_secs(60),
        },
    );
    let first = closed.token(&key).await.unwrap().fingerprint();
    for manager in steady.iter().chain([&local]) {
        assert_eq!(manager.token(&key).await.unwrap().fingerprint(), first);
    }
    assert_eq!(source.creations(), 1);

    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicU64::new(0));
    let traffic: Vec<_> = steady
        .iter()
        .map(|manager| {
            let handle = manager.handle(key.clone()).unwrap();
            let (stop, served) = (Arc::clone(&stop), Arc::clone(&served));
            tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    let token = handle.token().await.unwrap_or_else(|error| {
                        panic!("a request failed while the cached token was valid: {error}")
                    });
                    assert_eq!(token.fingerprint(), first);
                    served.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        })
        .collect();

    server.kill();
    let before = served.load(Ordering::SeqCst);
    eventually(
        "traffic goes on without Redis",
        Duration::from_secs(10),
        || async { served.load(Ordering::SeqCst) >= before + 100 },
    )
    .await;

    // A new token is needed (the API rejected the cached one): each replica's policy decides.
    assert!(closed.invalidate(&key, &first));
    match closed.token(&key).await {
        Err(Error::StoreUnavailable { .. }) => {}
        other => panic!("fail-closed without Redis gave {other:?}"),
    }
    assert!(local.invalidate(&key, &first));
    let local_token = local.token(&key).await.unwrap().fingerprint();
    assert_ne!(local_token, first);
    assert_eq!(source.creations(), 2);
    assert_eq!(local.metrics().local_creations, 1);

    server.restart().await.unwrap();
    eventually(
        "the fail-closed replica gets a token through Redis again",
        Duration::from_secs(15),
        || async { closed.token(&key).await.is_ok() },
    )
    .await;
    // The traffic kept its token through the whole outage; the steady replicas renew next.
    stop.store(true, Ordering::SeqCst);
    for task in traffic {
        task.await.unwrap();
    }
    let rejoined = closed.token(&key).await.unwrap().fingerprint();
    let stored = harness.store().load(&key).await.unwrap();
    assert_eq!(
        stored.token().map(|token| token.fingerprint()),
        Some(rejoined)
    );
    assert_eq!(source.creations(), 3);

    // The others take the stored token instead of creating one: from the commit's notice if
    // their subscription was back in time, else at their next renewal (forced here by a 401),
    // once their own store backoff from the outage has passed.
    for manager in [&local, &steady[0]] {
        let cached = manager.token(&key).await.unwrap().fingerprint();
        if cached != rejoined {
            assert!(manager.invalidate(&key, &cached));
        }
        eventually(
            "the replica adopts the stored token",
            Duration::from_secs(10),
            || async {
                let token = manager.token(&key).await;
                token.is_ok_and(|token| token.fingerprint() == rejoined)
            },
        )
        .await;
    }
    assert_eq!(source.creations(), 3);
    for manager in steady.iter().chain([&closed, &local]) {
        manager.shutdown().await;
    }
}

/// One replica whose store holds at `gate`; the test kills the store's connection there.
async fn kill_connection_at(gate: Gate) {
    let harness = RedisHarness::private().await;
    let mut admin = harness.admin().await;
    let key = fresh_key();
    let source = FakeSource::new();
    let gated = FaultyStore::new(Arc::new(harness.store()));
    let manager: TokenManager = replica(&source, Arc::new(gated.clone()), "replica")
        .build()
        .unwrap();
    // Connect and subscribe before the gate, so that the kill hits a live connection.
    let warm_up = harness.store();
    assert!(warm_up.load(&key).await.is_ok());
    gated.hold(gate);

    let handle = manager.handle(key.clone()).unwrap();
    let getting =
        tokio::spawn(async move { handle.token().await.map(|token| token.fingerprint()) });
    assert!(
        gated.reached(gate, Duration::from_secs(10)).await,
        "the replica reaches {gate:?}"
    );
    assert!(harness.lease_pttl(&key).await > 0, "the lease is claimed");
    assert!(kill_client_connections(&mut admin).await >= 1);
    gated.open(gate);

    let token = getting
        .await
        .unwrap()
        .unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(source.creations(), 1);
    let stored = harness.store().load(&key).await.unwrap();
    assert_eq!(stored.token().map(|token| token.fingerprint()), Some(token));
    assert_eq!(
        harness.lease_pttl(&key).await,
        -2,
        "no lease is left behind"
    );
    assert_eq!(
        manager.metrics().store_errors,
        0,
        "the store settled it itself"
    );
    manager.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_killed_mid_claim_leaves_no_lease_behind() {
    kill_connection_at(Gate::AfterAcquire).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_killed_mid_commit_leaves_no_lease_behind() {
    kill_connection_at(Gate::BeforeCommit).await;
}
