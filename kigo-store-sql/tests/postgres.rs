//! The PostgreSQL store: the conformance suite, the fleet scenarios, and the faults only a
//! server can have: connections terminated mid-statement, the server stopped during traffic, a
//! lost notification, and refreshes cancelled while a statement runs.

mod common;
#[path = "common/servers.rs"]
mod servers;
#[path = "common/transport.rs"]
mod transport;

use std::cell::Cell;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use common::fleet::{commit_token, fresh_key, holds_no_connection, replica, stopped, token};
use common::harness::SqlHarness;
use common::tripwire::{Op, Tripwire};
use futures_util::StreamExt;
use kigo_core::codec::{Keyring, SealingKey};
use kigo_core::runtime::TokioSleep;
use kigo_core::store::{HolderId, LeaseAttempt, Resealed, StoreAdmin};
use kigo_core::{
    Error, Fingerprint, ManagerBuilder, PartnerId, StoreError, Token, TokenKey, TokenManager,
    TokenStore,
};
use kigo_store_sql::sqlx::postgres::{PgConnectOptions, PgExecutor};
use kigo_store_sql::sqlx::{
    AssertSqlSafe, Connection, PgConnection, PgPool, Postgres, Transaction,
};
use kigo_store_sql::{BackendKind, SqlPool, SqlStore};
use kigo_test_services::postgres;
use kigo_testkit::logs::Capture;
use kigo_testkit::{FakeSource, ManualClock, eventually, eventually_some};
use servers::Reported;
use tokio::task::JoinHandle;

mod conformance {
    kigo_testkit::store_conformance_tests!(async {
        super::SqlHarness::new(super::BackendKind::Postgres).await
    });
}

mod admin_conformance {
    kigo_testkit::admin_conformance_tests!(async {
        super::SqlHarness::new(super::BackendKind::Postgres).await
    });
}

mod fleet {
    crate::common::fleet::fleet_tests!(kigo_store_sql::BackendKind::Postgres);
}

fn pg(harness: &SqlHarness) -> PgPool {
    match harness.admin().pool() {
        SqlPool::Postgres(pool) => pool.clone(),
        other => panic!("not PostgreSQL: {other:?}"),
    }
}

/// An `ACCESS EXCLUSIVE` lock on the token table, held by an open transaction: every statement
/// of the store waits for it inside the server.
async fn lock_table(pool: &PgPool) -> Transaction<'static, Postgres> {
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE kigo_tokens IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx
}

/// The backends of this database waiting for a lock (a store statement stuck on the table lock).
async fn lock_waiters(pool: &PgPool) -> Vec<i32> {
    sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity
          WHERE datname = current_database() AND pid <> pg_backend_pid()
            AND wait_event_type = 'Lock'",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

/// Waits until one store statement waits on the table lock; its backend.
async fn blocked_statement(pool: &PgPool) -> i32 {
    let waiting = async || match lock_waiters(pool).await[..] {
        [pid] => Some(pid),
        _ => None,
    };
    eventually_some(
        "a statement waits on the lock",
        Duration::from_secs(10),
        waiting,
    )
    .await
}

async fn terminate(admin: impl PgExecutor<'_>, pid: i32) {
    let done: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .fetch_one(admin)
        .await
        .unwrap();
    assert!(done);
}

/// Whether a fresh holder gets the lease of `key` at once (no lease left behind); frees it again.
async fn lease_is_free(store: &dyn TokenStore, key: &TokenKey) -> bool {
    match store
        .acquire_lease(key, &HolderId::random(), Duration::from_secs(5))
        .await
        .unwrap()
    {
        LeaseAttempt::Acquired(lease) => {
            store.release_lease(&lease).await.unwrap();
            true
        }
        LeaseAttempt::Held { .. } => false,
    }
}

/// Locks this database's store connections hold (relation, row, transaction and advisory
/// locks), and sessions left in a transaction: both must be none once nothing runs.
async fn leftovers(pool: &PgPool) -> (i64, i64) {
    let locks = sqlx::query_scalar(
        "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
          WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()
            AND l.locktype <> 'virtualxid'",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    let idle_in_transaction = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity
          WHERE datname = current_database() AND state LIKE 'idle in transaction%'",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    (locks, idle_in_transaction)
}

/// Waits (at most 5 s) until no lock or transaction is left: a statement the manager still runs
/// (a lease release after a cancellation, say) may hold one for a moment.
async fn no_leftovers(pool: &PgPool, when: &str) {
    let left = Cell::new((0, 0));
    let report = || format!("locks or transactions left: {:?}", left.get());
    eventually(Reported(when, report), Duration::from_secs(5), async || {
        left.set(leftovers(pool).await);
        left.get() == (0, 0)
    })
    .await;
}

async fn advisory_locks(pool: &PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_locks
          WHERE locktype = 'advisory'
            AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

/// A replica (with its source) whose store, allowed one connection, stops before its `nth` call
/// of `op`, and a caller waiting for the token of `key` on it.
struct Stopped {
    source: FakeSource,
    manager: TokenManager,
    store: SqlStore,
    wire: Tripwire,
    caller: JoinHandle<Result<Fingerprint, Error>>,
}

impl Stopped {
    async fn start(
        harness: &SqlHarness,
        key: &TokenKey,
        source: FakeSource,
        (op, nth): (Op, u64),
        tune: impl FnOnce(ManagerBuilder) -> ManagerBuilder,
    ) -> Self {
        let options = harness.options().max_connections(1);
        let store = harness.store_with(options).await;
        let wire = Tripwire::new(Arc::new(store.clone()), op, nth);
        let manager = tune(replica(Arc::new(source.clone()), Arc::new(wire.clone())))
            .build()
            .unwrap();
        let handle = manager.handle(key.clone()).unwrap();
        let caller =
            tokio::spawn(async move { handle.token().await.map(|token| token.fingerprint()) });
        Self {
            source,
            manager,
            store,
            wire,
            caller,
        }
    }

    /// Lets the stopped call send its statement, holds it inside the server behind a table
    /// lock, does `act` with the backend running it, then lifts the lock.
    async fn stuck_in_server(&self, admin: &PgPool, act: impl AsyncFnOnce(i32)) {
        self.wire.reached(Duration::from_secs(10)).await;
        let lock = lock_table(admin).await;
        self.wire.resume();
        act(blocked_statement(admin).await).await;
        lock.rollback().await.unwrap();
    }
}

/// `pg_terminate_backend` of the connection running the claim: the caller gets a typed store
/// error, no lease is left behind, and the next call creates the one token. Then of the
/// connection running the commit: the commit is rolled back, the holder releases its lease,
/// finds its token not stored, and commits the same token under a new lease (one creation).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connections_terminated_mid_claim_and_mid_commit() {
    let harness = SqlHarness::new(BackendKind::Postgres).await;
    let admin = pg(&harness);
    let probe = harness.store().await;

    // Mid-claim.
    let key = fresh_key();
    let mut stopped =
        Stopped::start(&harness, &key, FakeSource::new(), (Op::Acquire, 1), |b| b).await;
    stopped
        .stuck_in_server(&admin, async |pid| terminate(&admin, pid).await)
        .await;
    match (&mut stopped.caller).await.unwrap() {
        Err(Error::StoreUnavailable {
            source: StoreError::Unavailable { .. },
            ..
        }) => {}
        other => panic!("expected a store error, got {other:?}"),
    }
    assert!(
        lease_is_free(&probe, &key).await,
        "the killed claim left a lease"
    );
    let handle = stopped.manager.handle(key.clone()).unwrap();
    // The manager backs off from the store for about a second before it tries again.
    let recovered = async || match handle.token().await {
        Ok(token) => Some(token.fingerprint()),
        Err(Error::StoreUnavailable { .. }) => None,
        Err(error) => panic!("no recovery: {error}"),
    };
    let token = eventually_some("recovery", Duration::from_secs(10), recovered).await;
    assert_eq!(stopped.source.creations(), 1);
    let stored = probe.load(&key).await.unwrap();
    assert_eq!(stored.token().map(Token::fingerprint), Some(token));
    stopped.manager.shutdown().await;

    // Mid-commit.
    let key = fresh_key();
    let stopped = Stopped::start(&harness, &key, FakeSource::new(), (Op::Commit, 1), |b| b).await;
    stopped
        .stuck_in_server(&admin, async |pid| terminate(&admin, pid).await)
        .await;
    let served =
        stopped.caller.await.unwrap().unwrap_or_else(|error| {
            panic!("the holder did not recover from the lost commit: {error}")
        });
    assert_eq!(
        stopped.source.creations(),
        1,
        "the token of the lost commit is committed again, not wasted"
    );
    let stored = probe.load(&key).await.unwrap();
    assert_eq!(stored.token().map(Token::fingerprint), Some(served));
    assert!(
        lease_is_free(&probe, &key).await,
        "the killed commit left a lease"
    );
    no_leftovers(&admin, "after the terminated commit").await;
    stopped.manager.shutdown().await;
}

/// The private PostgreSQL server is killed during traffic and restarted (see
/// [`servers::killed_and_restarted_during_traffic`]).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn server_killed_and_restarted_during_traffic() {
    let server = postgres::private_server()
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    servers::killed_and_restarted_during_traffic(server).await;
}

/// A waiter whose LISTEN connection is terminated just before the holder's NOTIFY, and cannot
/// come back until after it (the database takes no new connections meanwhile), misses the
/// notice, and still gets the new token within one poll interval of the commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lost_notification_costs_at_most_one_poll_interval() {
    const POLL: Duration = Duration::from_secs(1);
    let harness = SqlHarness::new(BackendKind::Postgres).await;
    // One connection each, open before the database shuts its door, and kept.
    let mut admin = pg(&harness).acquire().await.unwrap();
    let one_connection = || harness.store_with(harness.options().max_connections(1));
    let key = fresh_key();
    let source = FakeSource::new();
    let holder_store = Tripwire::new(Arc::new(one_connection().await), Op::Commit, 1);
    // Both replicas listen.
    let holder = replica(Arc::new(source.clone()), Arc::new(holder_store.clone()))
        .poll_interval(POLL)
        .build()
        .unwrap();
    let waiter_store = Tripwire::new(Arc::new(one_connection().await), Op::Load, u64::MAX);
    let waiter = replica(Arc::new(source.clone()), Arc::new(waiter_store.clone()))
        .poll_interval(POLL)
        .build()
        .unwrap();
    let holding = tokio::spawn({
        let handle = holder.handle(key.clone()).unwrap();
        async move { handle.token().await.map(|token| token.fingerprint()) }
    });
    holder_store.reached(Duration::from_secs(10)).await;
    let waiting = tokio::spawn({
        let handle = waiter.handle(key.clone()).unwrap();
        async move {
            let token = handle.token().await.map(|token| token.fingerprint());
            (token, Instant::now())
        }
    });
    let listeners = async |admin: &mut PgConnection| {
        sqlx::query_scalar::<_, i32>(
            "SELECT pid FROM pg_stat_activity
              WHERE datname = current_database() AND query LIKE 'LISTEN%'",
        )
        .fetch_all(admin)
        .await
        .unwrap()
    };
    let both_listening = async || Some(listeners(&mut admin).await).filter(|pids| pids.len() == 2);
    let listening = eventually_some(
        "both replicas listen",
        Duration::from_secs(10),
        both_listening,
    )
    .await;
    // The stores keep the connections they have; the listeners cannot connect again.
    allow_connections(&harness, false).await;
    for pid in listening {
        terminate(&mut *admin, pid).await;
    }
    eventually("the listeners go", Duration::from_secs(10), async || {
        listeners(&mut admin).await.is_empty()
    })
    .await;
    holder_store.resume();
    let committed = holding.await.unwrap().unwrap();
    let committed_at = Instant::now();
    let (waited, finished) = waiting.await.unwrap();
    allow_connections(&harness, true).await;
    assert_eq!(waited.unwrap(), committed);
    // The waiter's first read after the commit found the token: it missed no poll...
    let loads = waiter_store.loads();
    let reads_after = loads.iter().filter(|sent| **sent > committed_at).count();
    assert!(reads_after <= 1, "{reads_after} reads after the commit");
    // ... and polled at the interval (a margin for a busy machine; without polling it would
    // wait for the lease, 30 s by default, or longer).
    let late = finished.saturating_duration_since(committed_at);
    assert!(
        late <= POLL + Duration::from_secs(2),
        "the waiter took {late:?} after the commit"
    );
    assert_eq!(source.creations(), 1);
    holder.shutdown().await;
    waiter.shutdown().await;
}

/// Lets new connections into the harness's database, or keeps them out (those open stay), from
/// the server's maintenance database (a database cannot shut out itself).
async fn allow_connections(harness: &SqlHarness, allowed: bool) {
    let test_db: PgConnectOptions = harness.url().parse().unwrap();
    let database = test_db.get_database().unwrap().to_owned();
    let mut maintenance = PgConnection::connect_with(&test_db.database("postgres"))
        .await
        .unwrap();
    let statement = format!("ALTER DATABASE \"{database}\" ALLOW_CONNECTIONS {allowed}");
    sqlx::query(AssertSqlSafe(statement))
        .execute(&mut maintenance)
        .await
        .unwrap();
    maintenance.close().await.unwrap();
}

/// A refresh cancelled (its manager shut down) at each await point, with the store's statement
/// stuck in the server where there is one: no lease outlives its TTL, no lock or open
/// transaction stays behind, no advisory lock is ever taken, and the next replica creates the
/// one token.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancelled_refreshes_leave_no_lease_or_lock() {
    const LEASE: Duration = Duration::from_secs(2);
    let harness = SqlHarness::new(BackendKind::Postgres).await;
    let admin = pg(&harness);
    let probe = harness.store().await;
    // The awaits of a refresh: load, claim, load again, create, commit.
    let points = [
        (Some((Op::Load, 1)), "first load"),
        (Some((Op::Acquire, 1)), "claim"),
        (Some((Op::Load, 2)), "load under the lease"),
        (None, "creation"),
        (Some((Op::Commit, 1)), "commit"),
    ];
    for (stop_at, point) in points {
        let key = fresh_key();
        // At the creation point the source never answers; elsewhere it answers at once.
        let source = match stop_at {
            None => FakeSource::new().with_latency(Duration::from_secs(3600), Arc::new(TokioSleep)),
            Some(_) => FakeSource::new(),
        };
        // Cancellation, not a timeout of its own, ends the stopped refresh.
        let clock = ManualClock::starting_at(SystemTime::now());
        let frozen = |builder| stopped(builder, &clock, LEASE);
        let at = stop_at.unwrap_or((Op::Load, u64::MAX));
        let stopped = Stopped::start(&harness, &key, source, at, frozen).await;
        if stop_at.is_some() {
            let cancel = async |_| stopped.manager.shutdown().await;
            stopped.stuck_in_server(&admin, cancel).await;
        } else {
            tokio::time::timeout(Duration::from_secs(10), stopped.source.wait_for_calls(1))
                .await
                .expect("the replica calls its token source");
            holds_no_connection(&harness, &stopped.store, &key).await;
            stopped.manager.shutdown().await;
        }
        let cancelled_at = Instant::now();
        assert!(
            matches!(stopped.caller.await.unwrap(), Err(Error::ShutDown)),
            "{point}: the caller was not told of the shutdown"
        );
        let limit = (cancelled_at + LEASE + Duration::from_secs(1))
            .saturating_duration_since(Instant::now());
        let lease_outlived = format!("{point}: the lease is freed within its TTL");
        eventually(lease_outlived, limit, async || {
            lease_is_free(&probe, &key).await
        })
        .await;
        no_leftovers(&admin, point).await;
        assert_eq!(advisory_locks(&admin).await, 0, "{point}: advisory lock");

        let next = FakeSource::new();
        let successor = replica(next.clone(), harness.store().await)
            .build()
            .unwrap();
        let token = successor.token(&key).await.unwrap();
        let stored = probe.load(&key).await.unwrap();
        assert_eq!(
            stored.token().map(Token::fingerprint),
            Some(token.fingerprint()),
            "{point}"
        );
        drop(token);
        successor.shutdown().await;
    }
}

/// A configured schema is created by the migrations and holds the table; its notifications
/// travel on a channel of their own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_of_its_own_with_its_own_notifications() {
    let harness = SqlHarness::new(BackendKind::Postgres).await;
    let options = || harness.options().schema("kigo_auth").table("tokens");
    let store = harness.store_with(options().migrate_on_connect(true)).await;
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('kigo_auth.tokens') IS NOT NULL")
        .fetch_one(&pg(&harness))
        .await
        .unwrap();
    assert!(exists);
    let listener = harness.store_with(options()).await;
    let mut feed = listener.changes().expect("PostgreSQL notifies");
    let mut default_feed = harness.admin().changes().expect("PostgreSQL notifies");
    // Both feeds are live once each has heard a commit of its own table.
    let default_key = fresh_key();
    let heard = notice_of(&mut default_feed, || async {
        commit_token(harness.admin(), &default_key, &token("default")).await;
    })
    .await;
    assert_eq!(heard, default_key);
    let key = fresh_key();
    let heard = notice_of(&mut feed, || async {
        commit_token(&store, &key, &token("schema")).await;
    })
    .await;
    assert_eq!(heard, key);
    // The default table's channel heard nothing of the schema's commits.
    assert!(!hears_before_the_next_commit(&mut default_feed, &key, harness.admin()).await);
}

/// Stores on tables of one name in different schemas, chosen by `search_path`, keep apart: each
/// migrates a table of its own, and hears the notices of its own table only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_path_schemas_keep_their_notifications_apart() {
    let harness = SqlHarness::new(BackendKind::Postgres).await;
    let on = async |schema: &str| {
        harness.execute(&format!("CREATE SCHEMA {schema}")).await;
        let url = format!("{}?options[search_path]={schema}", harness.url());
        let store = harness
            .options()
            .migrate_on_connect(true)
            .url(&url)
            .build()
            .await
            .unwrap();
        let table = format!("{schema}.kigo_tokens");
        let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(&table)
            .fetch_one(&pg(&harness))
            .await
            .unwrap();
        assert!(exists, "{table}");
        let feed = store.changes().expect("PostgreSQL notifies");
        (store, feed)
    };
    let (a, mut a_feed) = on("team_a").await;
    let (b, mut b_feed) = on("team_b").await;
    for (store, feed) in [(&a, &mut a_feed), (&b, &mut b_feed)] {
        let key = fresh_key();
        let own = token("own");
        let heard = notice_of(feed, || commit_token(store, &key, &own)).await;
        assert_eq!(heard, key);
    }
    let key = fresh_key();
    commit_token(&b, &key, &token("b")).await;
    assert!(!hears_before_the_next_commit(&mut a_feed, &key, &a).await);
}

/// Whether `feed` delivers a notice of `key` (already committed elsewhere) before the notice of
/// a commit through `store` made now. Notices arrive in commit order, so a feed that delivers
/// the later commit's notice first never delivers one of `key`.
async fn hears_before_the_next_commit(
    feed: &mut kigo_core::store::ChangeFeed,
    key: &TokenKey,
    store: &SqlStore,
) -> bool {
    let marker = fresh_key();
    commit_token(store, &marker, &token("marker")).await;
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let notice = feed.next().await.expect("the feed ended");
            if notice.key == *key {
                return true;
            }
            if notice.key == marker {
                return false;
            }
        }
    })
    .await
    .expect("the later commit's notice within 10 s")
}

/// A store whose pool cannot listen (here: a server that is not there, standing in for a
/// pooler in transaction mode) hears change notices through its listen URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notices_come_through_the_listen_url() {
    let harness = SqlHarness::new(BackendKind::Postgres).await;
    let port = kigo_test_services::free_port().unwrap();
    let store = harness
        .options()
        .listen_url(harness.url())
        .url(format!("postgres://postgres@127.0.0.1:{port}/pooler"))
        .build()
        .await
        .unwrap();
    let mut feed = store.changes().expect("PostgreSQL notifies");
    let key = fresh_key();
    let listened = token("listened");
    let heard = notice_of(&mut feed, || commit_token(harness.admin(), &key, &listened)).await;
    assert_eq!(heard, key);
}

/// When the listening connection cannot be made, the feed ends and the store says so in its
/// log, without the password of the listen URL.
#[tokio::test]
async fn a_failed_listener_is_logged_without_its_password() {
    let harness = SqlHarness::new(BackendKind::Postgres).await;
    let port = kigo_test_services::free_port().unwrap();
    let log = Capture::default();
    let _logging = tracing::subscriber::set_default(log.subscriber());
    let store = harness
        .options()
        .acquire_timeout(Duration::from_millis(500))
        .listen_url(format!("postgres://kigo:pa55-secret@127.0.0.1:{port}/kigo"))
        .url(harness.url())
        .build()
        .await
        .unwrap();
    let mut feed = store.changes().expect("PostgreSQL notifies");
    let next = tokio::time::timeout(Duration::from_secs(10), feed.next()).await;
    assert!(next.expect("the feed ends").is_none());
    let text = log.text();
    assert!(
        text.contains("WARN") && text.contains("cannot listen for PostgreSQL change notices"),
        "{text}"
    );
    assert!(!text.contains("pa55-secret"));
}

/// Runs `commit` until `feed` delivers a notice (a new feed subscribes in the background);
/// the key it names.
async fn notice_of<F: std::future::Future<Output = ()>>(
    feed: &mut kigo_core::store::ChangeFeed,
    mut commit: impl FnMut() -> F,
) -> TokenKey {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            commit().await;
            tokio::select! {
                Some(notice) = feed.next() => return notice.key,
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
    })
    .await
    .expect("a notice within 10 s")
}

/// A server that is not there is reported as unavailable, within the acquire timeout.
#[tokio::test]
async fn unreachable_server_is_unavailable() {
    servers::unreachable_database_is_unavailable("postgres://postgres@127.0.0.1").await;
}

/// A statement stuck behind a table lock is given up after the operation timeout, as
/// unavailable, and the server ends it too (a pool built from a URL sets `statement_timeout` and
/// `lock_timeout`), so no connection stays busy with it. A store on the application's own pool
/// gives up as well; its statement stays in the server until the lock goes, and the store
/// works again afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_stuck_behind_a_lock_time_out() {
    const TIMEOUT: Duration = Duration::from_millis(500);
    let harness = SqlHarness::new(BackendKind::Postgres).await;
    let admin = pg(&harness);
    let options = || harness.options().operation_timeout(TIMEOUT);
    let from_url = harness.store_with(options()).await;
    let own_pool = PgPool::connect(harness.url()).await.unwrap();
    let on_own_pool = options().pool(own_pool).build().await.unwrap();
    let key = fresh_key();
    let lock = lock_table(&admin).await;

    gives_up_in_time(&from_url, &key, TIMEOUT).await;
    eventually(
        "the server ends the statement",
        Duration::from_secs(5),
        async || lock_waiters(&admin).await.is_empty(),
    )
    .await;
    gives_up_in_time(&on_own_pool, &key, TIMEOUT).await;
    assert_eq!(lock_waiters(&admin).await.len(), 1);

    lock.rollback().await.unwrap();
    for store in [&from_url, &on_own_pool] {
        store.load(&key).await.unwrap();
    }
}

/// `store`'s load of `key` reports the store unavailable within `timeout` (and a margin for a
/// busy machine, far below the 5 s it would otherwise wait for a connection).
async fn gives_up_in_time(store: &dyn TokenStore, key: &TokenKey, timeout: Duration) {
    let started = Instant::now();
    let margin = Duration::from_secs(3);
    let loaded = tokio::time::timeout(timeout + margin, store.load(key))
        .await
        .unwrap_or_else(|_| panic!("the load waited {:?}", started.elapsed()));
    assert!(
        matches!(loaded, Err(StoreError::Unavailable { .. })),
        "{loaded:?}"
    );
}

/// With `serializable` as the database's default isolation, concurrent claims and cool-downs
/// of one key conflict (SQLSTATE 40001); the store runs a statement the database rolled back
/// again, so every call succeeds, and exactly one claim of each round gets the lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn serialization_failures_are_retried() {
    const REPLICAS: usize = 16;
    let harness = SqlHarness::new(BackendKind::Postgres).await;
    let admin = pg(&harness);
    let database: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&admin)
        .await
        .unwrap();
    harness
        .execute(&format!(
            "ALTER DATABASE \"{database}\" SET default_transaction_isolation = 'serializable'"
        ))
        .await;
    let mut stores = Vec::new();
    for _ in 0..REPLICAS {
        stores.push(Arc::new(harness.store().await));
    }
    let SqlPool::Postgres(pool) = stores[0].pool() else {
        unreachable!()
    };
    let isolation: String = sqlx::query_scalar("SHOW transaction_isolation")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(isolation, "serializable");
    for _ in 0..5 {
        let key = fresh_key();
        let mut calls = tokio::task::JoinSet::new();
        for store in &stores {
            let (claimer, cooler) = (Arc::clone(store), Arc::clone(store));
            let key = key.clone();
            calls.spawn(async move {
                let holder = HolderId::random();
                let lease = claimer.acquire_lease(&key, &holder, Duration::from_secs(10));
                let cooldown = cooler.set_cooldown(&key, Duration::from_secs(1));
                let (lease, cooldown) = tokio::join!(lease, cooldown);
                cooldown.map(|()| lease)
            });
        }
        let mut acquired = 0;
        while let Some(call) = calls.join_next().await {
            match call.unwrap().unwrap_or_else(|error| panic!("{error:?}")) {
                Ok(LeaseAttempt::Acquired(_)) => acquired += 1,
                Ok(LeaseAttempt::Held { .. }) => {}
                Err(error) => panic!("{error:?}"),
            }
        }
        assert_eq!(acquired, 1);
    }
}

/// A PostgreSQL store on another host requires `sslmode` `require`, `verify-ca` or
/// `verify-full` (see [`transport::remote_hosts_require_tls`]); so does its listen URL.
#[tokio::test]
async fn remote_postgres_requires_tls() {
    transport::remote_hosts_require_tls(transport::Urls {
        plain: "postgres://kigo:pa55-secret@db.internal/app",
        host: "db.internal",
        encrypted: &[
            "postgres://kigo:pa55-secret@db.internal/app?sslmode=require",
            "postgres://kigo:pa55-secret@db.internal/app?sslmode=verify-ca",
            "postgresql://kigo:pa55-secret@[2001:db8::5]:5433/app?sslmode=verify-full",
        ],
        local: &[
            "postgres://kigo:pa55-secret@127.0.0.1/app",
            "postgres://kigo:pa55-secret@localhost/app?sslmode=disable",
            "postgres://kigo:pa55-secret@[::1]/app",
            "postgres://kigo:pa55-secret@db.internal/app?host=/run/postgresql",
        ],
        pool: |url| PgPool::connect_lazy(url).unwrap().into(),
    })
    .await;

    let listening_in_the_clear = transport::options()
        .listen_url("postgres://kigo:pa55-secret@db.internal/app")
        .url("postgres://kigo:pa55-secret@127.0.0.1/app")
        .build()
        .await;
    transport::refused_as_insecure(listening_in_the_clear, "db.internal");
}

/// Keys are listed in the byte order of their storage IDs even where the column's collation
/// orders them otherwise (here ICU's English, which sorts `p/A` before `p/a_c` before `p/ab`
/// before `p/aB`): a walk resumed from the last key of each page sees every key once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_come_in_byte_order_whatever_the_collation() {
    let harness = SqlHarness::new(BackendKind::Postgres).await;
    harness
        .execute(r#"ALTER TABLE kigo_tokens ALTER COLUMN token_key TYPE TEXT COLLATE "en-x-icu""#)
        .await;
    let store = harness.store().await;
    let keys: Vec<TokenKey> = ["ab", "aB", "a-b", "a_c", "A", "Z"]
        .into_iter()
        .map(|partner| TokenKey::partner(PartnerId::new(partner).unwrap()))
        .collect();
    for key in &keys {
        commit_token(&store, key, &token("collated")).await;
    }
    let mut walked = Vec::new();
    let mut after = None;
    loop {
        let page = store.keys(after.as_ref(), 2).await.unwrap();
        let Some(last) = page.last().cloned() else {
            break;
        };
        walked.extend(page.iter().map(TokenKey::storage_id));
        after = Some(last);
    }
    let mut expected: Vec<String> = keys.iter().map(TokenKey::storage_id).collect();
    expected.sort();
    assert_eq!(walked, expected);
}

/// A reseal that read the entry before an invalidation writes nothing after it: its update
/// finds the entry it read gone, reports the entry changed, and the revoked token stays gone.
/// (The invalidation holds the row, as a concurrent statement does, until the reseal's write
/// waits behind it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reseal_racing_an_invalidation_never_brings_the_token_back() {
    let harness = SqlHarness::new(BackendKind::Postgres).await;
    let admin = pg(&harness);
    let key = fresh_key();
    commit_token(harness.admin(), &key, &token("revoked")).await;
    let new_key = SealingKey::from_bytes(std::array::from_fn(|_| fastrand::u8(..)));
    let rotated = Keyring::new(new_key)
        .with_older_key(harness.keyring().current().clone())
        .unwrap();
    let rotating = harness
        .store_with(SqlStore::builder().keyring(rotated))
        .await;

    let mut invalidation = admin.begin().await.unwrap();
    sqlx::query(
        "UPDATE kigo_tokens SET entry = NULL, fingerprint = NULL, expires_at = NULL
          WHERE token_key = $1",
    )
    .bind(key.storage_id())
    .execute(&mut *invalidation)
    .await
    .unwrap();
    let resealing = tokio::spawn({
        let key = key.clone();
        async move { rotating.reseal(&key).await }
    });
    blocked_statement(&admin).await;
    invalidation.commit().await.unwrap();

    assert_eq!(resealing.await.unwrap().unwrap(), Resealed::Changed);
    assert_eq!(
        harness.raw_row(&key).await.entry.map(|entry| entry.len()),
        None
    );
}

/// A role that may only read the table: the check reports the first statement of a renewal
/// it refused (the cool-down's insert), and the deletion of the check's own row, as
/// permission problems, not as an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_what_a_read_only_role_may_not_do() {
    let harness = SqlHarness::new(BackendKind::Postgres).await;
    let role = format!("kigo_read_only_{:08x}", fastrand::u32(..));
    let tables = "kigo_tokens, kigo_tokens_migrations";
    harness.execute(&format!("CREATE ROLE {role} LOGIN")).await;
    harness
        .execute(&format!("GRANT SELECT ON {tables} TO {role}"))
        .await;
    let options: PgConnectOptions = harness.url().parse().unwrap();
    let pool = PgPool::connect_lazy_with(options.username(&role));
    let store = harness.options().pool(pool).build().await.unwrap();

    let check = store.check().await.unwrap();
    assert!(!check.permissions_ok, "{check:?}");
    let problem = check.permission_problem.unwrap_or_default();
    assert!(problem.starts_with("set a cool-down: refused"), "{problem}");
    assert!(problem.contains("delete the check's own row"), "{problem}");
    assert_eq!(check.schema.as_deref(), Some("5"));

    let SqlPool::Postgres(pool) = store.pool() else {
        unreachable!()
    };
    pool.close().await;
    harness
        .execute(&format!("REVOKE ALL ON {tables} FROM {role}"))
        .await;
    harness.execute(&format!("DROP ROLE {role}")).await;
}
