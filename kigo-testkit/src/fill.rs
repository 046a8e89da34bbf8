//! Many user-level tokens committed to a store through its write path (`acquire_lease`, then a
//! fenced `commit`), as a fleet's replicas would commit them: for measuring what a store keeps
//! per key at a million users.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use kigo_core::store::MemoryStore;
//! use kigo_testkit::fill;
//!
//! let store = MemoryStore::new();
//! let keys = fill::user_keys(100);
//! fill::commit_all(&store, &keys, 8).await.unwrap();
//! # }
//! ```

use std::time::{Duration, SystemTime};

use futures_util::{TryStreamExt, stream};
use kigo_core::store::{CommitOutcome, HolderId, LeaseAttempt};
use kigo_core::{PartnerId, StoreError, Token, TokenKey, TokenSecret, TokenStore, UserId};

/// The length of every token's secret: as long as a real user-level token's (42 bytes). The
/// tokens carry no refresh token, so this is the whole of "the token itself".
pub const SECRET_LEN: usize = 42;

/// How long every token lives: a day, so that none expires while a million keys are filled
/// (that takes the better part of an hour on a small machine), and the table measured holds a
/// token for every key. (A real user-level token lives an hour; bytes per key do not depend on
/// it.)
pub const LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// The lease each commit is made under: far longer than one commit takes.
const LEASE_TTL: Duration = Duration::from_secs(60);

/// `count` user-level keys of one partner, with user IDs of a typical length (15 bytes).
pub fn user_keys(count: usize) -> Vec<TokenKey> {
    let partner = PartnerId::new("bench-partner").expect("a valid partner ID");
    (0..count)
        .map(|n| {
            let user = UserId::new(format!("user-{n:010}")).expect("a valid user ID");
            TokenKey::user(partner.clone(), user)
        })
        .collect()
}

/// A token for `key` issued now, with a secret of [`SECRET_LEN`] bytes of its own.
pub fn user_token(key: &TokenKey) -> Token {
    let secret = format!("kigo_user_{:032x}", fastrand::u128(..));
    debug_assert_eq!(secret.len(), SECRET_LEN, "{key}");
    let issued_at = SystemTime::now();
    Token::new(TokenSecret::new(secret), issued_at, issued_at + LIFETIME)
        .expect("a positive lifetime")
}

/// Why a key could not be filled.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FillError {
    /// The store failed.
    #[error("the store failed for {key}")]
    Store {
        /// The key being filled.
        key: TokenKey,
        /// What the store reported.
        #[source]
        source: StoreError,
    },
    /// Another holder had the key's lease: the store is not fresh, or someone else writes to it.
    #[error("the lease of {key} is held by another holder")]
    LeaseHeld {
        /// The key being filled.
        key: TokenKey,
    },
    /// The store rejected the commit made under a lease it had just granted.
    #[error("the commit for {key} was rejected")]
    Rejected {
        /// The key being filled.
        key: TokenKey,
    },
}

/// Commits a fresh [`user_token`] for every key of `keys` through `store`, `concurrency` keys
/// at a time: each one a lease acquired and a commit under it, as a replica makes them.
pub async fn commit_all(
    store: &dyn TokenStore,
    keys: &[TokenKey],
    concurrency: usize,
) -> Result<(), FillError> {
    stream::iter(keys.iter().map(Ok))
        .try_for_each_concurrent(concurrency.max(1), |key| commit_one(store, key))
        .await
}

async fn commit_one(store: &dyn TokenStore, key: &TokenKey) -> Result<(), FillError> {
    let failed = |source| FillError::Store {
        key: key.clone(),
        source,
    };
    let lease = match store
        .acquire_lease(key, &HolderId::random(), LEASE_TTL)
        .await
        .map_err(failed)?
    {
        LeaseAttempt::Acquired(lease) => lease,
        _ => return Err(FillError::LeaseHeld { key: key.clone() }),
    };
    match store
        .commit(&lease, &user_token(key))
        .await
        .map_err(failed)?
    {
        CommitOutcome::Committed => Ok(()),
        _ => Err(FillError::Rejected { key: key.clone() }),
    }
}

/// The variable listing the key counts a store benchmark fills (comma-separated, `_` allowed:
/// `10_000,1_000_000`).
pub const COUNTS_VAR: &str = "KIGO_BENCH_STORE_KEYS";

/// The key counts listed in [`COUNTS_VAR`], else `default`.
///
/// # Panics
///
/// If the variable holds anything but counts: a benchmark run with a typo should stop.
pub fn counts(default: &[usize]) -> Vec<usize> {
    let Ok(listed) = std::env::var(COUNTS_VAR) else {
        return default.to_vec();
    };
    listed
        .split(',')
        .map(|count| {
            count
                .trim()
                .replace('_', "")
                .parse()
                .unwrap_or_else(|_| panic!("{COUNTS_VAR}: `{count}` is not a count of keys"))
        })
        .collect()
}

/// Bytes per key: `bytes` spread over `keys`, 0 for no keys.
pub fn per_key(bytes: i64, keys: usize) -> f64 {
    if keys == 0 {
        return 0.0;
    }
    bytes as f64 / keys as f64
}

#[cfg(test)]
mod tests {
    use kigo_core::store::{Entry, MemoryStore};

    use super::*;

    #[tokio::test]
    async fn every_key_holds_a_token_of_its_own_after_a_fill() {
        let store = MemoryStore::new();
        let keys = user_keys(50);
        commit_all(&store, &keys, 4).await.unwrap();
        let mut secrets = std::collections::HashSet::new();
        for key in &keys {
            let Entry::Present(token) = store.load(key).await.unwrap().entry else {
                panic!("no token for {key}");
            };
            assert_eq!(token.secret().expose().len(), SECRET_LEN);
            assert!(token.refresh_token().is_none());
            assert_eq!(token.generation(), 1);
            secrets.insert(token.fingerprint());
        }
        assert_eq!(secrets.len(), keys.len());
    }

    #[tokio::test]
    async fn a_key_whose_lease_is_held_is_reported() {
        let store = MemoryStore::new();
        let keys = user_keys(3);
        store
            .acquire_lease(&keys[1], &HolderId::random(), LEASE_TTL)
            .await
            .unwrap();
        let error = commit_all(&store, &keys, 1).await.unwrap_err();
        assert!(
            matches!(&error, FillError::LeaseHeld { key } if *key == keys[1]),
            "{error}"
        );
    }
}
