//! The store works as a Redis ACL user with exactly the permissions the crate docs give, and a
//! user missing one is reported as a misconfiguration before anything changed.

use std::time::Duration;

use futures_util::StreamExt;
use kigo_core::store::{CommitOutcome, Entry, HolderId, StoreAdmin};
use kigo_core::{StoreError, TokenStore};
use kigo_store_redis::RedisStore;
use kigo_store_redis::redis;
use kigo_testkit::conformance::fresh_key;
use kigo_testkit::eventually;

use super::support::{Capture, RedisHarness, acquire, token_valid_for};

/// The crate docs, whose `ACL SETUSER` block the tests run as written.
const README: &str = include_str!("../../README.md");
/// The prefix the crate docs grant in that block.
const README_PREFIX: &str = "billing-api:prod:";

/// The rules of the crate docs' `nth` `ACL SETUSER` block, after the user name (`on`, the
/// password, key and channel patterns, commands): the store's (0), then the operator's (1).
fn documented_rules(nth: usize) -> Vec<String> {
    let (start, _) = README
        .match_indices("ACL SETUSER ")
        .nth(nth)
        .expect("the crate docs give the ACL SETUSER blocks");
    let block = &README[start..];
    let block = &block[..block.find("```").expect("the block ends")];
    // After `ACL SETUSER <name>`.
    block
        .split_whitespace()
        .skip(3)
        .map(str::to_owned)
        .collect()
}

/// The store's rules.
fn store_rules() -> Vec<String> {
    let rules = documented_rules(0);
    assert!(rules.iter().any(|rule| rule == "+evalsha"), "{rules:?}");
    rules
}

/// A store as the ACL user `user` with the store's documented rules, for this harness's prefix,
/// less the rule `without`.
async fn store_as_user(harness: &RedisHarness, user: &str, without: Option<&str>) -> RedisStore {
    store_with_rules(harness, user, store_rules(), without).await
}

/// [`store_as_user`] with the store's and the operator's rules.
async fn admin_as_user(harness: &RedisHarness, user: &str, without: Option<&str>) -> RedisStore {
    let rules = [store_rules(), documented_rules(1)].concat();
    store_with_rules(harness, user, rules, without).await
}

async fn store_with_rules(
    harness: &RedisHarness,
    user: &str,
    rules: Vec<String>,
    without: Option<&str>,
) -> RedisStore {
    let prefix = harness.builder_prefix();
    let mut setuser = redis::cmd("ACL");
    setuser.arg("SETUSER").arg(user).arg("reset");
    for rule in rules {
        if Some(rule.as_str()) == without {
            continue;
        }
        let rule = match rule.chars().next() {
            Some('>') => ">test-password".to_owned(),
            Some('~' | '&') => rule.replace(README_PREFIX, prefix),
            _ => rule,
        };
        setuser.arg(rule);
    }
    let () = harness.raw(&setuser).await;
    let port = harness.single_node().port();
    RedisStore::builder()
        .url(format!("redis://{user}:test-password@127.0.0.1:{port}"))
        .prefix(prefix)
        .keyring(harness.keyring())
        .heartbeat(Duration::from_millis(100))
        .build()
        .unwrap()
}

/// The names of the keys a check made for itself that are still there.
async fn left_by_checks(harness: &RedisHarness) -> Vec<String> {
    harness
        .raw(redis::cmd("KEYS").arg("*kigo-store-check*"))
        .await
}

/// How many `PING`s the (private) server answered.
async fn pings(harness: &RedisHarness) -> u64 {
    let stats: String = harness.raw(redis::cmd("INFO").arg("commandstats")).await;
    stats
        .lines()
        .find_map(|line| line.strip_prefix("cmdstat_ping:calls="))
        .and_then(|rest| rest.split(',').next())
        .and_then(|calls| calls.parse().ok())
        .unwrap_or(0)
}

fn is_acl_misconfiguration<T: std::fmt::Debug>(result: Result<T, StoreError>) -> bool {
    match result {
        Err(StoreError::Misconfigured { hint, .. }) => hint.contains("ACL"),
        other => panic!("expected an ACL misconfiguration, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_acl_is_enough() {
    let harness = RedisHarness::private().await;
    let store = store_as_user(&harness, "kigo", None).await;
    let key = fresh_key();
    let mut feed = store.changes().unwrap();
    let (notices, mut noticed) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(notice) = feed.next().await {
            let _ = notices.send(notice);
        }
    });
    harness.subscribed().await;
    // The subscription's heartbeat passes the ACL too: the feed outlives a few of them.
    eventually("heartbeats", Duration::from_secs(10), || async {
        pings(&harness).await >= 3
    })
    .await;

    store
        .set_cooldown(&key, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(store.load(&key).await.unwrap().cooldown.is_some());
    let lease = acquire(&store, &key, Duration::from_secs(30)).await;
    let token = token_valid_for("acl", Duration::from_secs(1800));
    assert_eq!(
        store.commit(&lease, &token).await.unwrap(),
        CommitOutcome::Committed
    );
    let notice = tokio::time::timeout(Duration::from_secs(10), noticed.recv())
        .await
        .expect("a change notice")
        .expect("the feed is open");
    assert_eq!(notice.key, key);
    store.invalidate(&key, &token.fingerprint()).await.unwrap();
    let released = acquire(&store, &key, Duration::from_secs(30)).await;
    store.release_lease(&released).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_refused_for_a_missing_command_writes_nothing() {
    let harness = RedisHarness::private().await;
    let store = store_as_user(&harness, "no-publish", Some("+publish")).await;
    let key = fresh_key();
    let lease = acquire(&store, &key, Duration::from_secs(30)).await;
    let token = token_valid_for("acl", Duration::from_secs(1800));
    assert!(is_acl_misconfiguration(store.commit(&lease, &token).await));

    let names = store.key_names(&key);
    let written: u64 = harness.raw(redis::cmd("EXISTS").arg(&names.record)).await;
    assert_eq!(written, 1, "the record of the grant is there");
    assert!(
        matches!(store.load(&key).await.unwrap().entry, Entry::Absent),
        "with no token"
    );
    assert!(
        harness.lease_pttl(&key).await > 0,
        "the lease was not released"
    );
}

/// Without `HGET` the lease could not be granted above the generation of the earlier layout,
/// and without `TIME` a token past its expiry could not be told from a valid one: the scripts
/// must say so instead of reading nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_without_hget_or_time_is_a_misconfiguration() {
    let harness = RedisHarness::private().await;
    let key = fresh_key();
    let store = store_as_user(&harness, "no-hget", Some("+hget")).await;
    let acquired = store
        .acquire_lease(&key, &HolderId::random(), Duration::from_secs(30))
        .await;
    assert!(is_acl_misconfiguration(acquired));
    let store = store_as_user(&harness, "no-time", Some("+time")).await;
    assert!(is_acl_misconfiguration(store.load(&key).await));
    let acquired = store
        .acquire_lease(&key, &HolderId::random(), Duration::from_secs(30))
        .await;
    assert!(is_acl_misconfiguration(acquired));
}

/// A user that may not subscribe to the change channel gets no notices (waiters poll), and
/// the operator is told at error level.
#[tokio::test]
async fn a_user_without_the_channel_is_reported_at_error_level() {
    let harness = RedisHarness::private().await;
    let channel = format!("&{README_PREFIX}changes");
    let store = store_as_user(&harness, "no-channel", Some(&channel)).await;
    let capture = Capture::default();
    let _default = tracing::subscriber::set_default(capture.subscriber());

    let mut feed = store.changes().unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(10), feed.next()).await;
    assert!(matches!(ended, Ok(None)), "the feed ends at once");
    let logged = capture.text();
    assert!(
        logged
            .lines()
            .any(|line| line.contains("ERROR") && line.contains("ACL")),
        "{logged}"
    );
}

/// The operator's rules on top of the store's are enough for the whole check, which leaves no
/// key of its own behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_acl_with_the_operators_rules_passes_the_check() {
    let harness = RedisHarness::private().await;
    let admin = admin_as_user(&harness, "kigo-admin", None).await;
    let check = admin.check().await.unwrap();
    assert!(check.permissions_ok, "{check:?}");
    assert_eq!(check.permission_problem, None);
    assert!(check.clock_offset_ms.is_some(), "{check:?}");
    assert_eq!(left_by_checks(&harness).await, Vec::<String>::new());
}

/// A user missing a command the manager needs (`PUBLISH`, called by the commit script) or one
/// the check itself runs (`SCAN`, `TIME`) gets a check that names it as a permission problem,
/// not an error, and leaves no key of its own behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_as_a_user_missing_a_permission_reports_it_and_leaves_no_key() {
    let harness = RedisHarness::private().await;
    for (without, named) in [
        ("+publish", "PUBLISH"),
        ("+scan", "SCAN"),
        ("+time", "TIME"),
    ] {
        let user = format!("no-{}", &without[1..]);
        let admin = admin_as_user(&harness, &user, Some(without)).await;
        let check = admin.check().await.unwrap();
        assert!(!check.permissions_ok, "{check:?}");
        let problem = check.permission_problem.unwrap_or_default();
        assert!(problem.contains(named), "without {without}: {problem}");
        assert_eq!(left_by_checks(&harness).await, Vec::<String>::new());
    }
}
