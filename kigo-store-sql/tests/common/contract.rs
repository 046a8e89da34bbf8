//! Store-contract scenarios this crate's stores must meet and the conformance suite of
//! kigo-testkit does not check yet. They take any [`StoreHarness`], so they can move there as
//! they are.

use std::time::Duration;

use kigo_core::store::{CommitOutcome, HolderId, Lease, LeaseAttempt};
use kigo_core::{Token, TokenSecret, TokenStore};
use kigo_testkit::conformance::{StoreHarness, fresh_key};

const LONG_TTL: Duration = Duration::from_secs(60);

/// Takes the lease of `key` for `holder`, which must be free.
async fn acquire_as(
    store: &dyn TokenStore,
    key: &kigo_core::TokenKey,
    holder: &HolderId,
    ttl: Duration,
) -> Lease {
    match store.acquire_lease(key, holder, ttl).await.unwrap() {
        LeaseAttempt::Acquired(lease) => lease,
        LeaseAttempt::Held { .. } => panic!("the lease was held"),
    }
}

/// A holder that claims again after its lease lapsed (a refresh keeps its holder ID across
/// attempts) holds a newer lease under the same ID: the late release of the earlier lease
/// leaves the newer one held, and the newer lease still commits.
pub(crate) async fn late_release_of_an_earlier_lease_by_the_same_holder_keeps_the_newer_one(
    harness: &dyn StoreHarness,
) {
    let key = fresh_key();
    let store = harness.handle().await;
    let holder = HolderId::random();
    let ttl = harness.short_ttl();
    let earlier = acquire_as(store.as_ref(), &key, &holder, ttl).await;
    harness.pass(ttl + ttl / 2).await;
    let newer = acquire_as(store.as_ref(), &key, &holder, LONG_TTL).await;
    assert!(newer.fence() > earlier.fence());

    store.release_lease(&earlier).await.unwrap();
    let other = store
        .acquire_lease(&key, &HolderId::random(), LONG_TTL)
        .await
        .unwrap();
    assert!(
        matches!(other, LeaseAttempt::Held { .. }),
        "the earlier lease's release freed the newer one: {other:?}"
    );
    let now = harness.now();
    let token = Token::new(
        TokenSecret::new("newer"),
        now,
        now + Duration::from_secs(1800),
    )
    .unwrap();
    assert_eq!(
        store.commit(&newer, &token).await.unwrap(),
        CommitOutcome::Committed
    );
}
