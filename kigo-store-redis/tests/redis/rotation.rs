//! Rotating the sealing keys of a running fleet by the three steps documented on `Keyring`,
//! each a rolling deploy that replaces the replicas one by one while callers keep asking: no
//! request fails, the rotation creates no token, and the entries end sealed with the new key.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kigo_core::codec::{Keyring, SealingKey};
use kigo_core::{Error, Fingerprint, TokenKey, TokenManager, TokenStore};
use kigo_testkit::conformance::{fresh_key, test_keyring};
use kigo_testkit::{FakeSource, eventually};
use tokio::task::JoinHandle;

use super::support::{RedisHarness, replica, within};

const REPLICAS: usize = 4;

/// What one replica's caller got.
#[derive(Default)]
struct Served {
    tokens: HashSet<Fingerprint>,
    failures: Vec<Error>,
}

/// A replica and its caller, who asks it for the token every few milliseconds.
struct Replica {
    manager: TokenManager,
    stop: Arc<AtomicBool>,
    caller: JoinHandle<Served>,
}

/// The replicas serving one key, and what their callers got so far.
struct Fleet<'a> {
    harness: &'a RedisHarness,
    key: TokenKey,
    source: FakeSource,
    replicas: Vec<Replica>,
    served: Served,
    started: usize,
}

impl<'a> Fleet<'a> {
    /// `REPLICAS` replicas sealing with `keyring`, each serving.
    async fn start(harness: &'a RedisHarness, keyring: &Keyring) -> Self {
        let mut fleet = Self {
            harness,
            key: fresh_key(),
            source: FakeSource::new(),
            replicas: Vec::new(),
            served: Served::default(),
            started: 0,
        };
        for _ in 0..REPLICAS {
            let replica = fleet.start_replica(keyring).await;
            fleet.replicas.push(replica);
        }
        fleet
    }

    /// A new replica whose store seals with `keyring`, once its caller is served.
    async fn start_replica(&mut self, keyring: &Keyring) -> Replica {
        let store = self.harness.store_with(keyring.clone());
        let name = format!("replica-{}", self.started);
        self.started += 1;
        let manager = replica(&self.source, Arc::new(store), &name)
            // The renewal below is forced by a 401 seconds after the token's creation.
            .min_token_age(Duration::ZERO)
            .build()
            .unwrap();
        let handle = manager.handle(self.key.clone()).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let caller = tokio::spawn({
            let (handle, stop) = (handle.clone(), Arc::clone(&stop));
            async move {
                let mut served = Served::default();
                while !stop.load(Ordering::SeqCst) {
                    match handle.token().await {
                        Ok(token) => {
                            served.tokens.insert(token.fingerprint());
                        }
                        Err(error) => served.failures.push(error),
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                served
            }
        });
        eventually(
            "the new replica serves",
            Duration::from_secs(10),
            || async { handle.cached().is_some() },
        )
        .await;
        Replica {
            manager,
            stop,
            caller,
        }
    }

    /// A rolling deploy: each replica in turn is replaced by one sealing with `keyring`, which
    /// serves before the old one stops.
    async fn roll_out(&mut self, keyring: &Keyring) {
        for index in 0..self.replicas.len() {
            let new = self.start_replica(keyring).await;
            let old = std::mem::replace(&mut self.replicas[index], new);
            self.stop(old).await;
        }
    }

    async fn stop(&mut self, replica: Replica) {
        replica.stop.store(true, Ordering::SeqCst);
        let served = within("the caller stops", replica.caller).await.unwrap();
        self.served.tokens.extend(served.tokens);
        self.served.failures.extend(served.failures);
        replica.manager.shutdown().await;
    }

    async fn stop_all(mut self) -> Served {
        for replica in std::mem::take(&mut self.replicas) {
            self.stop(replica).await;
        }
        self.served
    }
}

fn keyring(current: &SealingKey, older: Option<&SealingKey>) -> Keyring {
    let ring = Keyring::new(current.clone());
    match older {
        Some(older) => ring.with_older_key(older.clone()).unwrap(),
        None => ring,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_the_sealing_key_across_a_running_fleet_fails_no_request_and_creates_no_token() {
    let harness = RedisHarness::standalone().await;
    let (k1, k2) = (
        test_keyring().current().clone(),
        test_keyring().current().clone(),
    );
    let mut fleet = Fleet::start(&harness, &keyring(&k1, None)).await;
    let key = fleet.key.clone();
    assert_eq!(fleet.source.creations(), 1);
    assert_eq!(harness.sealed_with(&key).await, Some(k1.id()));

    // 1. Every replica can open entries sealed with k2; 2. every replica seals with k2.
    fleet.roll_out(&keyring(&k1, Some(&k2))).await;
    fleet.roll_out(&keyring(&k2, Some(&k1))).await;
    assert_eq!(
        fleet.source.creations(),
        1,
        "the new replicas took the token"
    );
    assert_eq!(
        harness.sealed_with(&key).await,
        Some(k1.id()),
        "an entry is sealed again at its next commit, not before"
    );

    // The next renewal (after a 401 here, at the latest at the refresh point) seals with k2.
    let renewing = &fleet.replicas[0].manager;
    let first = renewing.token(&key).await.unwrap().fingerprint();
    assert!(renewing.invalidate(&key, &first));
    eventually(
        "the renewed token is sealed with k2",
        Duration::from_secs(10),
        || async { harness.sealed_with(&key).await == Some(k2.id()) },
    )
    .await;
    assert_eq!(fleet.source.creations(), 2, "one creation for the renewal");

    // 3. Every entry was renewed: k1 goes.
    fleet.roll_out(&keyring(&k2, None)).await;
    assert_eq!(fleet.source.creations(), 2);
    assert_eq!(harness.sealed_with(&key).await, Some(k2.id()));
    let renewed = harness
        .store_with(keyring(&k2, None))
        .load(&key)
        .await
        .unwrap()
        .token()
        .map(|token| token.fingerprint());

    let served = fleet.stop_all().await;
    assert!(served.failures.is_empty(), "{:?}", served.failures);
    assert_eq!(
        served.tokens.len(),
        2,
        "the first token and the renewed one"
    );
    assert!(served.tokens.contains(&renewed.unwrap()));
}
