//! A private server process on a free loopback port, in a temp dir, that a test can kill and
//! restart.

use std::ffi::OsString;
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

    /// Runs it to the end (a setup step such as `initdb`), failing if it fails.
    pub fn run_to_end(&self, log: &Path) -> io::Result<()> {
        let status = self.command(log)?.status()?;
        if status.success() {
            return Ok(());
        }
        Err(io::Error::other(format!(
            "{} failed with {status}; see {}",
            self.program.display(),
            log.display()
        )))
    }
}

/// A server process started by a test. Killed when dropped; its temp dir is removed.
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

    /// Starts `spec` in `dir` and waits until `port` accepts connections.
    pub async fn start(port: u16, dir: TempDir, spec: ServerSpec) -> io::Result<Self> {
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

    async fn launch(&self) -> io::Result<()> {
        let log = self.dir().join("server.log");
        let child = self.spec.command(&log)?.spawn()?;
        *self.child() = Some(child);
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return Ok(());
            }
            if !self.is_running() {
                return Err(io::Error::other(format!(
                    "{} exited before accepting connections; see {}",
                    self.spec.program.display(),
                    log.display()
                )));
            }
            if tokio::time::Instant::now() >= deadline {
                self.kill();
                return Err(io::Error::other(format!(
                    "{} did not accept connections on port {} within {READY_TIMEOUT:?}",
                    self.spec.program.display(),
                    self.port
                )));
            }
            tokio::time::sleep(READY_POLL).await;
        }
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        self.kill();
    }
}
