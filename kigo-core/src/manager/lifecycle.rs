//! Stopping background work: a stop signal every task races against, and a count of live tasks
//! so that shutdown can wait for them.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use event_listener::Event;
use futures_util::future::{Either, select};

use crate::runtime::RuntimeEnv;

#[derive(Debug, Default)]
pub(super) struct Lifecycle {
    stopped: AtomicBool,
    stop: Event,
    live: AtomicUsize,
    idle: Event,
}

impl Lifecycle {
    pub(super) fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.stop.notify(usize::MAX);
    }

    pub(super) fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// Completes once [`Lifecycle::stop`] has been called.
    pub(super) async fn stopped(&self) {
        loop {
            if self.is_stopped() {
                return;
            }
            let listener = self.stop.listen();
            if self.is_stopped() {
                return;
            }
            listener.await;
        }
    }

    /// Runs `task` in the background until it ends or the lifecycle stops, counting it as live.
    pub(super) fn spawn(
        self: &Arc<Self>,
        env: &RuntimeEnv,
        task: impl Future<Output = ()> + Send + 'static,
    ) {
        let lifecycle = Arc::clone(self);
        self.spawn_to_end(env, async move {
            lifecycle.unless_stopped(task).await;
        });
    }

    /// Runs `task` in the background to its end even if the lifecycle stops (it must end by
    /// itself), counting it as live so that shutdown waits for it.
    pub(super) fn spawn_to_end(
        self: &Arc<Self>,
        env: &RuntimeEnv,
        task: impl Future<Output = ()> + Send + 'static,
    ) {
        let ticket = Ticket::new(Arc::clone(self));
        env.spawn(async move {
            task.await;
            drop(ticket);
        });
    }

    /// Runs `future` unless the lifecycle stops first (`None` then).
    pub(super) async fn unless_stopped<T>(&self, future: impl Future<Output = T>) -> Option<T> {
        match select(pin!(future), pin!(self.stopped())).await {
            Either::Left((value, _)) => Some(value),
            Either::Right(((), _)) => None,
        }
    }

    /// Completes once no spawned task is live.
    pub(super) async fn idle(&self) {
        loop {
            if self.live.load(Ordering::SeqCst) == 0 {
                return;
            }
            let listener = self.idle.listen();
            if self.live.load(Ordering::SeqCst) == 0 {
                return;
            }
            listener.await;
        }
    }
}

/// Counts one live task; dropping it (task done or dropped by the executor) uncounts it.
struct Ticket(Arc<Lifecycle>);

impl Ticket {
    fn new(lifecycle: Arc<Lifecycle>) -> Self {
        lifecycle.live.fetch_add(1, Ordering::SeqCst);
        Self(lifecycle)
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.0.live.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify(usize::MAX);
        }
    }
}
