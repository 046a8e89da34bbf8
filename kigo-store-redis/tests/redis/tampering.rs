//! Write access to Redis used against the fleet: the partner-level entry copied into a user's
//! place (a front end would receive the partner-level token), and an older partner-level entry
//! written back over the current one (a token the API already rejected). Sealed entries are bound
//! to their key and generation: neither reaches a caller, and the fleet replaces both.

use std::sync::Arc;
use std::time::Duration;

use kigo_core::{Fingerprint, KeyScope, TokenKey, TokenManager, TokenStore, UserId};
use kigo_testkit::FakeSource;
use kigo_testkit::conformance::{StoreHarness, fresh_key};

use super::support::{RedisHarness, replica};

async fn token_of(manager: &TokenManager, key: &TokenKey) -> Fingerprint {
    let token = manager.token(key).await;
    token
        .unwrap_or_else(|error| panic!("{key}: {error}"))
        .fingerprint()
}

/// How many tokens `source` created for `key`.
fn creations(source: &FakeSource, key: &TokenKey) -> usize {
    source
        .calls()
        .iter()
        .filter(|call| call.key == *key)
        .count()
}

async fn stored(harness: &RedisHarness, key: &TokenKey) -> Option<Fingerprint> {
    let snapshot = harness.store().load(key).await.unwrap();
    snapshot.token().map(|token| token.fingerprint())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_moved_or_replayed_through_redis_never_reach_a_caller() {
    let harness = RedisHarness::standalone().await;
    let partner_key = fresh_key();
    let partner = partner_key.partner_id().clone();
    let user_key = TokenKey::user(partner.clone(), UserId::new("mallory").unwrap());
    // One source for both levels, so that no two tokens are alike.
    let source = FakeSource::new();
    let replica_of = |scope: KeyScope, name: &str| {
        replica(&source, Arc::new(harness.store()), name)
            .scope(scope)
            // The 401s below come right after their token's creation.
            .min_token_age(Duration::ZERO)
            .build()
            .unwrap()
    };
    let partners = |name: &str| replica_of(KeyScope::Partner(partner.clone()), name);
    let users = |name: &str| replica_of(KeyScope::UsersOf(partner.clone()), name);
    let (partner_replica, user_replica) = (partners("partners"), users("users"));

    let older = token_of(&partner_replica, &partner_key).await;
    let older_entry = harness.read_raw(&partner_key).await.unwrap();
    let user_token = token_of(&user_replica, &user_key).await;
    // The API rejects the partner-level token: the fleet renews it.
    assert!(partner_replica.invalidate(&partner_key, &older));
    let current = token_of(&partner_replica, &partner_key).await;
    let current_entry = harness.read_raw(&partner_key).await.unwrap();
    let partner_tokens = [older, current];

    harness.write_raw(&user_key, &current_entry).await;
    harness.write_raw(&partner_key, &older_entry).await;

    // Replicas starting now read the store: they replace both entries.
    let (new_partner_replica, new_user_replica) = (partners("new-partners"), users("new-users"));
    let new_user_token = token_of(&new_user_replica, &user_key).await;
    assert!(
        !partner_tokens.contains(&new_user_token),
        "a user caller got the partner-level token"
    );
    assert_eq!(creations(&source, &user_key), 2);
    let new_partner_token = token_of(&new_partner_replica, &partner_key).await;
    assert!(
        !partner_tokens.contains(&new_partner_token),
        "a partner caller got the replayed (or the moved) token"
    );
    assert_eq!(creations(&source, &partner_key), 3);
    assert_eq!(stored(&harness, &user_key).await, Some(new_user_token));
    assert_eq!(
        stored(&harness, &partner_key).await,
        Some(new_partner_token)
    );

    // The running user replica serves its own token or the replacement, which it takes from
    // the change notice or, at the latest, after a 401 on its own.
    let running = token_of(&user_replica, &user_key).await;
    assert!([user_token, new_user_token].contains(&running));
    user_replica.invalidate(&user_key, &user_token);
    assert_eq!(token_of(&user_replica, &user_key).await, new_user_token);
    assert_eq!(creations(&source, &user_key), 2);

    for manager in [
        partner_replica,
        user_replica,
        new_partner_replica,
        new_user_replica,
    ] {
        manager.shutdown().await;
    }
}
