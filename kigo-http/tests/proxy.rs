//! A loopback API is reached directly, whatever proxy the environment names: a proxy would carry
//! the API key and tokens of a plain-http base URL in clear text off the machine.
//!
//! The proxy variables are set only in a child process (this test binary, running the ignored
//! [`child_creates_a_partner_token_under_a_proxy_environment`]), never in the test process:
//! changing the environment of a multi-threaded process is unsound. The proxy is a listener of
//! the parent test that records what reaches it.

mod common;

use std::fmt;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Output};
use std::time::Duration;

use kigo_core::runtime::SystemClock;
use kigo_core::{CreateRequest, TokenSource};
use kigo_http::{ApiKey, Credentials, KigoApi, reqwest};
use kigo_testkit::mock::{Endpoint, MockKigo, PARTNER_SESSION_PATH};

use common::ca_certificate;

/// Tells the child test which case to run: `<client> <scheme> <host>`.
const CASE_VAR: &str = "KIGO_TEST_PROXY_CASE";
const CHILD_TEST: &str = "child_creates_a_partner_token_under_a_proxy_environment";

/// Every variable reqwest reads for its proxies, in both spellings: the child starts without
/// any of them, so that only the case's variable is in force.
const PROXY_VARIABLES: [&str; 9] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
    // A CGI environment turns reqwest's environment proxies off.
    "REQUEST_METHOD",
];

/// Who builds the `reqwest::Client` in the child.
#[derive(Clone, Copy)]
enum ClientOf {
    /// `KigoApiBuilder` builds it.
    Kigo,
    /// The user passes one built with reqwest's defaults to `KigoApiBuilder::client`.
    User,
}

/// A base URL's scheme and host, and the proxy variable the child's environment sets.
struct Case {
    scheme: &'static str,
    host: &'static str,
    variable: &'static str,
}

impl fmt::Display for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{} under {}", self.scheme, self.host, self.variable)
    }
}

const CASES: [Case; 6] = [
    Case {
        scheme: "http",
        host: "127.0.0.1",
        variable: "HTTP_PROXY",
    },
    Case {
        scheme: "http",
        host: "127.0.0.1",
        variable: "ALL_PROXY",
    },
    Case {
        scheme: "http",
        host: "localhost",
        variable: "HTTP_PROXY",
    },
    Case {
        scheme: "https",
        host: "127.0.0.1",
        variable: "HTTPS_PROXY",
    },
    Case {
        scheme: "https",
        host: "127.0.0.1",
        variable: "ALL_PROXY",
    },
    Case {
        scheme: "https",
        host: "localhost",
        variable: "HTTPS_PROXY",
    },
];

#[test]
fn kigo_http_reaches_a_loopback_api_directly_whatever_proxy_the_environment_names() {
    let proxied: Vec<String> = CASES
        .iter()
        .filter_map(|case| {
            let run = run_child(ClientOf::Kigo, case);
            if run.seen.is_empty() {
                run.assert_passed(case);
                return None;
            }
            Some(format!("{case}: {:?}", run.seen))
        })
        .collect();
    assert!(proxied.is_empty(), "went through the proxy: {proxied:#?}");
}

/// The control of the test above: the same environments do send reqwest's loopback traffic
/// through the proxy (reqwest 0.13 exempts no host but those in `NO_PROXY`), so a client of the
/// user's keeps doing so, as `KigoApiBuilder::client` warns.
#[test]
fn a_client_of_the_users_own_goes_through_the_proxy_the_environment_names_even_to_loopback() {
    for case in &CASES {
        let run = run_child(ClientOf::User, case);
        let expected = match case.scheme {
            "http" => format!("POST http://{}:", case.host),
            _ => format!("CONNECT {}:", case.host),
        };
        assert!(
            run.seen.len() == 1 && run.seen[0].starts_with(&expected),
            "{case}: the proxy saw {:?}, not one request starting with {expected:?}",
            run.seen
        );
        if case.scheme == "http" {
            assert!(run.seen[0].contains(PARTNER_SESSION_PATH), "{:?}", run.seen);
        }
        run.assert_passed(case);
    }
}

/// What one child process did.
struct ChildRun {
    /// The request line of every request that reached the proxy.
    seen: Vec<String>,
    output: Output,
}

impl ChildRun {
    /// The child's own assertions held (on its result and on what the mock saw).
    fn assert_passed(&self, case: &Case) {
        let stdout = String::from_utf8_lossy(&self.output.stdout);
        assert!(
            self.output.status.success() && stdout.contains("1 passed"),
            "the child for {case} failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&self.output.stderr)
        );
    }
}

/// Runs the child test for `client` and `case`, the case's proxy variable naming a listener of
/// this test.
fn run_child(client: ClientOf, case: &Case) -> ChildRun {
    let proxy = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = proxy.local_addr().unwrap();
    let client_name = match client {
        ClientOf::Kigo => "kigo",
        ClientOf::User => "user",
    };
    std::thread::scope(|scope| {
        let recorder = scope.spawn(|| record_requests(&proxy));
        let mut child = Command::new(std::env::current_exe().unwrap());
        child.args(["--ignored", "--exact", CHILD_TEST, "--test-threads=1"]);
        for variable in PROXY_VARIABLES {
            child.env_remove(variable);
        }
        child.env(case.variable, format!("http://{address}")).env(
            CASE_VAR,
            format!("{client_name} {} {}", case.scheme, case.host),
        );
        // Whatever happened, the recorder is stopped before anything may panic: the scope
        // waits for it.
        let output = child.output();
        stop_recording(address);
        let seen = recorder.join().unwrap();
        ChildRun {
            seen,
            output: output.unwrap(),
        }
    })
}

/// The first line a connection sends to the proxy that ends the recording.
const STOP: &str = "STOP kigo-test";

/// Accepts connections on `proxy` until [`stop_recording`], answering each request with `502`
/// and keeping its request line (never its headers or body, which hold secrets).
fn record_requests(proxy: &TcpListener) -> Vec<String> {
    let mut seen = Vec::new();
    for connection in proxy.incoming() {
        let mut connection = connection.unwrap();
        connection
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut reader = BufReader::new(&connection);
        let mut request_line = String::new();
        let _ = reader.read_line(&mut request_line);
        let request_line = request_line.trim_end().to_owned();
        if request_line == STOP {
            return seen;
        }
        // The rest of the head, up to the empty line, so that the answer is read as one.
        let mut header = String::new();
        while reader.read_line(&mut header).is_ok_and(|read| read > 2) {
            header.clear();
        }
        let _ = connection.write_all(
            b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        );
        seen.push(request_line);
    }
    seen
}

fn stop_recording(proxy: SocketAddr) {
    let mut connection = TcpStream::connect(proxy).unwrap();
    connection
        .write_all(format!("{STOP}\r\n").as_bytes())
        .unwrap();
}

/// Run by the tests above as a child process, with a proxy in its environment; never alone.
/// Creates a partner token from a mock on loopback, through a client built by kigo-http (which
/// must succeed, the mock seeing the request) or of the user's own (which the test's proxy
/// refuses, the mock seeing nothing).
#[tokio::test]
#[ignore = "the child process of the proxy tests"]
async fn child_creates_a_partner_token_under_a_proxy_environment() {
    // Run alone (`--include-ignored`), there is no case to run.
    let Ok(case) = std::env::var(CASE_VAR) else {
        return;
    };
    let [client, scheme, host] = case.split(' ').collect::<Vec<_>>()[..] else {
        panic!("{CASE_VAR} is not `<client> <scheme> <host>`: {case}");
    };
    let mut mock = MockKigo::builder();
    if scheme == "https" {
        mock = mock.https();
    }
    let mock = mock.start().await.unwrap();
    let credentials = Credentials::new(
        ApiKey::new(mock.api_key()).unwrap(),
        mock.partner_id().clone(),
        &mock.base_url().replace("127.0.0.1", host),
    )
    .unwrap();
    let builder = KigoApi::builder(credentials);
    let authority = ca_certificate(&mock);
    let api = match client {
        "kigo" => match authority {
            Some(authority) => builder.add_root_certificate(authority),
            None => builder,
        },
        _ => {
            let mut users = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(10));
            if let Some(authority) = authority {
                users = users.add_root_certificate(authority);
            }
            builder.client(users.build().unwrap())
        }
    }
    .build()
    .unwrap();

    let key = api.partner_key();
    let created = api
        .partner_source()
        .create(CreateRequest::new(&key, None, &SystemClock::new()))
        .await;
    let requests = mock.counters().requests_to(Endpoint::PartnerSession);
    if client == "kigo" {
        assert!(created.is_ok(), "{created:?}");
        assert_eq!(requests, 1, "the mock saw the request");
    } else {
        assert!(created.is_err(), "the proxy answers every request with 502");
        assert_eq!(requests, 0, "the mock saw no request");
    }
}
