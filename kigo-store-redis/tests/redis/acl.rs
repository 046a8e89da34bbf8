//! The store works as a Redis ACL user limited to the commands, keys and channel the crate docs
//! list, and a user missing one is reported as a misconfiguration.

use std::time::Duration;

use futures_util::StreamExt;
use kigo_core::store::CommitOutcome;
use kigo_core::{StoreError, TokenStore};
use kigo_store_redis::redis;
use kigo_store_redis::{RedisStore, RedisStoreBuilder};
use kigo_testkit::conformance::fresh_key;

use super::support::{RedisHarness, acquire, token_valid_for};

/// The permissions the crate docs give for the store's user (`ACL SETUSER`).
const COMMANDS: &[&str] = &[
    "-@all",
    "+evalsha",
    "+script|load",
    "+subscribe",
    "+ping",
    "+hello",
    "+get",
    "+set",
    "+del",
    "+exists",
    "+type",
    "+pttl",
    "+pexpire",
    "+incr",
    "+hget",
    "+hset",
    "+hdel",
    "+publish",
];

async fn store_as_user(harness: &RedisHarness, user: &str, without: Option<&str>) -> RedisStore {
    let prefix = harness.builder_prefix();
    let mut setuser = redis::cmd("ACL");
    setuser
        .arg("SETUSER")
        .arg(user)
        .arg("reset")
        .arg("on")
        .arg(">test-password")
        .arg(format!("~{prefix}*"))
        .arg(format!("&{prefix}changes"));
    for command in COMMANDS.iter().filter(|command| Some(**command) != without) {
        setuser.arg(*command);
    }
    let () = harness.raw(&setuser).await;
    let port = harness.service().local_server().unwrap().port();
    RedisStoreBuilder::from_url(&format!("redis://{user}:test-password@127.0.0.1:{port}"))
        .unwrap()
        .prefix(prefix)
        .build()
        .unwrap()
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
async fn a_user_without_a_needed_command_is_a_misconfiguration() {
    let harness = RedisHarness::private().await;
    let store = store_as_user(&harness, "no-publish", Some("+publish")).await;
    let key = fresh_key();
    let lease = acquire(&store, &key, Duration::from_secs(30)).await;
    let token = token_valid_for("acl", Duration::from_secs(1800));
    match store.commit(&lease, &token).await {
        Err(StoreError::Misconfigured { hint, .. }) => assert!(hint.contains("ACL"), "{hint}"),
        other => panic!("a commit without PUBLISH gave {other:?}"),
    }
}
