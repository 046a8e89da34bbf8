//! Sealed entries on a real store, with managers as replicas: keys rotated across a running
//! fleet, entries moved or replayed by someone with write access to the table, and a replica
//! that cannot open the fleet's entries.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use kigo_core::codec::{CorruptEntry, KeyId, Keyring, SealingKey};
use kigo_core::runtime::RuntimeEnv;
use kigo_core::store::Entry;
use kigo_core::{
    Error, Fingerprint, StoreError, Token, TokenHandle, TokenKey, TokenManager, TokenStore, UserId,
};
use kigo_http::{KigoApi, RetryOn401};
use kigo_store_sql::SqlStore;
use kigo_testkit::conformance::{StoreHarness, test_keyring};
use kigo_testkit::logs::Capture;
use kigo_testkit::mock::{MockKigo, PROTECTED_PATH};
use kigo_testkit::{FakeSource, ManualClock, eventually};
use tokio::task::JoinHandle;

use super::fleet::{commit_token, fleet_member, fresh_key, kigo_api, renew_at, replica, token};
use super::harness::SqlHarness;

pub(crate) use kigo_core::codec::sealed_with;

/// A new random sealing key.
fn sealing_key() -> SealingKey {
    SealingKey::from_bytes(std::array::from_fn(|_| fastrand::u8(..)))
}

/// The keyring of `current` and, to open only, `older`.
fn keyring(current: &SealingKey, older: &[&SealingKey]) -> Keyring {
    older
        .iter()
        .fold(Keyring::new(current.clone()), |ring, key| {
            ring.with_older_key((*key).clone()).unwrap()
        })
}

/// Rotation, as [`Keyring`]'s documentation says, across a fleet that serves callers all
/// along: three replicas sealing with k1 are replaced one by one (shut down, then a new store
/// and manager) with k2 added as an older key, then again with k2 current, and, once the
/// entry was renewed (sealed with k2 now), again without k1. No call fails, no replica creates
/// a token when it joins (the fleet creates the first token and its one renewal: two in all),
/// and the entry ends sealed with k2, which alone opens it.
pub(crate) async fn rotating_keys_across_a_running_fleet_costs_no_creation_and_no_request(
    harness: &SqlHarness,
) {
    let (k1, k2) = (sealing_key(), sealing_key());
    let key = fresh_key();
    let source = FakeSource::new();
    // The replicas' clock: the renewal comes when the test moves it there.
    let clock = ManualClock::starting_at(SystemTime::now());
    let mut fleet = Fleet {
        harness,
        source: source.clone(),
        clock: clock.clone(),
        key: key.clone(),
        replicas: Vec::new(),
        traffic: Arc::default(),
    };
    for _ in 0..3 {
        fleet.join(keyring(&k1, &[])).await;
    }
    let first = fleet.replicas[0]
        .manager
        .token(&key)
        .await
        .unwrap()
        .fingerprint();
    assert_eq!(fleet.stored_kid().await, k1.id());

    // 1. k2 added after k1 on every replica; 2. k2 put first.
    fleet.replace_each(keyring(&k1, &[&k2])).await;
    fleet.replace_each(keyring(&k2, &[&k1])).await;
    assert_eq!(
        source.creations(),
        1,
        "a replica created a token on joining"
    );
    assert_eq!(
        fleet.stored_kid().await,
        k1.id(),
        "an entry is sealed again at its next commit, not when read"
    );

    // The entry's renewal (sealed with k2 by whichever replica renews it), once the token is
    // past its refresh point on the replicas' clock, which moves while no replica waits for
    // the store (its timeout would run out at once).
    clock.advance(Duration::from_secs(16 * 60));
    let k2_only = harness
        .store_with(SqlStore::builder().keyring(keyring(&k2, &[])))
        .await;
    eventually(
        "the entry sealed with k2",
        Duration::from_secs(20),
        async || fleet.stored_kid().await == k2.id(),
    )
    .await;
    let stored = k2_only.load(&key).await.unwrap();
    let renewed = stored
        .token()
        .map(Token::fingerprint)
        .expect("the renewed token");
    assert_ne!(renewed, first);

    // 3. k1 dropped.
    fleet.replace_each(keyring(&k2, &[])).await;
    for replica in &fleet.replicas {
        let served = replica.manager.token(&key).await.unwrap();
        assert_eq!(served.fingerprint(), renewed, "a new replica did not adopt");
    }
    let traffic = fleet.stop().await;
    assert_eq!(traffic.failures, 0, "failed calls: {:?}", traffic.errors);
    assert!(traffic.served.contains(&first) && traffic.served.contains(&renewed));
    assert_eq!(source.creations(), 2, "the first token and its renewal");
    assert_eq!(fleet.stored_kid().await, k2.id());
    let loaded = k2_only.load(&key).await.unwrap();
    assert_eq!(loaded.token().map(Token::fingerprint), Some(renewed));
}

/// The replicas of [`rotating_keys_across_a_running_fleet_costs_no_creation_and_no_request`],
/// each with two callers asking for the token of `key` every few milliseconds.
struct Fleet<'a> {
    harness: &'a SqlHarness,
    source: FakeSource,
    clock: ManualClock,
    key: TokenKey,
    replicas: Vec<Replica>,
    traffic: Arc<Traffic>,
}

struct Replica {
    manager: TokenManager,
    stop: Arc<AtomicBool>,
    callers: Vec<JoinHandle<()>>,
}

/// What the callers saw.
#[derive(Default)]
struct Traffic {
    served: Mutex<HashSet<Fingerprint>>,
    failures: AtomicU64,
    errors: Mutex<Vec<String>>,
}

/// [`Traffic`] once the callers stopped.
struct Seen {
    served: HashSet<Fingerprint>,
    failures: u64,
    errors: Vec<String>,
}

impl Fleet<'_> {
    /// Starts a replica sealing with `keyring` (a store and manager of its own), and its callers
    /// once it serves a token.
    async fn join(&mut self, keyring: Keyring) {
        let options = SqlStore::builder().keyring(keyring).max_connections(4);
        let store = self.harness.store_with(options).await;
        let manager = replica(self.source.clone(), store)
            .runtime(RuntimeEnv::manual(&self.clock).unwrap())
            .expiry(renew_at(0.5))
            .build()
            .unwrap();
        let served = manager.token(&self.key).await.unwrap().fingerprint();
        self.traffic.served.lock().unwrap().insert(served);
        let stop = Arc::new(AtomicBool::new(false));
        let handle = manager.handle(self.key.clone()).unwrap();
        let callers = (0..2)
            .map(|_| tokio::spawn(call(handle.clone(), stop.clone(), self.traffic.clone())))
            .collect();
        self.replicas.push(Replica {
            manager,
            stop,
            callers,
        });
    }

    /// Replaces every replica, one after the other, with one sealing with `keyring`.
    async fn replace_each(&mut self, keyring: Keyring) {
        for _ in 0..self.replicas.len() {
            self.replicas.remove(0).shut_down().await;
            self.join(keyring.clone()).await;
        }
    }

    /// The key that sealed the stored entry.
    async fn stored_kid(&self) -> KeyId {
        let raw = self.harness.read_raw(&self.key).await.expect("an entry");
        sealed_with(&raw).expect("a sealed entry")
    }

    async fn stop(&mut self) -> Seen {
        for replica in self.replicas.drain(..) {
            replica.shut_down().await;
        }
        Seen {
            served: self.traffic.served.lock().unwrap().clone(),
            failures: self.traffic.failures.load(Ordering::SeqCst),
            errors: self.traffic.errors.lock().unwrap().clone(),
        }
    }
}

impl Replica {
    /// Stops its callers, then the manager.
    async fn shut_down(self) {
        self.stop.store(true, Ordering::SeqCst);
        for caller in self.callers {
            caller.await.unwrap();
        }
        self.manager.shutdown().await;
    }
}

/// A caller asking `handle` for its token until told to stop.
async fn call(handle: TokenHandle, stop: Arc<AtomicBool>, traffic: Arc<Traffic>) {
    while !stop.load(Ordering::SeqCst) {
        match handle.token().await {
            Ok(token) => {
                traffic.served.lock().unwrap().insert(token.fingerprint());
            }
            Err(error) => {
                traffic.failures.fetch_add(1, Ordering::SeqCst);
                traffic.errors.lock().unwrap().push(error.to_string());
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Someone with write access to the table copies the partner-level entry into a user's row,
/// and later writes an older partner-level entry back over a newer one (twice), while a
/// partner-level and a user-level manager (kigo-http's, against the mock Kigo API) share the
/// store. Read after a 401 and by a new replica, the copy never reaches a user-level caller as
/// the partner token, nor the replay a partner-level caller as the older token: each forged
/// entry is replaced with one creation, and every manager ends on a token the API accepts for
/// its key.
pub(crate) async fn moved_and_replayed_entries_never_reach_a_caller(harness: &SqlHarness) {
    let mock = MockKigo::start().await.unwrap();
    let api = kigo_api(&mock);
    let partner_key = api.partner_key();
    let user_key = api.user_key(UserId::new("mallory").unwrap());
    let partners = async || {
        let store = harness.store().await;
        fleet_member(api.partner_manager().store(store))
            // The 401s of this test come right after the tokens were created.
            .min_token_age(Duration::ZERO)
            .build()
            .unwrap()
    };
    let users = async |partners: &TokenManager| {
        let store = harness.store().await;
        fleet_member(api.user_manager(partners).unwrap().store(store))
            // The 401s of this test come right after the tokens were created.
            .min_token_age(Duration::ZERO)
            .build()
            .unwrap()
    };
    let partner = partners().await;
    let user = users(&partner).await;
    let first_user = user.token(&user_key).await.unwrap().fingerprint();
    let first_partner = partner.token(&partner_key).await.unwrap().fingerprint();
    let first_partner_entry = harness.read_raw(&partner_key).await.expect("an entry");

    // The partner's entry copied into the user's row.
    harness.write_raw(&user_key, &first_partner_entry).await;
    assert!(user.invalidate(&user_key, &first_user));
    let after_401 = user.token(&user_key).await.unwrap().fingerprint();
    let new_user_replica = users(&partner).await;
    let joined = new_user_replica
        .token(&user_key)
        .await
        .unwrap()
        .fingerprint();
    for served in [after_401, joined] {
        assert_ne!(
            served, first_partner,
            "a user-level caller got the partner token"
        );
    }
    assert_eq!(
        joined, after_401,
        "the new replica adopts the replaced entry"
    );

    // An older partner entry written back over a newer one, read by the running replica after
    // a 401; again, read by a new replica.
    assert!(partner.invalidate(&partner_key, &first_partner));
    let current = partner.token(&partner_key).await.unwrap().fingerprint();
    harness.write_raw(&partner_key, &first_partner_entry).await;
    assert!(partner.invalidate(&partner_key, &current));
    let after_401 = partner.token(&partner_key).await.unwrap().fingerprint();
    harness.write_raw(&partner_key, &first_partner_entry).await;
    let new_partner_replica = partners().await;
    let joined = new_partner_replica
        .token(&partner_key)
        .await
        .unwrap()
        .fingerprint();
    // On PostgreSQL the running replica may have adopted the new replica's token on its notice.
    let running = partner.token(&partner_key).await.unwrap().fingerprint();
    assert!(running == after_401 || running == joined);
    for served in [after_401, joined] {
        assert_ne!(
            served, first_partner,
            "a partner-level caller got the replayed token"
        );
    }

    let counters = mock.counters();
    assert_eq!(counters.creations_for(&user_key), 2, "user-level creations");
    assert_eq!(
        counters.creations_for(&partner_key),
        4,
        "partner-level creations: the first, after its 401, and one for each replay"
    );
    for (manager, key) in [
        (&partner, &partner_key),
        (&new_partner_replica, &partner_key),
        (&user, &user_key),
        (&new_user_replica, &user_key),
    ] {
        accepted_for(&api, manager.handle(key.clone()).unwrap(), key).await;
        manager.shutdown().await;
    }
}

/// Asserts that the API accepts the token `handle` serves, as one for `key`.
async fn accepted_for(api: &KigoApi, handle: TokenHandle, key: &TokenKey) {
    let client = api.client(handle);
    let request = client.get(PROTECTED_PATH).unwrap();
    let response = client.send_with(request, RetryOn401::Never).await.unwrap();
    assert!(
        response.status().is_success(),
        "{key}: {}",
        response.status()
    );
    let answer = response.text().await.unwrap();
    let named = format!(r#""key":"{}""#, key.storage_id());
    assert!(answer.contains(&named), "{key}: {answer}");
}

/// Two replicas, one misconfigured: with another keyring, then writing plaintext. The
/// misconfigured one's callers get [`Error::StoreMisconfigured`] (naming what it cannot open),
/// it logs an error, creates nothing and never touches the row (entry bytes, generation and
/// fence stay); the other keeps serving its token.
pub(crate) async fn a_replica_that_cannot_open_the_entries_leaves_them_alone(harness: &SqlHarness) {
    // The test runs on one thread, so the managers' tasks log here too.
    let log = Capture::default();
    let _logging = tracing::subscriber::set_default(log.subscriber());
    let source = FakeSource::new();
    let good = replica(source.clone(), harness.store().await)
        .build()
        .unwrap();
    let fleet_key = harness.keyring().current().id();
    let cases = [
        (
            SqlStore::builder().keyring(test_keyring()),
            CorruptEntry::UnknownKey(fleet_key),
        ),
        (SqlStore::builder().plaintext(), CorruptEntry::Sealed),
    ];
    for (created, (options, cannot_open)) in (1..).zip(cases) {
        let key = fresh_key();
        let token = good.token(&key).await.unwrap().fingerprint();
        let before = harness.raw_row(&key).await;
        let misconfigured = replica(source.clone(), harness.store_with(options).await)
            .build()
            .unwrap();
        for _ in 0..2 {
            match misconfigured.token(&key).await {
                Err(Error::StoreMisconfigured {
                    source: StoreError::Misconfigured { source, .. },
                    ..
                }) => assert_eq!(source.downcast_ref(), Some(&cannot_open)),
                other => panic!("{cannot_open:?}: {other:?}"),
            }
        }
        misconfigured.shutdown().await;
        let after = harness.raw_row(&key).await;
        assert!(
            after.entry == before.entry,
            "{cannot_open:?}: the entry changed"
        );
        assert_eq!(
            (after.generation, after.fence),
            (before.generation, before.fence),
            "{cannot_open:?}"
        );
        assert_eq!(source.creations(), created, "{cannot_open:?}");
        let kept = good
            .handle(key.clone())
            .unwrap()
            .cached()
            .map(|t| t.fingerprint());
        assert_eq!(kept, Some(token), "{cannot_open:?}");
        let stored = harness.admin().load(&key).await.unwrap().entry;
        assert!(
            matches!(&stored, Entry::Present(found) if found.fingerprint() == token),
            "{stored:?}"
        );
    }
    good.shutdown().await;
    let text = log.text();
    let errors = text
        .lines()
        .filter(|line| line.contains("ERROR") && line.contains("token store misconfigured"))
        .count();
    assert!(errors >= 2, "{text}");
    assert!(
        text.contains("WARN") && text.contains("plaintext entries"),
        "{text}"
    );
    assert!(!text.contains("fake-token"), "a token in the log: {text}");
}

/// An entry copied from one table to another of the same database, under the same key, with the
/// same generation and keyring, does not open: entries are bound to their table.
pub(crate) async fn an_entry_copied_to_another_table_does_not_open(harness: &SqlHarness) {
    let other = harness
        .store_with(
            harness
                .options()
                .table("other_tokens")
                .migrate_on_connect(true),
        )
        .await;
    let key = fresh_key();
    commit_token(harness.admin(), &key, &token("ours")).await;
    commit_token(&other, &key, &token("theirs")).await;
    let theirs = other.load(&key).await.unwrap();
    let ours = harness.raw_row(&key).await;
    let generation = theirs.token().map(Token::generation);
    assert_eq!(
        generation,
        u64::try_from(ours.generation).ok(),
        "one generation"
    );
    let id = key.storage_id();
    let copied = harness
        .execute(&format!(
            "UPDATE other_tokens SET entry = \
             (SELECT entry FROM kigo_tokens WHERE token_key = '{id}') WHERE token_key = '{id}'"
        ))
        .await;
    assert_eq!(copied, 1);
    match other.load(&key).await.unwrap().entry {
        Entry::Corrupt(CorruptEntry::Unauthentic) => {}
        found => panic!("the copy loaded as {found:?}"),
    }
}
