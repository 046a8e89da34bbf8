//! The [`StoreAdmin`] conformance suite: what an operator's tool relies on, as plain async
//! functions over an [`AdminHarness`], run by every store that implements it.

use std::sync::Arc;

use async_trait::async_trait;
use kigo_core::codec::{CorruptEntry, Keyring, SealingKey};
use kigo_core::store::{Resealed, StoreAdmin};
use kigo_core::{TokenKey, UserId};

use crate::conformance::{StoreHarness, commit_token, fresh_key, test_keyring};

/// A store under test for its operator's side: handles with other keyrings on the same state.
#[async_trait]
pub trait AdminHarness: StoreHarness {
    /// A handle on the same store (and namespace) that seals with `keyring`.
    async fn admin_with(&self, keyring: Keyring) -> Arc<dyn StoreAdmin>;

    /// The keyring [`StoreHarness::handle`]'s handles seal with.
    fn keyring(&self) -> Keyring;
}

/// `keyring` after rotating to `new`: `new` seals, the old current key still opens.
fn rotated_to(new: SealingKey, keyring: &Keyring) -> Keyring {
    Keyring::new(new)
        .with_older_key(keyring.current().clone())
        .unwrap_or_else(|error| panic!("{error}"))
}

fn user_key(partner: &TokenKey, user: &str) -> TokenKey {
    TokenKey::user(
        partner.partner_id().clone(),
        UserId::new(user).unwrap_or_else(|_| unreachable!()),
    )
}

/// Keys come back in pages, in the order of their storage IDs, each once; walking from the last
/// key of a page resumes where it stopped.
pub async fn keys_come_in_resumable_pages(harness: &dyn AdminHarness) {
    let partner = fresh_key();
    let keys: Vec<TokenKey> = (0..5)
        .map(|n| user_key(&partner, &format!("user-{n}")))
        .chain([partner.clone()])
        .collect();
    for key in &keys {
        commit_token(harness, key, "listed").await;
    }
    let admin = harness.admin_with(harness.keyring()).await;
    let mut seen = Vec::new();
    let mut after: Option<TokenKey> = None;
    loop {
        let page = admin.keys(after.as_ref(), 2).await.unwrap();
        assert!(page.len() <= 2);
        let Some(last) = page.last().cloned() else {
            break;
        };
        seen.extend(page);
        after = Some(last);
    }
    let ids: Vec<String> = seen.iter().map(TokenKey::storage_id).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(ids, sorted, "in order, each once");
    for key in &keys {
        assert!(seen.contains(key), "{key} listed");
    }
}

/// Rotating keys: entries sealed with the old key are sealed again under the new one, without a
/// creation; a handle holding only the new key then opens them; resealing again changes nothing.
pub async fn reseal_moves_entries_to_the_current_key(harness: &dyn AdminHarness) {
    let key = fresh_key();
    let token = commit_token(harness, &key, "rotated").await;
    let new = SealingKey::from_bytes(std::array::from_fn(|_| fastrand::u8(..)));
    let old_ids: Vec<_> = harness.keyring().key_ids().collect();
    let rotating = harness
        .admin_with(rotated_to(new.clone(), &harness.keyring()))
        .await;
    assert_eq!(rotating.reseal(&key).await.unwrap(), Resealed::Done);
    assert_eq!(rotating.reseal(&key).await.unwrap(), Resealed::Current);

    let only_new = harness.admin_with(Keyring::new(new)).await;
    let loaded = only_new.load(&key).await.unwrap();
    assert_eq!(
        loaded.token().map(|t| t.fingerprint()),
        Some(token.fingerprint())
    );
    let only_old = harness.admin_with(harness.keyring()).await;
    match only_old.load(&key).await.unwrap().entry {
        kigo_core::store::Entry::Corrupt(CorruptEntry::UnknownKey(_)) => {}
        other => panic!("the old keyring ({old_ids:?}) still opened it: {other:?}"),
    }
    assert_eq!(
        only_old.reseal(&fresh_key()).await.unwrap(),
        Resealed::Absent,
        "a key never written"
    );
}

/// An entry the keyring cannot open is reported, and left as it is.
pub async fn reseal_leaves_unreadable_entries_alone(harness: &dyn AdminHarness) {
    let key = fresh_key();
    commit_token(harness, &key, "foreign").await;
    let before = harness.read_raw(&key).await;
    let stranger = harness.admin_with(test_keyring()).await;
    assert!(matches!(
        stranger.reseal(&key).await.unwrap(),
        Resealed::Unreadable(CorruptEntry::UnknownKey(_))
    ));
    assert_eq!(harness.read_raw(&key).await, before);
}

/// The check reads the stored entries and counts those the keyring cannot open and those under
/// older keys.
pub async fn check_counts_what_the_keyring_opens(harness: &dyn AdminHarness) {
    let key = fresh_key();
    commit_token(harness, &key, "checked").await;
    let own = harness
        .admin_with(harness.keyring())
        .await
        .check()
        .await
        .unwrap();
    assert!(own.entries_read >= 1);
    assert!(own.permissions_ok, "{own:?}");
    let stranger = harness
        .admin_with(test_keyring())
        .await
        .check()
        .await
        .unwrap();
    assert!(stranger.entries_unreadable >= 1, "{stranger:?}");
    let new = SealingKey::from_bytes(std::array::from_fn(|_| fastrand::u8(..)));
    let rotating = harness
        .admin_with(rotated_to(new, &harness.keyring()))
        .await;
    let rotating = rotating.check().await.unwrap();
    assert!(rotating.entries_under_older_keys >= 1, "{rotating:?}");
}

/// Expired token material is removed by a purge; a second purge finds nothing.
pub async fn purge_removes_expired_material(harness: &dyn AdminHarness) {
    let key = fresh_key();
    let lifetime = harness.short_ttl();
    crate::conformance::commit_token_for(harness, &key, "purged", lifetime).await;
    harness.pass(lifetime * 2).await;
    let admin = harness.admin_with(harness.keyring()).await;
    admin.purge_expired().await.unwrap();
    assert_eq!(harness.read_raw(&key).await, None, "the bytes are gone");
}

crate::admin_conformance_tests!(@list [run_all]);

/// Makes one `#[tokio::test]` per admin conformance function, each on a harness from `$make` (an
/// expression that evaluates to a future of an [`AdminHarness`]). The list is written once, here.
#[macro_export]
macro_rules! admin_conformance_tests {
    ($make:expr) => {
        $crate::admin_conformance_tests!(@list [tests ($make)]);
    };
    (@list [$($mode:tt)*]) => {
        $crate::admin_conformance_tests!(@$($mode)*;
            keys_come_in_resumable_pages,
            reseal_moves_entries_to_the_current_key,
            reseal_leaves_unreadable_entries_alone,
            check_counts_what_the_keyring_opens,
            purge_removes_expired_material,
        );
    };
    (@tests ($make:expr); $($name:ident,)*) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let harness = $make.await;
                $crate::admin_conformance::$name(&harness).await;
            }
        )*
    };
    (@run_all; $($name:ident,)*) => {
        /// Runs every function of the admin suite in turn.
        pub async fn run_all(harness: &dyn AdminHarness) {
            $( $name(harness).await; )*
        }
    };
}
