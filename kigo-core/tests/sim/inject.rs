//! Switching the schedule's faults on and off: in the store every replica reaches, in one
//! replica's link to it, in the token endpoint, and in the fleet (crashes and restarts).

use std::sync::Arc;
use std::time::Duration;

use kigo_testkit::Gate;

use super::checks::Violation;
use super::faults::{CrashKind, Fault, FaultKind, StoreFault};
use super::recorders::lock;
use super::run::{Sim, fresh_views};
use super::schedule::REPLICAS;

/// The latency of a link whose commits stall: small, only so that requests travel on the wire.
const STALLED_LINK_LATENCY: Duration = Duration::from_millis(2);

impl Sim<'_> {
    pub(super) fn begin(&mut self, fault: &Fault) -> Result<(), Violation> {
        self.note(format!("FAULT {}", fault.kind));
        let store = &self.fleet.store;
        match &fault.kind {
            FaultKind::Store(StoreFault::Flaky(count)) => store.fail_next(*count),
            FaultKind::Store(StoreFault::CommitsFail(count)) => store.fail_commits(*count),
            FaultKind::Store(StoreFault::CommitAnswersLost(count)) => {
                store.lose_commit_answers(*count);
            }
            FaultKind::Store(_) | FaultKind::NoticesLost | FaultKind::EndpointDown(_) => {
                self.switch_windows();
            }
            FaultKind::FeedsCut => store.cut_changes(),
            FaultKind::NoticeForged { partner } => {
                store.forge_notice(self.fleet.keys[*partner].clone());
            }
            FaultKind::Crash { replica, how, .. } => {
                let life = self.fleet.life(*replica);
                self.fleet.crash(*replica, *how);
                if *how != CrashKind::ShutDown {
                    // Its callers died with it.
                    self.forget_callers(*replica, life);
                }
            }
            FaultKind::Rejected { replica, partner } => {
                return self.rejected(*replica, *partner);
            }
            FaultKind::Revoked { partner } => {
                let key = self.fleet.keys[*partner].clone();
                let tokens = lock(&self.fleet.journal).fingerprints_of(&key);
                self.revoked.extend(tokens);
            }
        }
        Ok(())
    }

    pub(super) fn end(&mut self, fault: &Fault) {
        self.note(format!("ENDS {}", fault.kind));
        let store = &self.fleet.store;
        match &fault.kind {
            FaultKind::Store(StoreFault::Flaky(_)) => store.fail_next(0),
            FaultKind::Store(StoreFault::CommitsFail(_)) => store.fail_commits(0),
            FaultKind::Store(StoreFault::CommitAnswersLost(_)) => store.lose_commit_answers(0),
            FaultKind::Crash {
                replica,
                skew_ms,
                seed,
                ..
            } => {
                self.fleet.start(*replica, *skew_ms, *seed);
                self.views[*replica] = fresh_views();
                self.switch_windows();
            }
            _ => self.switch_windows(),
        }
    }

    /// Sets the switches of the faults that last a while to what is in force now.
    fn switch_windows(&self) {
        let now = self.now();
        let active = || {
            self.schedule
                .faults
                .iter()
                .filter(move |fault| fault.from <= now && now < fault.until)
                .map(|fault| &fault.kind)
        };
        let store_faults = || {
            active().filter_map(|kind| match kind {
                FaultKind::Store(fault) => Some(fault),
                _ => None,
            })
        };
        let store = &self.fleet.store;
        store.set_failing(store_faults().any(|fault| *fault == StoreFault::Down));
        store.set_hanging(store_faults().any(|fault| *fault == StoreFault::Hangs));
        store.mute_changes(active().any(|kind| *kind == FaultKind::NoticesLost));
        let latency = store_faults()
            .filter_map(|fault| match fault {
                StoreFault::Slow(latency) => Some(*latency),
                _ => None,
            })
            .max()
            .unwrap_or_default();
        store.set_latency(latency, Arc::new(self.fleet.clock.clone()));
        for replica in 0..REPLICAS {
            let Some(link) = self.fleet.replica(replica).map(|live| live.link()) else {
                continue;
            };
            let stalled =
                store_faults().any(|fault| *fault == StoreFault::CommitsStalled { replica });
            let slow = store_faults()
                .filter_map(|fault| match fault {
                    StoreFault::LinkSlow {
                        replica: slow,
                        latency,
                    } if *slow == replica => Some(*latency),
                    _ => None,
                })
                .max();
            // A stalled commit is on the wire: its caller giving up does not recall it.
            let latency = slow.unwrap_or(if stalled {
                STALLED_LINK_LATENCY
            } else {
                Duration::ZERO
            });
            link.set_latency(latency, Arc::new(self.fleet.clock.clone()));
            if stalled {
                link.hold(Gate::BeforeCommit);
            } else {
                link.open(Gate::BeforeCommit);
            }
        }
        // The latest outage to begin wins.
        let outage = active()
            .filter_map(|kind| match kind {
                FaultKind::EndpointDown(action) => Some(action.clone()),
                _ => None,
            })
            .next_back();
        self.fleet.endpoint.set_outage(outage);
    }
}
