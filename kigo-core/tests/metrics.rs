//! Property 13: what the fleet does can be seen. A scenario (a first token, a renewal ahead, a
//! 401, a store outage) reports the series the README documents, with their labels, through the
//! `metrics` facade; and nothing that the README does not document.
#![cfg(feature = "metrics")]

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use common::{MIN_TOKEN_AGE, World, partner, reach_refresh_point, warm};
use kigo_testkit::FaultyStore;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};

/// One series as recorded: its name, its labels and its value.
type Series = (String, Vec<(String, String)>, DebugValue);

/// The series names in the README's "Metrics" table.
fn documented() -> BTreeSet<String> {
    let readme = include_str!("../README.md");
    let table = readme
        .split("## Metrics")
        .nth(1)
        .and_then(|section| section.split("\n## ").next())
        .expect("a Metrics section");
    table
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|line| line.split('`').next())
        .map(str::to_owned)
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_renewal_a_401_and_a_store_outage_report_the_documented_series() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().unwrap();

    let world = World::new();
    let store = FaultyStore::new(Arc::new(world.store.clone()));
    let manager = world
        .builder_on(150, Arc::new(store.clone()))
        .build()
        .unwrap();
    let handle = manager.handle(partner("acme")).unwrap();
    let first = warm(&handle).await;
    reach_refresh_point(&world, &manager, &handle).await;
    let renewed = handle.cached().unwrap().fingerprint();
    assert_ne!(renewed, first);
    world.clock.advance(MIN_TOKEN_AGE);
    assert!(handle.invalidate(&renewed));
    warm(&handle).await;
    // The store fails: the next caller gets a token created without it.
    store.set_failing(true);
    world.clock.advance(MIN_TOKEN_AGE);
    assert!(handle.invalidate(&handle.cached().unwrap().fingerprint()));
    warm(&handle).await;

    let series: Vec<Series> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let (_, key) = key.into_parts();
            let labels = key
                .labels()
                .map(|label| (label.key().to_owned(), label.value().to_owned()))
                .collect();
            (key.name().to_owned(), labels, value)
        })
        .collect();
    let count = |name: &str, labels: &[(&str, &str)]| -> u64 {
        series
            .iter()
            .filter(|(series, found, _)| {
                series == name
                    && labels
                        .iter()
                        .all(|(k, v)| found.iter().any(|(fk, fv)| fk == k && fv == v))
            })
            .map(|(_, _, value)| match value {
                DebugValue::Counter(count) => *count,
                DebugValue::Histogram(values) => values.len() as u64,
                DebugValue::Gauge(_) => 1,
            })
            .sum()
    };
    let partner = ("level", "partner");
    assert_eq!(
        count(
            "kigo_creations_total",
            &[partner, ("outcome", "created"), ("store", "shared")]
        ),
        3
    );
    assert_eq!(
        count("kigo_creations_total", &[partner, ("store", "bypassed")]),
        1
    );
    assert_eq!(
        count("kigo_refreshes_total", &[partner, ("reason", "ahead")]),
        1
    );
    assert_eq!(
        count("kigo_refreshes_total", &[partner, ("reason", "rejected")]),
        2
    );
    assert!(count("kigo_refreshes_total", &[partner, ("reason", "needed")]) >= 1);
    assert_eq!(
        count("kigo_rejections_total", &[partner, ("outcome", "dropped")]),
        2
    );
    assert_eq!(
        count("kigo_leases_total", &[partner, ("outcome", "acquired")]),
        3
    );
    assert!(
        count(
            "kigo_store_operations_total",
            &[("op", "commit"), ("outcome", "ok")]
        ) >= 3
    );
    assert!(
        count(
            "kigo_store_operations_total",
            &[("op", "load"), ("outcome", "unavailable")]
        ) >= 1
    );
    assert!(count("kigo_wait_seconds", &[partner, ("outcome", "served")]) >= 3);
    assert_eq!(count("kigo_partner_token_expires_at_seconds", &[]), 1);
    assert_eq!(count("kigo_degraded", &[]), 1);

    let emitted: BTreeSet<String> = series.iter().map(|(name, _, _)| name.clone()).collect();
    let documented = documented();
    let undocumented: Vec<_> = emitted.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "series missing from the README: {undocumented:?}"
    );
}
