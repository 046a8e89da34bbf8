//! Running `kigo-fleet` as a user would, on a store the tests choose.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::process::Command;
use tokio::sync::Mutex;

/// One run at a time, its store's set-up included: the machine's cores are the fleet's.
pub(crate) static SERIAL: Mutex<()> = Mutex::const_new(());
/// A short run takes a few seconds per design; this allows for a slow, busy machine.
const RUN_WITHIN: Duration = Duration::from_secs(120);

/// `kigo-fleet` with `args` and `--json`, on the store `url` names (none: the default temporary
/// SQLite file); it must succeed. Its report.
pub(crate) async fn kigo_fleet(args: &[&str], url: Option<&str>) -> Value {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kigo-fleet"));
    command
        .args(args)
        .arg("--json")
        .env_remove("KIGO_STORE_URL")
        .env_remove("KIGO_SEALING_KEYS")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(url) = url {
        command.env("KIGO_STORE_URL", url);
    }
    let output = tokio::time::timeout(RUN_WITHIN, command.output())
        .await
        .expect("kigo-fleet ran too long")
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "kigo-fleet failed: {stdout}{stderr}"
    );
    serde_json::from_str(&stdout).unwrap()
}

/// The whole number `figure` of `row`.
pub(crate) fn count(row: &Value, figure: &str) -> u64 {
    row[figure]
        .as_u64()
        .unwrap_or_else(|| panic!("no {figure} in {row}"))
}
