//! What the replicas report, and the figures of a design or fault phase drawn from them and from
//! the mock server's count of creations (two different processes: neither figure can be derived
//! from the other).

use std::collections::HashSet;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::measure::{Percentiles, highest_mib};

/// A request whose token took at least this long to get waited for it.
pub(crate) const WAITED_FROM_MICROS: u64 = 1_000;

/// What one replica process saw, from its own counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ReplicaReport {
    /// Requests its workers sent.
    pub(crate) requests: u64,
    /// Requests that did not end in a success (after the authenticated client's retry on a 401).
    pub(crate) failures: u64,
    /// 401 answers received.
    pub(crate) unauthorized: u64,
    /// Requests whose token took at least [`WAITED_FROM_MICROS`] to get, and their total wait.
    pub(crate) waited: u64,
    pub(crate) waited_micros: u64,
    /// Each request's latency, token included, in microseconds.
    pub(crate) latencies_micros: Vec<u32>,
    /// Operations on the store.
    pub(crate) store_ops: u64,
    /// Store operations that failed, as kigo's manager counts them (0 for the other designs,
    /// whose failed store operations fail their requests).
    pub(crate) store_errors: u64,
    /// Fingerprints of the tokens it used, never the tokens.
    pub(crate) tokens: Vec<String>,
    /// Its peak resident memory (`VmHWM`), where the system tells.
    pub(crate) peak_memory_kib: Option<u64>,
}

/// The figures of one run of a design (or of kigo through one fault).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Figures {
    pub(crate) name: String,
    pub(crate) replicas: usize,
    /// Counted by the mock server.
    pub(crate) creations: u64,
    /// The most distinct tokens one replica used: one per renewal when the fleet shares one token.
    pub(crate) renewals: u64,
    pub(crate) creations_per_renewal: f64,
    /// Creations against kigo's in the same run: the ratio that needs no count of renewals
    /// (replicas racing to overwrite the store each see more tokens than there were renewals).
    pub(crate) creations_vs_kigo: Option<f64>,
    pub(crate) requests: u64,
    pub(crate) failures: u64,
    pub(crate) unauthorized: u64,
    pub(crate) waited: u64,
    pub(crate) mean_wait_ms: f64,
    #[serde(flatten)]
    pub(crate) latency: Percentiles,
    pub(crate) requests_per_second: f64,
    pub(crate) store_ops_per_request: f64,
    pub(crate) store_errors: u64,
    /// The highest peak memory of one replica, if known.
    pub(crate) peak_memory_mib: Option<f64>,
}

impl Figures {
    /// The figures of `reports`, with `creations` counted at the server over `seconds`.
    pub(crate) fn of(name: &str, reports: &[ReplicaReport], creations: u64, seconds: f64) -> Self {
        let sum = |figure: fn(&ReplicaReport) -> u64| reports.iter().map(figure).sum::<u64>();
        let renewals = renewals(reports);
        let (requests, waited) = (sum(|r| r.requests), sum(|r| r.waited));
        Self {
            name: name.to_owned(),
            replicas: reports.len(),
            creations,
            renewals,
            creations_per_renewal: creations as f64 / renewals.max(1) as f64,
            creations_vs_kigo: None,
            requests,
            failures: sum(|r| r.failures),
            unauthorized: sum(|r| r.unauthorized),
            waited,
            mean_wait_ms: sum(|r| r.waited_micros) as f64 / 1_000.0 / waited.max(1) as f64,
            latency: Percentiles::of(reports.iter().map(|r| r.latencies_micros.as_slice())),
            requests_per_second: requests as f64 / seconds,
            store_ops_per_request: sum(|r| r.store_ops) as f64 / requests.max(1) as f64,
            store_errors: sum(|r| r.store_errors),
            peak_memory_mib: highest_mib(reports.iter().map(|r| r.peak_memory_kib)),
        }
    }
}

/// Sets each row's creations against those of the `kigo` row, if there is one.
pub(crate) fn compare_with_kigo(rows: &mut [Figures]) {
    let kigo = rows
        .iter()
        .find(|row| row.name == "kigo")
        .map(|row| row.creations);
    for row in rows {
        row.creations_vs_kigo = kigo.map(|kigo| row.creations as f64 / kigo.max(1) as f64);
    }
}

/// The most distinct tokens one replica used.
pub(crate) fn renewals(reports: &[ReplicaReport]) -> u64 {
    let distinct = |r: &ReplicaReport| r.tokens.iter().collect::<HashSet<_>>().len() as u64;
    reports.iter().map(distinct).max().unwrap_or_default()
}

/// `rows` as a Markdown table.
pub(crate) fn markdown(first_column: &str, rows: &[Figures]) -> String {
    let mut table = format!(
        "| {first_column} | creations per renewal | creations / renewals | vs kigo | failed | 401s | waited (mean ms) | p50 ms | p99 ms | p99.9 ms | requests/s | store ops/request | store errors | peak MiB/replica |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    );
    for f in rows {
        let memory = f
            .peak_memory_mib
            .map_or_else(|| "n/a".to_owned(), |mib| format!("{mib:.1}"));
        let versus = f
            .creations_vs_kigo
            .map_or_else(|| "-".to_owned(), |ratio| format!("{ratio:.1}x"));
        let _ = writeln!(
            table,
            "| {} | {:.2} | {} / {} | {versus} | {} | {} | {} ({:.1}) | {:.2} | {:.2} | {:.2} | {:.0} | {:.2} | {} | {memory} |",
            f.name,
            f.creations_per_renewal,
            f.creations,
            f.renewals,
            f.failures,
            f.unauthorized,
            f.waited,
            f.mean_wait_ms,
            f.latency.p50_ms,
            f.latency.p99_ms,
            f.latency.p999_ms,
            f.requests_per_second,
            f.store_ops_per_request,
            f.store_errors,
        );
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    fn used(tokens: &[&str], latencies: &[u32]) -> ReplicaReport {
        ReplicaReport {
            requests: latencies.len() as u64,
            tokens: tokens.iter().map(|token| (*token).to_owned()).collect(),
            latencies_micros: latencies.to_vec(),
            ..ReplicaReport::default()
        }
    }

    #[test]
    fn replicas_sharing_their_tokens_cost_one_creation_per_renewal() {
        let reports = [used(&["a", "b", "c"], &[]), used(&["a", "b", "b"], &[])];
        let figures = Figures::of("kigo", &reports, 3, 1.0);
        assert_eq!((figures.renewals, figures.creations_per_renewal), (3, 1.0));
    }

    #[test]
    fn replicas_with_tokens_of_their_own_cost_one_creation_each() {
        let reports = [used(&["a1", "a2"], &[]), used(&["b1", "b2"], &[])];
        let figures = Figures::of("per-replica", &reports, 4, 1.0);
        assert_eq!(figures.creations_per_renewal, 2.0);
    }

    #[test]
    fn percentiles_are_nearest_rank_over_every_replica() {
        let slow: Vec<u32> = (1..=1000).collect();
        let reports = [used(&[], &slow[..500]), used(&[], &slow[500..])];
        let figures = Figures::of("kigo", &reports, 0, 2.0);
        assert_eq!(figures.latency.p50_ms, 0.5);
        assert_eq!(figures.latency.p99_ms, 0.99);
        assert_eq!(figures.latency.p999_ms, 0.999);
        assert_eq!(figures.requests_per_second, 500.0);
    }

    #[test]
    fn every_row_of_the_table_has_a_cell_per_column() {
        let reports = [used(&["a"], &[100, 200])];
        let mut rows = vec![
            Figures::of("kigo", &reports, 1, 1.0),
            Figures::of("no-lock", &reports, 3, 1.0),
        ];
        compare_with_kigo(&mut rows);
        let table = markdown("design", &rows);
        let cells: Vec<usize> = table
            .lines()
            .map(|line| line.matches('|').count())
            .collect();
        assert_eq!(cells.len(), 4);
        assert!(cells.iter().all(|&count| count == cells[0]), "{table}");
        assert!(
            table.contains("| no-lock | 3.00 | 3 / 1 | 3.0x |"),
            "{table}"
        );
    }
}
