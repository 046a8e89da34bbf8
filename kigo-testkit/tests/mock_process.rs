//! The mock Kigo server as a process: it announces its URL, creates tokens, and answers the
//! admin endpoints that multi-process tests use (counters, revocation, faults).

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::Command;

/// One HTTP/1.1 request over a fresh connection; the raw answer.
async fn http(address: &str, method: &str, path: &str, body: &str) -> String {
    let mut stream = TcpStream::connect(address).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    answer
}

#[tokio::test]
async fn the_binary_serves_tokens_counters_and_faults() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kigo-mock-server"))
        .args(["--partner-id", "fleet", "--lifetime-secs", "5"])
        .env("KIGO_MOCK_API_KEY", "process-test-key")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .expect("the mock announces its URL")
        .unwrap()
        .unwrap();
    let address = line
        .strip_prefix("KIGO_BASE_URL=http://")
        .expect("KIGO_BASE_URL=http://...")
        .to_owned();

    let credentials = r#"{"api_key":"process-test-key","partner_id":"fleet"}"#;
    let created = http(&address, "POST", "/api/v1/auth/session", credentials).await;
    assert!(created.starts_with("HTTP/1.1 200"), "{created}");
    assert!(created.contains(r#""expires_in":5"#), "{created}");
    let refused = http(
        &address,
        "POST",
        "/api/v1/auth/session",
        r#"{"api_key":"x","partner_id":"fleet"}"#,
    )
    .await;
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");

    let script = r#"{"endpoint":"partner_session","once":[{"status":503}]}"#;
    assert!(
        http(&address, "POST", "/_mock/faults", script)
            .await
            .starts_with("HTTP/1.1 200")
    );
    let failed = http(&address, "POST", "/api/v1/auth/session", credentials).await;
    assert!(failed.starts_with("HTTP/1.1 503"), "{failed}");

    let revoked = http(&address, "POST", "/_mock/revoke", "").await;
    assert!(revoked.contains(r#"{"revoked":1}"#), "{revoked}");
    let counters = http(&address, "GET", "/_mock/counters", "").await;
    assert!(
        counters.contains(r#""creations":{"p/fleet":1}"#),
        "{counters}"
    );
    assert!(counters.contains(r#""partner_session":3"#), "{counters}");
    assert!(counters.contains(r#""unauthorized":1"#), "{counters}");
    child.kill().await.unwrap();
}
