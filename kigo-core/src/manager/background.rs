//! The background work of a manager: the scheduler that renews keys ahead of expiry, and
//! following the store's change notices; both started again if they panic.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};

use super::Inner;
use super::flight::Reason;
use super::slot::KeySlot;

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
                slot.notify_changed();
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
    /// Starts the scheduler and the change follower with the first slot, and schedules `slot`.
    pub(super) fn start_background(self: &Arc<Self>, slot: &Arc<KeySlot>) {
        if !self
            .background_started
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            for task in [Task::Scheduler, Task::ChangeFollower] {
                let weak = Arc::downgrade(self);
                let start = move || {
                    let weak = weak.clone();
                    async move {
                        match task {
                            Task::Scheduler => super::scheduler::run(weak).await,
                            Task::ChangeFollower => follow_changes(weak).await,
                        }
                    }
                };
                self.lifecycle
                    .spawn(&self.env, supervised(Arc::downgrade(self), start));
            }
        }
        self.schedule(slot);
    }
}

/// A background task of a manager.
#[derive(Debug, Clone, Copy)]
enum Task {
    Scheduler,
    ChangeFollower,
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
