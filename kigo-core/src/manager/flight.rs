//! One refresh of one key: read the store, adopt a token another replica committed, or win the
//! lease, re-read, create and commit with a fenced write; wait for the holder otherwise.
//!
//! A flight runs as its own task, so a caller that gives up does not cancel it halfway, and a
//! flight that panics ends like a failed one: its callers get a transient error and the next
//! call starts a new flight.

use std::panic::AssertUnwindSafe;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

use futures_channel::oneshot;
use futures_util::FutureExt;
use futures_util::future::select;
use tracing::Instrument;

use super::Inner;
use super::metrics::{LeaseOutcome, RefreshReason, StoreOp};
use super::slot::{Cached, Flight as SharedFlight, FlightOutcome, KeySlot, until};
use super::status::TokenOrigin;
use crate::policy::StoreFailurePolicy;
use crate::source::CreateRequest;
use crate::store::{CommitOutcome, Entry, Lease, LeaseAttempt, Snapshot};
use crate::time::{after, unix_nanos};
use crate::{Error, SourceError, StoreError, Token, TokenKey};

/// Why a flight runs; it decides how eager the flight is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reason {
    /// The refresh point has come; the cached token is still valid, so never wait for others.
    Ahead,
    /// A caller has no valid token: wait for another replica if it holds the lease.
    Needed,
    /// The store announced a change: adopt a new token if there is one, nothing else.
    Notice,
}

/// A freshly created token was already past its stale point (a slow endpoint or a paused
/// process): transient, since a new request is stamped with a new send time.
#[derive(Debug, thiserror::Error)]
#[error("the token endpoint returned a token that is stale on arrival (check the clocks)")]
pub struct StaleOnArrival;

/// The token endpoint did not answer within the creation timeout.
#[derive(Debug, thiserror::Error)]
#[error("token creation timed out after {0:?}")]
pub struct CreateTimedOut(pub Duration);

/// The store did not answer within the store timeout.
#[derive(Debug, thiserror::Error)]
#[error("the token store did not answer within {0:?}")]
pub struct StoreTimedOut(pub Duration);

/// A refresh panicked (a bug in the source, the store, or something they call): that refresh
/// failed, and the next one starts afresh.
#[derive(Debug, thiserror::Error)]
#[error("the refresh panicked (a bug in the token source or store); the next one starts afresh")]
pub struct RefreshPanicked;

enum Step {
    Done(FlightOutcome),
    /// Go round again; the token created was not committed, and is committed under the next
    /// lease instead of creating another while it is fresh.
    Again(Token),
}

impl Inner {
    /// Joins the running flight of `slot`, or starts one for `reason`.
    pub(super) fn flight(self: &Arc<Self>, slot: &Arc<KeySlot>, reason: Reason) -> SharedFlight {
        slot.join_or_start(|| {
            let why = match reason {
                Reason::Ahead => RefreshReason::Ahead,
                Reason::Notice => RefreshReason::StoreChange,
                Reason::Needed if slot.take_rejection_drop() => RefreshReason::Rejected,
                Reason::Needed => RefreshReason::Needed,
            };
            self.metrics.refresh_started(&slot.key, why);
            let (done, outcome) = oneshot::channel();
            let inner = Arc::clone(self);
            let task_slot = Arc::clone(slot);
            self.lifecycle.spawn(&self.env, async move {
                // Ended however the task ends (done, panicked, or dropped at shutdown), so that
                // the slot never keeps a finished flight.
                let end = EndFlight(&task_slot);
                let span = tracing::info_span!(
                    "kigo.refresh",
                    key = %inner.config.user_ids.show(&task_slot.key),
                    reason = why.label(),
                );
                let result = AssertUnwindSafe(run(&inner, &task_slot, reason))
                    .catch_unwind()
                    .instrument(span)
                    .await
                    .unwrap_or_else(|_| inner.panicked(&task_slot));
                let outcome = super::status::outcome_index(result.as_ref().err());
                task_slot.record_refresh(crate::time::unix_ms(inner.now()), outcome);
                drop(end);
                inner.schedule(&task_slot);
                let _ = done.send(result);
            });
            async move { outcome.await.unwrap_or(Err(Error::ShutDown)) }.boxed()
        })
    }

    /// What the callers of a flight that panicked get: a transient failure, worth asking again
    /// after a poll interval.
    fn panicked(&self, slot: &KeySlot) -> FlightOutcome {
        self.metrics.panicked();
        let key = self.config.user_ids.show(&slot.key);
        tracing::error!(%key, "a refresh panicked; the next one starts afresh");
        if self.lifecycle.is_stopped() {
            return Err(Error::ShutDown);
        }
        Err(Error::Unavailable {
            key: slot.key.clone(),
            retry_after: Some(self.poll_delay()),
            source: Some(SourceError::transient(RefreshPanicked)),
        })
    }
}

/// Clears the slot's flight when dropped.
struct EndFlight<'a>(&'a KeySlot);

impl Drop for EndFlight<'_> {
    fn drop(&mut self) {
        self.0.end_flight();
    }
}

async fn run(inner: &Arc<Inner>, slot: &KeySlot, reason: Reason) -> FlightOutcome {
    let flight = Flight {
        inner,
        slot,
        reason,
        started: inner.now(),
        failed_commits: AtomicU32::new(0),
    };
    flight.run().await
}

struct Flight<'a> {
    inner: &'a Arc<Inner>,
    slot: &'a KeySlot,
    reason: Reason,
    started: SystemTime,
    /// Commits of this flight that were rejected or failed.
    failed_commits: AtomicU32,
}

/// After this many rejected or failed commits in one flight the store is misbehaving: serve the
/// token without it.
const MAX_FAILED_COMMITS: u32 = 2;

impl Flight<'_> {
    async fn run(&self) -> FlightOutcome {
        if self.settled_before_start() {
            return Ok(());
        }
        if let Some(error) = self.store_paused() {
            return self.without_store(error).await;
        }
        let mut spare = None;
        loop {
            let seen = self.slot.changes();
            let snapshot = match self.load().await {
                Ok(snapshot) => snapshot,
                Err(error) => return self.store_failed(error).await,
            };
            self.store_ok();
            if self.adopt(&snapshot) || self.reason == Reason::Notice {
                return Ok(());
            }
            if let Err(error) = self.remove_rejected(&snapshot).await {
                return self.store_failed(error).await;
            }
            if let Some(left) = snapshot.cooldown {
                return self.cooling_down(left);
            }
            match self.partner_paused().await {
                Err(error) => return self.store_failed(error).await,
                Ok(Some(left)) => return self.cooling_down(left),
                Ok(None) => {}
            }
            if let Some(error) = self.endpoint_paused() {
                return self.serve_or(error);
            }
            // Wait for a turn before claiming the lease, so that a queued flight does not let
            // its lease run out.
            let turn = self.inner.creations.acquire().await;
            let holder = self.inner.next_holder();
            let ttl = self.inner.config.lease_ttl;
            let claim = self.inner.store.acquire_lease(self.key(), &holder, ttl);
            let claim = self.inner.bounded(StoreOp::Acquire, claim);
            match claim.instrument(tracing::debug_span!("kigo.lease")).await {
                Err(error) => return self.store_failed(error).await,
                Ok(LeaseAttempt::Acquired(lease)) => {
                    self.inner.metrics.lease(self.key(), LeaseOutcome::Acquired);
                    let step = self.create_under(lease, spare.take()).await;
                    drop(turn);
                    match step {
                        Step::Done(outcome) => return outcome,
                        Step::Again(uncommitted) => spare = Some(uncommitted),
                    }
                }
                Ok(LeaseAttempt::Held { remaining }) => {
                    self.inner.metrics.lease(self.key(), LeaseOutcome::Held);
                    if self.serving() {
                        self.retry_after_holder(remaining);
                        return Ok(());
                    }
                    drop(turn);
                    self.wait_for_holder(seen)
                        .instrument(tracing::debug_span!("kigo.wait"))
                        .await?;
                }
            }
        }
    }

    fn key(&self) -> &TokenKey {
        &self.slot.key
    }

    /// The key as logs show it (users by a keyed hash, unless opted out).
    fn logged(&self) -> impl std::fmt::Display + '_ {
        self.inner.config.user_ids.show(self.key())
    }

    /// Reads the store; an entry this replica cannot open (it lacks the fleet's key) is a
    /// misconfiguration, reported as a store error so that the entry is never replaced.
    async fn load(&self) -> Result<Snapshot, StoreError> {
        let snapshot = self
            .inner
            .bounded(StoreOp::Load, self.inner.store.load(self.key()))
            .await?;
        match &snapshot.entry {
            Entry::Corrupt(corrupt) if corrupt.is_misconfiguration() => Err(
                StoreError::misconfigured(UNREADABLE_ENTRY_HINT, corrupt.clone()),
            ),
            _ => Ok(snapshot),
        }
    }

    /// Whether the flight before this one already did its work: it installed a token after the
    /// caller looked (a caller's flight), or one not yet due here (a refresh-ahead flight).
    fn settled_before_start(&self) -> bool {
        match self.reason {
            Reason::Needed => self.serving(),
            Reason::Ahead => {
                let current = self.slot.current();
                current.present && self.now() < current.refresh_at
            }
            Reason::Notice => false,
        }
    }

    fn now(&self) -> SystemTime {
        self.inner.now()
    }

    /// Whether the cached token can still be handed out.
    fn serving(&self) -> bool {
        let current = self.slot.current();
        current.present && current.usable_at(unix_nanos(self.now()))
    }

    fn serve_or(&self, error: Error) -> FlightOutcome {
        if self.serving() { Ok(()) } else { Err(error) }
    }

    fn install(&self, token: Token, origin: TokenOrigin) {
        self.put(self.inner.cache_entry(token, origin));
    }

    /// Makes `cached` the token this replica hands out.
    fn put(&self, cached: Cached) {
        self.inner
            .metrics
            .installed(self.key(), cached.token.expires_at());
        self.inner.install(self.slot, cached);
    }

    /// Takes the stored token if it is one this replica should use now; true if it did.
    fn adopt(&self, snapshot: &Snapshot) -> bool {
        let token = match &snapshot.entry {
            Entry::Present(token) => token,
            Entry::Absent => return false,
            Entry::Corrupt(corrupt) => {
                tracing::warn!(key = %self.logged(), %corrupt, "stored entry is corrupt; replacing it");
                return false;
            }
        };
        let fingerprint = token.fingerprint();
        // The cached entry first: a 401 reported between the two reads drops it after marking
        // the token rejected, so one of the two checks sees it.
        let current = self.slot.current();
        if (current.present && current.token.fingerprint() == fingerprint)
            || self.slot.failures().rejected.contains(&fingerprint)
        {
            return false;
        }
        let candidate = self
            .inner
            .cache_entry(token.clone(), TokenOrigin::ReadFromStore);
        let now = self.now();
        let due = now >= candidate.refresh_at;
        if !candidate.usable_at(unix_nanos(now))
            || (self.reason == Reason::Ahead && due && self.serving())
        {
            return false;
        }
        tracing::debug!(key = %self.logged(), %fingerprint, generation = token.generation(), "adopted the stored token");
        self.inner.metrics.adopted(self.key());
        self.put(candidate);
        true
    }

    /// Removes a token reported rejected (401) from the store, if it is still there.
    async fn remove_rejected(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        let Some(token) = snapshot.token() else {
            return Ok(());
        };
        let fingerprint = token.fingerprint();
        if !self.slot.failures().rejected.contains(&fingerprint) {
            return Ok(());
        }
        let invalidate = self.inner.store.invalidate(self.key(), &fingerprint);
        self.inner
            .bounded(StoreOp::Invalidate, invalidate)
            .instrument(tracing::debug_span!("kigo.invalidate", %fingerprint))
            .await?;
        Ok(())
    }

    /// Under `lease`: re-reads, then commits `spare` if it is not yet due here, else a new token.
    async fn create_under(&self, lease: Lease, spare: Option<Token>) -> Step {
        let guard = LeaseGuard::new(self.inner, lease);
        // Another replica may have committed between our read and our claim.
        match self.load().await {
            Err(error) => {
                guard.release().await;
                return Step::Done(self.store_failed(error).await);
            }
            Ok(snapshot) => {
                if self.adopt(&snapshot) {
                    guard.release().await;
                    return Step::Done(Ok(()));
                }
                if let Some(left) = snapshot.cooldown {
                    guard.release().await;
                    return Step::Done(self.cooling_down(left));
                }
            }
        }
        let fresh = |token: &Token| self.now() < self.inner.refresh_at(token);
        let token = match spare.filter(fresh) {
            Some(token) => token,
            None => match self
                .create(false)
                .instrument(tracing::debug_span!("kigo.create"))
                .await
            {
                Ok(token) => token,
                Err(error) => {
                    guard.release().await;
                    return Step::Done(self.endpoint_failed(error).await);
                }
            },
        };
        let token = token.with_generation(guard.lease.fence());
        let commit = self.inner.store.commit(&guard.lease, &token);
        let span = tracing::debug_span!("kigo.commit", generation = guard.lease.fence());
        match self
            .inner
            .bounded(StoreOp::Commit, commit)
            .instrument(span)
            .await
        {
            Ok(CommitOutcome::Committed) => {
                guard.disarm();
                tracing::debug!(key = %self.logged(), fingerprint = %token.fingerprint(), generation = token.generation(), "committed a new token");
                self.install(token, TokenOrigin::CreatedHere);
                Step::Done(Ok(()))
            }
            Ok(CommitOutcome::Rejected) => {
                guard.disarm();
                self.inner.metrics.lease(self.key(), LeaseOutcome::Lost);
                if self.commit_failed_again() {
                    tracing::error!(key = %self.logged(), "the store rejected every commit; serving the token without it");
                    self.install(token, TokenOrigin::CreatedWithoutStore);
                    return Step::Done(Ok(()));
                }
                tracing::warn!(key = %self.logged(), "lease lost before commit; using the store's token instead");
                Step::Again(token)
            }
            Err(error) => {
                guard.release().await;
                self.commit_unknown(token, error).await
            }
        }
    }

    /// The commit failed in transit, so it may or may not have happened: read to find out.
    async fn commit_unknown(&self, token: Token, error: StoreError) -> Step {
        let load = self.inner.store.load(self.key());
        match self.inner.bounded(StoreOp::Load, load).await {
            Ok(snapshot) => {
                if snapshot.token().map(Token::fingerprint) == Some(token.fingerprint()) {
                    self.install(token, TokenOrigin::CreatedHere);
                    return Step::Done(Ok(()));
                }
                if self.commit_failed_again() {
                    // The store reads but does not take commits: stop trying it for a while.
                    tracing::error!(key = %self.logged(), %error, "the store failed every commit; serving the token without it");
                    self.record_store_failure(error);
                    self.install(token, TokenOrigin::CreatedWithoutStore);
                    return Step::Done(Ok(()));
                }
                Step::Again(token)
            }
            Err(_) => {
                // The store is gone; the token is fresh and valid, so serve it rather than waste it.
                self.record_store_failure(error);
                self.install(token, TokenOrigin::CreatedWithoutStore);
                Step::Done(Ok(()))
            }
        }
    }

    /// Counts a commit that did not happen; true once the flight should stop committing.
    fn commit_failed_again(&self) -> bool {
        self.failed_commits.fetch_add(1, Ordering::Relaxed) + 1 >= MAX_FAILED_COMMITS
    }

    /// Calls the token source, bounded by the creation timeout.
    async fn create(&self, without_store: bool) -> Result<Token, SourceError> {
        let current = self.slot.current();
        let previous = current.present.then_some(&current.token);
        let request = CreateRequest::new(self.key(), previous, self.inner.env.time().as_ref());
        let timeout = self.inner.config.create_timeout;
        let token = self
            .inner
            .within(timeout, self.inner.source.create(request))
            .await
            .unwrap_or_else(|| Err(SourceError::transient(CreateTimedOut(timeout))))?;
        self.inner.metrics.created(self.key(), without_store);
        if self.now() >= self.inner.usable_until(&token) {
            return Err(SourceError::transient(StaleOnArrival));
        }
        self.endpoint_ok();
        Ok(token)
    }

    async fn endpoint_failed(&self, error: SourceError) -> FlightOutcome {
        self.inner
            .metrics
            .creation_failed(self.key(), error.is_transient());
        let draw = self.inner.draw();
        let now = self.now();
        let transient = error.is_transient();
        let (delay, outcome, first) = {
            let mut failures = self.slot.failures();
            failures.endpoint += 1;
            let backoff = if transient {
                &self.inner.config.backoff
            } else {
                &self.inner.config.permanent_backoff
            };
            let delay = backoff.delay(failures.endpoint, draw, error.retry_after());
            let outcome = if transient {
                Error::Unavailable {
                    key: self.key().clone(),
                    retry_after: Some(delay),
                    source: Some(error.clone()),
                }
            } else {
                Error::Permanent {
                    key: self.key().clone(),
                    source: error.clone(),
                }
            };
            // The first failure of its kind since the last success is the one worth an error.
            let first = failures
                .endpoint_error
                .as_ref()
                .is_none_or(|previous| previous.is_transient() != transient);
            failures.endpoint_retry_at = Some(after(now, delay));
            failures.endpoint_error = Some(outcome.clone());
            (delay, outcome, first)
        };
        self.slot.notify_changed();
        if transient {
            tracing::warn!(key = %self.logged(), error = %error, cause = %error.cause(), retry_in = ?delay, "token creation failed");
        } else if first {
            tracing::error!(key = %self.logged(), error = %error, cause = %error.cause(), retry_in = ?delay, "token creation refused; the fleet pauses this key");
        } else {
            tracing::debug!(key = %self.logged(), error = %error, retry_in = ?delay, "token creation refused again");
        }
        // Share the pause so that the whole fleet backs off, not only this replica; a transient
        // failure pauses the whole partner.
        self.share_cooldown(self.key().clone(), delay).await;
        if transient && let TokenKey::User { partner, .. } = self.key() {
            self.inner
                .partner_pauses
                .extend(partner, after(now, delay), now);
            self.share_cooldown(TokenKey::partner(partner.clone()), delay)
                .await;
        }
        self.serve_or(outcome)
    }

    async fn share_cooldown(&self, key: TokenKey, delay: Duration) {
        self.inner.metrics.cooldown(&key, true);
        let cooldown = self.inner.store.set_cooldown(&key, delay);
        if let Err(store_error) = self.inner.bounded(StoreOp::Cooldown, cooldown).await {
            self.record_store_failure(store_error);
        }
    }

    fn endpoint_ok(&self) {
        if let Some(failures) = self.slot.failures().kept() {
            failures.endpoint = 0;
            failures.endpoint_retry_at = None;
            failures.endpoint_error = None;
        }
    }

    /// The error to give while the endpoint is paused (backoff, Retry-After, cool-down).
    fn endpoint_paused(&self) -> Option<Error> {
        let now = self.now();
        let failures = self.slot.failures();
        let retry_at = failures.endpoint_retry_at.filter(|at| *at > now)?;
        let mut error = failures.endpoint_error.clone()?;
        if let Error::Unavailable { retry_after, .. } = &mut error {
            *retry_after = Some(until(now, retry_at));
        }
        Some(error)
    }

    /// For a user-level key: the time left on a cool-down of its whole partner, as last read
    /// from the store (at most a poll interval ago) or set here.
    async fn partner_paused(&self) -> Result<Option<Duration>, StoreError> {
        let TokenKey::User { partner, .. } = self.key() else {
            // A partner-level key's own cool-down is the partner's, read with the key.
            return Ok(None);
        };
        let now = self.now();
        let pauses = &self.inner.partner_pauses;
        let fresh_for = self.inner.config.poll_interval;
        let until_at = match pauses.known(partner, now, fresh_for) {
            Some(until_at) => until_at,
            None => {
                let partner_key = TokenKey::partner(partner.clone());
                let read = self.inner.store.cooldown(&partner_key);
                let left = self.inner.bounded(StoreOp::Load, read).await?;
                let until_at = left.map(|left| after(now, left));
                pauses.read(partner, until_at, now);
                until_at
            }
        };
        Ok(until_at
            .map(|at| until(now, at))
            .filter(|left| !left.is_zero()))
    }

    /// Another replica's failure started a shared cool-down: do not call the endpoint until it ends.
    fn cooling_down(&self, left: Duration) -> FlightOutcome {
        self.inner.metrics.cooldown(self.key(), false);
        let retry_at = after(self.now(), left.saturating_add(self.inner.poll_delay()));
        let error = {
            let mut failures = self.slot.failures();
            failures.endpoint_retry_at = Some(
                failures
                    .endpoint_retry_at
                    .map_or(retry_at, |at| at.max(retry_at)),
            );
            let source = match &failures.endpoint_error {
                Some(Error::Unavailable { source, .. }) => source.clone(),
                _ => None,
            };
            let error = match &failures.endpoint_error {
                Some(permanent @ Error::Permanent { .. }) => permanent.clone(),
                _ => Error::Unavailable {
                    key: self.key().clone(),
                    retry_after: Some(left),
                    source,
                },
            };
            failures.endpoint_error = Some(error.clone());
            error
        };
        self.slot.notify_changed();
        self.serve_or(error)
    }

    async fn store_failed(&self, error: StoreError) -> FlightOutcome {
        self.record_store_failure(error.clone());
        self.without_store(error).await
    }

    fn record_store_failure(&self, error: StoreError) {
        let draw = self.inner.draw();
        let now = self.now();
        let mut failures = self.slot.failures();
        failures.store += 1;
        self.inner.metrics.degraded(true);
        let delay = self.inner.config.backoff.delay(failures.store, draw, None);
        failures.store_retry_at = Some(after(now, delay));
        if matches!(error, StoreError::Misconfigured { .. }) {
            tracing::error!(key = %self.logged(), %error, retry_in = ?delay, "token store misconfigured for this replica; handing out no new token until it is fixed");
        } else {
            tracing::warn!(key = %self.logged(), %error, retry_in = ?delay, "token store failed");
        }
        failures.store_error = Some(error);
        drop(failures);
        self.slot.notify_changed();
    }

    fn store_ok(&self) {
        let mut guard = self.slot.failures();
        let Some(failures) = guard.kept() else { return };
        if failures.store > 0 {
            tracing::info!(key = %self.logged(), "token store reachable again");
            self.inner.metrics.degraded(false);
        }
        failures.store = 0;
        failures.store_retry_at = None;
        failures.store_error = None;
    }

    /// The last store error, while the store is in backoff.
    fn store_paused(&self) -> Option<StoreError> {
        let now = self.now();
        let failures = self.slot.failures();
        failures.store_retry_at.filter(|at| *at > now)?;
        failures.store_error.clone()
    }

    /// The store cannot be used: serve the cached token, or follow the store-failure policy. A
    /// misconfigured store is not a store that is down: nothing is created without it.
    async fn without_store(&self, error: StoreError) -> FlightOutcome {
        if self.serving() || self.reason == Reason::Notice {
            return Ok(());
        }
        let now = self.now();
        let retry_after = self.slot.failures().store_retry_at.map(|at| until(now, at));
        if matches!(error, StoreError::Misconfigured { .. }) {
            return Err(Error::StoreMisconfigured {
                key: self.key().clone(),
                source: error,
            });
        }
        let unavailable = |retry_after| Error::StoreUnavailable {
            key: self.key().clone(),
            retry_after,
            source: error.clone(),
        };
        let StoreFailurePolicy::CreateLocally { min_interval } = self.inner.config.store_failure
        else {
            return Err(unavailable(retry_after));
        };
        if let Some(paused) = self.endpoint_paused() {
            return Err(paused);
        }
        {
            let mut failures = self.slot.failures();
            if let Some(next) = failures
                .last_local_creation
                .map(|last| after(last, min_interval))
                && now < next
            {
                return Err(unavailable(Some(until(now, next))));
            }
            failures.last_local_creation = Some(now);
        }
        let turn = self.inner.creations.acquire().await;
        let created = self.create(true).await;
        drop(turn);
        match created {
            Ok(token) => {
                tracing::warn!(key = %self.logged(), fingerprint = %token.fingerprint(), "created a token without the store");
                self.install(token, TokenOrigin::CreatedWithoutStore);
                Ok(())
            }
            Err(source_error) => self.endpoint_failed(source_error).await,
        }
    }

    /// Another replica is renewing while this one still serves a valid token: look again when its
    /// lease lapses (a change notice may bring the new token sooner), but no later than a poll
    /// before this replica's token goes stale, since the notice may be lost (and SQLite and MySQL
    /// send none): with short tokens the lease outlasts the time left.
    fn retry_after_holder(&self, remaining: Option<Duration>) {
        let poll = self.inner.poll_delay();
        let now = self.now();
        let lapse = remaining
            .unwrap_or(self.inner.config.lease_ttl)
            .saturating_add(poll);
        let stale_in = until(now, self.slot.current().usable_until());
        let pause = lapse.min(stale_in.saturating_sub(poll).max(poll));
        self.slot.failures().lease_retry_at = Some(after(now, pause));
    }

    /// Waits for the lease holder's commit: a change notice since `seen` (a reading of the key's
    /// change count), or the poll interval.
    async fn wait_for_holder(&self, seen: u32) -> Result<(), Error> {
        self.inner.metrics.waiting_for_holder();
        let waited = self.now().duration_since(self.started).unwrap_or_default();
        let max_wait = self.inner.config.max_wait;
        if waited >= max_wait {
            return Err(Error::WaitTimedOut {
                key: self.key().clone(),
                waited,
            });
        }
        let nap = self.inner.poll_delay().min(max_wait - waited);
        select(
            pin!(self.slot.wait_for_change(seen)),
            self.inner.env.sleep(nap),
        )
        .await;
        Ok(())
    }
}

/// What an operator is told when the store holds entries this replica cannot open.
const UNREADABLE_ENTRY_HINT: &str = "the store holds entries sealed with a key this replica \
    lacks (or this replica writes plaintext while the fleet seals): give every replica the \
    fleet's keyring; the entries are left as they are";

/// Releases the lease when dropped unless committed or released: a flight cancelled at any await
/// point (or panicking) leaves no lease behind for longer than the release takes.
struct LeaseGuard<'a> {
    inner: &'a Inner,
    lease: Lease,
    armed: bool,
}

impl<'a> LeaseGuard<'a> {
    fn new(inner: &'a Inner, lease: Lease) -> Self {
        Self {
            inner,
            lease,
            armed: true,
        }
    }

    async fn release(mut self) {
        if let Err(error) = self
            .inner
            .bounded(
                StoreOp::Release,
                self.inner.store.release_lease(&self.lease),
            )
            .await
        {
            let key = self.inner.config.user_ids.show(self.lease.key());
            tracing::debug!(%key, %error, "lease release failed; it lapses by itself");
        }
        self.armed = false;
    }

    /// The commit ended the lease (or it was lost): nothing to release.
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for LeaseGuard<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let store = Arc::clone(&self.inner.store);
        let lease = self.lease.clone();
        let give_up = self.inner.env.sleep(self.inner.config.store_timeout);
        // Counted, so that a shutdown that cancelled the flight waits for the release.
        self.inner
            .lifecycle
            .spawn_to_end(&self.inner.env, async move {
                let release = AssertUnwindSafe(store.release_lease(&lease)).catch_unwind();
                select(pin!(release), give_up).await;
            });
    }
}
