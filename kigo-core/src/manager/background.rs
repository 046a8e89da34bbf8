//! The background work of a manager: renewing each key ahead of expiry, and following the
//! store's change notices.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use futures_util::future::{Either, select};
use futures_util::{FutureExt, StreamExt};

use super::Inner;
use super::flight::Reason;
use super::slot::KeySlot;
use crate::{Error, TokenKey};

/// Renews `slot`'s token at this replica's refresh point, and retries after failures, for as long
/// as the slot and the manager live. Holds only weak references while it sleeps.
pub(super) async fn refresh_ahead(inner: Weak<Inner>, slot: Weak<KeySlot>) {
    loop {
        let (changed, sleep) = {
            let (Some(inner), Some(slot)) = (inner.upgrade(), slot.upgrade()) else {
                return;
            };
            let changed = slot.changed.listen();
            let sleep = next_refresh(&slot, inner.now()).map(|at| inner.env.sleep_until(at));
            (changed, sleep)
        };
        let Some(sleep) = sleep else {
            changed.await;
            continue;
        };
        if let Either::Left(_) = select(changed, sleep).await {
            continue;
        }
        let flight = {
            let (Some(inner), Some(slot)) = (inner.upgrade(), slot.upgrade()) else {
                return;
            };
            let now = inner.now();
            let due = next_refresh(&slot, now).is_some_and(|at| at <= now);
            due.then(|| inner.flight(&slot, Reason::Ahead))
        };
        if let Some(flight) = flight
            && let Err(error) = flight.await
        {
            // The flight logged why; the error's text would name the user.
            tracing::debug!(
                transient = error.is_transient(),
                "refresh ahead did not renew"
            );
        }
        // A refresh that neither renewed nor scheduled a retry must not make this loop spin.
        let pause = {
            let (Some(inner), Some(slot)) = (inner.upgrade(), slot.upgrade()) else {
                return;
            };
            let now = inner.now();
            let still_due = next_refresh(&slot, now).is_some_and(|at| at <= now);
            still_due.then(|| inner.env.sleep(inner.poll_delay()))
        };
        if let Some(pause) = pause {
            pause.await;
        }
    }
}

/// When the refresher should next act on `slot`, if at all.
fn next_refresh(slot: &KeySlot, now: SystemTime) -> Option<SystemTime> {
    let current = slot.current();
    let failures = slot.failures();
    let paused = failures.endpoint_retry_at.max(failures.store_retry_at);
    if current.present {
        let paused = paused.max(failures.lease_retry_at);
        let is_user = matches!(slot.key, TokenKey::User { .. });
        if is_user && !current.was_used() {
            // Nobody has taken this user's token yet: look again at the refresh point (a first
            // use does not wake the refresher, to keep the hot path free of it); if still nobody
            // has, let it lapse, and the next request creates one.
            return (now < current.refresh_at).then_some(current.refresh_at);
        }
        return Some(paused.map_or(current.refresh_at, |at| at.max(current.refresh_at)));
    }
    // No token: keep trying in the background after transient failures, so that callers find
    // one when the endpoint or the store recovers.
    let transient = failures
        .endpoint_error
        .as_ref()
        .is_some_and(Error::is_transient)
        || failures.store_error.is_some();
    if transient { paused } else { None }
}

/// The first pause before subscribing again after a feed ended. It doubles while feeds keep
/// ending without delivering a notice (a store refusing subscriptions), up to the poll interval,
/// so that a dropped connection costs milliseconds of notices, not a poll interval.
const RESUBSCRIBE_PAUSE: Duration = Duration::from_millis(10);

/// Wakes waiters and adopts new tokens when the store announces a change.
pub(super) async fn follow_changes(inner: Weak<Inner>) {
    let mut pause = RESUBSCRIBE_PAUSE;
    loop {
        let feed = match inner.upgrade() {
            Some(inner) => inner.store.changes(),
            None => return,
        };
        let Some(mut feed) = feed else {
            return;
        };
        while let Some(notice) = feed.next().await {
            pause = RESUBSCRIBE_PAUSE;
            let Some(inner) = inner.upgrade() else {
                return;
            };
            if let Some(slot) = inner.registry.get(&notice.key) {
                slot.changed.notify(usize::MAX);
                drop(inner.flight(&slot, Reason::Notice));
            }
        }
        // The feed ended (connection lost): subscribe again after a pause.
        let sleep = match inner.upgrade() {
            Some(inner) => {
                let sleep = inner.env.sleep(pause);
                pause = (pause * 2).min(inner.config.poll_interval);
                sleep
            }
            None => return,
        };
        sleep.await;
    }
}

impl Inner {
    /// Starts the refresher of a new slot, and the change follower with the first slot.
    pub(super) fn start_background(self: &Arc<Self>, slot: &Arc<KeySlot>) {
        let weak = Arc::downgrade(self);
        if !self
            .following_changes
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            let inner = weak.clone();
            self.lifecycle.spawn(
                &self.env,
                supervised(weak.clone(), move || follow_changes(inner.clone())),
            );
        }
        let slot = Arc::downgrade(slot);
        let inner = weak.clone();
        self.lifecycle.spawn(
            &self.env,
            supervised(weak, move || refresh_ahead(inner.clone(), slot.clone())),
        );
    }
}

/// Runs the task `start` makes, and a new one after a poll interval whenever it panics (a bug in
/// a store's change feed, say), so that a panic never ends a key's renewals for good.
async fn supervised<F, Fut>(inner: Weak<Inner>, start: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()>,
{
    while AssertUnwindSafe(start()).catch_unwind().await.is_err() {
        let Some(inner) = inner.upgrade() else {
            return;
        };
        inner.metrics.panicked();
        tracing::error!("a background task of the token manager panicked; starting it again");
        let pause = inner.env.sleep(inner.poll_delay());
        drop(inner);
        pause.await;
    }
}
