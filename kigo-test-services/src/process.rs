//! A private server process on a free loopback port, in a temp dir, that a test can kill and
//! restart, and that never outlives the test process.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tempfile::TempDir;

/// How long a server may take to accept connections after it was started.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
const READY_POLL: Duration = Duration::from_millis(50);
/// How many ports a server is started on before the start fails: another process may take a
/// free port between its choice and the server's start.
const START_ATTEMPTS: usize = 5;
/// How many lines of a server's output a start-up failure quotes.
const LOG_TAIL_LINES: usize = 20;
/// The file in a server's temp dir that names its current process, for the reaper.
const PID_FILE: &str = "kigo-server.pid";

/// How to start one server process.
#[derive(Debug, Clone)]
pub struct ServerSpec {
    /// The binary.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// Run as this user and group (uid, gid): servers such as PostgreSQL refuse to run as root.
    pub user: Option<(u32, u32)>,
}

impl ServerSpec {
    /// `program` with `args`, as the current user.
    pub fn new(
        program: impl Into<PathBuf>,
        args: impl IntoIterator<Item = impl Into<OsString>>,
    ) -> Self {
        Self {
            program: program.into(),
            args: args.into_iter().map(Into::into).collect(),
            user: None,
        }
    }

    /// The same, run as `uid`/`gid`.
    #[must_use]
    pub fn run_as(mut self, uid: u32, gid: u32) -> Self {
        self.user = Some((uid, gid));
        self
    }

    fn command(&self, log: &Path) -> io::Result<Command> {
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(File::create(log)?)
            .stderr(File::create(log.with_extension("err"))?);
        if let Some((uid, gid)) = self.user {
            command.uid(uid).gid(gid);
        }
        Ok(command)
    }

    /// Runs it to the end (a setup step such as `initdb`), failing if it fails; the error quotes
    /// the end of its output, since `log` usually lies in a temp dir that goes with the failure.
    pub fn run_to_end(&self, log: &Path) -> io::Result<()> {
        let status = self.command(log)?.status()?;
        if status.success() {
            return Ok(());
        }
        Err(io::Error::other(format!(
            "{} failed with {status}{}",
            self.program.display(),
            log_tail(log)
        )))
    }
}

/// A server process started by a test, on `127.0.0.1:<port>` in a temp dir.
///
/// Killed when dropped, and its temp dir removed. If the test process dies first (a panic in a
/// `static`, SIGKILL, a killed test runner), a watcher process of its own started with the
/// server kills the server and removes the temp dir within a couple of seconds (Linux).
#[derive(Debug)]
pub struct LocalServer {
    port: u16,
    spec: ServerSpec,
    child: Mutex<Option<Child>>,
    // Declared last: removed after the process is gone.
    dir: TempDir,
}

impl LocalServer {
    /// A temp dir for a server to be started in, owned by `user` if given.
    pub fn temp_dir(user: Option<(u32, u32)>) -> io::Result<TempDir> {
        let dir = tempfile::Builder::new()
            .prefix("kigo-test-server-")
            .tempdir()?;
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))?;
        }
        Ok(dir)
    }

    /// Starts the server that `spec_for(port)` describes, in `dir`, on a free loopback port, and
    /// waits until the started process itself listens there (Linux: its sockets in `/proc`).
    ///
    /// Another process may take the port between its choice and the start (a test running
    /// alongside): then the server is started again on another port, up to 5 times, and the
    /// last failure is [`io::ErrorKind::AddrInUse`]. Other failures quote the end of the
    /// server's output.
    pub async fn start(
        dir: TempDir,
        spec_for: impl FnMut(u16) -> io::Result<ServerSpec>,
    ) -> io::Result<Self> {
        Self::start_on(dir, super::free_port, spec_for).await
    }

    /// [`LocalServer::start`] on the ports `next_port` gives.
    pub(crate) async fn start_on(
        dir: TempDir,
        mut next_port: impl FnMut() -> io::Result<u16>,
        mut spec_for: impl FnMut(u16) -> io::Result<ServerSpec>,
    ) -> io::Result<Self> {
        reap_when_gone(dir.path());
        let port = next_port()?;
        let mut server = Self {
            port,
            spec: spec_for(port)?,
            child: Mutex::new(None),
            dir,
        };
        let mut attempts = 1;
        loop {
            match server.launch().await {
                Err(error)
                    if error.kind() == io::ErrorKind::AddrInUse && attempts < START_ATTEMPTS =>
                {
                    attempts += 1;
                    server.port = next_port()?;
                    server.spec = spec_for(server.port)?;
                }
                result => return result.map(|()| server),
            }
        }
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its data directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The process id of the running server, if it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child().as_ref().map(Child::id)
    }

    /// Kills it at once (SIGKILL), as a crash would, and waits for it to be gone.
    pub fn kill(&self) {
        if let Some(mut child) = self.child().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and data directory, after [`LocalServer::kill`].
    pub async fn restart(&self) -> io::Result<()> {
        self.kill();
        self.launch().await
    }

    /// Whether the process is running.
    pub fn is_running(&self) -> bool {
        self.child()
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    fn child(&self) -> MutexGuard<'_, Option<Child>> {
        self.child.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn log(&self) -> PathBuf {
        self.dir().join("server.log")
    }

    async fn launch(&self) -> io::Result<()> {
        let child = self
            .spec
            .command(&self.log())?
            .current_dir(self.dir())
            .spawn()?;
        let pid = child.id();
        *self.child() = Some(child);
        std::fs::write(self.dir().join(PID_FILE), pid.to_string())?;
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                if self.started_process_answers(pid) {
                    return Ok(());
                }
                let error = self.failure(&format!(
                    "found port {} served by another process",
                    self.port
                ));
                self.kill();
                return Err(io::Error::new(io::ErrorKind::AddrInUse, error));
            }
            if !self.is_running() {
                return Err(self.failure("exited before it was ready"));
            }
            if tokio::time::Instant::now() >= deadline {
                self.kill();
                return Err(self.failure(&format!(
                    "was not ready on port {} within {READY_TIMEOUT:?}",
                    self.port
                )));
            }
            tokio::time::sleep(READY_POLL).await;
        }
    }

    /// Whether the connections the port accepts go to the started process `pid`, not to
    /// another that took the port (the started one then fails to bind, or is about to).
    fn started_process_answers(&self, pid: u32) -> bool {
        // No `/proc` to ask (not Linux): whatever accepts counts as the started process.
        self.is_running() && listens_on(pid, self.port).unwrap_or(true)
    }

    fn failure(&self, what: &str) -> io::Error {
        io::Error::other(format!(
            "{} {what}{}",
            self.spec.program.display(),
            log_tail(&self.log())
        ))
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether process `pid` holds a socket listening on `port` of 127.0.0.1 or of every address,
/// from Linux's `/proc` (the socket table, and the process's open files).
fn listens_on(pid: u32, port: u16) -> io::Result<bool> {
    let listening = listening_sockets(port)?;
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))? {
        // A file closed since the listing has no link to read.
        let Ok(target) = std::fs::read_link(entry?.path()) else {
            continue;
        };
        if listening
            .iter()
            .any(|socket| target.as_os_str() == OsStr::new(socket))
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The sockets (as `socket:[inode]`, the way `/proc/<pid>/fd` names them) listening on `port`
/// of 127.0.0.1 or 0.0.0.0, whoever holds them.
fn listening_sockets(port: u16) -> io::Result<Vec<String>> {
    const LISTEN: &str = "0A";
    // The table prints an address as the hex of its bytes read as a native-endian number.
    let addresses = [[127, 0, 0, 1], [0, 0, 0, 0]].map(u32::from_ne_bytes);
    let table = std::fs::read_to_string("/proc/net/tcp")?;
    let sockets = table.lines().skip(1).filter_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (local, state, inode) = (fields.get(1)?, fields.get(3)?, fields.get(9)?);
        let (address, local_port) = local.split_once(':')?;
        let matches = *state == LISTEN
            && u16::from_str_radix(local_port, 16).ok()? == port
            && addresses.contains(&u32::from_str_radix(address, 16).ok()?);
        matches.then(|| format!("socket:[{inode}]"))
    });
    Ok(sockets.collect())
}

/// The last lines of a server's standard output (`log`) and error (`log` with `.err`), to quote
/// in an error: the files go with the temp dir.
fn log_tail(log: &Path) -> String {
    let mut tail = String::new();
    for path in [log.to_path_buf(), log.with_extension("err")] {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        if lines.is_empty() {
            continue;
        }
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        tail.push_str(&format!("\n--- end of its {name} ---"));
        for line in &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..] {
            tail.push('\n');
            tail.push_str(line);
        }
    }
    tail
}

/// Kills the server running from `dir` and removes `dir` once this process is gone, however it
/// ends (a server in a `static` is never dropped; a killed test runs no destructor).
///
/// The watcher is a shell in a process group of its own, so that whatever stops this process's
/// group does not stop it too, and detached (its parent shell exits at once), so that it never
/// waits as a zombie of this process. It reads the server's pid from the pid file
/// [`LocalServer`] keeps in `dir`, and kills it only if that process still works in `dir` (its
/// current directory, where it is started, is `dir` or below), so that a reused pid is left
/// alone. It ends by itself once `dir`
/// is gone.
fn reap_when_gone(dir: &Path) {
    const WATCH: &str = r#"while kill -0 "$1" 2>/dev/null && [ -d "$2" ]; do sleep 1; done
[ -d "$2" ] || exit 0
pid=$(head -n 1 "$2/$3" 2>/dev/null)
if [ -n "$pid" ]; then
  case "$(readlink "/proc/$pid/cwd" 2>/dev/null)" in
    "$2" | "$2"/*) kill -9 "$pid" ;;
  esac
fi
rm -rf "$2""#;
    let _ = Command::new("sh")
        .process_group(0)
        .arg("-c")
        .arg(r#"sh -c "$0" kigo-test-reaper "$@" &"#)
        .arg(WATCH)
        .arg(std::process::id().to_string())
        .arg(dir)
        .arg(PID_FILE)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The log lies in the temp dir, which goes with the failed start: the error quotes it.
    #[tokio::test]
    async fn a_failed_start_quotes_the_servers_output() {
        let dir = LocalServer::temp_dir(None).unwrap();
        let spec = ServerSpec::new(
            "sh",
            [
                "-c",
                "echo starting; echo 'FATAL: no such setting' >&2; exit 3",
            ],
        );
        let error = LocalServer::start(dir, |_| Ok(spec.clone()))
            .await
            .unwrap_err();
        let message = error.to_string();
        assert!(message.contains("exited before it was ready"), "{message}");
        assert!(message.contains("starting"), "{message}");
        assert!(message.contains("FATAL: no such setting"), "{message}");
    }
}
