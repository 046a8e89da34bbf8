//! The store's side of the invariants: every commit and invalidation that reached it, in order,
//! and the creations that never made it there.

use std::time::Duration;

use kigo_core::store::{CommitOutcome, LeaseAttempt};
use kigo_core::{Fingerprint, TokenKey};

use super::checks::{Invariant, Violation, earliest_renewal};
use super::recorders::{Record, lock, replica_of};
use super::run::Sim;
use super::schedule::{At, PARTNERS};

impl Sim<'_> {
    /// Notes what reached the store and checks the commits.
    pub(super) fn check_record(&mut self, record: Record) -> Result<(), Violation> {
        match record {
            Record::Created(fingerprint) => {
                self.summary.creations += 1;
                let (label, replica, key) = {
                    let journal = lock(&self.fleet.journal);
                    let creation = journal.creation(&fingerprint).expect("just recorded");
                    (
                        journal.label(&fingerprint),
                        creation.replica,
                        creation.key.clone(),
                    )
                };
                self.note(format!("r{replica} created {label} for {key}"));
                Ok(())
            }
            Record::Lease {
                key,
                holder,
                attempt,
            } => {
                let replica = replica_of(&holder);
                let what = match attempt {
                    LeaseAttempt::Acquired(lease) => {
                        format!("granted (generation {})", lease.fence())
                    }
                    LeaseAttempt::Held { remaining } => {
                        format!("held by another ({remaining:?} left)")
                    }
                };
                self.note(format!(
                    "store: {replica} asks for the lease of {key}: {what}"
                ));
                Ok(())
            }
            Record::Invalidated {
                key,
                fingerprint,
                outcome,
                ..
            } => {
                let label = self.label(&fingerprint);
                self.note(format!("store: {label} of {key} invalidated: {outcome:?}"));
                Ok(())
            }
            Record::Commit {
                at,
                key,
                generation,
                fingerprint,
                holder,
                outcome,
            } => {
                let label = self.label(&fingerprint);
                let replica = replica_of(&holder);
                self.note(format!(
                    "store: {replica} commits {label} as generation {generation} of {key}: {outcome:?}"
                ));
                if outcome != CommitOutcome::Committed {
                    self.summary.refused_commits += 1;
                    return Ok(());
                }
                self.summary.commits += 1;
                self.check_commit(at, key, generation, fingerprint)
            }
        }
    }

    fn check_commit(
        &mut self,
        at: Duration,
        key: TokenKey,
        generation: u64,
        fingerprint: Fingerprint,
    ) -> Result<(), Violation> {
        let label = self.label(&fingerprint);
        if lock(&self.fleet.journal).creation(&fingerprint).is_none() {
            return Err(self.violation(
                Invariant::OneCommitPerGeneration,
                format!(
                    "the store took a token the endpoint never created, as generation {generation}"
                ),
            ));
        }
        if !self.committed.insert(fingerprint) {
            return Err(self.violation(
                Invariant::OneCommitPerGeneration,
                format!("{label} committed a second time, as generation {generation}"),
            ));
        }
        if let Some((previous_generation, previous)) = self.last_commit.get(&key).copied() {
            let previous_label = self.label(&previous);
            if generation <= previous_generation {
                return Err(self.violation(
                    Invariant::OneCommitPerGeneration,
                    format!(
                        "{label} committed as generation {generation} of {key} after \
                         {previous_label} as generation {previous_generation}"
                    ),
                ));
            }
            let due = {
                let journal = lock(&self.fleet.journal);
                let creation = journal.creation(&previous).expect("committed, so created");
                earliest_renewal(creation.sent, creation.lifetime)
            };
            if at < due && !self.reported.contains(&previous) {
                return Err(self.violation(
                    Invariant::CreationsPerRenewal,
                    format!(
                        "{label} replaced {previous_label} of {key}, before the earliest refresh \
                         point of {previous_label} ({}) and with no request reporting it \
                         rejected: a renewal nobody needed",
                        At(due)
                    ),
                ));
            }
        }
        self.last_commit.insert(key, (generation, fingerprint));
        Ok(())
    }

    /// Creations never committed: none without a fault that may waste them, and never more
    /// than the faults allow.
    pub(super) fn check_creations(&mut self) -> Result<(), Violation> {
        let wasted: Vec<String> = {
            let journal = lock(&self.fleet.journal);
            let mut wasted: Vec<_> = journal
                .creations()
                .filter(|(fingerprint, _)| !self.committed.contains(fingerprint))
                .map(|(_, creation)| creation)
                .collect();
            wasted.sort_by_key(|creation| creation.label);
            wasted
                .iter()
                .map(|creation| {
                    format!(
                        "T{} by r{} at {}",
                        creation.label,
                        creation.replica,
                        At(creation.sent)
                    )
                })
                .collect()
        };
        self.summary.wasted = wasted.len() as u64;
        self.summary.may_waste = self.schedule.creations_it_may_waste() * PARTNERS.len() as u64;
        if self.summary.wasted > self.summary.may_waste {
            return Err(self.violation(
                Invariant::CreationsPerRenewal,
                format!(
                    "{} creation(s) never committed ({}); the faults allow {}",
                    wasted.len(),
                    wasted.join(", "),
                    self.summary.may_waste
                ),
            ));
        }
        Ok(())
    }
}
