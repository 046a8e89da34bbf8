//! `kigo-fleet users --short` on Redis and PostgreSQL, as CI runs it: 8 replica processes ask
//! for the user-level tokens of users drawn from a Zipf distribution over a million; each user
//! asked for, hot users by several replicas at once, is created exactly once fleet-wide.

mod common;

use common::{SERIAL, count, kigo_fleet};
use serde_json::Value;

/// `kigo-fleet users --short` with 8 replicas of 4 workers on the store `url` names.
async fn short_users(url: &str) -> Value {
    let args = ["users", "--short", "--replicas", "8", "--workers", "4"];
    kigo_fleet(&args, Some(url)).await
}

fn assert_each_user_created_once(report: &Value) {
    assert_eq!(count(report, "population"), 1_000_000, "{report}");
    assert_eq!(count(report, "replicas"), 8, "{report}");
    // A load worth the name, and replicas racing for the same users.
    assert!(count(report, "users_requested") >= 50, "{report}");
    assert!(count(report, "users_shared") >= 3, "{report}");
    assert_eq!(
        count(report, "user_tokens_created"),
        count(report, "users_requested"),
        "{report}"
    );
    assert_eq!(count(report, "created_more_than_once"), 0, "{report}");
    assert_eq!(count(report, "most_for_one_user"), 1, "{report}");
    assert_eq!(count(report, "never_created"), 0, "{report}");
    assert_eq!(count(report, "partner_tokens_created"), 1, "{report}");
    assert_eq!(count(report, "failures"), 0, "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn on_redis_each_user_of_a_zipf_load_is_created_once() {
    let _serial = SERIAL.lock().await;
    let redis = kigo_test_services::redis::redis().await.unwrap();
    let report = short_users(redis.url()).await;
    assert_eq!(report["store"], "redis");
    assert_each_user_created_once(&report);
}

#[tokio::test(flavor = "multi_thread")]
async fn on_postgres_each_user_of_a_zipf_load_is_created_once() {
    let _serial = SERIAL.lock().await;
    let db = kigo_test_services::postgres::database().await.unwrap();
    let report = short_users(db.url()).await;
    assert_eq!(report["store"], "postgres");
    assert_each_user_created_once(&report);
}
