//! What an operator does to a [`SqlStore`] ([`StoreAdmin`]): walk its keys, seal its entries
//! again under the current key, clear expired tokens, migrate, and check its setup.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use kigo_core::store::{HolderId, KeyPage, Resealed, StoreAdmin, StoreCheck};
use kigo_core::{PartnerId, StoreError, Token, TokenKey, TokenSecret};

use super::{Failure, SqlStore};
use crate::error::Class;
use crate::row::{NewEntry, epoch_micros, micros};

/// How many rows one statement of a walk over the table reads.
const WALK_PAGE: usize = 500;

#[async_trait]
impl StoreAdmin for SqlStore {
    /// Keys in the byte order of their storage IDs; rows whose key is not one (written by
    /// someone else) are passed over.
    async fn keys(&self, after: Option<&TokenKey>, limit: usize) -> Result<KeyPage, StoreError> {
        let mut after = after.map(TokenKey::storage_id).unwrap_or_default();
        let mut keys = Vec::new();
        while keys.len() < limit {
            let want = limit - keys.len();
            let rows = self.page(&after, want).await?;
            let Some((last, _)) = rows.last() else {
                break;
            };
            after.clone_from(last);
            let full = rows.len() == want;
            keys.extend(
                rows.iter()
                    .filter_map(|(id, _)| TokenKey::from_storage_id(id)),
            );
            if !full {
                break;
            }
        }
        Ok(keys)
    }

    /// Writes the entry back sealed under the current key with one `UPDATE` that changes the
    /// row only if it still holds the entry and generation read: a commit in between wins.
    async fn reseal(&self, key: &TokenKey) -> Result<Resealed, StoreError> {
        let id = key.storage_id();
        let backend = &self.shared.backend;
        let Some(row) = self.run(|| backend.load(&id)).await? else {
            return Ok(Resealed::Absent);
        };
        let Some(entry) = row.entry.as_deref() else {
            return Ok(Resealed::Absent);
        };
        let resealed = match row.resealed(key, &self.shared.codec) {
            Ok(Some(resealed)) => resealed,
            Ok(None) => return Ok(Resealed::Current),
            Err(corrupt) => return Ok(Resealed::Unreadable(corrupt)),
        };
        let generation = row.generation;
        let written = self
            .run(|| backend.reseal(&id, generation, entry, &resealed))
            .await?;
        Ok(if written {
            Resealed::Done
        } else {
            Resealed::Changed
        })
    }

    async fn purge_expired(&self) -> Result<u64, StoreError> {
        SqlStore::purge_expired(self).await
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        SqlStore::migrate(self).await
    }

    /// Where the store is and how it is reached, the database's clock against this machine's,
    /// the migration the table is at, every statement the manager sends (tried on a key of the
    /// check's own, deleted afterwards), and every stored entry read with this keyring.
    async fn check(&self) -> Result<StoreCheck, StoreError> {
        let (store, transport) = self.shared.backend.location();
        let mut check = StoreCheck::default();
        check.store = format!("{store} (table {})", self.shared.backend.table().name());
        check.transport = transport.to_owned();
        check.clock_offset_ms = Some(self.clock_offset_ms().await?);
        let Some(applied) = self.applied_migration().await? else {
            check.schema = Some("none: run the migrations".to_owned());
            check.permission_problem = Some("not checked: the token table is missing".to_owned());
            return Ok(check);
        };
        check.schema = Some(self.schema_status(applied));
        (check.permissions_ok, check.permission_problem) = self.permissions().await?;
        self.count_entries(&mut check).await?;
        Ok(check)
    }
}

impl SqlStore {
    /// Up to `limit` rows after the storage ID `after`.
    async fn page(
        &self,
        after: &str,
        limit: usize,
    ) -> Result<Vec<crate::backend::KeyedRow>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.run(|| self.shared.backend.page(after, limit)).await
    }

    /// The database's clock minus this machine's, in milliseconds: of three readings, the one
    /// with the shortest round trip (the first may wait for a connection), this machine's clock
    /// read halfway through it.
    async fn clock_offset_ms(&self) -> Result<i64, StoreError> {
        let mut best: Option<(Duration, i64)> = None;
        for _ in 0..3 {
            let sent = SystemTime::now();
            let database = self.run(|| self.shared.backend.clock()).await?;
            let round_trip = sent.elapsed().unwrap_or_default();
            let here = epoch_micros(sent + round_trip / 2);
            let offset = database.map_or(0, |database| (database - here) / 1000);
            if best.is_none_or(|(fastest, _)| round_trip < fastest) {
                best = Some((round_trip, offset));
            }
        }
        Ok(best.map_or(0, |(_, offset)| offset))
    }

    /// The latest migration applied, `None` if the table was never migrated.
    async fn applied_migration(&self) -> Result<Option<i64>, StoreError> {
        match self
            .attempt(|| self.shared.backend.applied_migration())
            .await
        {
            Ok(applied) => Ok(applied),
            Err(Failure::Database {
                class: Class::SchemaMissing,
                ..
            }) => Ok(None),
            Err(failure) => Err(self.store_error(failure)),
        }
    }

    /// The schema's state, as the check reports it.
    fn schema_status(&self, applied: i64) -> String {
        let shipped = self.shared.backend.shipped_migration();
        match applied.cmp(&shipped) {
            std::cmp::Ordering::Equal => applied.to_string(),
            std::cmp::Ordering::Less => {
                format!("{applied} of {shipped}: run the migrations")
            }
            std::cmp::Ordering::Greater => {
                format!("{applied}, newer than this version's {shipped}")
            }
        }
    }

    /// Sends every statement the manager uses, in the order of a renewal, on a key of the
    /// check's own, then deletes its row. Whether the manager's statements were all allowed,
    /// and what the database refused, if anything (the deletion included).
    async fn permissions(&self) -> Result<(bool, Option<String>), StoreError> {
        let partner = PartnerId::new(format!("kigo-store-check-{:016x}", fastrand::u64(..)))
            .map_err(StoreError::unavailable)?;
        let key = TokenKey::partner(partner);
        let now = SystemTime::now();
        let secret = TokenSecret::new(format!("kigo-store-check-{:016x}", fastrand::u64(..)));
        let token = Token::new(secret, now, now + Duration::from_secs(60))
            .map_err(StoreError::unavailable)?;
        let tried = self.try_statements(&key, &token).await;
        let id = key.storage_id();
        let deleted = self.attempt(|| self.shared.backend.forget(&id)).await;
        let mut problems = Vec::new();
        let mut refused = |what: &str, failure| match failure {
            Failure::Database {
                class: Class::Denied,
                error,
            } => {
                problems.push(format!("{what}: refused ({error})"));
                Ok(())
            }
            failure => Err(self.store_error(failure)),
        };
        let allowed = match tried {
            Ok(()) => true,
            Err((what, failure)) => {
                refused(what, failure)?;
                false
            }
        };
        if let Err(failure) = deleted {
            refused(&format!("delete the check's own row {id}"), failure)?;
        }
        Ok((allowed, (!problems.is_empty()).then(|| problems.join("; "))))
    }

    /// The manager's statements on `key`: load, cool-down, claim, lease, commit of `token`,
    /// invalidate, claim and release, and the clearing of expired tokens (of none). Which
    /// failed first, and how.
    async fn try_statements(
        &self,
        key: &TokenKey,
        token: &Token,
    ) -> Result<(), (&'static str, Failure)> {
        let backend = &self.shared.backend;
        let id = key.storage_id();
        let holder = HolderId::random();
        let holder = holder.as_str();
        let ttl = micros(Duration::from_secs(10));
        let step = |what: &'static str| move |failure| (what, failure);
        self.attempt(|| backend.load(&id))
            .await
            .map_err(step("load"))?;
        self.attempt(|| backend.set_cooldown(&id, 1000))
            .await
            .map_err(step("set a cool-down"))?;
        let claim = async || {
            let claimed = self.attempt(|| backend.claim(&id, holder, ttl)).await;
            claimed
                .map(Option::unwrap_or_default)
                .map_err(step("claim the lease"))
        };
        let fence = claim().await?;
        self.attempt(|| backend.lease(&id))
            .await
            .map_err(step("read the lease"))?;
        let generation = u64::try_from(fence).unwrap_or_default();
        let entry = NewEntry::new(&self.shared.codec, key, generation, token);
        self.attempt(|| backend.commit(&id, holder, fence, &entry))
            .await
            .map_err(step("commit"))?;
        self.attempt(|| backend.invalidate(&id, fence))
            .await
            .map_err(step("invalidate"))?;
        let fence = claim().await?;
        self.attempt(|| backend.release(&id, holder, fence))
            .await
            .map_err(step("release the lease"))?;
        self.attempt(|| backend.clear_expired("", ""))
            .await
            .map_err(step("clear expired tokens"))?;
        Ok(())
    }

    /// Reads every stored entry with this store's keyring: how many, how many do not open,
    /// how many are sealed with an older key.
    async fn count_entries(&self, check: &mut StoreCheck) -> Result<(), StoreError> {
        let mut after = String::new();
        loop {
            let rows = self.page(&after, WALK_PAGE).await?;
            for (id, row) in &rows {
                if row.entry.is_none() {
                    continue;
                }
                check.entries_read += 1;
                let resealed =
                    TokenKey::from_storage_id(id).map(|key| row.resealed(&key, &self.shared.codec));
                match resealed {
                    Some(Ok(Some(_))) => check.entries_under_older_keys += 1,
                    Some(Ok(None)) => {}
                    Some(Err(_)) | None => check.entries_unreadable += 1,
                }
            }
            match rows.last() {
                Some((last, _)) if rows.len() == WALK_PAGE => after.clone_from(last),
                _ => return Ok(()),
            }
        }
    }
}
