//! Token material that can no longer be used leaves the rows: a token that expired by the
//! database's clock is cleared (its entry, and the fingerprint earlier versions wrote) by the
//! claim of its row, by the commits of other keys (each sweeps the next batch of rows in key
//! order) and by `SqlStore::purge_expired`; the row keeps its generation and fence, so the key's next lease is
//! still fenced above every earlier one.

use kigo_core::store::{CommitOutcome, Entry, InvalidateOutcome};
use kigo_core::{PartnerId, TokenKey, TokenStore};

use super::fleet::{acquire, commit_token, fresh_key, token};
use super::harness::{RawRow, SqlHarness};

/// How many rows a commit sweeps for expired tokens (the README's number).
const BATCH: usize = 100;

/// Commits a token for each of `count` fresh keys; the keys.
async fn committed_keys(store: &dyn TokenStore, count: usize) -> Vec<TokenKey> {
    let mut keys = Vec::with_capacity(count);
    for _ in 0..count {
        let key = fresh_key();
        commit_token(store, &key, &token("expiring")).await;
        keys.push(key);
    }
    keys
}

/// Asserts that `row` holds no token material and kept `generation`.
fn cleared(row: &RawRow, generation: i64) {
    // Lengths only: the bytes are the token.
    let left = |bytes: &Option<Vec<u8>>| bytes.as_ref().map(Vec::len);
    assert_eq!(left(&row.entry), None, "entry bytes left in the row");
    assert_eq!(
        left(&row.fingerprint),
        None,
        "fingerprint bytes left in the row"
    );
    assert_eq!(row.generation, generation, "the generation changed");
}

/// The next lease of `key` is fenced above `generation`.
async fn next_fence_is_above(store: &dyn TokenStore, key: &TokenKey, generation: i64) {
    let lease = acquire(store, key).await;
    assert!(
        i64::try_from(lease.fence()).unwrap() > generation,
        "fence {} after generation {generation}",
        lease.fence()
    );
}

/// The claim that takes the lease of a row whose token expired clears that token in the same
/// statement, keeping the generation; its fence is above it, and its commit stores a token again.
pub(crate) async fn a_claim_clears_the_expired_token_of_its_row(harness: &SqlHarness) {
    let store = harness.store().await;
    let key = fresh_key();
    commit_token(&store, &key, &token("expiring")).await;
    harness.expire(std::slice::from_ref(&key)).await;
    let before = harness.raw_row(&key).await;
    assert!(before.entry.is_some());
    assert!(
        before.fingerprint.is_none(),
        "a commit writes no fingerprint"
    );

    let lease = acquire(&store, &key).await;
    let after = harness.raw_row(&key).await;
    cleared(&after, before.generation);
    assert_eq!(after.fence, i64::try_from(lease.fence()).unwrap());
    assert!(after.fence > after.generation);
    let next = token("next");
    assert_eq!(
        store.commit(&lease, &next).await.unwrap(),
        CommitOutcome::Committed
    );
    let stored = store.load(&key).await.unwrap();
    assert_eq!(
        stored.token().map(kigo_core::Token::fingerprint),
        Some(next.fingerprint())
    );
}

/// A commit sweeps the next batch of rows, in the byte order of their keys, for expired tokens:
/// with more rows than that, one commit leaves the rest to the next, which goes on where the
/// first stopped; after the last row the sweep starts over. Generations stay, fences grow.
pub(crate) async fn commits_sweep_the_table_a_batch_of_rows_at_a_time(harness: &SqlHarness) {
    let keys = committed_keys(&harness.store().await, BATCH + 20).await;
    harness.expire(&keys).await;
    let generation = harness.raw_row(&keys[0]).await.generation;
    // A store of its own: its sweep starts at the first key.
    let store = harness.store().await;
    // Before every `fleet-` key in byte order: the first row.
    let first_live = TokenKey::partner(PartnerId::new("a-first").unwrap());
    let mut rows: Vec<String> = keys.iter().map(TokenKey::storage_id).collect();
    rows.push(first_live.storage_id());
    rows.sort_unstable();
    let first_batch = &rows[..BATCH];
    let (swept, left): (Vec<_>, Vec<_>) = keys
        .iter()
        .partition(|key| first_batch.contains(&key.storage_id()));

    commit_token(&store, &first_live, &token("live")).await;
    for key in &swept {
        cleared(&harness.raw_row(key).await, generation);
    }
    assert_eq!(
        harness.rows_with_token_material().await,
        i64::try_from(left.len() + 1).unwrap(),
        "the expired rows after the first batch, and the live row"
    );
    commit_token(&store, &fresh_key(), &token("live")).await;
    assert_eq!(harness.rows_with_token_material().await, 2, "the live rows");
    for key in &left {
        cleared(&harness.raw_row(key).await, generation);
    }

    // The second sweep reached the last row: the third starts over, at the first row.
    harness.expire(std::slice::from_ref(&first_live)).await;
    commit_token(&store, &fresh_key(), &token("live")).await;
    assert_eq!(harness.rows_with_token_material().await, 2, "the live rows");
    next_fence_is_above(&store, &keys[0], generation).await;
}

/// The migrations leave the table one index, its primary key: expired tokens are found by
/// walking it, and no index on expiry makes every commit rewrite index entries (on PostgreSQL,
/// a commit is then an update in place on its page).
pub(crate) async fn the_primary_key_is_the_only_index(harness: &SqlHarness) {
    assert_eq!(harness.indexes().await, 1);
}

/// `purge_expired` clears every expired token, batch after batch, and says how many; live
/// tokens stay, and a second purge finds nothing. Generations stay, fences grow.
pub(crate) async fn purge_expired_clears_every_expired_token(harness: &SqlHarness) {
    let store = harness.store().await;
    let live = fresh_key();
    let live_token = token("live");
    commit_token(&store, &live, &live_token).await;
    let keys = committed_keys(&store, 2 * BATCH + 30).await;
    harness.expire(&keys).await;
    let generation = harness.raw_row(&keys[0]).await.generation;

    assert_eq!(store.purge_expired().await.unwrap(), keys.len() as u64);
    assert_eq!(harness.rows_with_token_material().await, 1, "the live row");
    for key in &keys {
        cleared(&harness.raw_row(key).await, generation);
        assert!(matches!(
            store.load(key).await.unwrap().entry,
            Entry::Absent
        ));
    }
    let loaded = store.load(&live).await.unwrap();
    assert_eq!(
        loaded.token().map(kigo_core::Token::fingerprint),
        Some(live_token.fingerprint())
    );
    assert_eq!(store.purge_expired().await.unwrap(), 0);
    next_fence_is_above(&store, &keys[0], generation).await;
}

/// An invalidated token (after a 401) leaves no bytes in its row either.
pub(crate) async fn invalidate_clears_the_entry_bytes(harness: &SqlHarness) {
    let store = harness.store().await;
    let key = fresh_key();
    let rejected = token("rejected");
    commit_token(&store, &key, &rejected).await;
    let generation = harness.raw_row(&key).await.generation;
    assert_eq!(
        store
            .invalidate(&key, &rejected.fingerprint())
            .await
            .unwrap(),
        InvalidateOutcome::Removed
    );
    cleared(&harness.raw_row(&key).await, generation);
    next_fence_is_above(&store, &key, generation).await;
}
