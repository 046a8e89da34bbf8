//! When each key is next renewed (or retried), for all keys of a manager in one queue served by
//! one task: a key costs a queue entry, not a task of its own, so a million cached user keys
//! stay cheap.
//!
//! A key is (re)scheduled when it is created and whenever one of its flights ends: every change
//! that moves its refresh point (a new token, a failure, another replica's lease) happens in a
//! flight. An entry that a later scheduling of the same key superseded is skipped when it comes
//! up; a scheduling for the time already queued adds none.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::SystemTime;

use event_listener::Event;
use futures_util::future::select;

use super::Inner;
use super::flight::Reason;
use super::slot::KeySlot;
use crate::time::{from_unix_nanos, unix_nanos};
use crate::{Error, TokenKey};

/// The queue of due times.
#[derive(Debug, Default)]
pub(super) struct Scheduler {
    queue: Mutex<BinaryHeap<Reverse<Entry>>>,
    /// Fires when an entry earlier than every other is queued.
    earlier: Event,
}

/// A key due at `at`: its current entry while its slot's `scheduled` holds the same time.
#[derive(Debug)]
struct Entry {
    at: DueTime,
    slot: Weak<KeySlot>,
}

/// A due time in nanoseconds since the epoch, never [`NOT_QUEUED`]: 8 bytes where a
/// `SystemTime` takes 16, for each of a million keys.
type DueTime = u64;

/// A slot's `scheduled` when none of its entries is current.
pub(super) const NOT_QUEUED: DueTime = 0;

fn due_time(at: SystemTime) -> DueTime {
    unix_nanos(at).max(NOT_QUEUED + 1)
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.at.cmp(&other.at)
    }
}

impl Scheduler {
    fn queue(&self) -> MutexGuard<'_, BinaryHeap<Reverse<Entry>>> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `slot` for `at` (or takes it off the queue with `None`), superseding its earlier
    /// entries. A slot already queued for `at` is left as it is: a flight that changes nothing
    /// (the notice of this manager's own commit) would otherwise add an entry that only takes
    /// memory until it comes up.
    fn put(&self, slot: &Arc<KeySlot>, at: Option<SystemTime>) {
        let mut queue = self.queue();
        let at = at.map_or(NOT_QUEUED, due_time);
        if slot.scheduled.swap(at, Ordering::Relaxed) == at || at == NOT_QUEUED {
            return;
        }
        let earliest = queue.peek().is_none_or(|Reverse(first)| at < first.at);
        queue.push(Reverse(Entry {
            at,
            slot: Arc::downgrade(slot),
        }));
        drop(queue);
        if earliest {
            self.earlier.notify(usize::MAX);
        }
    }

    /// The slots whose current entry is due at `now`, taken off the queue.
    fn take_due(&self, now: SystemTime) -> Vec<Arc<KeySlot>> {
        let now = due_time(now);
        let mut queue = self.queue();
        let mut due = Vec::new();
        while queue.peek().is_some_and(|Reverse(first)| first.at <= now) {
            let Some(Reverse(entry)) = queue.pop() else {
                break;
            };
            // Another entry of the slot's for the same time, if one is left, is no longer
            // current once this one is taken.
            if let Some(slot) = entry.slot.upgrade()
                && slot
                    .scheduled
                    .compare_exchange(entry.at, NOT_QUEUED, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            {
                due.push(slot);
            }
        }
        due
    }

    fn next_at(&self) -> Option<SystemTime> {
        let first = self.queue().peek().map(|Reverse(first)| first.at)?;
        Some(from_unix_nanos(first))
    }
}

impl Inner {
    /// Queues `slot` for its next renewal or retry, if it needs one. Right after a flight that
    /// left the key still due (it neither renewed nor scheduled a retry), a poll interval later,
    /// so that the key is never retried in a loop.
    pub(super) fn schedule(&self, slot: &Arc<KeySlot>) {
        let now = self.now();
        let at = next_refresh(slot, now).map(|at| {
            if at <= now {
                crate::time::after(now, self.poll_delay())
            } else {
                at
            }
        });
        self.scheduler.put(slot, at);
    }
}

/// Starts the refreshes that are due, and sleeps until the next one is (or an earlier one is
/// queued), for as long as the manager lives. Holds only a weak reference while it sleeps.
pub(super) async fn run(inner: Weak<Inner>) {
    loop {
        let (earlier, sleep) = {
            let Some(inner) = inner.upgrade() else { return };
            let earlier = inner.scheduler.earlier.listen();
            let now = inner.now();
            for slot in inner.scheduler.take_due(now) {
                let due = next_refresh(&slot, now).is_some_and(|at| at <= now);
                if due {
                    // The flight schedules the key again when it ends.
                    drop(inner.flight(&slot, Reason::Ahead));
                } else {
                    inner.schedule(&slot);
                }
            }
            let sleep = inner
                .scheduler
                .next_at()
                .map(|at| inner.env.sleep_until(at));
            (earlier, sleep)
        };
        match sleep {
            Some(sleep) => {
                select(earlier, sleep).await;
            }
            None => earlier.await,
        }
    }
}

/// When `slot` should next be refreshed in the background, if at all.
fn next_refresh(slot: &KeySlot, now: SystemTime) -> Option<SystemTime> {
    let current = slot.current();
    let failures = slot.failures();
    let paused = failures.endpoint_retry_at.max(failures.store_retry_at);
    if current.present {
        let paused = paused.max(failures.lease_retry_at);
        let is_user = matches!(slot.key, TokenKey::User { .. });
        if is_user && !current.was_used() {
            // Nobody has taken this user's token yet: look again at the refresh point (a first
            // use does not reschedule, to keep the hot path free of it); if still nobody has,
            // let it lapse, and the next request creates one.
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
