//! What an operator does to the store, on every database: who holds a lease, and the check of
//! its setup.

use std::time::Duration;

use kigo_core::TokenStore;
use kigo_core::store::{HolderId, StoreAdmin};

use super::fleet::{acquire, fresh_key};
use super::harness::SqlHarness;

/// The holder of a live lease is named with the time left on it (by the database's clock);
/// once the lease is released, or for a key never claimed, nobody is.
pub(crate) async fn lease_holder_names_the_holder_and_the_time_left(harness: &SqlHarness) {
    let store = harness.store().await;
    let key = fresh_key();
    assert_eq!(store.lease_holder(&key).await.unwrap(), None);
    let lease = acquire(&store, &key).await;
    let (holder, left) = store.lease_holder(&key).await.unwrap().expect("a holder");
    assert_eq!(&holder, lease.holder());
    let left = left.expect("the time left");
    assert!(
        left <= Duration::from_secs(10) && left > Duration::from_secs(5),
        "{left:?} left of a 10 s lease"
    );
    let other = harness.store().await;
    let seen = other
        .lease_holder(&key)
        .await
        .unwrap()
        .map(|(holder, _)| holder);
    assert_eq!(
        seen.as_ref(),
        Some(lease.holder()),
        "another replica sees it"
    );
    store.release_lease(&lease).await.unwrap();
    assert_eq!(store.lease_holder(&key).await.unwrap(), None);
    let never: Option<HolderId> = None;
    assert_eq!(
        store
            .lease_holder(&fresh_key())
            .await
            .unwrap()
            .map(|(holder, _)| holder),
        never
    );
}

/// The check names the database and table (no password), says the connection is local, finds
/// the database's clock within a second of this machine's, reads the schema version the
/// migrations left, finds every statement allowed, and leaves no row of its own behind. On a
/// table never migrated it says to run the migrations.
pub(crate) async fn check_reports_the_setup(harness: &SqlHarness) {
    let store = harness.store().await;
    let rows = harness.rows().await;
    let check = store.check().await.unwrap();
    let kind = store.kind();
    assert!(
        check.store.starts_with(&format!("{kind:?}").to_lowercase()),
        "{check:?}"
    );
    assert!(check.store.ends_with("(table kigo_tokens)"), "{check:?}");
    assert_eq!(check.transport, "local");
    let offset = check.clock_offset_ms.expect("a clock offset");
    assert!(offset.abs() < 1000, "{offset} ms");
    let shipped = if kind == kigo_store_sql::BackendKind::Postgres {
        "5"
    } else {
        "3"
    };
    assert_eq!(check.schema.as_deref(), Some(shipped));
    assert!(check.permissions_ok, "{check:?}");
    assert_eq!(check.permission_problem, None);
    assert_eq!(harness.rows().await, rows, "the check's own row is gone");

    let unmigrated = harness
        .store_with(harness.options().table("never_migrated"))
        .await;
    let check = unmigrated.check().await.unwrap();
    assert_eq!(check.schema.as_deref(), Some("none: run the migrations"));
    assert!(!check.permissions_ok);
}
