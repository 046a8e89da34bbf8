//! A test process killed with SIGKILL runs no destructor: its private servers are still stopped
//! and their temp dirs removed, by the watcher each `LocalServer` starts.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kigo_test_services::redis::start_local_redis;

/// Where the child test reports its server: `<pid>\n<temp dir>\n`.
const REPORT_VAR: &str = "KIGO_TEST_REAPER_REPORT";
const CHILD_TEST: &str = "child_holds_a_server_until_killed";

/// Run by [`a_killed_test_process_leaves_no_server_behind`] as a child process, never alone.
#[tokio::test]
#[ignore = "the child process of a_killed_test_process_leaves_no_server_behind"]
async fn child_holds_a_server_until_killed() {
    // Run alone (`--include-ignored`), there is nobody to report to.
    let Ok(report) = std::env::var(REPORT_VAR) else {
        return;
    };
    let server = start_local_redis().await.unwrap();
    let pid = server.pid().unwrap();
    std::fs::write(&report, format!("{pid}\n{}\n", server.dir().display())).unwrap();
    // Killed long before this ends.
    tokio::time::sleep(Duration::from_secs(120)).await;
}

#[test]
fn a_killed_test_process_leaves_no_server_behind() {
    let scratch = tempfile::tempdir().unwrap();
    let report = scratch.path().join("report");
    let mut child = KilledOnDrop(
        Command::new(std::env::current_exe().unwrap())
            .args(["--ignored", "--exact", CHILD_TEST, "--test-threads=1"])
            .env(REPORT_VAR, &report)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );

    let (pid, dir) = wait_for("the child's server", Duration::from_secs(60), || {
        let text = std::fs::read_to_string(&report).ok()?;
        let mut lines = text.lines();
        let pid: u32 = lines.next()?.parse().ok()?;
        let dir = PathBuf::from(lines.next()?);
        Some((pid, dir))
    });
    assert!(runs(pid), "the server runs while its test does");
    assert!(dir.is_dir());

    child.0.kill().unwrap(); // SIGKILL: no destructor, no panic handler runs.
    child.0.wait().unwrap();

    wait_for(
        "the server stopped and its temp dir removed",
        Duration::from_secs(15),
        || (!runs(pid) && !dir.exists()).then_some(()),
    );
}

/// The child test process, killed when dropped: also when an assertion fails before the test
/// kills it.
struct KilledOnDrop(Child);

impl Drop for KilledOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Whether `pid` is a live process (not gone, not a zombie waiting to be reaped).
fn runs(pid: u32) -> bool {
    let stat = Path::new("/proc").join(pid.to_string()).join("stat");
    std::fs::read_to_string(stat).is_ok_and(|stat| {
        // The state follows the command name in parentheses.
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X']))
    })
}

fn wait_for<T>(what: &str, deadline: Duration, mut found: impl FnMut() -> Option<T>) -> T {
    let until = Instant::now() + deadline;
    loop {
        if let Some(value) = found() {
            return value;
        }
        assert!(Instant::now() < until, "{what}: not within {deadline:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
