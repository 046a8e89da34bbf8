//! Tokens sealed at rest: Redis holds no readable token, and a replica with another codec sees a
//! corrupt entry, never a token.

use std::time::Duration;

use kigo_core::TokenStore;
use kigo_core::codec::{CorruptEntry, EncryptionKey, EntryCodec};
use kigo_core::store::{CommitOutcome, Entry};
use kigo_store_redis::redis;
use kigo_testkit::conformance::fresh_key;

use super::support::{RedisHarness, acquire, token_valid_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_tokens_are_unreadable_in_redis_and_refused_by_another_codec() {
    let harness = RedisHarness::standalone().await;
    let sealing = EntryCodec::encrypted(&EncryptionKey::from_bytes([42; 32]));
    let store = harness.builder().codec(sealing.clone()).build().unwrap();
    let key = fresh_key();
    let lease = acquire(&store, &key, Duration::from_secs(30)).await;
    let token = token_valid_for("sealed-secret", Duration::from_secs(1800));
    assert_eq!(
        store.commit(&lease, &token).await.unwrap(),
        CommitOutcome::Committed
    );

    let raw: String = harness
        .raw(redis::cmd("GET").arg(store.key_names(&key).token))
        .await;
    // On failure, the stored value's length only: it could hold the token.
    assert!(
        !raw.contains(token.secret().expose()),
        "the token is readable in the {}-byte stored value",
        raw.len()
    );
    let peer = harness.builder().codec(sealing).build().unwrap();
    let loaded = peer.load(&key).await.unwrap();
    assert_eq!(loaded.token().unwrap().fingerprint(), token.fingerprint());

    let other_key = EntryCodec::encrypted(&EncryptionKey::from_bytes([7; 32]));
    for codec in [EntryCodec::plain(), other_key] {
        let stranger = harness.builder().codec(codec).build().unwrap();
        match stranger.load(&key).await.unwrap().entry {
            Entry::Corrupt(CorruptEntry::Unauthentic | CorruptEntry::EncryptionMismatch { .. }) => {
            }
            other => panic!("a store with another codec loaded {other:?}"),
        }
    }
}
