//! Helpers and scenarios for the databases that run as servers (PostgreSQL, MySQL/MariaDB).

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kigo_core::{ExpiryPolicy, StoreError, Token, TokenManager, TokenStore};
use kigo_store_sql::{SqlStore, SqlStoreBuilder};
use kigo_test_services::PrivateServer;
use kigo_testkit::conformance::test_keyring;
use kigo_testkit::{FakeSource, eventually};

use crate::common::fleet::{fresh_key, replica};

/// `what`, then the `report` of the moment it is shown: a wait's failure message that tells the
/// state the wait ran out in.
pub(crate) struct Reported<'a, F>(pub(crate) &'a str, pub(crate) F);

impl<F: Fn() -> String> fmt::Display for Reported<'_, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}; {}", self.0, (self.1)())
    }
}

/// A store on a server that is not there (`base` is the URL up to the host, a free port
/// follows) reports itself unavailable, within its acquire timeout.
pub(crate) async fn unreachable_database_is_unavailable(base: &str) {
    let port = kigo_test_services::free_port().unwrap();
    let store = SqlStore::builder()
        .keyring(test_keyring())
        .acquire_timeout(Duration::from_millis(500))
        .url(format!("{base}:{port}/kigo"))
        .build()
        .await
        .unwrap();
    let started = Instant::now();
    let error = store.load(&fresh_key()).await.map(drop).unwrap_err();
    assert!(matches!(error, StoreError::Unavailable { .. }), "{error:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

/// A private server is killed during traffic and restarted: requests keep being served from
/// the cache while the token is valid (none fails), the replicas fail to renew while the server
/// is gone, and renew by themselves, once for the fleet, when it is back.
pub(crate) async fn killed_and_restarted_during_traffic(server: PrivateServer) {
    const LIFETIME: Duration = Duration::from_secs(60);
    // The token is handed out until 20 % of its lifetime before it expires.
    const SERVED_FOR: Duration = Duration::from_secs(48);
    let db = server
        .database()
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    let keyring = test_keyring();
    let connect = |options: SqlStoreBuilder| async {
        options
            .keyring(keyring.clone())
            .acquire_timeout(Duration::from_millis(500))
            .url(db.url())
            .build()
            .await
            .unwrap()
    };
    let admin = connect(SqlStore::builder().migrate_on_connect(true)).await;
    let source = FakeSource::with_lifetime(LIFETIME);
    // Renew after 15 to 18 s; the token is handed out until 12 s before it expires (48 s).
    let expiry = ExpiryPolicy::default().with_shares(0.3, 0.05).unwrap();
    let key = fresh_key();
    let mut managers = Vec::new();
    for _ in 0..3 {
        let store = connect(SqlStore::builder()).await;
        let manager = replica(Arc::new(source.clone()), Arc::new(store))
            .expiry(expiry)
            .build()
            .unwrap();
        managers.push(manager);
    }
    let started = Instant::now();
    let first = managers[0].token(&key).await.unwrap().fingerprint();
    for manager in &managers {
        let token = manager.token(&key).await.unwrap();
        assert_eq!(token.fingerprint(), first);
    }

    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicU64::new(0));
    let mut traffic = Vec::new();
    for manager in &managers {
        let (handle, stop, failures) = (
            manager.handle(key.clone()).unwrap(),
            stop.clone(),
            failures.clone(),
        );
        traffic.push(tokio::spawn(async move {
            let mut seen = HashSet::new();
            loop {
                // Read before the call: the last call starts after the stop, so it sees the
                // token the test saw cached.
                let last = stop.load(Ordering::SeqCst);
                match handle.token().await {
                    Ok(token) => {
                        seen.insert(token.fingerprint());
                    }
                    Err(_) => {
                        failures.fetch_add(1, Ordering::SeqCst);
                    }
                }
                if last {
                    return seen;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }));
    }

    let report = || {
        let metrics: Vec<_> = managers.iter().map(TokenManager::metrics).collect();
        format!(
            "{:?} after the first token, {} creations, {} failed requests, metrics {metrics:?}",
            started.elapsed(),
            source.creations(),
            failures.load(Ordering::SeqCst),
        )
    };
    server.server().kill();
    // The replicas reach their refresh points and find the store gone.
    eventually(
        Reported("step 1, a renewal fails while the server is down", &report),
        Duration::from_secs(40),
        async || {
            managers
                .iter()
                .any(|manager| manager.metrics().store_errors > 0)
        },
    )
    .await;
    server.server().restart().await.unwrap();
    server.wait_ready().await.unwrap();
    eventually(
        Reported("step 2, the fleet renews after the restart", &report),
        Duration::from_secs(25),
        async || source.creations() == 2,
    )
    .await;
    // Every replica serves the new token once it has it; let each pick it up.
    let renewed = admin.load(&key).await.unwrap();
    let renewed = renewed
        .token()
        .map(Token::fingerprint)
        .expect("renewed token stored");
    for manager in &managers {
        let handle = manager.handle(key.clone()).unwrap();
        eventually(
            Reported("step 3, each replica serves the new token", &report),
            Duration::from_secs(15),
            async || {
                handle
                    .cached()
                    .is_some_and(|token| token.fingerprint() == renewed)
            },
        )
        .await;
    }
    stop.store(true, Ordering::SeqCst);
    for task in traffic {
        let seen = task.await.unwrap();
        assert!(seen.contains(&first) && seen.contains(&renewed), "{seen:?}");
    }
    assert!(
        started.elapsed() < SERVED_FOR,
        "the test outlived the first token, so failed requests are no longer a fault: {}",
        report()
    );
    assert_eq!(
        failures.load(Ordering::SeqCst),
        0,
        "requests failed during the outage: {}",
        report()
    );
    assert_eq!(source.creations(), 2, "one renewal for the fleet");
    for manager in &managers {
        manager.shutdown().await;
    }
}
