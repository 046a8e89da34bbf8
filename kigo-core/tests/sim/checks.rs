//! The invariants, checked after every step of a run.
//!
//! Times are judged twice: by the replica's own clock, as the manager judges them, and by the
//! true clock, as the API does. Tokens are stamped by the clock of the replica that asked for
//! them; replicas' clocks are at most 15 s off the true time, so any two differ by at most the
//! policy's 30-s skew allowance.

use std::fmt;
use std::time::Duration;

use kigo_core::{Error, ExpiryPolicy, Token};

use super::callers::Asked;
use super::recorders::lock;
use super::run::Sim;
use super::schedule::{At, PARTNERS, REPLICAS, TAIL};

/// The manager's default minimum age before a 401 drops a token.
pub const MIN_TOKEN_AGE: Duration = Duration::from_secs(5);
/// The default policy's allowance for clocks that disagree.
const SKEW_ALLOWANCE: Duration = Duration::from_secs(30);
/// A wait that no fault explains ends within this much more than two creations: one by another
/// replica holding the lease, one of its own, and a poll interval for a lost notice.
const WAIT_SLACK: Duration = Duration::from_secs(2);

/// What a replica holds for one partner, as last seen.
#[derive(Debug)]
pub enum Holding {
    /// Nothing yet, since it started.
    Never,
    Serving(Token),
    /// A 401 dropped it.
    Dropped,
    /// It went stale before a renewal landed (a fault explained it).
    WentStale,
}

/// The properties every run keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invariant {
    /// No caller receives a token past its stale point by its replica's clock, nor one with less
    /// left by the true clock than [`promised_remaining`] (so never an expired one).
    Fresh,
    /// The store's commits: each token once, generations strictly increasing per key (so at
    /// most one token per generation), every one a token the endpoint created; and replicas
    /// hand out committed tokens only, but for one made without the store while it failed.
    OneCommitPerGeneration,
    /// Creations per renewal: every creation committed unless a fault that may waste creations
    /// allows it (so exactly one per renewal without such faults), and no renewal before the
    /// earliest refresh point of the token it replaces unless that token was reported rejected.
    CreationsPerRenewal,
    /// No caller waits while its replica has a valid token cached: a replica's token goes stale
    /// before its renewal lands only while a fault explains it, and a 401 drops only the token
    /// it names.
    NoWaitWhileValid,
    /// A caller fails (or panics), or waits longer than two creations and `WAIT_SLACK`, only
    /// while a fault explains it.
    NoUnexplainedFailure,
    /// A token a request reported rejected is never handed out again by that replica.
    RejectedStaysRejected,
    /// After the quiet tail every replica hands out a valid token for every key at once, and no
    /// caller is left waiting.
    ServedAgain,
}

/// An invariant broken, when, and how.
#[derive(Debug)]
pub struct Violation {
    pub at: Duration,
    pub invariant: Invariant,
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} broken at {}: {}",
            self.invariant,
            At(self.at),
            self.detail
        )
    }
}

fn policy() -> ExpiryPolicy {
    ExpiryPolicy::default()
}

/// The validity the default policy promises a caller by the API's clock while replicas' clocks
/// differ by at most [`SKEW_ALLOWANCE`]: its stale margin (60 s + 30 s, at most a fifth of the
/// lifetime), less that allowance. 60 s for a 30-minute token, 30 s for a 5-minute one.
fn promised_remaining(token: &Token) -> Duration {
    let margin = token
        .expires_at()
        .duration_since(policy().stale_at(token))
        .unwrap_or_default();
    margin.saturating_sub(SKEW_ALLOWANCE)
}

/// The earliest a replica may renew a token asked for at `sent` (true time): the start of the
/// refresh window, less the clock difference allowed between the creator and the renewer.
pub(super) fn earliest_renewal(sent: Duration, lifetime: Duration) -> Duration {
    let policy = policy();
    let share = policy.refresh_share() - policy.jitter_share();
    (sent + lifetime.mul_f64(share)).saturating_sub(SKEW_ALLOWANCE)
}

impl Sim<'_> {
    pub(super) fn violation(&self, invariant: Invariant, detail: impl fmt::Display) -> Violation {
        Violation {
            at: self.now(),
            invariant,
            detail: detail.to_string(),
        }
    }

    /// What `replica` would hand out now for `partner`: fresh, and its renewal on time.
    pub(super) fn look_at(&mut self, replica: usize, partner: usize) -> Result<(), Violation> {
        let Some(live) = self.fleet.replica(replica) else {
            return Ok(());
        };
        let local_now = live.now();
        let cached = live.handles[partner]
            .cached()
            .map(|token| Token::clone(&token));
        let went_stale = match &self.views[replica][partner].holding {
            Holding::Serving(previous) if local_now >= policy().stale_at(previous) => {
                Some(previous.fingerprint())
            }
            _ => None,
        };
        if let Some(previous) = went_stale {
            self.check_went_stale(replica, partner, previous)?;
        }
        let view = &self.views[replica][partner];
        match cached {
            Some(token) => {
                let new = !matches!(&view.holding, Holding::Serving(held) if held.fingerprint() == token.fingerprint());
                if new {
                    let label = self.label(&token.fingerprint());
                    self.note(format!(
                        "r{replica} serves {label} for {}",
                        PARTNERS[partner]
                    ));
                }
                self.check_served(replica, partner, &token)?;
                self.views[replica][partner].holding = Holding::Serving(token);
            }
            None => {
                if let Holding::Serving(lost) = &view.holding {
                    let label = self.label(&lost.fingerprint());
                    return Err(self.violation(
                        Invariant::NoWaitWhileValid,
                        format!("r{replica}'s cached {label} vanished while still valid"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// `replica`'s token went stale before a renewal replaced it: only a fault since its
    /// refresh window opened explains that.
    fn check_went_stale(
        &mut self,
        replica: usize,
        partner: usize,
        previous: kigo_core::Fingerprint,
    ) -> Result<(), Violation> {
        let label = self.label(&previous);
        let opened = {
            let journal = lock(&self.fleet.journal);
            let creation = journal.creation(&previous).expect("served, so created");
            earliest_renewal(creation.sent, creation.lifetime)
        };
        self.note(format!(
            "r{replica}'s {label} for {} went stale before a renewal replaced it",
            PARTNERS[partner]
        ));
        if self.schedule.explained(opened, self.now()).is_none() {
            return Err(self.violation(
                Invariant::NoWaitWhileValid,
                format!(
                    "r{replica}'s {label} for {} went stale with no renewal in place, and no \
                     fault since its refresh window opened at {}: the next caller waits",
                    PARTNERS[partner],
                    At(opened)
                ),
            ));
        }
        self.summary.went_stale += 1;
        self.views[replica][partner].holding = Holding::WentStale;
        Ok(())
    }

    /// A token `replica` hands out for `partner` now.
    pub(super) fn check_served(
        &self,
        replica: usize,
        partner: usize,
        token: &Token,
    ) -> Result<(), Violation> {
        let live = self.fleet.replica(replica).expect("a live replica");
        let fingerprint = token.fingerprint();
        let label = self.label(&fingerprint);
        let stale_at = policy().stale_at(token);
        if live.now() >= stale_at {
            return Err(self.violation(
                Invariant::Fresh,
                format!(
                    "r{replica} handed out {label} {:?} past its stale point, by its own clock",
                    live.now().duration_since(stale_at).unwrap_or_default()
                ),
            ));
        }
        let (sent, expires, key) = {
            let journal = lock(&self.fleet.journal);
            let Some(creation) = journal.creation(&fingerprint) else {
                return Err(self.violation(
                    Invariant::Fresh,
                    format!("r{replica} handed out a token the endpoint never created"),
                ));
            };
            (creation.sent, creation.expires(), creation.key.clone())
        };
        if !self.committed.contains(&fingerprint) && !self.schedule.store_failed(sent, self.now()) {
            return Err(self.violation(
                Invariant::OneCommitPerGeneration,
                format!(
                    "r{replica} handed out {label}, which the store never took, with no store \
                     fault to explain a token made without it"
                ),
            ));
        }
        if &key != self.key(partner) {
            return Err(self.violation(
                Invariant::Fresh,
                format!(
                    "r{replica} handed out {label}, a token of {key}, for {}",
                    self.key(partner)
                ),
            ));
        }
        let promised = promised_remaining(token);
        if self.now() + promised > expires {
            return Err(self.violation(
                Invariant::Fresh,
                format!(
                    "r{replica} handed out {label} with {:?} left by the true clock (it expires \
                     at {}); at least {promised:?} is promised",
                    expires.saturating_sub(self.now()),
                    At(expires)
                ),
            ));
        }
        if self.views[replica][partner].rejected.contains(&fingerprint) {
            return Err(self.violation(
                Invariant::RejectedStaysRejected,
                format!("r{replica} handed out {label} again after a request reported it rejected"),
            ));
        }
        Ok(())
    }

    /// A caller on `replica` is about to wait: only if it has no valid token.
    pub(super) fn check_may_wait(&self, replica: usize, partner: usize) -> Result<(), Violation> {
        match &self.views[replica][partner].holding {
            Holding::Serving(token) => Err(self.violation(
                Invariant::NoWaitWhileValid,
                format!(
                    "a caller on r{replica} waited while {} was cached and valid",
                    self.label(&token.fingerprint())
                ),
            )),
            Holding::Never | Holding::Dropped | Holding::WentStale => Ok(()),
        }
    }

    /// A caller that waited got its token: within two creations, unless a fault explains more.
    pub(super) fn check_wait_length(&self, asked: Asked) -> Result<(), Violation> {
        let waited = self.now() - asked.started;
        let limit = 2 * self.schedule.endpoint_latency + WAIT_SLACK;
        if waited <= limit || self.schedule.explained(asked.started, self.now()).is_some() {
            return Ok(());
        }
        Err(self.violation(
            Invariant::NoUnexplainedFailure,
            format!(
                "a caller on r{} waited {waited:?} for {} (more than {limit:?}) with no fault to \
                 explain it",
                asked.replica, PARTNERS[asked.partner]
            ),
        ))
    }

    /// A caller failed: only while a fault explains it.
    pub(super) fn check_failure(&self, asked: Asked, error: &Error) -> Result<(), Violation> {
        if self.schedule.explained(asked.started, self.now()).is_some() {
            return Ok(());
        }
        Err(self.violation(
            Invariant::NoUnexplainedFailure,
            format!(
                "a caller on r{} failed for {} with no fault to explain it: {error}",
                asked.replica, PARTNERS[asked.partner]
            ),
        ))
    }

    /// After the quiet tail: every key served at once everywhere, nobody waiting, and the
    /// creations within what the faults allow.
    pub(super) fn after_the_quiet_tail(&mut self) -> Result<(), Violation> {
        for replica in 0..REPLICAS {
            if self.fleet.replica(replica).is_none() {
                return Err(self.violation(
                    Invariant::ServedAgain,
                    format!("r{replica} is still down at the end"),
                ));
            }
            let mut views = self.views[replica].iter().zip(PARTNERS);
            if let Some((_, partner)) =
                views.find(|(view, _)| !matches!(view.holding, Holding::Serving(_)))
            {
                return Err(self.violation(
                    Invariant::ServedAgain,
                    format!(
                        "r{replica} has no valid {partner} token {TAIL:?} after the last fault"
                    ),
                ));
            }
        }
        if !self.pending.is_empty() {
            return Err(self.violation(
                Invariant::ServedAgain,
                format!("{} caller(s) still waiting at the end", self.pending.len()),
            ));
        }
        self.check_creations()
    }
}
