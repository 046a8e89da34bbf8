//! The service's front-end page in headless Chromium (driven over WebDriver by fantoccini): it
//! shows the signed-in user's session expiry and seconds left, and the page's traffic, recorded
//! byte for byte by a reverse proxy between the browser and the service, carries the user-level
//! token but never the partner-level one.
//!
//! Needs the Debian packages `chromium` and `chromium-driver` (`.ci/run` installs them); without
//! them the test fails and says so.

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use common::{Fleet, WITHIN};
use fantoccini::{Client, ClientBuilder, Locator};
use kigo_http::{ApiKey, Credentials, KigoApi};
use kigo_store_sql::SqlStore;
use kigo_testkit::eventually_some;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_the_users_session_and_never_carries_the_partner_token() {
    let (chromium, chromedriver) = browser_binaries();
    let dir = tempfile::tempdir().unwrap();
    let fleet = Fleet::new(format!("sqlite:{}", dir.path().join("kigo.db").display())).await;
    let service = fleet.start().await;
    service.ready().await;
    let recording = Recording::default();
    let proxy = recording.proxy_to(&service.base).await;

    let driver = start_chromedriver(&chromedriver).await;
    let browser = connect(&chromium, driver.port).await;
    browser
        .goto(&format!("http://{proxy}/?user=alice"))
        .await
        .unwrap();
    let seconds_left: u64 =
        eventually_some("the page shows the seconds left", WITHIN, async || {
            let text = text_of(&browser, "#seconds-left").await;
            text.parse().ok()
        })
        .await;
    let expires_at = text_of(&browser, "#expires-at").await;
    let status = text_of(&browser, "#status").await;
    browser.close().await.unwrap();

    let session: Value = service
        .get("/session", Some("alice"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(expires_at, session["expires_at"].as_str().unwrap());
    assert!(
        (3500..=3600).contains(&seconds_left),
        "{seconds_left} seconds left of a 1-hour token"
    );
    assert_eq!(status, "Signed in as alice.");

    let traffic = recording.bytes();
    let user_token = session["token"].as_str().unwrap();
    assert!(
        contains(&traffic, user_token),
        "the page's traffic lacks the user-level token: the recording misses it"
    );
    let partner_token = fleet_partner_token(&fleet).await;
    assert!(
        !contains(&traffic, &partner_token),
        "the partner-level token went to the browser"
    );
    assert!(
        !contains(&traffic, fleet.mock.api_key()),
        "the API key went to the browser"
    );
    assert_eq!(fleet.mock.creations(&fleet.mock.partner_key()), 1);
}

/// Chromium and chromedriver, or a failure that says how to get them.
fn browser_binaries() -> (PathBuf, PathBuf) {
    let find = |name| kigo_test_services::find_binary(name, &[]);
    match (find("chromium"), find("chromedriver")) {
        (Some(chromium), Some(chromedriver)) => (chromium, chromedriver),
        _ => panic!(
            "the front-end test needs Chromium and chromedriver on PATH: install the Debian \
             packages `chromium` and `chromium-driver` (.ci/run does)"
        ),
    }
}

/// A chromedriver process in a process group of its own, with the Chromium it starts: the
/// whole group is killed when dropped, even when the test fails before closing the browser.
struct Driver {
    child: Child,
    port: u16,
}

async fn start_chromedriver(binary: &PathBuf) -> Driver {
    let port = kigo_test_services::free_port().unwrap();
    let child = Command::new(binary)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    Driver { child, port }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(group) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{group}")])
                .status();
        }
    }
}

/// A headless Chromium session, once chromedriver accepts one.
async fn connect(chromium: &PathBuf, port: u16) -> Client {
    let options = json!({
        "binary": chromium,
        "args": ["--headless=new", "--no-sandbox", "--disable-gpu"],
    });
    let mut capabilities = serde_json::Map::new();
    capabilities.insert("goog:chromeOptions".into(), options);
    let url = format!("http://127.0.0.1:{port}");
    eventually_some(
        "chromedriver starts a Chromium session",
        WITHIN,
        async || {
            let mut builder = ClientBuilder::rustls().unwrap();
            builder.capabilities(capabilities.clone());
            builder.connect(&url).await.ok()
        },
    )
    .await
}

/// The text of the element `css` selects ("" if none yet).
async fn text_of(browser: &Client, css: &str) -> String {
    match browser.find(Locator::Css(css)).await {
        Ok(element) => element.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// The partner-level token the fleet shares, read from its store as another replica would.
async fn fleet_partner_token(fleet: &Fleet) -> String {
    let store = SqlStore::builder()
        .url(&fleet.store_url)
        .keyring(fleet.keyring())
        .build()
        .await
        .unwrap();
    let credentials = Credentials::new(
        ApiKey::new(fleet.mock.api_key()).unwrap(),
        fleet.mock.partner_id().clone(),
        fleet.mock.base_url(),
    )
    .unwrap();
    let api = KigoApi::builder(credentials).build().unwrap();
    let partners = api.partner_manager().store(store).build().unwrap();
    let token = partners.token(&api.partner_key()).await.unwrap();
    let token = token.secret().expose().to_owned();
    partners.shutdown().await;
    token
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

/// Every byte that passed through the proxy, both ways.
#[derive(Clone, Default)]
struct Recording(Arc<Mutex<Vec<u8>>>);

impl Recording {
    fn bytes(&self) -> Vec<u8> {
        self.0.lock().unwrap().clone()
    }

    /// Starts a reverse proxy to `upstream` (`http://host:port`) that records into `self`;
    /// returns its address.
    async fn proxy_to(&self, upstream: &str) -> String {
        let upstream = upstream.trim_start_matches("http://").to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let recording = self.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(&upstream).await else {
                    continue;
                };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(recording.clone().copy(client_read, server_write));
                tokio::spawn(recording.clone().copy(server_read, client_write));
            }
        });
        address
    }

    /// Copies `from` to `to` until either closes, recording every byte.
    async fn copy(self, mut from: OwnedReadHalf, mut to: OwnedWriteHalf) {
        let mut buffer = vec![0; 16 * 1024];
        while let Ok(read) = from.read(&mut buffer).await {
            if read == 0 {
                break;
            }
            self.0.lock().unwrap().extend_from_slice(&buffer[..read]);
            if to.write_all(&buffer[..read]).await.is_err() {
                break;
            }
        }
        let _ = to.shutdown().await;
    }
}
