//! [`RedisStore`]: the [`TokenStore`] operations as scripts, and how ambiguous results are settled.

mod admin;
mod check;

use std::fmt;
use std::future::ready;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use futures_util::StreamExt;
use kigo_core::codec::{CorruptEntry, EntryCodec};
use kigo_core::store::{
    ChangeFeed, ChangeNotice, CommitOutcome, Entry, HolderId, InvalidateOutcome, Lease,
    LeaseAttempt, Snapshot,
};
use kigo_core::{Fingerprint, StoreError, Token, TokenKey, TokenStore};
use redis::{ErrorKind, FromRedisValue, RedisResult, Script, ScriptInvocation, ServerErrorKind};

use crate::connection::{Connection, Target, Timeouts};
use crate::error::{is_ambiguous, require_tokio, store_error};
use crate::keys::{KeyNames, channel};
use crate::scripts;

/// A [`TokenStore`] on Redis or Redis Cluster. See the [crate docs](crate).
///
/// Clones are handles on the same connection. Replicas each build their own store with the
/// same prefix (and the fleet's sealing keys) to share tokens.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    connection: Connection,
    prefix: String,
    channel: String,
    codec: EntryCodec,
    retention_ms: u64,
}

impl RedisStore {
    pub(crate) fn new(
        target: Target,
        timeouts: Timeouts,
        prefix: String,
        codec: EntryCodec,
        retention: Duration,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                connection: Connection::new(target, timeouts),
                channel: channel(&prefix),
                prefix,
                codec,
                retention_ms: millis(retention),
            }),
        }
    }

    /// The Redis keys that hold the state of `key`.
    pub fn key_names(&self, key: &TokenKey) -> KeyNames {
        KeyNames::new(&self.inner.prefix, key)
    }

    /// The pub/sub channel on which commits and invalidations are announced.
    pub fn channel(&self) -> &str {
        &self.inner.channel
    }

    fn invocation<'a>(&self, script: &'a Script, key: &TokenKey) -> ScriptInvocation<'a> {
        let names = self.key_names(key);
        let mut invocation = script.prepare_invoke();
        for name in names.in_script_order() {
            invocation.key(name);
        }
        invocation
    }

    /// Runs a script, once more if the first result is unknown (see [`settle`]): every script of
    /// the store reports the same result when run again.
    async fn run<T: FromRedisValue>(
        &self,
        invocation: &ScriptInvocation<'_>,
    ) -> Result<T, StoreError> {
        settle(|| self.inner.connection.run(invocation)).await
    }

    /// What the store keeps for `key`, as read by one script.
    async fn read(&self, key: &TokenKey) -> Result<Stored, StoreError> {
        let invocation = self.invocation(&scripts::LOAD, key);
        let (value, foreign, generation, cooldown_ms): (Option<Vec<u8>>, i64, u64, i64) =
            self.run(&invocation).await?;
        let value = match value {
            _ if foreign != 0 => StoredValue::Foreign,
            None => StoredValue::Absent,
            Some(bytes) => StoredValue::Entry(bytes),
        };
        Ok(Stored {
            value,
            generation,
            cooldown_ms,
        })
    }

    fn lease_attempt(&self, key: &TokenKey, holder: &HolderId, reply: (i64, i64)) -> LeaseAttempt {
        match reply {
            (1, fence) => LeaseAttempt::Acquired(Lease::new(
                key.clone(),
                holder.clone(),
                u64::try_from(fence).unwrap_or_default(),
            )),
            (_, left) => held(left),
        }
    }
}

impl fmt::Debug for RedisStore {
    // Hand-written: the connection settings may hold a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("cluster", &self.inner.connection.target().is_cluster())
            .field("prefix", &self.inner.prefix)
            .field("codec", &self.inner.codec)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl TokenStore for RedisStore {
    async fn load(&self, key: &TokenKey) -> Result<Snapshot, StoreError> {
        let stored = self.read(key).await?;
        let entry = match &stored.value {
            StoredValue::Foreign => Entry::Corrupt(CorruptEntry::Malformed),
            StoredValue::Absent => Entry::Absent,
            StoredValue::Entry(bytes) => {
                match self.inner.codec.decode(key, bytes, stored.generation) {
                    Ok(token) => Entry::Present(token),
                    Err(corrupt) => Entry::Corrupt(corrupt),
                }
            }
        };
        Ok(Snapshot {
            entry,
            cooldown: positive_millis(stored.cooldown_ms),
        })
    }

    async fn acquire_lease(
        &self,
        key: &TokenKey,
        holder: &HolderId,
        ttl: Duration,
    ) -> Result<LeaseAttempt, StoreError> {
        let mut invocation = self.invocation(&scripts::ACQUIRE, key);
        invocation
            .arg(holder.as_str())
            .arg(expiry_millis(ttl))
            .arg(self.inner.retention_ms);
        let reply = self.run(&invocation).await?;
        Ok(self.lease_attempt(key, holder, reply))
    }

    async fn release_lease(&self, lease: &Lease) -> Result<(), StoreError> {
        let mut invocation = self.invocation(&scripts::RELEASE, lease.key());
        invocation.arg(lease_value(lease));
        let _released: i64 = self.run(&invocation).await?;
        Ok(())
    }

    async fn commit(&self, lease: &Lease, token: &Token) -> Result<CommitOutcome, StoreError> {
        let key = lease.key();
        let mut invocation = self.invocation(&scripts::COMMIT, key);
        invocation
            .arg(lease_value(lease))
            .arg(lease.fence())
            .arg(self.inner.codec.encode(key, lease.fence(), token))
            .arg(seconds_since_epoch(token.expires_at()).max(1))
            .arg(&self.inner.channel)
            .arg(key.storage_id())
            .arg(self.inner.retention_ms);
        let committed: i64 = self.run(&invocation).await?;
        Ok(commit_outcome(committed))
    }

    async fn invalidate(
        &self,
        key: &TokenKey,
        fingerprint: &Fingerprint,
    ) -> Result<InvalidateOutcome, StoreError> {
        // The record keeps no fingerprint: open the stored entry here, and remove exactly the
        // entry read if it holds the rejected token.
        let stored = self.read(key).await?;
        let StoredValue::Entry(entry) = &stored.value else {
            return Ok(InvalidateOutcome::NotCurrent);
        };
        let current = self.inner.codec.decode(key, entry, stored.generation);
        if current.map(|token| token.fingerprint()).ok() != Some(*fingerprint) {
            return Ok(InvalidateOutcome::NotCurrent);
        }
        let mut invocation = self.invocation(&scripts::INVALIDATE, key);
        invocation
            .arg(stored.generation)
            .arg(entry.as_slice())
            .arg(&self.inner.channel)
            .arg(key.storage_id());
        let removed: i64 = self.run(&invocation).await?;
        Ok(if removed == 1 {
            InvalidateOutcome::Removed
        } else {
            InvalidateOutcome::NotCurrent
        })
    }

    async fn set_cooldown(&self, key: &TokenKey, duration: Duration) -> Result<(), StoreError> {
        if duration.is_zero() {
            return Ok(());
        }
        let ms = expiry_millis(duration);
        let mut invocation = self.invocation(&scripts::COOLDOWN, key);
        invocation.arg(ms);
        let _set: i64 = self.run(&invocation).await?;
        Ok(())
    }

    async fn lease_holder(
        &self,
        key: &TokenKey,
    ) -> Result<Option<(HolderId, Option<Duration>)>, StoreError> {
        let invocation = self.invocation(&scripts::LEASE_HOLDER, key);
        let (value, left_ms): (Option<String>, i64) = self.run(&invocation).await?;
        Ok(value
            .as_deref()
            .and_then(holder_of)
            .map(|holder| (holder, positive_millis(left_ms))))
    }

    fn changes(&self) -> Option<ChangeFeed> {
        let inner = Arc::clone(&self.inner);
        let subscription = async move {
            if let Err(error) = require_tokio() {
                tracing::error!(%error, "cannot subscribe to change notices");
                return None;
            }
            match inner.connection.subscribe(&inner.channel).await {
                Ok(messages) => Some(messages),
                Err(error) if error.kind() == ErrorKind::Server(ServerErrorKind::NoPerm) => {
                    tracing::error!(
                        %error,
                        "the Redis user may not subscribe to the change channel (see the crate \
                         docs on ACLs); waiters fall back to polling"
                    );
                    None
                }
                Err(error) => {
                    tracing::warn!(
                        %error,
                        "subscribing to change notices failed; waiters poll until it works"
                    );
                    None
                }
            }
        };
        let notices = futures_util::stream::once(subscription)
            .filter_map(ready)
            .flatten()
            .filter_map(|message| {
                let key = std::str::from_utf8(message.get_payload_bytes())
                    .ok()
                    .and_then(TokenKey::from_storage_id);
                ready(key.map(|key| ChangeNotice { key }))
            });
        Some(Box::pin(notices))
    }
}

/// What the store keeps for one key: its entry (none once past its expiry), the generation and
/// the cool-down's PTTL.
struct Stored {
    value: StoredValue,
    generation: u64,
    cooldown_ms: i64,
}

/// What the record holds.
enum StoredValue {
    /// No token: none committed, expired, or invalidated.
    Absent,
    /// A value the store did not write (another Redis type, or a string of another layout),
    /// written by another program or by hand.
    Foreign,
    Entry(Vec<u8>),
}

/// Runs `attempt`, once more if its result is unknown: the connection dropped or timed out after
/// the command may have run. Only for commands that give the same result when run again.
async fn settle<T, F: Future<Output = RedisResult<T>>>(
    attempt: impl Fn() -> F,
) -> Result<T, StoreError> {
    require_tokio()?;
    match attempt().await {
        Err(error) if is_ambiguous(&error) => {
            tracing::debug!(%error, "Redis result unknown; sending the command again");
            attempt().await.map_err(store_error)
        }
        result => result.map_err(store_error),
    }
}

/// What the lease key holds for `lease`: `<fence>:<holder>`.
fn lease_value(lease: &Lease) -> String {
    format!("{}:{}", lease.fence(), lease.holder())
}

/// The holder named by a lease key's value, `<fence>:<holder>`; `None` for anything else.
fn holder_of(value: &str) -> Option<HolderId> {
    let (fence, holder) = value.split_once(':')?;
    let well_formed =
        !fence.is_empty() && fence.bytes().all(|b| b.is_ascii_digit()) && !holder.is_empty();
    well_formed.then(|| HolderId::new(holder))
}

fn held(left_ms: i64) -> LeaseAttempt {
    LeaseAttempt::Held {
        remaining: positive_millis(left_ms),
    }
}

fn commit_outcome(reply: i64) -> CommitOutcome {
    if reply == 1 {
        CommitOutcome::Committed
    } else {
        CommitOutcome::Rejected
    }
}

/// A PTTL reply as a duration; `None` for "no key" (-2), "no expiry" (-1) and 0.
fn positive_millis(ms: i64) -> Option<Duration> {
    u64::try_from(ms)
        .ok()
        .filter(|ms| *ms > 0)
        .map(Duration::from_millis)
}

/// `duration` as a Redis expiry in milliseconds: at least 1 (0 is refused), at most a hundred
/// years (Redis refuses expiries beyond its clock's range; longer is forever in practice).
fn expiry_millis(duration: Duration) -> u64 {
    const MAX_MS: u64 = 100 * 365 * 24 * 3600 * 1000;
    millis(duration).clamp(1, MAX_MS)
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// `time` as Unix seconds, rounded down.
fn seconds_since_epoch(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

#[cfg(test)]
mod tests {
    use kigo_core::codec::{Keyring, SealingKey};

    use super::*;

    /// Polled by an executor other than tokio, the store fails with an error saying so (the
    /// redis crate would panic).
    #[test]
    fn outside_a_tokio_runtime_the_store_is_misconfigured() {
        use std::future::Future;
        use std::task::{Context, Poll, Waker};

        let store = RedisStore::builder()
            .url("redis://127.0.0.1:1")
            .keyring(Keyring::new(SealingKey::from_bytes([7; 32])))
            .build()
            .unwrap();
        let key = TokenKey::partner(kigo_core::PartnerId::new("p").unwrap());
        let mut load = std::pin::pin!(store.load(&key));
        match load.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(Err(StoreError::Misconfigured { hint, .. })) => {
                assert!(hint.contains("tokio runtime"), "{hint}");
            }
            other => panic!("outside tokio: {other:?}"),
        }
    }

    #[test]
    fn expiries_stay_in_the_range_redis_accepts() {
        assert_eq!(expiry_millis(Duration::ZERO), 1);
        assert_eq!(expiry_millis(Duration::from_millis(1500)), 1500);
        assert!(expiry_millis(Duration::MAX) < i64::MAX as u64 / 1000);
    }

    #[test]
    fn lease_values_name_their_holder() {
        assert_eq!(
            holder_of("12:replica-a-1-ff:x").map(|h| h.to_string()),
            Some("replica-a-1-ff:x".to_owned())
        );
        for foreign in ["", "12", "12:", ":holder", "x1:holder", "holder"] {
            assert_eq!(holder_of(foreign), None, "{foreign}");
        }
    }

    #[test]
    fn ttl_replies_become_durations() {
        assert_eq!(positive_millis(-2), None);
        assert_eq!(positive_millis(-1), None);
        assert_eq!(positive_millis(0), None);
        assert_eq!(positive_millis(1500), Some(Duration::from_millis(1500)));
    }
}
