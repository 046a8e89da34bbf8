//! The verdict: what the replica processes saw, against what the mock Kigo server counted. The
//! two come from different processes, so neither figure can be derived from the other.

use std::collections::HashSet;

use examples::say;

use crate::protocol::ReplicaReport;

/// The replicas' reports and the server's count of token creations.
#[derive(Debug)]
pub(crate) struct FleetReport<'a> {
    replicas: &'a [ReplicaReport],
    creations: u64,
}

impl<'a> FleetReport<'a> {
    pub(crate) fn new(replicas: &'a [ReplicaReport], creations: u64) -> Self {
        Self {
            replicas,
            creations,
        }
    }

    fn sum(&self, figure: impl Fn(&ReplicaReport) -> u64) -> u64 {
        self.replicas.iter().map(figure).sum()
    }

    /// Requests that failed, across the fleet.
    pub(crate) fn failures(&self) -> u64 {
        self.sum(|replica| replica.failures)
    }

    /// Renewals the fleet went through: the most tokens one replica used. Sharing one token,
    /// every replica moves through the same tokens, one per renewal; with a store each, each
    /// replica has tokens of its own and the fleet creates several per renewal.
    pub(crate) fn renewals(&self) -> u64 {
        renewals(self.replicas)
    }

    /// Tokens every replica used: the token the processes shared.
    pub(crate) fn shared(&self) -> usize {
        let mut replicas = self.replicas.iter();
        let Some(first) = replicas.next() else {
            return 0;
        };
        let mut shared = distinct(&first.tokens);
        for replica in replicas {
            let used = distinct(&replica.tokens);
            shared.retain(|token| used.contains(token));
        }
        shared.len()
    }

    /// Token creations per renewal: 1.00 when the fleet behaves like one client.
    pub(crate) fn per_renewal(&self) -> f64 {
        self.creations as f64 / self.renewals().max(1) as f64
    }

    /// Whether the fleet created one token per renewal and no more.
    pub(crate) fn one_per_renewal(&self) -> bool {
        self.creations <= self.renewals()
    }

    /// Prints the figures, one line each.
    pub(crate) fn print(&self, revoked: usize, revoked_at: f64) {
        let created: Vec<String> = self
            .replicas
            .iter()
            .map(|replica| replica.created.to_string())
            .collect();
        let (creations, renewals, shared) = (self.creations, self.renewals(), self.shared());
        let replicas = self.replicas.len();
        say(format_args!(
            "  requests sent           {:>6}   failed: {}",
            self.sum(|replica| replica.requests),
            self.failures()
        ));
        say(format_args!(
            "  401s recovered          {:>6}   of {} rejected after revoking {revoked} token(s) at {revoked_at:.1} s",
            self.sum(|replica| replica.recovered),
            self.sum(|replica| replica.unauthorized),
        ));
        say(format_args!(
            "  tokens created          {creations:>6}   (counted by the mock Kigo server; by replica: {})",
            created.join(" ")
        ));
        say(format_args!(
            "  renewals                {renewals:>6}   (the most tokens one replica process went through)"
        ));
        say(format_args!(
            "  shared by all replicas  {shared:>6}   (tokens every one of the {replicas} processes used)"
        ));
        say(format_args!(
            "  creations per renewal   {:>6.2}   (1.00: one token per renewal for the whole fleet)",
            self.per_renewal()
        ));
    }
}

/// The most tokens one of `replicas` used: the renewals of a fleet sharing one token.
pub(crate) fn renewals(replicas: &[ReplicaReport]) -> u64 {
    let most = replicas
        .iter()
        .map(|replica| distinct(&replica.tokens).len());
    most.max().unwrap_or_default() as u64
}

fn distinct(tokens: &[String]) -> HashSet<&str> {
    tokens.iter().map(String::as_str).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn used(tokens: &[&str]) -> ReplicaReport {
        ReplicaReport {
            tokens: tokens.iter().map(|token| (*token).to_owned()).collect(),
            ..ReplicaReport::default()
        }
    }

    #[test]
    fn replicas_moving_through_the_same_tokens_cost_one_creation_per_renewal() {
        let replicas = [
            used(&["a", "b", "c"]),
            used(&["a", "b", "c"]),
            used(&["a", "b"]),
        ];
        let report = FleetReport::new(&replicas, 3);
        assert_eq!((report.renewals(), report.shared()), (3, 2));
        assert_eq!(report.per_renewal(), 1.0);
        assert!(report.one_per_renewal());
    }

    #[test]
    fn replicas_with_tokens_of_their_own_fail() {
        let replicas = [
            used(&["a1", "a2"]),
            used(&["b1", "b2"]),
            used(&["c1", "c2"]),
        ];
        let report = FleetReport::new(&replicas, 6);
        assert_eq!((report.renewals(), report.shared()), (2, 0));
        assert_eq!(report.per_renewal(), 3.0);
        assert!(!report.one_per_renewal());
    }

    #[test]
    fn a_token_created_and_never_used_fails() {
        let replicas = [used(&["a", "b"]), used(&["a", "b"])];
        let report = FleetReport::new(&replicas, 3);
        assert_eq!(report.per_renewal(), 1.5);
        assert!(!report.one_per_renewal());
    }

    #[test]
    fn a_token_reported_twice_counts_once() {
        let replicas = [used(&["a", "a"])];
        assert_eq!(FleetReport::new(&replicas, 2).renewals(), 1);
    }
}
