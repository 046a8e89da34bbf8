//! The mock Kigo server as a process: it announces its URL, creates tokens over HTTP or HTTPS,
//! answers the admin endpoints that multi-process tests use (counters, revocation, faults), and
//! refuses arguments that would leave it unusable.

use std::process::Stdio;
use std::time::Duration;

use reqwest::StatusCode;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const DEADLINE: Duration = Duration::from_secs(10);

fn mock_server() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kigo-mock-server"));
    command
        .env_remove("KIGO_MOCK_API_KEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// Starts the server and reads the base URL it announces.
async fn start(command: &mut Command) -> (Child, String) {
    let mut child = command.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(DEADLINE, lines.next_line())
        .await
        .expect("the mock announces its URL")
        .unwrap()
        .expect("a line on standard output");
    let url = line
        .strip_prefix("KIGO_BASE_URL=")
        .expect("KIGO_BASE_URL=...")
        .to_owned();
    (child, url)
}

/// One request with a deadline; the status and the body.
async fn send(request: reqwest::RequestBuilder) -> (StatusCode, String) {
    let response = request.timeout(DEADLINE).send().await.unwrap();
    let status = response.status();
    (status, response.text().await.unwrap())
}

#[tokio::test]
async fn the_binary_serves_tokens_counters_and_faults() {
    let (mut child, url) = start(
        mock_server()
            .args(["--partner-id", "fleet", "--lifetime-secs", "5"])
            .env("KIGO_MOCK_API_KEY", "process-test-key"),
    )
    .await;
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let http = reqwest::Client::new();
    let session = format!("{url}/api/v1/auth/session");
    let credentials = r#"{"api_key":"process-test-key","partner_id":"fleet"}"#;

    let (status, created) = send(http.post(&session).body(credentials)).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    assert!(created.contains(r#""expires_in":5"#), "{created}");
    let wrong_key = r#"{"api_key":"x","partner_id":"fleet"}"#;
    let (status, _) = send(http.post(&session).body(wrong_key)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let script = r#"{"endpoint":"partner_session","once":[{"status":503}]}"#;
    let (status, _) = send(http.post(format!("{url}/_mock/faults")).body(script)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = send(http.post(&session).body(credentials)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);

    let (_, revoked) = send(http.post(format!("{url}/_mock/revoke"))).await;
    assert_eq!(revoked, r#"{"revoked":1}"#);
    let (_, counters) = send(http.get(format!("{url}/_mock/counters"))).await;
    assert!(
        counters.contains(r#""creations":{"p/fleet":1}"#),
        "{counters}"
    );
    assert!(counters.contains(r#""partner_session":3"#), "{counters}");
    assert!(counters.contains(r#""unauthorized":1"#), "{counters}");
    child.kill().await.unwrap();
}

#[tokio::test]
async fn the_binary_serves_https_with_the_authority_it_writes_out() {
    let dir = tempfile::tempdir().unwrap();
    let ca_path = dir.path().join("ca.pem");
    let (mut child, url) = start(mock_server().args([
        "--api-key",
        "https-test-key",
        "--https",
        "--ca-out",
        ca_path.to_str().unwrap(),
    ]))
    .await;
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let pem = std::fs::read(&ca_path).unwrap();
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .build()
        .unwrap();
    let credentials = r#"{"api_key":"https-test-key","partner_id":"acme"}"#;
    let (status, created) = send(
        http.post(format!("{url}/api/v1/auth/session"))
            .body(credentials),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    child.kill().await.unwrap();
}

#[tokio::test]
async fn arguments_that_leave_it_unusable_are_refused() {
    let cases: [(&[&str], &str); 6] = [
        (&["--partner-id", "fleet"], "--api-key"),
        (&["--api-key", " "], "the API key is empty"),
        (&["--api-key", "k", "--https"], "--ca-out"),
        (&["--api-key", "k", "--ca-out", "ca.pem"], "--https"),
        (
            &["--api-key", "k", "--lifetime-secs", "0"],
            "must be positive",
        ),
        (
            &["--api-key", "k", "--lifetime-secs", "-3"],
            "must be positive",
        ),
    ];
    for (args, reason) in cases {
        let output = tokio::time::timeout(DEADLINE, mock_server().args(args).output())
            .await
            .expect("a refusal is immediate")
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(reason), "{args:?}: {stderr}");
        assert!(output.stdout.is_empty(), "{args:?}");
    }
}

#[tokio::test]
async fn help_shows_the_usage_and_every_option() {
    let output = tokio::time::timeout(DEADLINE, mock_server().arg("--help").output())
        .await
        .expect("help is immediate")
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(help.contains("Usage: kigo-mock-server"), "{help}");
    for option in [
        "--api-key",
        "--partner-id",
        "--port",
        "--lifetime-secs",
        "--https",
        "--ca-out",
        "KIGO_MOCK_API_KEY",
    ] {
        assert!(help.contains(option), "{option} in {help}");
    }
}
