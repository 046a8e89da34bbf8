//! Single flight across a fleet: 16 replicas with 64 concurrent callers each, token expired,
//! create exactly one token, counted at the mock Kigo server (through kigo-http's partner token
//! source, as a real deployment would create it).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::future::join_all;
use kigo_core::runtime::{ManualClock, RuntimeEnv};
use kigo_core::store::{CommitOutcome, Entry};
use kigo_core::{Fingerprint, Token, TokenKey, TokenManager, TokenSecret, TokenStore};
use kigo_http::{ApiKey, Credentials, KigoApi};
use kigo_testkit::mock::{Endpoint, Fault, MockKigo, MockKigoBuilder};

use super::support::{RedisHarness, acquire, replica_of, within};

const REPLICAS: usize = 16;
const CALLERS: usize = 64;

/// The mock Kigo API and a client for it. Creating takes 300 ms, so that every replica finds the
/// lease held and waits.
async fn slow_kigo(builder: MockKigoBuilder) -> (MockKigo, KigoApi) {
    let mock = builder.start().await.unwrap();
    mock.inject_always(
        Endpoint::PartnerSession,
        Some(Fault::Latency(Duration::from_millis(300))),
    );
    let credentials = Credentials::new(
        ApiKey::new(mock.api_key()).unwrap(),
        mock.partner_id().clone(),
        mock.base_url(),
    )
    .unwrap();
    let api = KigoApi::builder(credentials).build().unwrap();
    (mock, api)
}

/// 16 replicas, each with its own store connection, creating through `api`.
fn fleet(harness: &RedisHarness, api: &KigoApi, env: Option<&RuntimeEnv>) -> Vec<TokenManager> {
    (0..REPLICAS)
        .map(|index| {
            let source = Arc::new(api.partner_source());
            let builder = replica_of(
                source,
                Arc::new(harness.store()),
                &format!("replica-{index}"),
            );
            match env {
                Some(env) => builder.runtime(env.clone()),
                None => builder,
            }
            .build()
            .unwrap()
        })
        .collect()
}

/// 64 concurrent callers on every replica; every one must get a token. Their fingerprints.
async fn all_callers(managers: &[TokenManager], key: &TokenKey) -> Vec<Fingerprint> {
    let callers = managers.iter().flat_map(|manager| {
        (0..CALLERS).map(|_| {
            let handle = manager.handle(key.clone()).unwrap();
            tokio::spawn(async move { handle.token().await.map(|token| token.fingerprint()) })
        })
    });
    let results = within("every caller gets a token", join_all(callers)).await;
    let fingerprints: Vec<_> = results
        .into_iter()
        .map(|joined| joined.unwrap().unwrap_or_else(|error| panic!("{error}")))
        .collect();
    assert_eq!(fingerprints.len(), REPLICAS * CALLERS);
    fingerprints
}

/// Every caller got the one token stored, created once.
async fn one_token_for_all(
    mock: &MockKigo,
    store: &dyn TokenStore,
    key: &TokenKey,
    fingerprints: &[Fingerprint],
    creations_before: u64,
) {
    assert_eq!(
        mock.creations(key) - creations_before,
        1,
        "creations counted at the mock Kigo server"
    );
    assert!(fingerprints.iter().all(|fp| *fp == fingerprints[0]));
    let stored = store.load(key).await.unwrap();
    assert_eq!(
        stored.token().map(Token::fingerprint),
        Some(fingerprints[0])
    );
}

/// The fleet's last token has expired and Redis dropped it at its `PXAT`; the replicas start
/// with empty caches.
async fn after_redis_dropped_the_token(harness: RedisHarness) {
    let (mock, api) = slow_kigo(MockKigo::builder()).await;
    let key = api.partner_key();
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

    let managers = fleet(&harness, &api, None);
    let fingerprints = all_callers(&managers, &key).await;
    one_token_for_all(&mock, &seeder, &key, &fingerprints, 0).await;
    let stored = seeder.load(&key).await.unwrap();
    assert!(stored.token().unwrap().generation() > lease.fence());
    for manager in &managers {
        manager.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_replicas_of_sixty_four_callers_create_one_token() {
    after_redis_dropped_the_token(RedisHarness::standalone().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_replicas_of_sixty_four_callers_create_one_token_on_a_cluster() {
    after_redis_dropped_the_token(RedisHarness::cluster().await).await;
}

/// Every replica holds the fleet's token in its cache when it expires (the fleet was idle
/// through its refresh window: on a manual clock, time jumps past the expiry at once), and
/// Redis still holds it too: the callers that come then still cause one creation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_replicas_whose_cached_token_expired_create_one_token() {
    let harness = RedisHarness::standalone().await;
    let clock = ManualClock::starting_at(SystemTime::now());
    let env = RuntimeEnv::manual(&clock).unwrap();
    let (mock, api) = slow_kigo(MockKigo::builder().clock(Arc::new(clock.clone()))).await;
    let key = api.partner_key();
    let managers = fleet(&harness, &api, Some(&env));
    let first = managers[0].token(&key).await.unwrap().fingerprint();
    for manager in &managers[1..] {
        assert_eq!(manager.token(&key).await.unwrap().fingerprint(), first);
    }
    assert_eq!(mock.creations(&key), 1);
    // Every replica follows the change channel, so waiters are woken without polling (their
    // poll timers run on the manual clock).
    harness
        .subscribers_until("the stores subscribe", |count| count >= REPLICAS as u64)
        .await;

    clock.advance(Duration::from_secs(31 * 60));
    for manager in &managers {
        assert!(
            manager.handle(key.clone()).unwrap().cached().is_none(),
            "expired"
        );
    }
    let fingerprints = all_callers(&managers, &key).await;
    assert_ne!(fingerprints[0], first);
    one_token_for_all(&mock, &harness.store(), &key, &fingerprints, 1).await;
    for manager in &managers {
        manager.shutdown().await;
    }
}
