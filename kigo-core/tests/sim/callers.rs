//! The callers: each asks a replica for a token, uses it in a request, and reports a 401 as a
//! client of the API would, asking once more.

use std::time::Duration;

use futures_util::FutureExt;
use kigo_core::{Error, Token};
use tokio::task::JoinHandle;

use super::checks::{Holding, Invariant, Violation};
use super::run::Sim;
use super::schedule::PARTNERS;

/// A caller, as asked.
#[derive(Debug, Clone, Copy)]
pub(super) struct Asked {
    pub(super) replica: usize,
    pub(super) partner: usize,
    pub(super) started: Duration,
    /// The life of the replica it asked.
    pub(super) life: u32,
    /// Whether this is the one retry after a 401.
    pub(super) retry: bool,
    /// How long the request made with the token takes.
    pub(super) request: Duration,
}

/// A 401 on its way back to a caller whose request used a rejected token.
pub(super) struct Reply {
    pub(super) at: Duration,
    pub(super) asked: Asked,
    pub(super) token: Token,
}

pub(super) struct Pending {
    asked: Asked,
    task: JoinHandle<Result<Token, Error>>,
}

impl Sim<'_> {
    /// The callers of `replica` in its life `life`, gone with it.
    pub(super) fn forget_callers(&mut self, replica: usize, life: u32) {
        self.pending.retain(|pending| {
            let theirs = pending.asked.replica == replica && pending.asked.life == life;
            if theirs {
                pending.task.abort();
            }
            !theirs
        });
    }

    /// The callers whose answer came during the last step.
    pub(super) fn collect_callers(&mut self) -> Result<(), Violation> {
        let (done, waiting) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition::<Vec<_>, _>(|pending| pending.task.is_finished());
        self.pending = waiting;
        // Every caller of this step got its token before any of them reports one rejected.
        let mut rejected = Vec::new();
        for pending in done {
            let result = pending
                .task
                .now_or_never()
                .expect("a finished task")
                .map_err(|panicked| {
                    let detail = format!("a caller's token() panicked: {panicked}");
                    self.violation(Invariant::NoUnexplainedFailure, detail)
                })?;
            rejected.extend(self.answered(pending.asked, result)?);
        }
        rejected
            .into_iter()
            .try_for_each(|(asked, token)| self.rejects(asked, token))
    }

    /// A caller on `replica` asks for `partner`'s token: answered at once, or it waits (in a
    /// task of its own).
    pub(super) fn ask(
        &mut self,
        replica: usize,
        partner: usize,
        request: Duration,
        retry: bool,
    ) -> Result<(), Violation> {
        let Some(live) = self.fleet.replica(replica) else {
            self.note(format!("r{replica} is down: its caller goes away"));
            return Ok(());
        };
        self.summary.calls += 1;
        self.acted = true;
        let handle = live.handles[partner].clone();
        let asked = Asked {
            replica,
            partner,
            started: self.now(),
            life: self.fleet.life(replica),
            retry,
            request,
        };
        let mut call =
            Box::pin(async move { handle.token().await.map(|token| Token::clone(&token)) });
        match call.as_mut().now_or_never() {
            Some(result) => match self.answered(asked, result)? {
                Some((asked, token)) => self.rejects(asked, token),
                None => Ok(()),
            },
            None => {
                self.check_may_wait(replica, partner)?;
                self.summary.waits += 1;
                self.note(format!(
                    "a caller on r{replica} waits for {}",
                    PARTNERS[partner]
                ));
                self.pending.push(Pending {
                    asked,
                    task: tokio::spawn(call),
                });
                Ok(())
            }
        }
    }

    /// A caller got its answer; the token, if the API rejects it.
    fn answered(
        &mut self,
        asked: Asked,
        result: Result<Token, Error>,
    ) -> Result<Option<(Asked, Token)>, Violation> {
        let Asked {
            replica, partner, ..
        } = asked;
        let waited = self.now() - asked.started;
        let same_life =
            self.fleet.replica(replica).is_some() && asked.life == self.fleet.life(replica);
        match result {
            Ok(token) => {
                if waited > Duration::ZERO {
                    let label = self.label(&token.fingerprint());
                    self.note(format!(
                        "a caller on r{replica} got {label} after {waited:?}"
                    ));
                }
                if !same_life {
                    return Ok(None);
                }
                self.check_served(replica, partner, &token)?;
                self.check_wait_length(asked)?;
                Ok(self
                    .revoked
                    .contains(&token.fingerprint())
                    .then_some((asked, token)))
            }
            Err(error) => {
                self.summary.errors += 1;
                self.note(format!(
                    "a caller on r{replica} failed after {waited:?}: {error}"
                ));
                if same_life {
                    self.check_failure(asked, &error)?;
                }
                Ok(None)
            }
        }
    }

    /// The API rejects `token`: the 401 reaches the caller when its request ends.
    fn rejects(&mut self, asked: Asked, token: Token) -> Result<(), Violation> {
        if asked.request.is_zero() {
            return self.got_401(asked, &token);
        }
        let at = self.now() + asked.request;
        let place = self.replies.partition_point(|reply| reply.at <= at);
        self.replies.insert(place, Reply { at, asked, token });
        Ok(())
    }

    /// The request made with `token` got a 401: it reports it and, the first time, asks again.
    pub(super) fn got_401(&mut self, asked: Asked, token: &Token) -> Result<(), Violation> {
        if self.fleet.life(asked.replica) != asked.life
            || self.fleet.replica(asked.replica).is_none()
        {
            return Ok(());
        }
        self.report(asked.replica, asked.partner, token)?;
        if asked.retry {
            return Ok(());
        }
        self.ask(asked.replica, asked.partner, asked.request, true)
    }

    /// A request on `replica` got a 401 with its cached token: it reports it and asks again.
    pub(super) fn rejected(&mut self, replica: usize, partner: usize) -> Result<(), Violation> {
        let cached = self
            .fleet
            .replica(replica)
            .and_then(|live| live.handles[partner].cached())
            .map(|token| Token::clone(&token));
        let Some(token) = cached else {
            self.note(format!(
                "r{replica} has no {} token to use",
                PARTNERS[partner]
            ));
            return Ok(());
        };
        self.report(replica, partner, &token)?;
        self.ask(replica, partner, Duration::ZERO, true)
    }

    /// Reports `token` rejected on `replica`, as a request that got a 401 with it does. The
    /// report must drop no other valid token.
    fn report(&mut self, replica: usize, partner: usize, token: &Token) -> Result<(), Violation> {
        let Some(live) = self.fleet.replica(replica) else {
            return Ok(());
        };
        let handle = &live.handles[partner];
        let fingerprint = token.fingerprint();
        let cached = handle.cached().map(|current| current.fingerprint());
        // The manager keeps a current token younger than its minimum age, and takes no note.
        let min_age = super::checks::MIN_TOKEN_AGE.min(token.lifetime() / 10);
        let age = live
            .now()
            .duration_since(token.issued_at())
            .unwrap_or_default();
        let kept_young = age < min_age && cached == Some(fingerprint);
        let dropped = handle.invalidate(&fingerprint);
        self.acted = true;
        let label = self.label(&fingerprint);
        if let Some(valid) = cached.filter(|valid| dropped && *valid != fingerprint) {
            let valid = self.label(&valid);
            return Err(self.violation(
                Invariant::NoWaitWhileValid,
                format!(
                    "a 401 for {label} on r{replica} dropped {valid}, a valid token nobody reported"
                ),
            ));
        }
        let view = &mut self.views[replica][partner];
        if !kept_young {
            view.rejected.insert(fingerprint);
            self.reported.insert(fingerprint);
        }
        if dropped {
            view.holding = Holding::Dropped;
        }
        let verdict = match (dropped, kept_young) {
            (true, _) => "dropped",
            (false, true) => "kept: younger than the minimum age",
            (false, false) => "noted; not the cached token",
        };
        self.note(format!(
            "r{replica} reports {label} rejected (401): {verdict}"
        ));
        Ok(())
    }
}
