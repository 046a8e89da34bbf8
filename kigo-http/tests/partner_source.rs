//! The partner-level token source against the mock Kigo server, over real HTTP and HTTPS.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use kigo_core::runtime::{ManualClock, TimeSource};
use kigo_core::{CreateRequest, SourceError, Token, TokenKey, TokenSource};
use kigo_http::{
    ApiConfig, ApiKey, ConfigError, CreateError, CredentialPlacement, Credentials, ErrorKind,
    KigoApi,
};
use kigo_testkit::mock::{
    Endpoint, ExpiryShape, Fault, MockKigo, PARTNER_SESSION_PATH, RetryAfter,
};

use common::{api, api_builder, mock_on};

async fn create(api: &KigoApi, clock: &dyn TimeSource) -> Result<Token, SourceError> {
    let key = api.partner_key();
    api.partner_source()
        .create(CreateRequest::new(&key, None, clock))
        .await
}

fn cause(error: &SourceError) -> &CreateError {
    error
        .cause()
        .downcast_ref::<CreateError>()
        .expect("the cause is a CreateError")
}

/// A clock for the client that reads `before` until the mock has received the request, and
/// `before + 10 s` from then on: a token stamped after the request was sent (for example when its
/// answer arrives) would be 10 s late.
struct SendTimeProbe {
    before: SystemTime,
    received: Box<dyn Fn() -> bool + Send + Sync>,
}

impl std::fmt::Debug for SendTimeProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendTimeProbe")
            .field("before", &self.before)
            .finish()
    }
}

impl TimeSource for SendTimeProbe {
    fn now(&self) -> SystemTime {
        if (self.received)() {
            self.before + Duration::from_secs(10)
        } else {
            self.before
        }
    }
}

#[tokio::test]
async fn every_response_shape_gives_the_expiry_counted_from_the_send_time() {
    let server_clock = ManualClock::new();
    let mock = Arc::new(
        mock_on(&server_clock)
            .lifetime(Duration::from_secs(600))
            .start()
            .await
            .unwrap(),
    );
    let api = api(&mock);
    for (shape, lifetime) in [
        (ExpiryShape::ExpiresIn, 600),
        (ExpiryShape::ExpiresAtRfc3339, 600),
        (ExpiryShape::ExpiresAtEpoch, 600),
        (ExpiryShape::Omitted, 1800),
    ] {
        mock.set_expiry_shape(shape);
        let sent = mock.counters().requests_to(Endpoint::PartnerSession);
        let observed = Arc::clone(&mock);
        let clock = SendTimeProbe {
            before: server_clock.now(),
            received: Box::new(move || {
                observed.counters().requests_to(Endpoint::PartnerSession) > sent
            }),
        };
        let token = create(&api, &clock).await.unwrap();
        assert!(clock.now() > clock.before, "the probe moved: {shape:?}");
        assert_eq!(token.issued_at(), clock.before, "{shape:?}");
        assert_eq!(
            token.expires_at(),
            clock.before + Duration::from_secs(lifetime),
            "{shape:?}"
        );
        assert_eq!(token.generation(), 0);
    }
    assert_eq!(mock.creations(&mock.partner_key()), 4);
}

#[tokio::test]
async fn other_token_field_names_are_read() {
    let mock = MockKigo::start().await.unwrap();
    let api = api(&mock);
    let clock = ManualClock::new();
    mock.inject(
        Endpoint::PartnerSession,
        [Fault::RawBody(
            r#"{"access_token":"abc","expires_in":"120"}"#.into(),
        )],
    );
    let token = create(&api, &clock).await.unwrap();
    assert_eq!(token.secret().expose(), "abc");
    assert_eq!(token.lifetime(), Duration::from_secs(120));

    let mut config = ApiConfig::default();
    config.response.token = vec!["/data/jwt".into()];
    let api = api_builder(&mock).config(config).build().unwrap();
    mock.inject(
        Endpoint::PartnerSession,
        [Fault::RawBody(r#"{"data":{"jwt":"nested"}}"#.into())],
    );
    assert_eq!(
        create(&api, &clock).await.unwrap().secret().expose(),
        "nested"
    );
}

#[tokio::test]
async fn credentials_can_travel_in_headers() {
    let mock = MockKigo::start().await.unwrap();
    let mut config = ApiConfig::default();
    config.credentials = CredentialPlacement::Headers {
        api_key_header: "x-api-key".parse().unwrap(),
        partner_id_header: "x-partner-id".parse().unwrap(),
    };
    let api = api_builder(&mock).config(config).build().unwrap();
    create(&api, &ManualClock::new()).await.unwrap();
    assert_eq!(mock.creations(&mock.partner_key()), 1);
}

#[tokio::test]
async fn wrong_credentials_are_a_permanent_unauthorized() {
    let mock = MockKigo::start().await.unwrap();
    let credentials = Credentials::new(
        ApiKey::new("wrong-key-123").unwrap(),
        mock.partner_id().clone(),
        mock.base_url(),
    )
    .unwrap();
    let api = KigoApi::builder(credentials).build().unwrap();
    let error = create(&api, &ManualClock::new()).await.unwrap_err();
    assert!(!error.is_transient());
    assert_eq!(cause(&error).kind(), ErrorKind::Unauthorized);
    assert_eq!(cause(&error).status().map(|s| s.as_u16()), Some(401));
    assert_eq!(mock.counters().unauthorized, 1);
}

#[tokio::test]
async fn every_bad_answer_gives_its_typed_error() {
    let mock = MockKigo::start().await.unwrap();
    let api = api(&mock);
    let clock = ManualClock::new();
    let raw = |body: &str| Fault::RawBody(body.to_owned());
    let cases = [
        (Fault::MalformedJson, ErrorKind::NotJson, false),
        (raw("<html>busy</html>"), ErrorKind::NotJson, false),
        (raw(r#"{"expires_in":60}"#), ErrorKind::MissingToken, false),
        (raw(r#"{"session_token":""}"#), ErrorKind::EmptyToken, false),
        (
            raw(r#"{"session_token":"a\nb"}"#),
            ErrorKind::InvalidToken,
            false,
        ),
        (
            raw(r#"{"session_token":"t","expires_in":0}"#),
            ErrorKind::NonPositiveLifetime,
            false,
        ),
        (
            raw(r#"{"session_token":"t","expires_in":-5}"#),
            ErrorKind::NonPositiveLifetime,
            false,
        ),
        (
            raw(r#"{"session_token":"t","expires_in":1e12}"#),
            ErrorKind::AbsurdLifetime,
            false,
        ),
        (
            raw(r#"{"session_token":"t","expires_at":"never"}"#),
            ErrorKind::InvalidExpiry,
            false,
        ),
        (Fault::Status(403), ErrorKind::Forbidden, false),
        (Fault::Status(404), ErrorKind::UnexpectedStatus, false),
        (Fault::Status(408), ErrorKind::RequestTimeout, true),
        (Fault::Status(500), ErrorKind::ServerError, true),
        (Fault::Status(503), ErrorKind::ServerError, true),
        (Fault::TooManyRequests(None), ErrorKind::RateLimited, true),
        (Fault::Reset, ErrorKind::Transport, true),
    ];
    for (fault, kind, transient) in cases {
        mock.inject(Endpoint::PartnerSession, [fault.clone()]);
        let error = create(&api, &clock).await.expect_err(&format!("{fault:?}"));
        assert_eq!(cause(&error).kind(), kind, "{fault:?}");
        assert_eq!(error.is_transient(), transient, "{fault:?}");
    }
    assert_eq!(mock.creations(&mock.partner_key()), 0);
    create(&api, &clock)
        .await
        .expect("recovers once the faults are gone");
}

#[tokio::test]
async fn the_body_cap_stops_reading_early() {
    let mock = MockKigo::start().await.unwrap();
    let api = api(&mock); // 3 s total timeout
    let clock = ManualClock::new();
    for fault in [
        // 64 GiB streamed: reading it all would hit the timeout first.
        Fault::HugeBody(64 << 30),
        // A body announced as 64 GiB that never comes: only the announced length can refuse it.
        Fault::LongContentLength(64 << 30),
        // Just over the cap, with a Content-Length.
        Fault::RawBody(format!(
            r#"{{"session_token":"{}"}}"#,
            "t".repeat(64 * 1024)
        )),
    ] {
        mock.inject(Endpoint::PartnerSession, [fault.clone()]);
        let error = create(&api, &clock).await.unwrap_err();
        assert_eq!(cause(&error).kind(), ErrorKind::BodyTooLarge, "{fault:?}");
        assert!(!error.is_transient());
    }
}

#[tokio::test]
async fn bad_requests_keep_the_server_message_without_secrets() {
    let mock = MockKigo::start().await.unwrap();
    let api = api(&mock);
    let body = format!(r#"{{"message":"api_key {} is malformed"}}"#, mock.api_key());
    mock.inject(
        Endpoint::PartnerSession,
        [Fault::StatusWithBody { status: 400, body }],
    );
    let error = create(&api, &ManualClock::new()).await.unwrap_err();
    let create_error = cause(&error);
    assert_eq!(create_error.kind(), ErrorKind::BadRequest);
    assert!(!error.is_transient());
    assert_eq!(
        create_error.server_message(),
        Some("api_key [redacted] is malformed")
    );
    for text in [
        create_error.to_string(),
        format!("{error:?}"),
        format!("{create_error:?}"),
    ] {
        assert!(!text.contains(mock.api_key()), "{text}");
    }
}

#[tokio::test]
async fn retry_after_is_read_as_seconds_or_http_date() {
    let clock = ManualClock::new();
    let mock = mock_on(&clock).start().await.unwrap();
    let api = api(&mock);
    mock.inject(
        Endpoint::PartnerSession,
        [
            Fault::TooManyRequests(Some(RetryAfter::Seconds(7))),
            Fault::TooManyRequests(Some(RetryAfter::DateIn(Duration::from_secs(90)))),
        ],
    );
    let seconds = create(&api, &clock).await.unwrap_err();
    assert_eq!(seconds.retry_after(), Some(Duration::from_secs(7)));
    let date = create(&api, &clock).await.unwrap_err();
    assert_eq!(date.retry_after(), Some(Duration::from_secs(90)));
    assert_eq!(cause(&date).kind(), ErrorKind::RateLimited);
}

#[tokio::test]
async fn a_hanging_endpoint_is_a_transient_timeout() {
    let mock = MockKigo::start().await.unwrap();
    let api = api_builder(&mock)
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    mock.inject(Endpoint::PartnerSession, [Fault::Hang]);
    let error = create(&api, &ManualClock::new()).await.unwrap_err();
    assert!(error.is_transient());
    assert_eq!(cause(&error).kind(), ErrorKind::Timeout);
}

#[tokio::test]
async fn https_with_a_certificate_generated_at_start() {
    let mock = MockKigo::builder().https().start().await.unwrap();
    assert!(mock.base_url().starts_with("https://127.0.0.1:"));
    create(&api(&mock), &ManualClock::new()).await.unwrap();

    // Without trusting the mock's authority the handshake fails: TLS is really checked.
    let untrusting = KigoApi::builder(common::credentials(&mock))
        .build()
        .unwrap();
    let error = create(&untrusting, &ManualClock::new()).await.unwrap_err();
    assert_eq!(cause(&error).kind(), ErrorKind::Connect);
    assert_eq!(mock.creations(&mock.partner_key()), 1);
}

#[test]
fn plain_http_is_refused_for_a_host_that_is_not_loopback() {
    let credentials =
        |url| Credentials::new(ApiKey::new("k").unwrap(), common::partner("acme"), url).unwrap();
    let refused = KigoApi::builder(credentials("http://kigo.example.com")).build();
    assert!(matches!(refused, Err(ConfigError::InsecureBaseUrl)));
    KigoApi::builder(credentials("http://kigo.example.com"))
        .allow_insecure_http(true)
        .build()
        .expect("explicit opt-in");
    KigoApi::builder(credentials("https://kigo.example.com"))
        .build()
        .expect("https");
}

#[test]
fn missing_environment_variables_are_named_without_values() {
    let mut vars = HashMap::from([
        ("KIGO_API_KEY", "sk_secret_value"),
        ("KIGO_BASE_URL", "https://kigo.example.com"),
    ]);
    fn lookup(vars: &HashMap<&'static str, &'static str>) -> impl Fn(&str) -> Option<String> {
        let vars = vars.clone();
        move |name: &str| vars.get(name).map(|value| (*value).to_owned())
    }
    let error = Credentials::from_lookup(lookup(&vars)).unwrap_err();
    assert!(matches!(
        error,
        ConfigError::MissingVariable {
            variable: "KIGO_PARTNER_ID"
        }
    ));
    assert!(error.to_string().contains("KIGO_PARTNER_ID"));
    vars.insert("KIGO_PARTNER_ID", "acme");
    vars.insert("KIGO_API_KEY", " ");
    let error = Credentials::from_lookup(lookup(&vars)).unwrap_err();
    assert!(error.to_string().contains("KIGO_API_KEY"), "{error}");
    vars.insert("KIGO_API_KEY", "sk_secret_value");
    let credentials = Credentials::from_lookup(lookup(&vars)).unwrap();
    assert_eq!(credentials.partner_id().as_str(), "acme");
    let shown = format!("{credentials:?}");
    assert!(!shown.contains("sk_secret_value"), "{shown}");
    assert!(shown.contains("[redacted]"));
}

#[tokio::test]
async fn keys_of_other_partners_or_levels_are_refused() {
    let mock = MockKigo::start().await.unwrap();
    let api = api(&mock);
    let clock = ManualClock::new();
    for key in [
        TokenKey::partner(common::partner("someone-else")),
        api.user_key(kigo_core::UserId::new("u1").unwrap()),
    ] {
        let error = api
            .partner_source()
            .create(CreateRequest::new(&key, None, &clock))
            .await
            .unwrap_err();
        assert_eq!(cause(&error).kind(), ErrorKind::WrongKey);
    }
    assert_eq!(mock.counters().requests_to(Endpoint::PartnerSession), 0);
}

#[tokio::test]
async fn an_endpoint_path_cannot_change_the_host() {
    let mock = MockKigo::start().await.unwrap();
    for path in ["api/v1/auth/session", "@evil.example/collect"] {
        let mut config = ApiConfig::default();
        config.partner_session_path = path.to_owned();
        let built = api_builder(&mock).config(config).build();
        assert!(
            matches!(
                built,
                Err(ConfigError::Invalid {
                    setting: "partner_session_path",
                    ..
                })
            ),
            "{path}: {built:?}"
        );
    }
}

#[tokio::test]
async fn requests_name_the_crate_in_the_user_agent() {
    let mock = MockKigo::start().await.unwrap();
    create(&api(&mock), &ManualClock::new()).await.unwrap();
    let seen = mock.seen();
    assert_eq!(seen.len(), 1);
    let expected = format!("kigo-http/{}", env!("CARGO_PKG_VERSION"));
    assert_eq!(seen[0].user_agent.as_deref(), Some(expected.as_str()));
}

#[tokio::test]
async fn redirects_are_not_followed_so_credentials_stay_home() {
    let mock = MockKigo::start().await.unwrap();
    let elsewhere = MockKigo::start().await.unwrap();
    for status in [307, 308] {
        mock.inject(
            Endpoint::PartnerSession,
            [Fault::Redirect {
                status,
                location: format!("{}{PARTNER_SESSION_PATH}", elsewhere.base_url()),
            }],
        );
        let error = create(&api(&mock), &ManualClock::new()).await.unwrap_err();
        assert_eq!(cause(&error).kind(), ErrorKind::UnexpectedStatus);
        assert_eq!(cause(&error).status().map(|s| s.as_u16()), Some(status));
    }
    assert_eq!(elsewhere.seen(), []);
}

#[tokio::test]
async fn a_server_that_never_completes_the_handshake_hits_the_connect_timeout() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    // Accepts connections and holds them open without a word of TLS.
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let credentials = Credentials::new(
        ApiKey::new("k").unwrap(),
        common::partner("acme"),
        &format!("https://{address}"),
    )
    .unwrap();
    let api = KigoApi::builder(credentials)
        .connect_timeout(Duration::from_millis(200))
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let error = tokio::time::timeout(Duration::from_secs(20), create(&api, &ManualClock::new()))
        .await
        .expect("the connect timeout ends the attempt long before the total timeout")
        .unwrap_err();
    assert!(error.is_transient());
    assert!(
        matches!(
            cause(&error).kind(),
            ErrorKind::Timeout | ErrorKind::Connect
        ),
        "{:?}",
        cause(&error).kind()
    );
    silent.abort();
}

#[tokio::test]
async fn only_a_bad_request_keeps_the_server_message() {
    let mock = MockKigo::start().await.unwrap();
    let api = api(&mock);
    let echo = r#"{"message":"key sk_live_12... is not valid"}"#;
    for status in [401, 403, 404, 409] {
        mock.inject(
            Endpoint::PartnerSession,
            [Fault::StatusWithBody {
                status,
                body: echo.to_owned(),
            }],
        );
        let error = create(&api, &ManualClock::new()).await.unwrap_err();
        assert_eq!(cause(&error).server_message(), None, "{status}");
        assert!(!cause(&error).to_string().contains("sk_live"), "{status}");
    }
    mock.inject(
        Endpoint::PartnerSession,
        [Fault::StatusWithBody {
            status: 400,
            body: echo.to_owned(),
        }],
    );
    let error = create(&api, &ManualClock::new()).await.unwrap_err();
    assert!(cause(&error).server_message().is_some());
}

#[tokio::test]
async fn a_retry_after_date_counts_from_the_server_date_not_our_clock() {
    let server_clock = ManualClock::new();
    let mock = mock_on(&server_clock).start().await.unwrap();
    mock.inject(
        Endpoint::PartnerSession,
        [Fault::TooManyRequests(Some(RetryAfter::DateIn(
            Duration::from_secs(90),
        )))],
    );
    // Our clock runs 60 s ahead of the server's.
    let ours = server_clock.skewed(60_000);
    let error = create(&api(&mock), &ours).await.unwrap_err();
    assert_eq!(error.retry_after(), Some(Duration::from_secs(90)));
}

#[tokio::test]
async fn settings_add_up_and_a_custom_client_refuses_transport_settings() {
    let mock = MockKigo::builder().https().start().await.unwrap();
    // The certificate added by `api_builder` survives later settings.
    let api = api_builder(&mock)
        .connect_timeout(Duration::from_secs(2))
        .max_body_bytes(4096)
        .build()
        .unwrap();
    create(&api, &ManualClock::new()).await.unwrap();

    let custom =
        || KigoApi::builder(common::credentials(&mock)).client(kigo_http::reqwest::Client::new());
    for builder in [
        custom().connect_timeout(Duration::from_secs(1)),
        api_builder(&mock).client(kigo_http::reqwest::Client::new()),
    ] {
        assert!(matches!(
            builder.build(),
            Err(ConfigError::Invalid {
                setting: "client",
                ..
            })
        ));
    }
    custom()
        .max_body_bytes(1024)
        .allow_insecure_http(true)
        .timeout(Duration::from_secs(1))
        .build()
        .expect("settings that apply to any client");
}

#[tokio::test]
async fn a_client_of_ones_own_keeps_the_timeout_and_the_extra_header_of_token_requests() {
    let mock = MockKigo::start().await.unwrap();
    let gateway_key = "gw-secret-5f3a9c";
    let api = KigoApi::builder(common::credentials(&mock))
        .client(kigo_http::reqwest::Client::new())
        .timeout(Duration::from_millis(300))
        .token_request_header(
            http::HeaderName::from_static("x-gateway-key"),
            http::HeaderValue::from_static(gateway_key),
        )
        .build()
        .unwrap();
    create(&api, &ManualClock::new()).await.unwrap();
    let seen = mock.seen();
    assert!(
        seen.last()
            .unwrap()
            .header_names
            .iter()
            .any(|name| name == "x-gateway-key"),
        "{seen:?}"
    );
    assert!(!format!("{api:?}").contains(gateway_key));

    // The client has no timeout of its own; the token request's is kept.
    mock.inject(Endpoint::PartnerSession, [Fault::Hang]);
    let error = create(&api, &ManualClock::new()).await.unwrap_err();
    assert_eq!(cause(&error).kind(), ErrorKind::Timeout);
}

#[tokio::test]
async fn a_request_that_cannot_be_built_is_permanent() {
    let mock = MockKigo::start().await.unwrap();
    // A custom client that refuses the (loopback, plain http) base URL when building requests.
    let https_only = kigo_http::reqwest::Client::builder()
        .https_only(true)
        .build()
        .unwrap();
    let api = KigoApi::builder(common::credentials(&mock))
        .client(https_only)
        .build()
        .unwrap();
    let error = create(&api, &ManualClock::new()).await.unwrap_err();
    assert!(!error.is_transient(), "retrying cannot fix it");
    assert_eq!(cause(&error).kind(), ErrorKind::InvalidRequest);
    assert_eq!(mock.counters().requests_to(Endpoint::PartnerSession), 0);
}

#[tokio::test]
async fn response_pointers_without_a_leading_slash_are_refused() {
    let mock = MockKigo::start().await.unwrap();
    let mut config = ApiConfig::default();
    config.response.expires_in = vec!["/expires_in".into(), "data/ttl".into()];
    assert!(matches!(
        api_builder(&mock).config(config).build(),
        Err(ConfigError::Invalid {
            setting: "response.expires_in",
            ..
        })
    ));
}
