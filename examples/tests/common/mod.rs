//! What the partner service's tests share: the service as a process, started with a fleet's
//! variables, driven over HTTP, stopped with SIGTERM.

#![allow(dead_code, unreachable_pub)] // Each test crate uses its own part.

use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kigo_core::codec::{Keyring, SealingKey};
use kigo_testkit::eventually;
use kigo_testkit::mock::MockKigo;
use secrecy::{ExposeSecret, SecretString};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader, Lines};
use tokio::process::{Child, Command};

/// How long a process may take to start, answer or stop on a slow, busy machine.
pub const WITHIN: Duration = Duration::from_secs(30);

/// What every instance of a fleet is given: the mock Kigo API's credentials, the store's URL and
/// the sealing key.
pub struct Fleet {
    pub mock: MockKigo,
    pub store_url: String,
    pub keys: SecretString,
    /// Where the instances run (nothing of theirs lands in the workspace).
    pub dir: tempfile::TempDir,
}

impl Fleet {
    pub async fn new(store_url: String) -> Self {
        Self {
            mock: MockKigo::start().await.unwrap(),
            store_url,
            keys: SealingKey::generate_base64(),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// The sealing key as the instances get it (for checks: never print it).
    pub fn keys_text(&self) -> &str {
        self.keys.expose_secret()
    }

    /// The keyring the instances seal with, for a test that reads the store.
    pub fn keyring(&self) -> Keyring {
        Keyring::parse(self.keys.expose_secret()).unwrap()
    }

    /// Starts an instance of the service with the fleet's variables.
    pub async fn start(&self) -> Service {
        let mut command = service_command(self.dir.path());
        command
            .env("KIGO_API_KEY", self.mock.api_key())
            .env("KIGO_PARTNER_ID", self.mock.partner_id().as_str())
            .env("KIGO_BASE_URL", self.mock.base_url())
            .env("KIGO_STORE_URL", &self.store_url)
            .env("KIGO_SEALING_KEYS", self.keys.expose_secret())
            .env("KIGO_SSO_PAGE_URL", self.mock.sso_page_url());
        Service::start(command).await
    }
}

/// The service's variables (all unset unless a test sets them).
const SERVICE_VARS: [&str; 6] = [
    "KIGO_API_KEY",
    "KIGO_PARTNER_ID",
    "KIGO_BASE_URL",
    "KIGO_STORE_URL",
    "KIGO_SEALING_KEYS",
    "KIGO_SSO_PAGE_URL",
];

/// The service on any free port, run in `dir`, with none of its variables set.
pub fn service_command(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_partner_service"));
    command
        .args(["--listen", "127.0.0.1:0"])
        .current_dir(dir)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for name in SERVICE_VARS {
        command.env_remove(name);
    }
    command
}

impl Service {
    /// Starts `command` and waits until the service listens.
    pub async fn start(mut command: Command) -> Service {
        let mut child = command.spawn().unwrap();
        let output = Arc::new(Mutex::new(String::new()));
        let stderr = BufReader::new(child.stderr.take().unwrap()).lines();
        collect(stderr, Arc::clone(&output));
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let address = tokio::time::timeout(WITHIN, async {
            while let Some(line) = stdout.next_line().await.unwrap() {
                let mut seen = output.lock().unwrap();
                seen.push_str(&line);
                seen.push('\n');
                drop(seen);
                if let Some(address) = line.strip_prefix("listening on ") {
                    return address.to_owned();
                }
            }
            panic!(
                "the service ended before listening:\n{}",
                output.lock().unwrap()
            );
        })
        .await
        .expect("the service listens within 30 s");
        collect(stdout, Arc::clone(&output));
        Service {
            child,
            base: address,
            output,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        }
    }
}

/// Appends the `lines` of a stream to `output` until it closes.
fn collect<R>(mut lines: Lines<BufReader<R>>, output: Arc<Mutex<String>>)
where
    R: AsyncRead + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            let mut output = output.lock().unwrap();
            output.push_str(&line);
            output.push('\n');
        }
    });
}

/// A running instance of the service.
pub struct Service {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// Everything it wrote on stdout and stderr so far.
    output: Arc<Mutex<String>>,
    http: reqwest::Client,
}

impl Service {
    /// `GET path`, as `user` if given (the demo sign-in header).
    pub async fn get(&self, path: &str, user: Option<&str>) -> reqwest::Response {
        let mut request = self.http.get(format!("{}{path}", self.base));
        if let Some(user) = user {
            request = request.header("X-Demo-User", user);
        }
        request.send().await.unwrap()
    }

    /// Waits until `/healthz` answers 200.
    pub async fn ready(&self) {
        eventually(
            format!("{}/healthz answers 200", self.base),
            WITHIN,
            async || {
                let answer = self.http.get(format!("{}/healthz", self.base)).send().await;
                answer.is_ok_and(|response| response.status() == 200)
            },
        )
        .await;
    }

    /// The user-level token `/session` hands `user` (for comparisons: never print it).
    pub async fn session_token(&self, user: &str) -> String {
        let response = self.get("/session", Some(user)).await;
        assert_eq!(response.status(), 200, "/session as {user}");
        let session: serde_json::Value = response.json().await.unwrap();
        session["token"].as_str().unwrap().to_owned()
    }

    /// What it wrote on stdout and stderr so far.
    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// Sends SIGTERM and waits for the process to end.
    pub async fn terminate(&mut self) -> ExitStatus {
        let pid = self.child.id().expect("the service still runs");
        let kill = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        assert!(kill.success(), "kill -TERM {pid}");
        tokio::time::timeout(WITHIN, self.child.wait())
            .await
            .expect("the service stops within 30 s of SIGTERM")
            .unwrap()
    }
}
