//! The SQLite file holds the tokens: a new one, and its -wal and -shm files, are readable and
//! writable by the owner only, whatever the umask; an existing one is the operator's.

use std::fs::Permissions;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use kigo_core::codec::{SEALING_KEYS_VAR, SealingKey};
use kigo_store_sql::SqlStore;
use kigo_testkit::conformance::test_keyring;
use kigo_testkit::logs::Capture;
use secrecy::ExposeSecret;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::common::fleet::{commit_token, fresh_key, token};

/// Set in the environment of the child process: the directory it creates its store in.
const CHILD_DIR: &str = "KIGO_TEST_SQLITE_MODES_DIR";
const THIS_TEST: &str = "file_modes::a_new_file_and_its_wal_and_shm_are_owner_only_under_any_umask";
/// What starts the child's report line: `<file>=<mode>` pairs follow.
const REPORT: &str = "kigo-modes-report:";

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// The umask applies to the whole process, so each umask gets a child process (this test
/// binary again, under `sh -c 'umask ...'`): it opens a store on a new file, commits a token
/// (SQLite then has its -wal and -shm files), and reports the modes, with those of a file it
/// created plainly, which shows the umask in effect.
#[tokio::test]
async fn a_new_file_and_its_wal_and_shm_are_owner_only_under_any_umask() {
    if let Some(dir) = std::env::var_os(CHILD_DIR) {
        return child(Path::new(&dir)).await;
    }
    let keys = SealingKey::generate_base64();
    for umask in [0o022, 0o000] {
        let dir = tempfile::tempdir().unwrap();
        let output = Command::new("sh")
            .arg("-c")
            .arg(format!("umask {umask:03o} && exec \"$0\" \"$@\""))
            .arg(std::env::current_exe().unwrap())
            .args(crate::only(THIS_TEST))
            .env(CHILD_DIR, dir.path())
            .env(SEALING_KEYS_VAR, keys.expose_secret())
            .output()
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "umask {umask:03o}: {stdout}");
        let report = stdout
            .lines()
            .find_map(|line| line.split_once(REPORT).map(|(_, report)| report.trim()))
            .unwrap_or_else(|| panic!("no report: {stdout}"));
        let expected = format!(
            "control={:o} tokens.db=600 tokens.db-wal=600 tokens.db-shm=600",
            0o666 & !umask
        );
        assert_eq!(report, expected, "umask {umask:03o}");
    }
}

/// The child side: a store on a new file, a commit, and the modes while the store is open.
async fn child(dir: &Path) {
    std::fs::write(dir.join("control"), b"").unwrap();
    let file = dir.join("tokens.db");
    let store = SqlStore::sqlite(&file).await.unwrap();
    commit_token(&store, &fresh_key(), &token("owner-only")).await;
    let modes: Vec<String> = ["control", "tokens.db", "tokens.db-wal", "tokens.db-shm"]
        .iter()
        .map(|name| format!("{name}={:o}", mode(&dir.join(name))))
        .collect();
    let report = format!("{REPORT} {}\n", modes.join(" "));
    let mut stdout = tokio::io::stdout();
    stdout.write_all(report.as_bytes()).await.unwrap();
    stdout.flush().await.unwrap();
}

/// A file that already exists open to others is the operator's: the store works on it, leaves
/// its mode as it is, and warns, naming the file but not its directory; once the operator
/// restricted it, no more warning.
#[tokio::test]
async fn an_existing_file_open_to_others_is_left_as_it_is_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("shared-tokens.db");
    std::fs::write(&file, b"").unwrap();
    std::fs::set_permissions(&file, Permissions::from_mode(0o644)).unwrap();

    let log = Capture::default();
    let _logging = tracing::subscriber::set_default(log.subscriber());
    let keyring = test_keyring();
    let store = crate::embedded(keyring.clone())
        .sqlite_file(&file)
        .build()
        .await
        .unwrap();
    commit_token(&store, &fresh_key(), &token("shared")).await;
    assert_eq!(mode(&file), 0o644);
    let text = log.text();
    assert!(
        text.contains("WARN") && text.contains("shared-tokens.db") && text.contains("644"),
        "{text}"
    );
    let directory = dir.path().to_str().unwrap();
    assert!(!text.contains(directory), "{text}");

    std::fs::set_permissions(&file, Permissions::from_mode(0o600)).unwrap();
    let log = Capture::default();
    let _logging = tracing::subscriber::set_default(log.subscriber());
    crate::embedded(keyring)
        .sqlite_file(&file)
        .build()
        .await
        .unwrap();
    assert!(!log.text().contains("WARN"), "{}", log.text());
}
