//! The SQLite store (the embedded default): the conformance suite, the fleet scenarios, replicas
//! as separate processes sharing one file, a busy database, and the file's modes.

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::fleet::{fresh_key, replica};
use common::harness::SqlHarness;
use kigo_core::codec::{KEYRING_HINT, Keyring, SEALING_KEYS_VAR, SealingKey};
use kigo_core::store::StoreAdmin;
use kigo_core::{
    CreateRequest, Fingerprint, PartnerId, SourceError, StoreError, Token, TokenHandle, TokenKey,
    TokenSecret, TokenSource, TokenStore,
};
use kigo_store_sql::sqlx::SqlitePool;
use kigo_store_sql::sqlx::sqlite::SqliteConnectOptions;
use kigo_store_sql::{BackendKind, SqlPool, SqlStore, SqlStoreBuilder};
use kigo_testkit::conformance::test_keyring;
use kigo_testkit::logs::Capture;
use kigo_testkit::{FakeSource, eventually};
use secrecy::{ExposeSecret, SecretString};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::task::JoinSet;

mod conformance {
    kigo_testkit::store_conformance_tests!(async {
        super::SqlHarness::new(super::BackendKind::Sqlite).await
    });
}

mod admin_conformance {
    kigo_testkit::admin_conformance_tests!(async {
        super::SqlHarness::new(super::BackendKind::Sqlite).await
    });
}

mod fleet {
    crate::common::fleet::fleet_tests!(kigo_store_sql::BackendKind::Sqlite);
}

#[cfg(unix)]
#[path = "sqlite/file_modes.rs"]
mod file_modes;
#[path = "sqlite/from_env.rs"]
mod from_env;

/// Set in the environment of the replica processes: the SQLite file they share.
const REPLICA_FILE: &str = "KIGO_TEST_SQLITE_REPLICA_FILE";
const PROCESSES: usize = 4;
/// What the replicas are told, round after round: the first round starts cold; in a `revoked`
/// round each replica reports a 401 for the token it holds; in a `short` round too, and the new
/// token lives [`SHORT_LIFETIME`]; in an `expiring` round nobody reports anything, and the
/// replicas wait for that token to be renewed before it expires.
const ROUNDS: [&str; 6] = ["cold", "revoked", "revoked", "revoked", "short", "expiring"];
const CALLERS: usize = 64;
/// The lifetime of the token of a `short` round: renewed after about 4 s.
const SHORT_LIFETIME: Duration = Duration::from_secs(6);
const THIS_TEST: &str = "replica_processes_create_once_per_renewal";
/// What starts a replica's report line: `<creations so far> <fingerprint held>` follow.
const REPORT: &str = "kigo-replica-report: ";

/// Four replica processes (this test binary again, running this test as a replica) open one
/// SQLite file with the one-line constructor, all at once. Round 1 starts cold; in the next
/// rounds every replica reports a 401 for the token it holds (a revoked token seen by the whole
/// fleet); in the last round the token expires (see [`ROUNDS`]). Each round, 64 concurrent
/// callers per process ask for a token: across the processes the token source is called once
/// per round, and every process ends the round on the same new token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_processes_create_once_per_renewal() {
    if let Some(file) = std::env::var_os(REPLICA_FILE) {
        return replica_process(Path::new(&file)).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens.db");
    // One key per run, handed to the replicas as production would.
    let keys = SealingKey::generate_base64();
    let mut replicas: Vec<ReplicaProcess> = (0..PROCESSES)
        .map(|_| ReplicaProcess::spawn(&file, &keys))
        .collect();
    let mut previous = None;
    for (round, command) in (1..).zip(ROUNDS) {
        for replica in &mut replicas {
            replica.send(command).await;
        }
        let mut created = 0;
        let mut tokens = HashSet::new();
        for replica in &mut replicas {
            let (creations, token) = replica.report().await;
            created += creations;
            tokens.insert(token);
        }
        assert_eq!(
            created, round,
            "creations across the processes after round {round} ({command})"
        );
        assert_eq!(
            tokens.len(),
            1,
            "round {round} ({command}): the processes hold different tokens"
        );
        let token = tokens.into_iter().next();
        assert_ne!(token, previous, "round {round} ({command}) did not renew");
        previous = token;
    }
    for replica in replicas {
        replica.finish().await;
    }
    let key = TokenKey::partner(PartnerId::new("processes").unwrap());
    let keyring = Keyring::parse(keys.expose_secret()).unwrap();
    sealed_in_the_file(&file, &key, keyring, previous.unwrap()).await;
}

/// Asserts that the entry of `key` in the SQLite `file` holds the token `expected`, sealed with
/// the current key of `keyring`: its row shows neither token nor the key.
async fn sealed_in_the_file(file: &Path, key: &TokenKey, keyring: Keyring, expected: Fingerprint) {
    let sealing = keyring.current().id();
    let store = embedded(keyring).sqlite_file(file).build().await.unwrap();
    let loaded = store.load(key).await.unwrap();
    assert_eq!(loaded.token().map(Token::fingerprint), Some(expected));
    let SqlPool::Sqlite(pool) = store.pool() else {
        unreachable!("an SQLite store");
    };
    let raw: Vec<u8> = sqlx::query_scalar("SELECT entry FROM kigo_tokens WHERE token_key = ?1")
        .bind(key.storage_id())
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(common::sealing::sealed_with(&raw), Some(sealing));
    let text = String::from_utf8_lossy(&raw);
    assert!(!text.contains("fake-token"), "the token in the row");
}

/// The options of the one-line constructor (migrations at construction), sealing with `keyring`
/// rather than the keys in the environment.
fn embedded(keyring: Keyring) -> SqlStoreBuilder {
    SqlStore::builder()
        .keyring(keyring)
        .migrate_on_connect(true)
}

/// The arguments that run only the test `name` of this binary, printing what it prints: for a
/// test that runs itself again in a child process.
fn only(name: &str) -> [&str; 5] {
    ["--exact", name, "--nocapture", "--test-threads", "1"]
}

/// A replica process, driven over its stdin and reporting on its stdout.
struct ReplicaProcess {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl ReplicaProcess {
    fn spawn(file: &Path, keys: &SecretString) -> Self {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(only(THIS_TEST))
            .env(REPLICA_FILE, file)
            .env(SEALING_KEYS_VAR, keys.expose_secret())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        Self {
            child,
            stdin,
            stdout,
        }
    }

    async fn send(&mut self, command: &str) {
        self.stdin
            .write_all(format!("{command}\n").as_bytes())
            .await
            .unwrap();
        self.stdin.flush().await.unwrap();
    }

    /// The next report: how many tokens this process created so far, and the token it holds.
    async fn report(&mut self) -> (u64, Fingerprint) {
        let line = tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                let line = self
                    .stdout
                    .next_line()
                    .await
                    .unwrap()
                    .expect("replica exited");
                // The test harness of the replica prints on the same stream, even on the line
                // the first report starts on.
                if let Some((_, report)) = line.split_once(REPORT) {
                    return report.to_owned();
                }
            }
        })
        .await
        .expect("a replica report within 60 s");
        let (creations, token) = line.split_once(' ').unwrap();
        (
            creations.parse().unwrap(),
            Fingerprint::from_hex(token).unwrap(),
        )
    }

    async fn finish(mut self) {
        drop(self.stdin);
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .unwrap()
            .unwrap();
        assert!(status.success(), "a replica process failed: {status}");
    }
}

/// The replica side: a manager on the shared file; per round, a 401 for the token it holds or a
/// wait for its renewal (see [`ROUNDS`]), then concurrent callers; reports on stdout.
async fn replica_process(file: &Path) {
    let store = SqlStore::sqlite(file).await.unwrap();
    let source = FakeSource::new();
    let this = ThisProcess {
        source: source.clone(),
        short: Arc::new(AtomicBool::new(false)),
    };
    let short = Arc::clone(&this.short);
    let manager = replica(this, store)
        // The `revoked` rounds report a 401 for a token created a moment before.
        .min_token_age(Duration::ZERO)
        .build()
        .unwrap();
    let handle = manager
        .handle(TokenKey::partner(PartnerId::new("processes").unwrap()))
        .unwrap();
    let mut commands = BufReader::new(tokio::io::stdin()).lines();
    let mut stdout = tokio::io::stdout();
    let mut held: Option<Fingerprint> = None;
    while let Some(command) = commands.next_line().await.unwrap() {
        short.store(command == "short", Ordering::SeqCst);
        match (command.as_str(), held) {
            ("cold", None) => {}
            ("revoked" | "short", Some(rejected)) => {
                handle.invalidate(&rejected);
            }
            ("expiring", Some(expiring)) => renewed(&handle, expiring).await,
            other => panic!("unexpected round {other:?}"),
        }
        let mut callers = JoinSet::new();
        for _ in 0..CALLERS {
            let handle = handle.clone();
            callers.spawn(async move { handle.token().await.unwrap().fingerprint() });
        }
        let mut tokens = HashSet::new();
        while let Some(token) = callers.join_next().await {
            tokens.insert(token.unwrap());
        }
        assert_eq!(
            tokens.len(),
            1,
            "callers of one process got different tokens"
        );
        let token = tokens.into_iter().next().unwrap();
        held = Some(token);
        let report = format!("{REPORT}{} {token}\n", source.creations());
        stdout.write_all(report.as_bytes()).await.unwrap();
        stdout.flush().await.unwrap();
    }
    manager.shutdown().await;
}

/// Waits (with a deadline) until `handle` serves a token other than `expiring`, asking for one
/// now and then as traffic would.
async fn renewed(handle: &TokenHandle, expiring: Fingerprint) {
    eventually("the token's renewal", SHORT_LIFETIME * 2, async || {
        handle.token().await.unwrap().fingerprint() != expiring
    })
    .await;
}

/// A [`FakeSource`] whose tokens name this process: every fake counts from `fake-token-1`, and
/// two processes must not create the same token (a replica never adopts the token it reported
/// revoked). While `short` is set, its tokens live [`SHORT_LIFETIME`].
#[derive(Debug)]
struct ThisProcess {
    source: FakeSource,
    short: Arc<AtomicBool>,
}

#[async_trait::async_trait]
impl TokenSource for ThisProcess {
    async fn create(&self, request: CreateRequest<'_>) -> Result<Token, SourceError> {
        let token = self.source.create(request).await?;
        let secret = format!("{}-of-{}", token.secret().expose(), std::process::id());
        let expires_at = if self.short.load(Ordering::SeqCst) {
            token.issued_at() + SHORT_LIFETIME
        } else {
            token.expires_at()
        };
        Token::new(TokenSecret::new(secret), token.issued_at(), expires_at)
            .map_err(SourceError::permanent)
    }
}

/// Set in the environment of the child processes of
/// [`the_one_line_store_seals_with_the_keys_in_the_environment`]: the directory of their file.
const ENV_CHILD_DIR: &str = "KIGO_TEST_SQLITE_ENV_DIR";
const ENV_TEST: &str = "the_one_line_store_seals_with_the_keys_in_the_environment";
/// What starts a child's report line.
const ENV_REPORT: &str = "kigo-env-report: ";

/// The one-line constructor, in a child process each time (the environment is the process's):
/// with `KIGO_SEALING_KEYS` set, it creates the file and its table and seals entries with that
/// key, and a second store on the file reads them; without it, or with a value that is not a
/// key, it is refused as misconfigured with the hint that says how to set it, before the file is
/// created, and without repeating the value.
#[tokio::test]
async fn the_one_line_store_seals_with_the_keys_in_the_environment() {
    if let Some(dir) = std::env::var_os(ENV_CHILD_DIR) {
        return one_line_child(Path::new(&dir)).await;
    }
    let keys = SealingKey::generate_base64();
    let not_a_key = "s3cret-but-not-base64!";
    for value in [Some(keys.expose_secret()), None, Some(not_a_key)] {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(std::env::current_exe().unwrap());
        child.args(only(ENV_TEST)).env(ENV_CHILD_DIR, dir.path());
        match value {
            Some(value) => child.env(SEALING_KEYS_VAR, value),
            None => child.env_remove(SEALING_KEYS_VAR),
        };
        let output = child.output().await.unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{stdout}");
        let report = stdout
            .lines()
            .find_map(|line| line.split_once(ENV_REPORT).map(|(_, report)| report))
            .unwrap_or_else(|| panic!("no report: {stdout}"));
        let file = dir.path().join("kigo-tokens.db");
        if value == Some(keys.expose_secret()) {
            let token = Fingerprint::from_hex(report).unwrap();
            let keyring = Keyring::parse(keys.expose_secret()).unwrap();
            sealed_in_the_file(&file, &one_line_key(), keyring, token).await;
        } else {
            assert_eq!(report, format!("refused: {KEYRING_HINT}"));
            assert!(!file.exists(), "the file was created");
            assert!(!stdout.contains(not_a_key), "{stdout}");
        }
    }
}

fn one_line_key() -> TokenKey {
    TokenKey::partner(PartnerId::new("one-line").unwrap())
}

/// The child side: a store with the one-line constructor, a commit, a second store reading it;
/// reports the token's fingerprint, or the hint of the refusal (and the whole error, which the
/// parent checks for the value of the variable).
async fn one_line_child(dir: &Path) {
    let file = dir.join("kigo-tokens.db");
    let report = match SqlStore::sqlite(&file).await {
        Ok(first) => {
            assert_eq!(first.kind(), BackendKind::Sqlite);
            let token = common::fleet::token("one-line");
            common::fleet::commit_token(&first, &one_line_key(), &token).await;
            let second = SqlStore::sqlite(&file).await.unwrap();
            let loaded = second.load(&one_line_key()).await.unwrap();
            assert_eq!(
                loaded.token().map(Token::fingerprint),
                Some(token.fingerprint())
            );
            format!("{ENV_REPORT}{}\n", token.fingerprint())
        }
        Err(StoreError::Misconfigured { hint, source }) => {
            format!("the refusal: {hint} / {source} / {source:?}\n{ENV_REPORT}refused: {hint}\n")
        }
        Err(other) => panic!("{other:?}"),
    };
    let mut stdout = tokio::io::stdout();
    stdout.write_all(report.as_bytes()).await.unwrap();
    stdout.flush().await.unwrap();
}

/// A write that waits longer than the busy timeout for another connection's write lock is
/// reported as unavailable (SQLITE_BUSY); reads go on meanwhile (write-ahead log), and writes
/// work again once the lock is gone.
#[tokio::test]
async fn busy_database_is_unavailable() {
    let harness = SqlHarness::new(BackendKind::Sqlite).await;
    let store = harness
        .store_with(harness.options().busy_timeout(Duration::from_millis(100)))
        .await;
    let SqlPool::Sqlite(pool) = harness.admin().pool() else {
        panic!("not SQLite");
    };
    let writer = pool.begin_with("BEGIN IMMEDIATE").await.unwrap();
    let key = fresh_key();
    let error = store
        .set_cooldown(&key, Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Unavailable { .. }), "{error:?}");
    store.load(&key).await.unwrap();
    writer.commit().await.unwrap();
    store
        .set_cooldown(&key, Duration::from_secs(1))
        .await
        .unwrap();
    assert!(store.load(&key).await.unwrap().cooldown.is_some());
}

/// A write waiting for another connection's write lock is given up after the operation timeout,
/// even when the busy timeout is longer.
#[tokio::test]
async fn the_operation_timeout_bounds_the_busy_timeout() {
    const TIMEOUT: Duration = Duration::from_millis(300);
    let harness = SqlHarness::new(BackendKind::Sqlite).await;
    let store = harness
        .store_with(
            harness
                .options()
                .busy_timeout(Duration::from_secs(30))
                .operation_timeout(TIMEOUT),
        )
        .await;
    let SqlPool::Sqlite(pool) = harness.admin().pool() else {
        panic!("not SQLite");
    };
    let writer = pool.begin_with("BEGIN IMMEDIATE").await.unwrap();
    let started = std::time::Instant::now();
    let key = fresh_key();
    let cooling = store.set_cooldown(&key, Duration::from_secs(1));
    let done = tokio::time::timeout(TIMEOUT + Duration::from_secs(3), cooling)
        .await
        .unwrap_or_else(|_| panic!("the write waited {:?}", started.elapsed()));
    assert!(
        matches!(done, Err(StoreError::Unavailable { .. })),
        "{done:?}"
    );
    writer.rollback().await.unwrap();
}

/// Replicas that open a new file at the same moment all get a working store: the switch to
/// write-ahead logging, which SQLite does not wait for, is retried until one of them has made it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_stores_open_a_new_file_at_once() {
    let keyring = test_keyring();
    for _ in 0..10 {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("new.db");
        let mut opening = JoinSet::new();
        for _ in 0..16 {
            let file = file.clone();
            let options = embedded(keyring.clone());
            opening.spawn(async move { options.sqlite_file(&file).build().await.map(drop) });
        }
        while let Some(opened) = opening.join_next().await {
            opened
                .unwrap()
                .unwrap_or_else(|error| panic!("opening a new file together: {error:?}"));
        }
    }
}

/// Options SQLite has no use for (a schema, a listen URL for change notices) are refused, not
/// ignored; so is an operation timeout of zero.
#[tokio::test]
async fn options_that_cannot_apply_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens.db");
    let sealed = || SqlStore::builder().keyring(test_keyring());
    for (options, refusal) in [
        (sealed().schema("auth"), "SQLite has no schemas"),
        (
            sealed().listen_url("postgres://kigo@db/app"),
            "only PostgreSQL sends change notices",
        ),
        (
            sealed().operation_timeout(Duration::ZERO),
            "must be positive",
        ),
    ] {
        let error = options.sqlite_file(&file).build().await.unwrap_err();
        assert!(
            matches!(error, StoreError::Misconfigured { .. }),
            "{error:?}"
        );
        let shown = std::error::Error::source(&error).map(ToString::to_string);
        assert!(
            shown.is_some_and(|text| text.contains(refusal)),
            "{error:?}"
        );
    }
}

/// A file that cannot switch to write-ahead logging (here: opened as immutable) still works,
/// and the store says in its log that it runs without it.
#[tokio::test]
async fn a_file_without_write_ahead_logging_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens.db");
    // A file in the default rollback-journal mode, with a token, written on a pool of our own.
    let options = SqliteConnectOptions::new()
        .filename(&file)
        .create_if_missing(true);
    let pool = SqlitePool::connect_with(options).await.unwrap();
    let keyring = test_keyring();
    let store = SqlStore::builder()
        .keyring(keyring.clone())
        .migrate_on_connect(true)
        .pool(pool.clone())
        .build()
        .await
        .unwrap();
    let key = fresh_key();
    let token = common::fleet::token("immutable");
    common::fleet::commit_token(&store, &key, &token).await;
    pool.close().await;

    let log = Capture::default();
    let _logging = tracing::subscriber::set_default(log.subscriber());
    let url = format!("sqlite://{}?immutable=1", file.display());
    let store = SqlStore::builder()
        .keyring(keyring)
        .url(&url)
        .build()
        .await
        .unwrap();
    let loaded = store.load(&key).await.unwrap();
    assert_eq!(
        loaded.token().map(Token::fingerprint),
        Some(token.fingerprint())
    );
    let text = log.text();
    assert!(
        text.contains("WARN") && text.contains("write-ahead logging") && text.contains("delete"),
        "{text}"
    );
}

/// A store that may only read its file (opened read-only): the check reports the first
/// statement of a renewal the file refused (the cool-down's write) as a permission problem, not
/// as an error, and still reads the schema and the entries.
#[tokio::test]
async fn check_reports_what_a_read_only_file_refuses() {
    let harness = SqlHarness::new(BackendKind::Sqlite).await;
    common::fleet::commit_token(harness.admin(), &fresh_key(), &common::fleet::token("ro")).await;
    let read_only = format!("{}?mode=ro", harness.url());
    let store = harness.options().url(read_only).build().await.unwrap();
    let check = store.check().await.unwrap();
    assert!(!check.permissions_ok, "{check:?}");
    let problem = check.permission_problem.unwrap_or_default();
    assert!(problem.starts_with("set a cool-down: refused"), "{problem}");
    assert_eq!(check.schema.as_deref(), Some("3"));
    assert_eq!(check.entries_read, 1);
}
