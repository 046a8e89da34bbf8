//! Property 13: a status per key and per manager, and a health answer, tell an operator where a
//! token came from, when it renews, and what fails; serialisable, never with a token.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{World, partner, warm};
use kigo_core::manager::TokenOrigin;
use kigo_core::store::{HolderId, LeaseAttempt};
use kigo_core::{StoreFailurePolicy, TokenStore};
use kigo_testkit::FaultyStore;
use kigo_testkit::logs::assert_no_secret;

#[tokio::test(start_paused = true)]
async fn status_tells_where_a_token_came_from_and_when_it_renews() {
    let world = World::new();
    let (here, there) = (world.manager(170), world.manager(171));
    let handle = here.handle(partner("acme")).unwrap();
    warm(&handle).await;
    let secret = handle.cached().unwrap().secret().expose().to_owned();
    there.token(&partner("acme")).await.unwrap();

    let status = handle.status();
    let token = status.token.as_ref().expect("a token");
    assert_eq!(token.origin, TokenOrigin::CreatedHere);
    assert!(token.usable);
    assert!(token.issued_at_ms < token.refresh_at_ms && token.refresh_at_ms < token.expires_at_ms);
    assert_eq!(
        token.fingerprint,
        handle.cached().unwrap().fingerprint().to_string()
    );
    assert_eq!(status.last_refresh_outcome, Some("ok"));
    assert!(!status.degraded);
    let adopted = there.status().partner_keys[0].token.clone().unwrap();
    assert_eq!(adopted.origin, TokenOrigin::ReadFromStore);
    assert_eq!(adopted.generation, token.generation);

    let health = here.health();
    assert!(health.live && health.ready, "{health:?}");
    let json = serde_json::to_string(&(here.status(), here.health(), handle.status())).unwrap();
    assert!(json.contains("\"origin\":\"created_here\""), "{json}");
    assert_no_secret(&json, &[("the token", &secret)]);
}

#[tokio::test(start_paused = true)]
async fn a_failing_store_past_the_stale_point_makes_a_replica_degraded_and_not_ready() {
    let world = World::new();
    let store = FaultyStore::new(Arc::new(world.store.clone()));
    let manager = world
        .builder_on(172, Arc::new(store.clone()))
        .store_failure(StoreFailurePolicy::FailClosed)
        .build()
        .unwrap();
    let handle = manager.handle(partner("acme")).unwrap();
    warm(&handle).await;
    store.set_failing(true);
    world
        .run_for(Duration::from_secs(30 * 60), Duration::from_secs(30))
        .await;
    assert!(handle.token().await.is_err());

    let status = handle.status();
    assert!(status.degraded && !status.store_reachable, "{status:?}");
    assert!(
        status
            .store_error
            .as_deref()
            .is_some_and(|error| error.contains("unavailable"))
    );
    let health = manager.health();
    assert!(health.live && !health.ready, "{health:?}");
    assert_eq!(health.reasons.len(), 1);
    assert!(
        health.reasons[0].starts_with("partner acme: store:"),
        "{health:?}"
    );

    manager.shutdown().await;
    assert!(!manager.health().live);
}

#[tokio::test(start_paused = true)]
async fn inspect_reads_the_stored_generation_and_the_lease_holder() {
    let world = World::new();
    let manager = world.manager(173);
    let handle = manager.handle(partner("acme")).unwrap();
    let fingerprint = warm(&handle).await;
    let stored = manager.inspect(&partner("acme")).await.unwrap();
    assert_eq!(stored.entry, "present");
    assert_eq!(stored.fingerprint, Some(fingerprint.to_string()));
    assert_eq!(stored.generation, Some(1));
    assert_eq!(stored.lease_holder, None);

    let holder = HolderId::new("replica-b-7");
    let lease = world
        .store
        .acquire_lease(&partner("acme"), &holder, Duration::from_secs(30))
        .await
        .unwrap();
    assert!(matches!(lease, LeaseAttempt::Acquired(_)));
    let stored = manager.inspect(&partner("acme")).await.unwrap();
    assert_eq!(stored.lease_holder.as_deref(), Some("replica-b-7"));
    assert_eq!(stored.lease_remaining_ms, Some(30_000));
}
