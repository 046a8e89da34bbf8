//! `kigo-fleet run --short` on real stores, as CI runs it: 8 replica processes of kigo create
//! one token per renewal and fail no request, on every store; the other designs, in the same
//! run, create more. And kigo through every fault, on Redis: no failed request wherever a valid
//! token exists.

mod common;

use common::{SERIAL, count, kigo_fleet};
use serde_json::Value;

/// `kigo-fleet run --short` for `designs`, 8 replicas of 2 workers each, on the store `url`
/// names (none: the default temporary SQLite file); its report.
async fn short_run(url: Option<&str>, designs: &str) -> Value {
    let args = [
        "run",
        "--short",
        "--replicas",
        "8",
        "--workers",
        "2",
        "--designs",
        designs,
    ];
    kigo_fleet(&args, url).await
}

fn design<'a>(report: &'a Value, name: &str) -> &'a Value {
    let designs = report["designs"].as_array().unwrap();
    designs.iter().find(|row| row["name"] == name).unwrap()
}

/// Kigo's fleet: one creation per renewal, across renewals, with no failed request; every other
/// design in the report: more creations than kigo's.
fn assert_kigo_creates_once_per_renewal_and_the_others_more(report: &Value) {
    let kigo = design(report, "kigo");
    assert_eq!(count(kigo, "replicas"), 8, "{kigo}");
    assert!(count(kigo, "renewals") >= 2, "{kigo}");
    assert_eq!(count(kigo, "creations"), count(kigo, "renewals"), "{kigo}");
    assert_eq!(count(kigo, "failures"), 0, "{kigo}");
    assert!(count(kigo, "requests") > 0, "{kigo}");
    for other in report["designs"].as_array().unwrap() {
        if other["name"] != "kigo" {
            assert!(
                count(other, "creations") > count(kigo, "creations"),
                "{other} against {kigo}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn on_sqlite_kigo_creates_one_token_per_renewal_and_the_other_designs_more() {
    let _serial = SERIAL.lock().await;
    let report = short_run(None, "kigo,per-replica,store-read,no-lock").await;
    assert_eq!(report["store"], "sqlite");
    assert_kigo_creates_once_per_renewal_and_the_others_more(&report);
}

#[tokio::test(flavor = "multi_thread")]
async fn on_redis_kigo_creates_one_token_per_renewal_and_the_other_designs_more() {
    let _serial = SERIAL.lock().await;
    let redis = kigo_test_services::redis::redis().await.unwrap();
    let report = short_run(Some(redis.url()), "kigo,per-replica,store-read,no-lock").await;
    assert_kigo_creates_once_per_renewal_and_the_others_more(&report);
}

#[tokio::test(flavor = "multi_thread")]
async fn on_redis_cluster_kigo_creates_one_token_per_renewal_and_a_cache_per_replica_more() {
    let _serial = SERIAL.lock().await;
    let cluster = kigo_test_services::redis_cluster::redis_cluster()
        .await
        .unwrap();
    let nodes: Vec<&str> = cluster
        .urls()
        .iter()
        .map(|url| url.trim_start_matches("redis://"))
        .collect();
    let url = format!("redis+cluster://{}", nodes.join(","));
    let report = short_run(Some(&url), "kigo,per-replica").await;
    assert_eq!(report["store"], "redis cluster");
    assert_kigo_creates_once_per_renewal_and_the_others_more(&report);
}

#[tokio::test(flavor = "multi_thread")]
async fn on_postgres_kigo_creates_one_token_per_renewal_and_the_other_designs_more() {
    let _serial = SERIAL.lock().await;
    let db = kigo_test_services::postgres::database().await.unwrap();
    let report = short_run(Some(db.url()), "kigo,per-replica,store-read,no-lock").await;
    assert_kigo_creates_once_per_renewal_and_the_others_more(&report);
}

#[tokio::test(flavor = "multi_thread")]
async fn on_mariadb_kigo_creates_one_token_per_renewal_and_a_cache_per_replica_more() {
    let _serial = SERIAL.lock().await;
    let db = kigo_test_services::mysql::database().await.unwrap();
    let report = short_run(Some(db.url()), "kigo,per-replica").await;
    assert_kigo_creates_once_per_renewal_and_the_others_more(&report);
}

/// Faults during which the endpoint refuses to create tokens: a replica may find no valid token.
const ENDPOINT_FAULTS: [&str; 2] = ["endpoint 503 for a while", "endpoint 429 + Retry-After: 1"];
/// Faults that take the store away from replicas: their store-failure policy creates tokens of
/// their own (at most once per replica and cool-down).
const STORE_FAULTS: [&str; 2] = [
    "store (redis-server) killed and restarted",
    "one replica's store connection cut",
];

#[tokio::test(flavor = "multi_thread")]
async fn on_redis_kigo_fails_no_request_through_a_fault_that_leaves_a_valid_token() {
    let _serial = SERIAL.lock().await;
    let redis = kigo_test_services::redis::redis().await.unwrap();
    let args = [
        "run",
        "--short",
        "--faults",
        "--replicas",
        "8",
        "--workers",
        "2",
        "--designs",
        "kigo",
    ];
    let report = kigo_fleet(&args, Some(redis.url())).await;
    let faults = report["faults"].as_array().unwrap();
    assert_eq!(faults.len(), 9, "{report}");
    for fault in faults {
        let name = fault["name"].as_str().unwrap();
        let (creations, renewals) = (count(fault, "creations"), count(fault, "renewals"));
        assert!(renewals >= 1, "{fault}");
        if STORE_FAULTS.contains(&name) {
            assert!(creations <= renewals + 8, "{fault}");
        } else {
            assert_eq!(creations, renewals, "{fault}");
        }
        if !ENDPOINT_FAULTS.contains(&name) {
            assert_eq!(count(fault, "failures"), 0, "{fault}");
        }
    }
}
