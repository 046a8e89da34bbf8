//! [`StoreAdmin`] for Redis: what an operator's tool does to the store (the `kigo` tool works
//! through it).

use std::collections::BTreeMap;

use async_trait::async_trait;
use futures_util::{StreamExt, TryStreamExt, stream};
use kigo_core::codec::CorruptEntry;
use kigo_core::store::{KeyPage, Resealed, StoreAdmin, StoreCheck};
use kigo_core::{StoreError, TokenKey};

use super::{RedisStore, StoredValue, settle};
use crate::keys::{key_of_record, record_pattern};
use crate::scripts;

/// How many keys a walk over every key lists at a time: each page costs a `SCAN` of every key
/// under the prefix, so few large pages (a few megabytes of keys each).
const PAGE: usize = 100_000;
/// How many keys a walk visits at once.
const CONCURRENT_VISITS: usize = 16;

/// Why a walk over every key stopped.
pub(super) enum WalkError {
    /// Listing a page of keys failed.
    Listing(StoreError),
    /// Visiting a key failed.
    Visit(StoreError),
}

impl From<WalkError> for StoreError {
    fn from(error: WalkError) -> Self {
        match error {
            WalkError::Listing(error) | WalkError::Visit(error) => error,
        }
    }
}

/// How the entry of a key stands with the store's keyring.
pub(super) enum Standing {
    /// No token stored (none committed, expired, or invalidated).
    Absent,
    /// Sealed with the current key (or plaintext, in a store that writes plaintext).
    Current,
    /// Sealed with an older key of the keyring: `resealed` under the current one, from the
    /// entry `read` at `generation`.
    Older {
        read: Vec<u8>,
        generation: u64,
        resealed: Vec<u8>,
    },
    /// It does not open with this keyring, or is corrupt.
    Unreadable(CorruptEntry),
}

impl RedisStore {
    /// Reads the entry of `key` and judges it.
    pub(super) async fn standing(&self, key: &TokenKey) -> Result<Standing, StoreError> {
        let stored = self.read(key).await?;
        let read = match stored.value {
            StoredValue::Absent => return Ok(Standing::Absent),
            StoredValue::Foreign => return Ok(Standing::Unreadable(CorruptEntry::Malformed)),
            StoredValue::Entry(read) => read,
        };
        let codec = &self.inner.codec;
        // A plaintext codec has nothing to reseal, but must still read the entry to judge it.
        let judged = if codec.is_sealed() {
            codec.reseal(key, &read, stored.generation)
        } else {
            codec.decode(key, &read, stored.generation).map(|_| None)
        };
        Ok(match judged {
            Ok(None) => Standing::Current,
            Ok(Some(resealed)) => Standing::Older {
                read,
                generation: stored.generation,
                resealed,
            },
            Err(corrupt) => Standing::Unreadable(corrupt),
        })
    }

    /// Runs `visit` on every key with a record, through [`StoreAdmin::keys`] in pages of
    /// [`PAGE`], [`CONCURRENT_VISITS`] at a time, and gives each result to `tally`.
    pub(super) async fn walk<T, F: Future<Output = Result<T, StoreError>>>(
        &self,
        visit: impl Fn(TokenKey) -> F,
        mut tally: impl FnMut(T),
    ) -> Result<(), WalkError> {
        let mut after = None;
        loop {
            let page = self
                .keys(after.as_ref(), PAGE)
                .await
                .map_err(WalkError::Listing)?;
            let Some(last) = page.last().cloned() else {
                return Ok(());
            };
            let results: Vec<T> = stream::iter(page)
                .map(&visit)
                .buffer_unordered(CONCURRENT_VISITS)
                .try_collect()
                .await
                .map_err(WalkError::Visit)?;
            results.into_iter().for_each(&mut tally);
            after = Some(last);
        }
    }

    /// Writes `resealed` over the entry of `key` if it is still `read` at `generation`; whether
    /// it was written.
    pub(super) async fn write_resealed(
        &self,
        key: &TokenKey,
        read: &[u8],
        generation: u64,
        resealed: &[u8],
    ) -> Result<bool, StoreError> {
        let mut invocation = self.invocation(&scripts::RESEAL, key);
        invocation.arg(read).arg(generation).arg(resealed);
        let written: i64 = self.run(&invocation).await?;
        Ok(written == 1)
    }
}

#[async_trait]
impl StoreAdmin for RedisStore {
    /// Every token key with a record under the prefix (see [`KeyNames`](crate::KeyNames)).
    ///
    /// Redis keeps no order, so each page `SCAN`s every record under the prefix (on every
    /// master of a Cluster) and keeps the `limit` smallest storage IDs after `after`: a page
    /// costs time in proportion to all the keys under the prefix, and memory in proportion to
    /// `limit`. Walking N keys in pages of P takes N/P scans of N keys: for a million keys, ask
    /// for pages of 10 000 or more.
    async fn keys(&self, after: Option<&TokenKey>, limit: usize) -> Result<KeyPage, StoreError> {
        if limit == 0 {
            return Ok(KeyPage::new());
        }
        let after = &after.map(TokenKey::storage_id);
        let prefix = &self.inner.prefix;
        let pattern = &record_pattern(prefix);
        let connection = &self.inner.connection;
        let page = settle(move || async move {
            let mut page = BTreeMap::new();
            connection
                .scan(pattern, |name| {
                    let Some(key) = key_of_record(prefix, name) else {
                        return;
                    };
                    let id = key.storage_id();
                    if after.as_ref().is_none_or(|after| id > *after) {
                        page.insert(id, key);
                        if page.len() > limit {
                            page.pop_last();
                        }
                    }
                })
                .await?;
            Ok(page)
        })
        .await?;
        Ok(page.into_values().collect())
    }

    /// Reads the entry and, if it is sealed with an older key, writes it back sealed with the
    /// current one by a script that first checks it is unchanged (same bytes, same generation),
    /// keeping the token's expiry and the record's TTL (`SET … KEEPTTL`). Otherwise [`Resealed::Changed`]: the replica that
    /// committed meanwhile sealed with its own current key.
    async fn reseal(&self, key: &TokenKey) -> Result<Resealed, StoreError> {
        Ok(match self.standing(key).await? {
            Standing::Absent => Resealed::Absent,
            Standing::Current => Resealed::Current,
            Standing::Unreadable(corrupt) => Resealed::Unreadable(corrupt),
            Standing::Older {
                read,
                generation,
                resealed,
            } => {
                let written = self
                    .write_resealed(key, &read, generation, &resealed)
                    .await?;
                if written {
                    Resealed::Done
                } else {
                    Resealed::Changed
                }
            }
        })
    }

    /// Removes the token of every record past its expiry by Redis's clock (a script per key
    /// that keeps the generation and the fence), walking every key through
    /// [`StoreAdmin::keys`]; how many it removed. The records themselves expire by their TTL
    /// (see the crate docs on the prefix).
    async fn purge_expired(&self) -> Result<u64, StoreError> {
        let mut purged = 0;
        self.walk(
            |key| async move {
                let invocation = self.invocation(&scripts::PURGE, &key);
                self.run::<i64>(&invocation).await
            },
            |removed| purged += u64::from(removed == 1),
        )
        .await?;
        Ok(purged)
    }

    /// Where the store connects (no password) and how, Redis's clock against this machine's
    /// (`TIME`, half the round trip taken off), the permissions of its user (every script the
    /// manager runs, the subscription and the tool's own commands, tried on a key of the check's
    /// own that it deletes afterwards), and how the stored entries stand with this keyring
    /// (each read once, through [`StoreAdmin::keys`]). A command the user may not run
    /// (`NOPERM`) is reported in [`StoreCheck::permission_problem`], not as an error.
    async fn check(&self) -> Result<StoreCheck, StoreError> {
        self.check_setup().await
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use kigo_core::codec::{Keyring, SealingKey};
    use kigo_core::store::HolderId;
    use kigo_core::store::LeaseAttempt;
    use kigo_core::{Token, TokenSecret, TokenStore};
    use kigo_test_services::redis::redis as shared_redis;
    use kigo_testkit::conformance::fresh_key;

    use super::*;

    async fn commit(store: &RedisStore, key: &TokenKey) {
        let attempt = store
            .acquire_lease(key, &HolderId::random(), Duration::from_secs(30))
            .await
            .unwrap();
        let LeaseAttempt::Acquired(lease) = attempt else {
            panic!("{attempt:?}");
        };
        let now = SystemTime::now();
        let token = Token::new(
            TokenSecret::new(format!("t-{}", HolderId::random())),
            now,
            now + Duration::from_secs(1800),
        )
        .unwrap();
        store.commit(&lease, &token).await.unwrap();
    }

    /// The script behind `reseal` writes only over the entry it was given, at the generation it
    /// was given: a commit between the read and the write (a new entry and generation) leaves
    /// the write undone. Run twice, it reports the write both times; the token keeps its
    /// expiry and the record its TTL.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_reseal_script_writes_only_over_the_entry_it_read() {
        let service = shared_redis().await.unwrap();
        let (old, new) = (
            SealingKey::from_bytes([1; 32]),
            SealingKey::from_bytes([2; 32]),
        );
        let build = |keyring| {
            RedisStore::builder()
                .url(service.url())
                .prefix(service.prefix())
                .keyring(keyring)
                .allow_insecure_transport()
                .build()
                .unwrap()
        };
        let before = build(Keyring::new(old.clone()));
        let rotating = build(Keyring::new(new).with_older_key(old).unwrap());
        let key = fresh_key();
        let record = rotating.key_names(&key).record;
        let mut raw = service
            .client()
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let mut get = async |command: &str| -> redis::Value {
            redis::cmd(command)
                .arg(&record)
                .query_async(&mut raw)
                .await
                .unwrap()
        };
        let older = async || match rotating.standing(&key).await.unwrap() {
            Standing::Older {
                read,
                generation,
                resealed,
            } => (read, generation, resealed),
            _ => panic!("not under an older key"),
        };

        commit(&before, &key).await;
        let (read, generation, resealed) = older().await;
        commit(&before, &key).await;
        let committed = get("GET").await;
        let written = rotating
            .write_resealed(&key, &read, generation, &resealed)
            .await
            .unwrap();
        assert!(!written, "a commit came between");
        assert_eq!(get("GET").await, committed, "and stays");

        let (read, generation, resealed) = older().await;
        let at_another_generation = rotating
            .write_resealed(&key, &read, generation + 1, &resealed)
            .await
            .unwrap();
        assert!(!at_another_generation);
        let expiry = get("PEXPIRETIME").await;
        for run in ["first", "second"] {
            let written = rotating
                .write_resealed(&key, &read, generation, &resealed)
                .await
                .unwrap();
            assert!(written, "{run} run");
        }
        let redis::Value::BulkString(stored) = get("GET").await else {
            panic!("no record");
        };
        assert!(stored.ends_with(&resealed), "the resealed entry");
        assert_eq!(get("PEXPIRETIME").await, expiry, "the expiry is kept");
        assert!(matches!(
            rotating.standing(&key).await.unwrap(),
            Standing::Current
        ));
    }
}
