//! Fleet scenarios every backend runs: managers as replicas on real databases, each replica
//! with a store (and pool) of its own. Creations are counted at the mock Kigo server (through
//! kigo-http's token source), or at a [`FakeSource`] shared by the replicas where a scenario
//! needs to steer the source.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use kigo_core::codec::CorruptEntry;
use kigo_core::runtime::{AsyncSleep, RuntimeEnv, Sleep, TimeSource};
use kigo_core::store::{CommitOutcome, Entry, HolderId, Lease, LeaseAttempt};
use kigo_core::{
    CreateRequest, ExpiryPolicy, Fingerprint, KeyScope, ManagerBuilder, PartnerId, SourceError,
    StoreError, StoreFailurePolicy, Token, TokenKey, TokenManager, TokenSecret, TokenSource,
    TokenStore,
};
use kigo_http::{ApiKey, Credentials, KigoApi};
use kigo_store_sql::{BackendKind, SqlPool, SqlStore};
use kigo_testkit::conformance::StoreHarness;
use kigo_testkit::mock::{Endpoint, Fault, MockKigo};
use kigo_testkit::{FakeSource, ManualClock, eventually, eventually_some};
use tokio::task::JoinSet;

use super::harness::SqlHarness;
use super::tripwire::{Op, Tripwire};

/// A partner key no other test uses.
pub(crate) fn fresh_key() -> TokenKey {
    TokenKey::partner(PartnerId::new(format!("fleet-{:016x}", fastrand::u64(..))).unwrap())
}

/// A replica's manager of partner-level tokens from a test source (which serves any partner) on
/// `store`; see [`fleet_member`].
pub(crate) fn replica(source: impl TokenSource, store: impl TokenStore) -> ManagerBuilder {
    fleet_member(
        TokenManager::builder(source)
            .scope(KeyScope::AnyPartner)
            .store(store),
    )
}

/// `builder` as the replicas of these tests run: the real clock; store failures fail requests
/// (`FailClosed`), so that a store error can never hide behind a local creation; a short poll
/// interval.
pub(crate) fn fleet_member(builder: ManagerBuilder) -> ManagerBuilder {
    builder
        .runtime(RuntimeEnv::tokio().expect("inside a tokio runtime"))
        .store_failure(StoreFailurePolicy::FailClosed)
        .poll_interval(Duration::from_millis(100))
}

/// Stores a token that expired a minute ago (by the database clock too): every replica needs a
/// new one.
pub(crate) async fn store_expired_token(store: &dyn TokenStore, key: &TokenKey) {
    let now = SystemTime::now();
    let expired = Token::new(
        TokenSecret::new("expired-token"),
        now - Duration::from_secs(31 * 60),
        now - Duration::from_secs(60),
    )
    .unwrap();
    commit_token(store, key, &expired).await;
    let loaded = store.load(key).await.unwrap();
    assert!(matches!(loaded.entry, Entry::Absent), "{:?}", loaded.entry);
}

/// 16 replicas with 64 concurrent callers each, the stored token expired: exactly one creation
/// at the mock Kigo server, and every caller gets that token. Each replica has its own store
/// (pool) and its own kigo-http client.
pub(crate) async fn sixteen_replicas_create_once(harness: &SqlHarness) {
    let mock = MockKigo::start().await.unwrap();
    // Latency widens the window in which the other replicas find the lease held.
    let latency = Fault::Latency(Duration::from_millis(200));
    mock.inject_always(Endpoint::PartnerSession, Some(latency));
    let key = mock.partner_key();
    store_expired_token(harness.admin(), &key).await;
    let mut managers = Vec::new();
    for index in 0..16 {
        let store = harness.store().await;
        let manager = fleet_member(kigo_api(&mock).partner_manager().store(store))
            .replica_name(format!("replica-{index}"))
            .build()
            .unwrap();
        managers.push(manager);
    }
    let mut callers = JoinSet::new();
    for manager in &managers {
        let handle = manager.handle(key.clone()).unwrap();
        for _ in 0..64 {
            let handle = handle.clone();
            callers.spawn(async move { handle.token().await.map(|token| token.fingerprint()) });
        }
    }
    let mut fingerprints = HashSet::new();
    let mut served = 0;
    while let Some(result) = callers.join_next().await {
        let fingerprint = result
            .unwrap()
            .unwrap_or_else(|error| panic!("a caller failed: {error}"));
        fingerprints.insert(fingerprint);
        served += 1;
    }
    assert_eq!(served, 16 * 64);
    let counters = mock.counters();
    assert_eq!(
        counters.creations_for(&key),
        1,
        "creations at the mock Kigo server"
    );
    assert_eq!(counters.requests_to(Endpoint::PartnerSession), 1);
    assert_eq!(fingerprints.len(), 1, "every caller gets the one token");
    let created: u64 = managers
        .iter()
        .map(|manager| manager.metrics().creations)
        .sum();
    assert_eq!(created, 1);
    let stored = harness.admin().load(&key).await.unwrap();
    assert_eq!(
        stored.token().map(Token::fingerprint),
        fingerprints.into_iter().next()
    );
    for manager in &managers {
        manager.shutdown().await;
    }
}

/// A kigo-http API client for `mock`, as a replica would build it.
pub(crate) fn kigo_api(mock: &MockKigo) -> KigoApi {
    let key = ApiKey::new(mock.api_key()).unwrap();
    let credentials = Credentials::new(key, mock.partner_id().clone(), mock.base_url()).unwrap();
    KigoApi::builder(credentials).build().unwrap()
}

/// While a replica waits for its token source, the store holds no connection: every connection
/// of its pool is idle, no session of the database has a transaction open, and the store,
/// allowed one connection, still answers a load at once. Then the creation completes on it.
pub(crate) async fn no_connection_is_held_while_creating(harness: &SqlHarness) {
    let key = fresh_key();
    let gate = Gate::default();
    let source = FakeSource::new().with_latency(Duration::from_secs(1), Arc::new(gate.clone()));
    let store = harness
        .store_with(harness.options().max_connections(1))
        .await;
    let manager = replica(Arc::new(source.clone()), Arc::new(store.clone()))
        .build()
        .unwrap();
    let handle = manager.handle(key.clone()).unwrap();
    let caller = tokio::spawn(async move { handle.token().await.map(|token| token.fingerprint()) });
    tokio::time::timeout(Duration::from_secs(10), source.wait_for_calls(1))
        .await
        .expect("the replica calls its token source");
    holds_no_connection(harness, &store, &key).await;
    gate.open();
    let created = caller.await.unwrap().unwrap();
    let stored = store.load(&key).await.unwrap();
    assert_eq!(stored.token().map(Token::fingerprint), Some(created));
    manager.shutdown().await;
}

/// Asserts that `store` (a pool of one connection) holds no connection now: its pool's
/// connections are all idle (sqlx returns a connection after a ping, so within a moment), no
/// session of the database is in a transaction, and a load of `key` answers within a second (a
/// held connection would keep it waiting for the pool).
pub(crate) async fn holds_no_connection(harness: &SqlHarness, store: &SqlStore, key: &TokenKey) {
    // The pool counts its connections and its idle ones apart, so a count taken while a
    // connection comes back can see more idle than open: saturate.
    let in_use = || match store.pool() {
        SqlPool::Postgres(pool) => (pool.size() as usize).saturating_sub(pool.num_idle()),
        SqlPool::MySql(pool) => (pool.size() as usize).saturating_sub(pool.num_idle()),
        SqlPool::Sqlite(pool) => (pool.size() as usize).saturating_sub(pool.num_idle()),
        _ => unreachable!("every database feature is on in the tests"),
    };
    eventually(
        "every connection of the pool is idle",
        Duration::from_secs(1),
        async || in_use() == 0,
    )
    .await;
    assert_eq!(harness.open_transactions().await, 0, "open transactions");
    tokio::time::timeout(Duration::from_secs(1), store.load(key))
        .await
        .expect("a load within 1 s")
        .unwrap();
}

/// A sleeper whose sleeps end only once the test opens it: a token source stopped mid-call.
#[derive(Debug, Clone, Default)]
pub(crate) struct Gate(Arc<tokio::sync::watch::Sender<bool>>);

impl Gate {
    pub(crate) fn open(&self) {
        self.0.send_replace(true);
    }
}

impl AsyncSleep for Gate {
    fn sleep(&self, _: Duration) -> Sleep {
        let mut open = self.0.subscribe();
        Box::pin(async move {
            let _ = open.wait_for(|open| *open).await;
        })
    }
}

/// A refresh policy without jitter that renews at `share` of the lifetime.
pub(crate) fn renew_at(share: f64) -> ExpiryPolicy {
    ExpiryPolicy::default().with_shares(share, 0.0).unwrap()
}

/// `builder` for a replica the test stops in its tracks (a process that dies, is paused or is
/// cancelled there): its clock never moves unless the test moves it, so no timeout of its own
/// ends what it is doing first, as none fires in a process that is not running. Its timeouts
/// only need to fit in `lease`.
pub(crate) fn stopped(
    builder: ManagerBuilder,
    clock: &ManualClock,
    lease: Duration,
) -> ManagerBuilder {
    builder
        .runtime(RuntimeEnv::manual(clock).expect("inside a tokio runtime"))
        .lease_ttl(lease)
        .create_timeout(lease / 4)
        .store_timeout(lease / 4)
}

/// The holder dies after claiming (its commit never comes): the other replica keeps serving the
/// old token while the lease runs, takes over once it lapses by the database clock, and nobody
/// sees a failed request.
pub(crate) async fn holder_dies_after_claiming(harness: &SqlHarness) {
    const LIFETIME: Duration = Duration::from_secs(12);
    const LEASE: Duration = Duration::from_secs(4);
    let key = fresh_key();
    let source = FakeSource::with_lifetime(LIFETIME);
    // A dies at its second commit (the first stores the first token), when the test moves its
    // clock to its refresh point; B renews at 2.4 s, while A's lease (until about 4 s) runs.
    let a_clock = ManualClock::starting_at(SystemTime::now());
    let dying = Tripwire::new(Arc::new(harness.store().await), Op::Commit, 2);
    let watched = Tripwire::new(Arc::new(harness.store().await), Op::Commit, u64::MAX);
    let a = stopped(replica(source.clone(), dying.clone()), &a_clock, LEASE)
        .expiry(renew_at(0.2))
        .build()
        .unwrap();
    let b = replica(source.clone(), watched.clone())
        .expiry(renew_at(0.2))
        .build()
        .unwrap();
    let first = a.token(&key).await.unwrap().fingerprint();
    let b_handle = b.handle(key.clone()).unwrap();
    assert_eq!(b_handle.token().await.unwrap().fingerprint(), first);
    a_clock.advance(LIFETIME / 5);
    dying.reached(Duration::from_secs(10)).await;

    // Traffic on B until it serves a new token.
    let taken_over = async || {
        let token = b_handle.token().await.unwrap_or_else(|error| {
            panic!("a request failed while the old token was valid: {error}")
        });
        Some(token.fingerprint()).filter(|served| *served != first)
    };
    let seen = [
        first,
        eventually_some("B takes over", LIFETIME, taken_over).await,
    ];
    assert_eq!(
        source.creations(),
        3,
        "the first token, the dead holder's, B's"
    );
    let a_claim = *dying.acquired().last().unwrap();
    let b_claim = *watched.acquired().last().unwrap();
    assert!(
        b_claim.fence > a_claim.fence,
        "{b_claim:?} after {a_claim:?}"
    );
    let between = b_claim.returned.duration_since(a_claim.sent);
    assert!(
        between + CLOCK_TOLERANCE >= LEASE,
        "B claimed at most {between:?} after the dead holder, before its lease of {LEASE:?} lapsed"
    );
    assert_eq!(watched.commits(), vec![CommitOutcome::Committed]);
    let stored = harness.admin().load(&key).await.unwrap();
    assert_eq!(stored.token().map(Token::fingerprint), seen.last().copied());
    b.shutdown().await;
    a.shutdown().await;
}

/// What the database clock may differ by from this process's monotonic clock over a lease: its
/// resolution (SQLite's: a millisecond) and the rate at which the system clock is slewed.
const CLOCK_TOLERANCE: Duration = Duration::from_millis(10);

/// A holder paused past its lease commits late: the commit is rejected, the replica that took
/// over keeps its token, and the late holder adopts it.
pub(crate) async fn paused_holder_commit_is_rejected(harness: &SqlHarness) {
    const LEASE: Duration = Duration::from_secs(1);
    let key = fresh_key();
    let source = FakeSource::new();
    let paused = Tripwire::new(Arc::new(harness.store().await), Op::Commit, 1);
    let a_clock = ManualClock::starting_at(SystemTime::now());
    let a = stopped(replica(source.clone(), paused.clone()), &a_clock, LEASE)
        .build()
        .unwrap();
    let b = replica(source.clone(), harness.store().await)
        .build()
        .unwrap();
    let a_handle = a.handle(key.clone()).unwrap();
    let late = tokio::spawn(async move { a_handle.token().await.map(|token| token.fingerprint()) });
    paused.reached(Duration::from_secs(10)).await;

    let taken_over = b.token(&key).await.unwrap().fingerprint();
    let waited = paused.acquired()[0].sent.elapsed();
    assert!(
        waited + CLOCK_TOLERANCE >= LEASE,
        "B had its token {waited:?} after A claimed, before A's lease of {LEASE:?} lapsed"
    );
    paused.resume();
    let adopted = late.await.unwrap().unwrap();

    assert_eq!(paused.commits(), vec![CommitOutcome::Rejected]);
    assert_eq!(
        adopted, taken_over,
        "the late holder serves the token that won"
    );
    assert_eq!(a.metrics().rejected_commits, 1);
    assert_eq!(
        source.creations(),
        2,
        "the documented worst case: the paused holder's token is wasted"
    );
    let stored = harness.admin().load(&key).await.unwrap();
    assert_eq!(stored.token().map(Token::fingerprint), Some(taken_over));
    a.shutdown().await;
    b.shutdown().await;
}

/// A token source that notes when each token was created by the true clock, whatever the
/// (skewed) clock of the replica that asked.
#[derive(Debug)]
struct TrueTime {
    source: FakeSource,
    clock: ManualClock,
    created: Arc<Mutex<HashMap<Fingerprint, SystemTime>>>,
}

#[async_trait]
impl TokenSource for TrueTime {
    async fn create(&self, request: CreateRequest<'_>) -> Result<Token, SourceError> {
        let token = self.source.create(request).await?;
        self.created
            .lock()
            .unwrap()
            .insert(token.fingerprint(), self.clock.now());
        Ok(token)
    }
}

/// Six replicas whose clocks spread over 60 s, 100 minutes of 30-minute tokens on a manual
/// clock: every creation is one renewal (none wasted, no commit rejected), and no replica ever
/// hands out a token less than 30 s before its true expiry.
pub(crate) async fn skewed_replicas_renew_once(harness: &SqlHarness) {
    const LIFETIME: Duration = Duration::from_secs(30 * 60);
    const RUN: Duration = Duration::from_secs(100 * 60);
    let key = fresh_key();
    let clock = ManualClock::starting_at(SystemTime::now());
    let end = clock.now() + RUN;
    let source = FakeSource::new();
    let created = Arc::new(Mutex::new(HashMap::new()));
    let busy = Arc::new(AtomicUsize::new(0));
    let mut managers = Vec::new();
    let mut callers = JoinSet::new();
    for (index, offset_ms) in [-30_000_i64, -18_000, -6_000, 6_000, 18_000, 30_000]
        .into_iter()
        .enumerate()
    {
        let view = clock.skewed(offset_ms);
        let truth = TrueTime {
            source: source.clone(),
            clock: clock.clone(),
            created: Arc::clone(&created),
        };
        let store = Tripwire::new(Arc::new(harness.store().await), Op::Load, u64::MAX)
            .counting(Arc::clone(&busy));
        let manager = replica(Arc::new(truth), Arc::new(store))
            .runtime(RuntimeEnv::manual(&view).unwrap())
            .lease_ttl(Duration::from_secs(30))
            .poll_interval(Duration::from_millis(500))
            .seed(index as u64)
            .build()
            .unwrap();
        let handle = manager.handle(key.clone()).unwrap();
        let (clock, created) = (clock.clone(), Arc::clone(&created));
        callers.spawn(async move {
            let mut served = Vec::new();
            let mut least_left = LIFETIME;
            while clock.now() < end {
                let token = handle
                    .token()
                    .await
                    .unwrap_or_else(|error| panic!("replica {index}: {error}"));
                let issued = created.lock().unwrap()[&token.fingerprint()];
                let left = (issued + LIFETIME)
                    .duration_since(clock.now())
                    .unwrap_or_else(|_| panic!("replica {index} handed out an expired token"));
                least_left = least_left.min(left);
                served.push(token.fingerprint());
                drop(token);
                view.sleep(Duration::from_secs(5)).await;
            }
            (served, least_left)
        });
        managers.push(manager);
    }
    // Time moves in steps of a second while anyone still runs, and only while no statement is
    // under way: statements take real time (as the database's own clock does), in which the
    // replicas' clocks stand still.
    let driver = {
        let clock = clock.clone();
        tokio::spawn(async move {
            loop {
                if busy.load(Ordering::SeqCst) == 0 {
                    clock.advance(Duration::from_secs(1));
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };
    let mut served = HashSet::new();
    let mut least_left = LIFETIME;
    while let Some(result) = callers.join_next().await {
        let (fingerprints, left) = result.unwrap();
        served.extend(fingerprints);
        least_left = least_left.min(left);
    }
    driver.abort();
    let creations = source.creations();
    let rejected: u64 = managers
        .iter()
        .map(|manager| manager.metrics().rejected_commits)
        .sum();
    assert_eq!(rejected, 0, "no replica lost a commit");
    assert_eq!(
        creations,
        served.len() as u64,
        "every creation was a renewal the fleet used"
    );
    assert!(
        (4..=6).contains(&creations),
        "{creations} creations in {RUN:?} of {LIFETIME:?} tokens"
    );
    assert!(
        least_left >= Duration::from_secs(30),
        "a token was handed out {least_left:?} before it expired"
    );
    for manager in &managers {
        manager.shutdown().await;
    }
}

/// Takes the lease of `key`, which must be free, for a new holder, for 10 s.
pub(crate) async fn acquire(store: &dyn TokenStore, key: &TokenKey) -> Lease {
    match store
        .acquire_lease(key, &HolderId::random(), Duration::from_secs(10))
        .await
        .unwrap()
    {
        LeaseAttempt::Acquired(lease) => lease,
        LeaseAttempt::Held { .. } => panic!("lease held"),
    }
}

/// Commits `token` for `key` through `store`.
pub(crate) async fn commit_token(store: &dyn TokenStore, key: &TokenKey, token: &Token) {
    let lease = acquire(store, key).await;
    assert_eq!(
        store.commit(&lease, token).await.unwrap(),
        CommitOutcome::Committed
    );
}

/// A 30-minute token named `name`, issued now.
pub(crate) fn token(name: &str) -> Token {
    let now = SystemTime::now();
    Token::new(
        TokenSecret::new(format!("{name}-{:08x}", fastrand::u32(..))),
        now,
        now + Duration::from_secs(1800),
    )
    .unwrap()
}

/// Rows no replica of the fleet wrote (a row format from the future, garbage, plaintext
/// planted in a sealing table, an entry moved from another key's row) load as corrupt, never as
/// a token, and a manager replaces each with one creation. (Entries this replica merely cannot
/// open are left alone: see `sealing::a_replica_that_cannot_open_the_entries_leaves_them_alone`.)
pub(crate) async fn corrupt_rows_are_replaced(harness: &SqlHarness) {
    let store = harness.store().await;
    let future = fresh_key();
    let readable = br#"{"v":1,"token":"t","issued_at_ms":1,"expires_at_ms":4102444800000}"#;
    harness.write_raw_format(&future, readable, 7).await;
    let garbage = fresh_key();
    harness
        .write_raw_format(&garbage, b"\x00\xffgarbage", 1)
        .await;
    let planted = fresh_key();
    harness.write_raw(&planted, readable).await;
    let moved = fresh_key();
    let elsewhere = fresh_key();
    commit_token(&store, &elsewhere, &token("elsewhere")).await;
    let sealed_elsewhere = harness.read_raw(&elsewhere).await.expect("an entry");
    harness.write_raw(&moved, &sealed_elsewhere).await;

    let rows = [
        (&future, CorruptEntry::UnknownVersion(7)),
        (&garbage, CorruptEntry::Malformed),
        (&planted, CorruptEntry::Plaintext),
        (&moved, CorruptEntry::Unauthentic),
    ];
    for (key, expected) in &rows {
        match store.load(key).await.unwrap().entry {
            Entry::Corrupt(found) => assert_eq!(&found, expected),
            other => panic!("{expected:?} loaded as {other:?}"),
        }
    }
    let source = FakeSource::new();
    let manager = replica(source.clone(), store.clone()).build().unwrap();
    for (created, (key, _)) in (1..).zip(&rows) {
        let token = manager
            .handle((*key).clone())
            .unwrap()
            .token()
            .await
            .unwrap();
        assert_eq!(token.secret().expose(), format!("fake-token-{created}"));
        let stored = store.load(key).await.unwrap();
        assert_eq!(
            stored.token().map(Token::fingerprint),
            Some(token.fingerprint())
        );
    }
    assert_eq!(source.creations(), 4);
    manager.shutdown().await;
}

/// A store whose table was never created says so, with the hint to run the migrations.
pub(crate) async fn missing_table_says_to_migrate(harness: &SqlHarness) {
    says_to_migrate(harness, "never_migrated").await;
}

/// A table from an older schema (columns missing) says to run the migrations too.
pub(crate) async fn outdated_table_says_to_migrate(harness: &SqlHarness) {
    harness
        .execute("CREATE TABLE outdated (token_key VARCHAR(200) PRIMARY KEY, format_version INT)")
        .await;
    says_to_migrate(harness, "outdated").await;
}

/// A load, a claim and a cool-down of a store on `table` fail with the hint to migrate.
async fn says_to_migrate(harness: &SqlHarness, table: &str) {
    let store = harness.store_with(harness.options().table(table)).await;
    let key = fresh_key();
    let errors = [
        store.load(&key).await.map(drop).unwrap_err(),
        store
            .acquire_lease(&key, &HolderId::random(), Duration::from_secs(1))
            .await
            .map(drop)
            .unwrap_err(),
        store
            .set_cooldown(&key, Duration::from_secs(1))
            .await
            .unwrap_err(),
    ];
    for error in errors {
        match error {
            StoreError::Misconfigured { hint, .. } => assert!(hint.contains("migrate"), "{hint}"),
            other => panic!("{table}: {other:?}"),
        }
    }
}

/// Replicas starting together all migrate a new table at once (each migration applies once, or
/// one of them would fail), migrating again changes nothing, and tables of different names never
/// share rows.
pub(crate) async fn migrations_run_once_and_tables_are_separate(harness: &SqlHarness) {
    let mut team_a = Vec::new();
    for _ in 0..8 {
        team_a.push(harness.store_with(harness.options().table("team_a")).await);
    }
    let mut migrations = JoinSet::new();
    for store in &team_a {
        let store = store.clone();
        migrations.spawn(async move { store.migrate().await });
    }
    while let Some(result) = migrations.join_next().await {
        result
            .unwrap()
            .unwrap_or_else(|error| panic!("concurrent migration: {error:?}"));
    }
    team_a[0].migrate().await.unwrap();
    let team_b = harness
        .store_with(harness.options().table("team_b").migrate_on_connect(true))
        .await;
    let key = fresh_key();
    let a_token = token("a");
    commit_token(&team_a[0], &key, &a_token).await;
    assert!(matches!(
        team_b.load(&key).await.unwrap().entry,
        Entry::Absent
    ));
    let b_token = token("b");
    commit_token(&team_b, &key, &b_token).await;
    for (store, token) in [(&team_a[7], &a_token), (&team_b, &b_token)] {
        let loaded = store.load(&key).await.unwrap();
        assert_eq!(
            loaded.token().map(Token::fingerprint),
            Some(token.fingerprint())
        );
    }
}

/// The recorded history is checked before anything is applied: a run that failed half-way, a
/// migration this crate does not ship, or one whose text changed stops `migrate()` with the
/// history hint, and nothing else runs.
pub(crate) async fn migration_history_is_checked(harness: &SqlHarness) {
    let store = harness.admin();
    let tampered_checksum = match store.kind() {
        BackendKind::Postgres => "'\\x00'::bytea",
        _ => "X'00'",
    };
    let tamperings = [
        "UPDATE kigo_tokens_migrations SET success = FALSE WHERE version = 2".to_owned(),
        "UPDATE kigo_tokens_migrations SET version = 99 WHERE version = 1".to_owned(),
        format!(
            "UPDATE kigo_tokens_migrations SET checksum = {tampered_checksum} WHERE version = 1"
        ),
    ];
    for tampering in tamperings {
        let saved = "CREATE TABLE kigo_history_saved AS SELECT * FROM kigo_tokens_migrations";
        harness.execute(saved).await;
        assert_eq!(harness.execute(&tampering).await, 1, "{tampering}");
        match store.migrate().await {
            Err(StoreError::Misconfigured { hint, .. }) => {
                assert!(hint.contains("migration history"), "{tampering}: {hint}");
            }
            other => panic!("{tampering}: {other:?}"),
        }
        harness.execute("DELETE FROM kigo_tokens_migrations").await;
        let restore = "INSERT INTO kigo_tokens_migrations SELECT * FROM kigo_history_saved";
        harness.execute(restore).await;
        harness.execute("DROP TABLE kigo_history_saved").await;
        store.migrate().await.unwrap();
    }
}

/// A store on a pool the application built (of each database's own pool type), migrated at
/// construction, keeps and shares tokens like a store built from a URL.
pub(crate) async fn store_on_an_existing_pool(harness: &SqlHarness) {
    let url = harness.url();
    let pool: SqlPool = match harness.admin().kind() {
        BackendKind::Postgres => sqlx::PgPool::connect(url).await.unwrap().into(),
        BackendKind::MySql => sqlx::MySqlPool::connect(url).await.unwrap().into(),
        _ => sqlx::SqlitePool::connect(url).await.unwrap().into(),
    };
    assert_eq!(pool.kind(), harness.admin().kind());
    let store = harness
        .options()
        .table("from_pool")
        .migrate_on_connect(true)
        .pool(pool)
        .build()
        .await
        .unwrap();
    let key = fresh_key();
    let token = token("pooled");
    commit_token(&store, &key, &token).await;
    let other = harness
        .store_with(harness.options().table("from_pool"))
        .await;
    let loaded = other.load(&key).await.unwrap();
    assert_eq!(
        loaded.token().map(Token::fingerprint),
        Some(token.fingerprint())
    );
}

/// One `#[tokio::test]` per scenario of the shared modules (`fleet`, `expired`, `sealing`,
/// `admin`), each
/// on a fresh database of `$kind`; those that read the managers' logs on one thread.
macro_rules! fleet_tests {
    ($kind:expr) => {
        $crate::common::fleet::fleet_tests!(@each $kind, (flavor = "multi_thread", worker_threads = 4);
            fleet::sixteen_replicas_create_once,
            fleet::no_connection_is_held_while_creating,
            fleet::holder_dies_after_claiming,
            fleet::paused_holder_commit_is_rejected,
            fleet::skewed_replicas_renew_once,
            fleet::corrupt_rows_are_replaced,
            fleet::missing_table_says_to_migrate,
            fleet::outdated_table_says_to_migrate,
            fleet::migrations_run_once_and_tables_are_separate,
            fleet::migration_history_is_checked,
            fleet::store_on_an_existing_pool,
            expired::a_claim_clears_the_expired_token_of_its_row,
            expired::commits_sweep_the_table_a_batch_of_rows_at_a_time,
            expired::the_primary_key_is_the_only_index,
            expired::purge_expired_clears_every_expired_token,
            expired::invalidate_clears_the_entry_bytes,
            sealing::rotating_keys_across_a_running_fleet_costs_no_creation_and_no_request,
            sealing::moved_and_replayed_entries_never_reach_a_caller,
            sealing::an_entry_copied_to_another_table_does_not_open,
            admin::lease_holder_names_the_holder_and_the_time_left,
            admin::check_reports_the_setup,
        );
        $crate::common::fleet::fleet_tests!(@each $kind, (flavor = "current_thread");
            sealing::a_replica_that_cannot_open_the_entries_leaves_them_alone,
        );
    };
    (@each $kind:expr, $flavor:tt; $($module:ident::$name:ident,)*) => {
        $(
            #[tokio::test $flavor]
            async fn $name() {
                let harness = $crate::common::harness::SqlHarness::new($kind).await;
                $crate::common::$module::$name(&harness).await;
            }
        )*
    };
}
pub(crate) use fleet_tests;
