//! Values written by hand under the store's keys (a bug, an old version, an operator with
//! `redis-cli`): reported as corrupt, replaced by a fresh token, never served, never a panic.

use std::sync::Arc;

use kigo_core::TokenStore;
use kigo_core::codec::CorruptEntry;
use kigo_core::store::Entry;
use kigo_store_redis::KeyNames;
use kigo_store_redis::redis::{self, Cmd};
use kigo_testkit::FakeSource;
use kigo_testkit::conformance::fresh_key;

use super::support::{Edit, RedisHarness, edit_record, replica};

/// Which key a hand-written value lands on, the command that writes it, and what `load` reports.
struct Case {
    what: &'static str,
    write: fn(&KeyNames) -> Cmd,
    loads_as: Option<CorruptEntry>,
}

fn set(key: &str, value: &str) -> Cmd {
    redis::cmd("SET").arg(key).arg(value).clone()
}

fn of_type_list(key: &str) -> Cmd {
    redis::cmd("RPUSH").arg(key).arg("foreign").clone()
}

fn of_type_hash(key: &str) -> Cmd {
    redis::cmd("HSET")
        .arg(key)
        .arg("field")
        .arg("foreign")
        .clone()
}

const CASES: &[Case] = &[
    Case {
        what: "garbage entry",
        write: |names| edit_record(&names.record, Edit::Entry(b"\x01not json")),
        loads_as: Some(CorruptEntry::Malformed),
    },
    Case {
        what: "entry of a future format",
        write: |names| edit_record(&names.record, Edit::Entry(br#"{"v":2,"sealed":"?"}"#)),
        loads_as: Some(CorruptEntry::UnknownVersion(2)),
    },
    Case {
        what: "record of another layout",
        write: |names| set(&names.record, "foreign"),
        loads_as: Some(CorruptEntry::Malformed),
    },
    Case {
        what: "record of another type (WRONGTYPE)",
        write: |names| of_type_hash(&names.record),
        loads_as: Some(CorruptEntry::Malformed),
    },
    Case {
        what: "record holding a list",
        write: |names| of_type_list(&names.record),
        loads_as: Some(CorruptEntry::Malformed),
    },
    Case {
        what: "lease without a TTL",
        write: |names| set(&names.lease, "stuck-forever"),
        loads_as: None,
    },
    Case {
        what: "lease key of another type",
        write: |names| of_type_list(&names.lease),
        loads_as: None,
    },
    Case {
        what: "earlier layout's fence that is not a number",
        write: |names| set(&names.legacy_fence, "not-a-number"),
        loads_as: None,
    },
    Case {
        what: "earlier layout's fence beyond what a record holds",
        write: |names| set(&names.legacy_fence, "1000000000000000000000"),
        loads_as: None,
    },
    Case {
        what: "earlier layout's fence key of another type",
        write: |names| of_type_hash(&names.legacy_fence),
        loads_as: None,
    },
    Case {
        what: "earlier layout's state key of another type",
        write: |names| set(&names.legacy_state, "foreign"),
        loads_as: None,
    },
    Case {
        what: "cool-down key of another type, without a TTL",
        write: |names| of_type_list(&names.cooldown),
        loads_as: None,
    },
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_written_values_are_reported_and_replaced_with_a_fresh_token() {
    let harness = RedisHarness::standalone().await;
    let store = harness.store();
    let source = FakeSource::new();
    let manager = replica(&source, Arc::new(harness.store()), "replica")
        .build()
        .unwrap();
    for (index, case) in CASES.iter().enumerate() {
        let key = fresh_key();
        let () = harness.raw(&(case.write)(&store.key_names(&key))).await;

        let snapshot = store
            .load(&key)
            .await
            .unwrap_or_else(|error| panic!("{}: load failed: {error}", case.what));
        match (&snapshot.entry, &case.loads_as) {
            (Entry::Corrupt(found), Some(expected)) => assert_eq!(found, expected, "{}", case.what),
            (Entry::Absent, None) => {}
            (entry, _) => panic!("{}: loaded as {entry:?}", case.what),
        }
        assert_eq!(snapshot.cooldown, None, "{}", case.what);

        let token = manager
            .token(&key)
            .await
            .unwrap_or_else(|error| panic!("{}: {error}", case.what));
        assert_eq!(source.creations(), index as u64 + 1, "{}", case.what);
        let stored = store.load(&key).await.unwrap();
        assert_eq!(
            stored.token().map(|stored| stored.fingerprint()),
            Some(token.fingerprint()),
            "{}: the fresh token replaced the hand-written value",
            case.what
        );
    }
    manager.shutdown().await;
}
