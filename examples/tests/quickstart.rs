//! The quickstart binary as a user runs it: replica processes sharing one SQLite file create one
//! token per renewal; a file per replica fails that check; the replicas never outlive the
//! quickstart; and the real-API path, pointed at a mock Kigo server through the `KIGO_*`
//! variables, creates one token and shows no secret.

use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::time::Duration;

use kigo_testkit::mock::MockKigo;
use tokio::process::Command;
use tokio::sync::Mutex;

/// One quickstart at a time: its replicas' 2 s tokens leave no room for three other fleets
/// competing for the machine's cores (a store operation past its 400 ms limit makes a replica
/// create a token of its own).
static SERIAL: Mutex<()> = Mutex::const_new(());

const CREDENTIAL_VARS: [&str; 3] = ["KIGO_API_KEY", "KIGO_PARTNER_ID", "KIGO_BASE_URL"];
/// The quickstart runs for about 5 s; this allows for a slow, busy machine.
const RUN_WITHIN: Duration = Duration::from_secs(60);

/// The quickstart with `args` and `vars` (and no other `KIGO_*` variable), its output piped.
fn command(args: &[&str], vars: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_quickstart"));
    command
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for name in CREDENTIAL_VARS {
        command.env_remove(name);
    }
    command.envs(vars.iter().copied());
    command
}

/// Runs the quickstart to its end, with a deadline: its output, its report and its process ID.
async fn quickstart(args: &[&str], vars: &[(&str, &str)]) -> (Output, String, u32) {
    let _alone = SERIAL.lock().await;
    let child = command(args, vars).spawn().unwrap();
    let pid = child.id().unwrap();
    let output = tokio::time::timeout(RUN_WITHIN, child.wait_with_output())
        .await
        .expect("the quickstart ends within 60 s")
        .unwrap();
    let report = String::from_utf8_lossy(&output.stdout).into_owned();
    (output, report, pid)
}

/// The figure on the report line starting with `label`.
fn figure(report: &str, label: &str) -> f64 {
    let line = report
        .lines()
        .find(|line| line.trim_start().starts_with(label))
        .unwrap_or_else(|| panic!("no line {label:?} in:\n{report}"));
    line.trim_start()[label.len()..]
        .split_whitespace()
        .next()
        .and_then(|figure| figure.parse().ok())
        .unwrap_or_else(|| panic!("no figure on {line:?}"))
}

/// The process IDs of the replicas, from the line that announces them.
fn replica_pids(line: &str) -> Option<Vec<u32>> {
    let (_, after) = line.split_once("replica processes (pids ")?;
    let (pids, _) = after.split_once(')')?;
    pids.split_whitespace()
        .map(|pid| pid.parse().ok())
        .collect()
}

/// The replicas' SQLite file (or directory of files), from the line that names it.
fn store_path(report: &str) -> PathBuf {
    report
        .lines()
        .find_map(|line| line.trim().strip_suffix(" (removed at the end)"))
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("no SQLite path in:\n{report}"))
}

#[tokio::test]
async fn replica_processes_on_one_sqlite_file_create_one_token_per_renewal() {
    let (output, report, quickstart_pid) = quickstart(&[], &[]).await;
    let errors = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{report}{errors}");

    let pids = report
        .lines()
        .find_map(replica_pids)
        .unwrap_or_else(|| panic!("no replica pids in:\n{report}"));
    let mut distinct = pids.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), 4, "four processes: {pids:?}");
    assert!(!pids.contains(&quickstart_pid), "{pids:?}");

    let renewals = figure(&report, "renewals");
    assert_eq!(figure(&report, "creations per renewal"), 1.0, "{report}");
    assert_eq!(figure(&report, "tokens created"), renewals, "{report}");
    // The first token, one ahead of expiry before the revocation, one after it.
    assert!(renewals >= 3.0, "{report}");
    // Across processes, through the file: at least the first token and the one after the
    // revocation reached every replica (the last ones may not have, if created as the traffic
    // ended).
    assert!(figure(&report, "shared by all replicas") >= 2.0, "{report}");
    assert!(figure(&report, "401s recovered") >= 1.0, "{report}");

    let file = store_path(&report);
    assert!(file.ends_with("kigo-tokens.db"), "{file:?}");
    assert!(
        !file.exists(),
        "the temporary SQLite file is left at {file:?}"
    );
    assert!(!file.parent().unwrap().exists(), "its directory is left");
}

#[tokio::test]
async fn a_sqlite_file_per_replica_fails_the_one_creation_per_renewal_check() {
    let (output, report, _) = quickstart(&["--store-per-replica"], &[]).await;
    assert_eq!(output.status.code(), Some(1), "{report}");
    assert!(
        figure(&report, "creations per renewal") > 1.5,
        "four replicas each create their own tokens:\n{report}"
    );
    assert_eq!(figure(&report, "shared by all replicas"), 0.0, "{report}");
    assert!(figure(&report, "requests sent") > 0.0, "{report}");
    assert!(!store_path(&report).exists(), "temporary files are left");
}

/// Whether process `pid` still runs (a zombie, ended but not yet reaped, does not).
#[cfg(target_os = "linux")]
fn running(pid: u32) -> bool {
    // `/proc/<pid>/stat` is `<pid> (<name>) <state> ...`; the name may hold spaces.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn replicas_stop_when_the_quickstart_is_killed() {
    use tokio::io::{AsyncBufReadExt, BufReader};

    let _alone = SERIAL.lock().await;
    let mut quickstart = command(&[], &[]).spawn().unwrap();
    let mut lines = BufReader::new(quickstart.stdout.take().unwrap()).lines();
    let (pids, store) = tokio::time::timeout(RUN_WITHIN, async {
        let mut header = String::new();
        while let Some(line) = lines.next_line().await.unwrap() {
            header.push_str(&line);
            header.push('\n');
            if let Some(pids) = header.lines().find_map(replica_pids)
                && header.contains("(removed at the end)")
            {
                return (pids, store_path(&header));
            }
        }
        panic!("the quickstart ended without naming its replicas:\n{header}");
    })
    .await
    .expect("the replicas start within 60 s");
    assert_eq!(pids.len(), 4);
    assert!(pids.iter().all(|pid| running(*pid)), "{pids:?}");

    // SIGKILL: the quickstart cannot clean up; its replicas must notice by themselves.
    quickstart.kill().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while pids.iter().any(|pid| running(*pid)) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "replicas still running 10 s after the quickstart was killed: {:?}",
            pids.iter().filter(|pid| running(**pid)).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Killed, the quickstart could not remove its temporary directory.
    std::fs::remove_dir_all(store.parent().unwrap()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_credentials_it_creates_a_real_token_and_prints_its_expiry_only() {
    let mock = MockKigo::start().await.unwrap();
    let vars = [
        ("KIGO_API_KEY", mock.api_key()),
        ("KIGO_PARTNER_ID", mock.partner_id().as_str()),
        ("KIGO_BASE_URL", mock.base_url()),
    ];
    let (output, report, _) = quickstart(&[], &vars).await;
    assert!(output.status.success(), "{report}");
    assert!(report.contains("expires in"), "{report}");
    assert!(
        !report.contains("replica"),
        "no fleet with real credentials:\n{report}"
    );
    assert_eq!(mock.creations(&mock.partner_key()), 1);
    let everything = format!("{report}{}", String::from_utf8_lossy(&output.stderr));
    for (name, secret) in [
        ("the API key", mock.api_key()),
        ("a partner-level token", "kigo_partner_"),
    ] {
        // Say where, never what: the output would show the secret.
        if let Some(at) = everything.find(secret) {
            panic!("{name} leaked into the output at byte {at}");
        }
    }
}
