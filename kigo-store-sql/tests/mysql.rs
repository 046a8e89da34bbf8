//! The MySQL/MariaDB store: the conformance suite and the fleet scenarios.

mod common;
#[path = "common/servers.rs"]
mod servers;
#[path = "common/transport.rs"]
mod transport;

use std::time::{Duration, Instant};

use common::fleet::fresh_key;
use common::harness::SqlHarness;
use kigo_core::store::{HolderId, LeaseAttempt};
use kigo_core::{StoreError, Token, TokenStore};
use kigo_store_sql::sqlx::mysql::{MySqlPool, MySqlPoolOptions};
use kigo_store_sql::{BackendKind, SqlPool};
use kigo_testkit::eventually;

mod conformance {
    kigo_testkit::store_conformance_tests!(async {
        super::SqlHarness::new(super::BackendKind::MySql).await
    });
}

mod admin_conformance {
    kigo_testkit::admin_conformance_tests!(async {
        super::SqlHarness::new(super::BackendKind::MySql).await
    });
}

mod fleet {
    crate::common::fleet::fleet_tests!(kigo_store_sql::BackendKind::MySql);
}

/// A server that is not there is reported as unavailable, within the acquire timeout.
#[tokio::test]
async fn unreachable_server_is_unavailable() {
    servers::unreachable_database_is_unavailable("mysql://root@127.0.0.1").await;
}

/// The private MariaDB server is killed during traffic and restarted (see
/// [`servers::killed_and_restarted_during_traffic`]).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn server_killed_and_restarted_during_traffic() {
    let server = kigo_test_services::mysql::private_server()
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    servers::killed_and_restarted_during_traffic(server).await;
}

/// A claim is one statement, whether it creates the row, takes a free lease or finds it held
/// (then one more reads the time left), counted by the server on the store's only connection.
#[tokio::test]
async fn a_claim_is_one_statement() {
    let harness = SqlHarness::new(BackendKind::MySql).await;
    let pool = MySqlPoolOptions::new()
        .max_connections(1)
        .connect(harness.url())
        .await
        .unwrap();
    let store = harness.options().pool(pool.clone()).build().await.unwrap();
    let key = fresh_key();
    let claim = async || {
        let holder = HolderId::random();
        store
            .acquire_lease(&key, &holder, Duration::from_secs(10))
            .await
            .unwrap()
    };
    let mut counting = Statements::new(pool).await;

    assert!(matches!(claim().await, LeaseAttempt::Acquired(_)));
    assert_eq!(counting.since().await, 1, "a new row");
    assert!(matches!(claim().await, LeaseAttempt::Held { .. }));
    assert_eq!(counting.since().await, 2, "a held lease, and its time left");
}

/// Counts the statements a pool of one connection sends (the server's `Questions`).
struct Statements {
    pool: MySqlPool,
    last: u64,
    /// What one reading of the counter adds to it.
    reading: u64,
}

impl Statements {
    async fn new(pool: MySqlPool) -> Self {
        let first = questions(&pool).await;
        let second = questions(&pool).await;
        Self {
            reading: second - first,
            last: second,
            pool,
        }
    }

    /// Statements sent since the last call.
    async fn since(&mut self) -> u64 {
        let now = questions(&self.pool).await;
        let sent = now - self.last - self.reading;
        self.last = now;
        sent
    }
}

async fn questions(pool: &MySqlPool) -> u64 {
    let (_, count): (String, String) = sqlx::query_as("SHOW SESSION STATUS LIKE 'Questions'")
        .fetch_one(pool)
        .await
        .unwrap();
    count.parse().unwrap()
}

/// A configured schema is a MySQL database: the migrations create it and the table in it, the
/// store keeps its rows there (apart from the default database's table), and a table never
/// migrated in it says to run the migrations.
#[tokio::test]
async fn schema_of_its_own() {
    let harness = SqlHarness::new(BackendKind::MySql).await;
    let schema = format!("kigo_schema_{:08x}", fastrand::u32(..));
    let options = || harness.options().schema(&schema);
    let store = harness.store_with(options().migrate_on_connect(true)).await;
    let key = fresh_key();
    let token = common::fleet::token("schema");
    common::fleet::commit_token(&store, &key, &token).await;
    let tables: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM information_schema.tables
          WHERE table_schema = ? AND table_name IN ('kigo_tokens', 'kigo_tokens_migrations')",
    )
    .bind(&schema)
    .fetch_one(&admin_pool(&harness))
    .await
    .unwrap();
    assert_eq!(tables, 2);
    let loaded = harness
        .store_with(options())
        .await
        .load(&key)
        .await
        .unwrap();
    assert_eq!(
        loaded.token().map(Token::fingerprint),
        Some(token.fingerprint())
    );
    assert!(harness.admin().load(&key).await.unwrap().token().is_none());
    let unmigrated = harness.store_with(options().table("never_migrated")).await;
    match unmigrated.load(&key).await {
        Err(StoreError::Misconfigured { hint, .. }) => assert!(hint.contains("migrate"), "{hint}"),
        other => panic!("{other:?}"),
    }
    harness.execute(&format!("DROP DATABASE `{schema}`")).await;
}

fn admin_pool(harness: &SqlHarness) -> MySqlPool {
    match harness.admin().pool() {
        SqlPool::MySql(pool) => pool.clone(),
        other => panic!("not MySQL: {other:?}"),
    }
}

/// A statement stuck behind a table lock (`LOCK TABLES ... WRITE`) is given up after the
/// operation timeout, as unavailable, and the server ends it too (a pool built from a URL sets
/// `lock_wait_timeout`), so no connection stays busy with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_stuck_behind_a_lock_time_out() {
    const TIMEOUT: Duration = Duration::from_millis(500);
    let harness = SqlHarness::new(BackendKind::MySql).await;
    let admin = admin_pool(&harness);
    let store = harness
        .store_with(harness.options().operation_timeout(TIMEOUT))
        .await;
    let mut locker = admin.acquire().await.unwrap();
    sqlx::query("LOCK TABLES kigo_tokens WRITE")
        .execute(&mut *locker)
        .await
        .unwrap();

    let started = Instant::now();
    let loaded = tokio::time::timeout(TIMEOUT + Duration::from_secs(3), store.load(&fresh_key()))
        .await
        .unwrap_or_else(|_| panic!("the load waited {:?}", started.elapsed()));
    assert!(
        matches!(loaded, Err(StoreError::Unavailable { .. })),
        "{loaded:?}"
    );
    let waiting = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM information_schema.processlist
              WHERE db = DATABASE() AND state LIKE 'Waiting for table%lock'",
        )
        .fetch_one(&admin)
        .await
        .unwrap()
    };
    // lock_wait_timeout counts whole seconds: the server gives up after 1 s.
    eventually(
        "the server ends the statement",
        Duration::from_secs(5),
        async || waiting().await == 0,
    )
    .await;
    sqlx::query("UNLOCK TABLES")
        .execute(&mut *locker)
        .await
        .unwrap();
    store.load(&fresh_key()).await.unwrap();
}

/// A MySQL/MariaDB store on another host requires `ssl-mode` `REQUIRED`, `VERIFY_CA` or
/// `VERIFY_IDENTITY` (see [`transport::remote_hosts_require_tls`]).
#[tokio::test]
async fn remote_mysql_requires_tls() {
    transport::remote_hosts_require_tls(transport::Urls {
        plain: "mysql://kigo:pa55-secret@db.internal/app?ssl-mode=PREFERRED",
        host: "db.internal",
        encrypted: &[
            "mysql://kigo:pa55-secret@db.internal/app?ssl-mode=REQUIRED",
            "mariadb://kigo:pa55-secret@db.internal/app?ssl-mode=VERIFY_CA",
            "mysql://kigo:pa55-secret@10.1.2.3:3307/app?ssl-mode=VERIFY_IDENTITY",
        ],
        local: &[
            "mysql://kigo:pa55-secret@127.0.0.1/app",
            "mysql://kigo:pa55-secret@localhost/app?ssl-mode=DISABLED",
            "mysql://kigo:pa55-secret@db.internal/app?socket=/run/mysqld/mysqld.sock",
        ],
        pool: |url| MySqlPool::connect_lazy(url).unwrap().into(),
    })
    .await;
}
