//! A private server process on a free loopback port, in a temp dir, that a test can kill and
//! restart, and that never outlives the test process.

use std::ffi::OsString;
use std::fmt;
use std::fs::File;
use std::future::Future;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tempfile::TempDir;

/// How long a server may take to accept connections after it was started.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
const READY_POLL: Duration = Duration::from_millis(50);
/// How long one [`ServerSpec::identified_by`] probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How many lines of a server's output a start-up failure quotes.
const LOG_TAIL_LINES: usize = 20;
/// The file in a server's temp dir that names its current process, for the reaper.
const PID_FILE: &str = "kigo-server.pid";

/// The process id of whatever answers on a loopback port, as a probe reports it.
type PidFuture = Pin<Box<dyn Future<Output = io::Result<u32>> + Send>>;

/// How to start one server process.
#[derive(Clone)]
pub struct ServerSpec {
    /// The binary.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// Run as this user and group (uid, gid): servers such as PostgreSQL refuse to run as root.
    pub user: Option<(u32, u32)>,
    identify: Option<Arc<dyn Fn(u16) -> PidFuture + Send + Sync>>,
}

impl fmt::Debug for ServerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerSpec")
            .field("program", &self.program)
            .field("args", &self.args)
            .field("user", &self.user)
            .field("identified", &self.identify.is_some())
            .finish()
    }
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
            identify: None,
        }
    }

    /// The same, run as `uid`/`gid`.
    #[must_use]
    pub fn run_as(mut self, uid: u32, gid: u32) -> Self {
        self.user = Some((uid, gid));
        self
    }

    /// The same, ready only once `probe` (asking the server on the port for its process id)
    /// names the started process. Another server may take a port between
    /// [`free_port`](super::free_port) and the start; without a probe, anything accepting
    /// connections on the port counts as started. A probe that fails means "not ready yet".
    #[must_use]
    pub fn identified_by<F>(mut self, probe: impl Fn(u16) -> F + Send + Sync + 'static) -> Self
    where
        F: Future<Output = io::Result<u32>> + Send + 'static,
    {
        self.identify = Some(Arc::new(move |port| Box::pin(probe(port))));
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

    /// Starts `spec` in `dir` and waits until `port` accepts connections (and, with
    /// [`ServerSpec::identified_by`], until the probe names the started process).
    ///
    /// Fails with [`io::ErrorKind::AddrInUse`] when another process answers on `port`: start
    /// again on another port. Other failures quote the end of the server's output.
    pub async fn start(port: u16, dir: TempDir, spec: ServerSpec) -> io::Result<Self> {
        reap_when_gone(dir.path());
        let server = Self {
            port,
            spec,
            child: Mutex::new(None),
            dir,
        };
        server.launch().await?;
        Ok(server)
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
                match self.answering(pid).await {
                    Answer::Ours => return Ok(()),
                    Answer::Stranger(other) => {
                        self.kill();
                        return Err(io::Error::new(
                            io::ErrorKind::AddrInUse,
                            format!(
                                "port {} is served by another process ({other}), not by the \
                                 started {}",
                                self.port,
                                self.spec.program.display()
                            ),
                        ));
                    }
                    Answer::NotYet => {}
                }
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

    /// Who answers on the port, which accepts connections.
    async fn answering(&self, pid: u32) -> Answer {
        // Something accepts, but the started process is gone: the port was someone else's.
        if !self.is_running() {
            return Answer::Stranger("the started process has exited".to_owned());
        }
        let Some(identify) = &self.spec.identify else {
            return Answer::Ours;
        };
        match tokio::time::timeout(PROBE_TIMEOUT, identify(self.port)).await {
            Ok(Ok(found)) if found == pid => Answer::Ours,
            Ok(Ok(found)) => Answer::Stranger(format!("pid {found}")),
            Ok(Err(_)) | Err(_) => Answer::NotYet,
        }
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

/// Who answers on a server's port.
enum Answer {
    /// The started process.
    Ours,
    /// Another process, as described.
    Stranger(String),
    /// Cannot tell yet.
    NotYet,
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
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |name| name.to_string_lossy().into_owned(),
        );
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
        let port = super::super::free_port().unwrap();
        let error = LocalServer::start(port, dir, spec).await.unwrap_err();
        let message = error.to_string();
        assert!(message.contains("exited before it was ready"), "{message}");
        assert!(message.contains("starting"), "{message}");
        assert!(message.contains("FATAL: no such setting"), "{message}");
    }
}
