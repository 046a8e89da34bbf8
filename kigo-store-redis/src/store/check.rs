//! [`StoreAdmin::check`](kigo_core::store::StoreAdmin::check) for Redis, step by step.

use std::time::{Duration, SystemTime};

use kigo_core::store::{HolderId, Lease, LeaseAttempt, StoreCheck};
use kigo_core::{PartnerId, StoreError, Token, TokenKey, TokenSecret, TokenStore};
use redis::ConnectionAddr;

use super::admin::{Standing, WalkError};
use super::{RedisStore, StoredValue, settle};
use crate::error::{refusal, store_error};
use crate::transport;

/// How long the keys of the check's own key live, should deleting them fail.
const PROBE_TTL: Duration = Duration::from_secs(60);

/// Why the permission probe stopped before its end.
enum Stop {
    /// A step was refused (or could not be done): what to tell the operator.
    Problem(String),
    /// Any other failure: the check fails with it.
    Failed(StoreError),
}

/// `result` of the step `what`, with a refusal (`NOPERM`) made a problem to report.
fn step<T>(what: &str, result: Result<T, StoreError>) -> Result<T, Stop> {
    result.map_err(|error| match refusal(&error) {
        Some(detail) => Stop::Problem(format!("{what}: {detail}")),
        None => Stop::Failed(error),
    })
}

impl RedisStore {
    pub(super) async fn check_setup(&self) -> Result<StoreCheck, StoreError> {
        let mut check = StoreCheck::default();
        check.store = self.describe();
        check.transport = transport::describe(self.inner.connection.target()).to_owned();
        let mut problems = Vec::new();
        let mut note = |stopped: Result<(), Stop>| match stopped {
            Ok(()) => Ok(()),
            Err(Stop::Problem(problem)) => {
                problems.push(problem);
                Ok(())
            }
            Err(Stop::Failed(error)) => Err(error),
        };
        note(self.probe_permissions().await)?;
        note(
            step("TIME", self.clock_offset_ms().await)
                .map(|offset| check.clock_offset_ms = Some(offset)),
        )?;
        note(self.count_entries(&mut check).await)?;
        check.permissions_ok = problems.is_empty();
        check.permission_problem = (!problems.is_empty()).then(|| problems.join("; "));
        Ok(check)
    }

    /// `redis rediss://host:6380 (prefix kigo:)`: the nodes' addresses, never a password.
    fn describe(&self) -> String {
        let target = self.inner.connection.target();
        let nodes: Vec<String> = target
            .clients()
            .iter()
            .map(|client| address_url(client.get_connection_info().addr()))
            .collect();
        let kind = if target.is_cluster() {
            "redis cluster"
        } else {
            "redis"
        };
        format!("{kind} {} (prefix {})", nodes.join(", "), self.inner.prefix)
    }

    /// Redis's clock minus this machine's, in milliseconds.
    async fn clock_offset_ms(&self) -> Result<i64, StoreError> {
        let connection = &self.inner.connection;
        settle(move || async move {
            let sent = SystemTime::now();
            let (secs, micros): (u64, u64) = connection.query(&redis::cmd("TIME")).await?;
            let received = SystemTime::now();
            Ok(offset_ms(sent, received, secs, micros))
        })
        .await
    }

    /// Runs every operation the manager (and the tool) needs on a key of the check's own, then
    /// deletes its keys. The first refusal ends the probe.
    async fn probe_permissions(&self) -> Result<(), Stop> {
        let partner = format!("kigo-store-check-{}", HolderId::random());
        // Valid by construction: short, no control characters.
        let key = TokenKey::partner(PartnerId::new(partner).unwrap_or_else(|_| unreachable!()));
        let probed = self.probe(&key).await;
        let names = self.key_names(&key);
        let mut delete = redis::cmd("DEL");
        delete.arg(&names.in_script_order()[..]);
        let deleted = settle(|| self.inner.connection.query::<i64>(&delete)).await;
        probed?;
        step("DEL", deleted).map(|_| ())
    }

    async fn probe(&self, key: &TokenKey) -> Result<(), Stop> {
        step("load", self.load(key).await)?;
        step("set_cooldown", self.set_cooldown(key, PROBE_TTL).await)?;
        let lease = self.probe_lease(key).await?;
        step("lease_holder", self.lease_holder(key).await)?;
        step("release_lease", self.release_lease(&lease).await)?;
        let lease = self.probe_lease(key).await?;
        let now = SystemTime::now();
        // Valid by construction: header-safe, a positive lifetime.
        let token = Token::new(TokenSecret::new("kigo-store-check"), now, now + PROBE_TTL)
            .unwrap_or_else(|_| unreachable!());
        step("commit", self.commit(&lease, &token).await)?;
        let stored = step("load", self.read(key).await)?;
        if let StoredValue::Entry(entry) = stored.value {
            let resealed = self.write_resealed(key, &entry, stored.generation, &entry);
            step("reseal", resealed.await)?;
        }
        step(
            "invalidate",
            self.invalidate(key, &token.fingerprint()).await,
        )?;
        let subscribed = self.inner.connection.subscribe(&self.inner.channel).await;
        // Dropped at once: the subscription ends with it.
        drop(step("subscribe", subscribed.map_err(store_error))?);
        Ok(())
    }

    async fn probe_lease(&self, key: &TokenKey) -> Result<Lease, Stop> {
        let holder = HolderId::random();
        match step(
            "acquire_lease",
            self.acquire_lease(key, &holder, PROBE_TTL).await,
        )? {
            LeaseAttempt::Acquired(lease) => Ok(lease),
            _ => Err(Stop::Problem(
                "acquire_lease: the check's own key was leased by another client; run the check \
                 again"
                    .to_owned(),
            )),
        }
    }

    /// Reads every stored entry, a page of keys at a time, and counts how they stand.
    async fn count_entries(&self, check: &mut StoreCheck) -> Result<(), Stop> {
        let counted = self.walk(
            |key| async move { self.standing(&key).await },
            |standing| {
                let counts = match standing {
                    Standing::Absent => return,
                    Standing::Current => (0, 0),
                    Standing::Older { .. } => (0, 1),
                    Standing::Unreadable(_) => (1, 0),
                };
                check.entries_read += 1;
                check.entries_unreadable += counts.0;
                check.entries_under_older_keys += counts.1;
            },
        );
        match counted.await {
            Ok(()) => Ok(()),
            Err(WalkError::Listing(error)) => step("SCAN", Err(error)),
            Err(WalkError::Visit(error)) => Err(Stop::Failed(error)),
        }
    }
}

/// A node's address as a URL without credentials.
fn address_url(addr: &ConnectionAddr) -> String {
    match addr {
        ConnectionAddr::Tcp(..) => format!("redis://{addr}"),
        ConnectionAddr::TcpTls { .. } => format!("rediss://{addr}"),
        ConnectionAddr::Unix(path) => format!("redis+unix://{}", path.display()),
        _ => addr.to_string(),
    }
}

/// Redis's time (`secs`, `micros`) minus this machine's when Redis read it, taken as half-way
/// between `sent` and `received`; in milliseconds.
fn offset_ms(sent: SystemTime, received: SystemTime, secs: u64, micros: u64) -> i64 {
    let round_trip = received.duration_since(sent).unwrap_or_default();
    let local = sent.checked_add(round_trip / 2).unwrap_or(sent);
    let local_us = local
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.as_micros());
    let redis_us = u128::from(secs) * 1_000_000 + u128::from(micros);
    let difference_ms = (redis_us.cast_signed() - local_us.cast_signed()) / 1000;
    i64::try_from(difference_ms).unwrap_or(if difference_ms < 0 {
        i64::MIN
    } else {
        i64::MAX
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_offset_is_taken_half_way_through_the_round_trip() {
        let sent = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let received = sent + Duration::from_millis(10);
        let at = |ms: u64| {
            let redis = Duration::from_secs(1_700_000_000) + Duration::from_millis(ms);
            offset_ms(
                sent,
                received,
                redis.as_secs(),
                u64::from(redis.subsec_micros()),
            )
        };
        assert_eq!(at(5), 0, "Redis read its clock half-way: no offset");
        assert_eq!(at(5 + 250), 250, "Redis ahead");
        assert_eq!(at(0), -5, "Redis behind");
    }

    #[test]
    fn node_addresses_show_their_scheme_and_no_credentials() {
        let client = redis::Client::open("redis://user:hunter2@127.0.0.1:6379/2").unwrap();
        let shown = address_url(client.get_connection_info().addr());
        assert_eq!(shown, "redis://127.0.0.1:6379");
    }
}
