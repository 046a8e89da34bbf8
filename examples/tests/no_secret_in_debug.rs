//! No `Debug` or `Display` output of a public type shows a secret (issue 8 §1).
//!
//! Every public type of kigo-core, kigo-http, kigo-store-redis, kigo-store-sql and kigo-testkit is
//! formatted with `{:?}`, `{:#?}` and, where it has one, `{}` and `{:#}` (an error with its whole
//! `source()` chain), in the states where it holds or touches a secret: managers before and after
//! their first token, after a 401 and renewal, after failures and after shutdown, on a mock Kigo
//! API and on stores whose URLs hold passwords. Every output is then searched for every secret of
//! the run as text, as its bytes in a decimal or hex list (what a derived `Debug` of `Vec<u8>`
//! prints), as hex and as base64, and so again escaped as `Debug` and JSON escape it (the API key
//! holds a quote and a backslash). A failure names the secret, the form, the type and the state;
//! it never prints an output.
//!
//! [`FORMATTED`] lists the types each crate's part formats, and the test checks that each was; a
//! second test reads the crates' sources and fails on a public type that is in neither
//! [`FORMATTED`] nor [`NOT_FORMATTED_HERE`] (with its reason), so that a new type is not forgotten.

use std::collections::BTreeSet;
use std::error::Error as StdError;
use std::fmt::{Debug, Display};
use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Waker};
use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use kigo_core::codec::{EntryCodec, Keyring, SEALING_KEYS_VAR, Sealing, SealingKey};
use kigo_core::manager::UserIdLogging;
use kigo_core::runtime::{RuntimeEnv, SystemClock, TokioSleep, TokioSpawn};
use kigo_core::store::{ChangeNotice, Entry, HolderId, LeaseAttempt, StoreAdmin};
use kigo_core::{
    BackoffPolicy, CreateRequest, CreateTimedOut, Error, ExpiryPolicy, KeyScope, MAX_ID_LEN,
    MemoryStore, PartnerId, RefreshPanicked, StaleOnArrival, StoreError, StoreFailurePolicy,
    StoreTimedOut, Token, TokenKey, TokenManager, TokenSecret, TokenStore, UserId,
};
use kigo_http::reqwest::header::{HeaderName, HeaderValue};
use kigo_http::{
    API_KEY_VAR, ApiConfig, ApiKey, CreateError, CredentialPlacement, Credentials, KigoApi,
    KigoServiceError, ProgramId, Replay, ResponseFields, RetryOn401, SentWith, SsoRequest,
    SsoSessions, UserHandle, UserTokens,
};
use kigo_store_redis::RedisStore;
use kigo_store_sql::SqlStore;
use kigo_stores::StoreKind;
use kigo_testkit::fill::FillError;
use kigo_testkit::logs::Capture;
use kigo_testkit::mock::{
    Endpoint, ExpiryShape, Fault, FaultScript, MockKigo, PROTECTED_PATH, RetryAfter,
};
use kigo_testkit::{
    FakeFailure, FakeSource, FaultyStore, Gate, InjectedFault, ManualClock, MockRespond,
    MockTokenSource, Scripted,
};
use secrecy::ExposeSecret;
use tower_layer::Layer;

/// The types each crate's part of this test formats (names separated by whitespace), in the
/// states named. Types made by a macro (`PartnerId`, `UserId`) are formatted too, as parts of
/// keys, but the source scan cannot see them.
const FORMATTED: &[(&str, &str)] = &[
    // The partner manager before its first token, with it, after a 401 and renewal, after
    // failures (a 400 echoing the API key, a 401, a 429, a wrong API key, a failing store, a
    // store sealed with another fleet's key) and after shutdown, with its handle, guard, token
    // future (before and after its first poll), token, statuses, metrics and health; the shared
    // plaintext memory store holding the partner token, user tokens with refresh tokens and SSO
    // sessions; a sealed store, its keyring, keys and codec; every store operation's result; the
    // errors of bad keys, IDs, tokens and policies.
    (
        "kigo-core",
        "BackoffPolicy BuildError ChangeNotice CommitOutcome CorruptEntry CreateRequest \
         CreateTimedOut Entry EntryCodec Error ExpiryPolicy Fingerprint Health HolderId \
         InvalidId InvalidKeyring InvalidPolicy InvalidToken InvalidateOutcome KeyId KeyScope \
         KeyStatus Keyring Lease LeaseAttempt ManagerBuilder ManagerStatus ManualClock \
         MemoryStore MetricsSnapshot NeedsStore RefreshPanicked Resealed RuntimeEnv Sealing \
         SealingKey Snapshot SourceError StaleOnArrival StoreCheck StoreError \
         StoreFailurePolicy StoreKeyStatus StoreTimedOut SystemClock Token TokenFuture TokenGuard \
         TokenHandle TokenKey TokenManager TokenOrigin TokenSecret TokenStatus TokioSleep \
         TokioSpawn UserIdLogging",
    ),
    // The API (built with a gateway header) and its builder, credentials and API key; the
    // sources; the client, layer, service and middleware before and after a 401 and renewal;
    // user tokens (with refresh tokens), handles and front-end sessions; reusable and single-use
    // SSO sessions; the errors of bad keys, URLs, settings, refusals (a 400 echoing the API key
    // or the partner token) and failed requests.
    (
        "kigo-http",
        "ApiConfig ApiKey ClientError ClientMetrics ConfigError CreateError CredentialPlacement \
         Credentials ErrorKind FrontEndSession KigoApi KigoApiBuilder KigoAuth KigoClient \
         KigoLayer KigoService KigoServiceError PartnerTokenSource ProgramId Replay \
         ResponseFields RetryOn401 SentWith SsoError SsoRequest SsoSession SsoSessions \
         UserHandle UserToken UserTokenSource UserTokens",
    ),
    // Builders and stores on a server and on a cluster whose URLs hold a password, their key
    // names, a load from a Redis that is not there, a manager on it, and the errors of URLs that
    // cannot be used.
    ("kigo-store-redis", "KeyNames RedisStore RedisStoreBuilder"),
    // Stores built by `SqlStore::connect` on PostgreSQL and MySQL URLs holding passwords, their
    // pools and kinds, builders given such URLs and the keyring, a load from a database that is
    // not there, the errors of URLs that cannot be used, and an SQLite store holding a sealed
    // token.
    (
        "kigo-store-sql",
        "BackendKind SqlPool SqlStore SqlStoreBuilder",
    ),
    // Stores opened from URLs holding passwords (Redis, a Redis Cluster, PostgreSQL, MySQL), their
    // kinds, and the errors of URLs that cannot be used.
    ("kigo-stores", "AnyStore InvalidStoreUrl StoreKind"),
    // The mock after it issued every kind of token, its builder given the API key, its errors,
    // counters, requests and SSO sessions seen, faults; the fake and mockall sources, the faulty
    // store over the store holding every token, the memory harness, a log capture and the
    // filler's errors.
    (
        "kigo-testkit",
        "Capture Counters Endpoint ExpiryShape FakeFailure FakeSource Fault FaultScript \
         FaultyStore FillError Gate InjectedFault MemoryHarness MockError MockKigo \
         MockKigoBuilder MockTokenSource RetryAfter Scripted SeenRequest SourceCall \
         SsoSessionSeen",
    ),
];

/// Public types this test does not format, and why.
const NOT_FORMATTED_HERE: &[(&str, &str, &str)] = &[(
    "kigo-core",
    "HasStore",
    "cannot be made outside kigo-core: it is the state of a `ManagerBuilder` (formatted here), \
         whose Debug leaves the store out; its own Debug is the store's, formatted here for every \
         store",
)];

/// Secrets shorter than this could turn up by chance.
const MIN_SECRET_LEN: usize = 16;

/// How long a lease taken by hand lasts.
const LEASE_TTL: Duration = Duration::from_secs(30);

#[tokio::test]
async fn no_public_type_shows_a_secret_in_any_state() {
    let mut run = Run::start().await;
    run.partner_manager_before_and_after_its_first_token().await;
    run.partner_manager_after_a_401_and_renewal().await;
    let users = run.user_tokens_with_refresh_tokens().await;
    let sso = run.sso_sessions().await;
    run.refusals_by_the_api(&users, &sso).await;
    run.store_operations(&users).await;
    run.failing_stores().await;
    let keyring = run.sealed_stores().await;
    run.redis_stores(&keyring).await;
    run.values_without_a_manager();
    run.testkit().await;
    run.after_shutdown(&users, &sso).await;
    run.finish(&["kigo-core", "kigo-http", "kigo-store-redis", "kigo-testkit"]);
}

/// `SqlStore::connect` and `SqlStore::sqlite` read their keyring from `KIGO_SEALING_KEYS`, which
/// this process cannot set (edition 2024 makes that `unsafe`): without it, the test runs itself
/// again as a child process with a new keyring there.
#[tokio::test]
async fn sql_stores_built_from_urls_with_passwords_show_no_password() {
    let Ok(keys) = std::env::var(SEALING_KEYS_VAR) else {
        rerun_with_a_keyring("sql_stores_built_from_urls_with_passwords_show_no_password").await;
        return;
    };
    let mut run = Run::start().await;
    for (n, key) in keys.split(',').enumerate() {
        run.note_sealing_key(
            &format!("sealing key {n} of {SEALING_KEYS_VAR}"),
            key.trim(),
        );
    }
    run.sql_stores().await;
    run.stores_opened_from_urls().await;
    run.finish(&["kigo-store-sql", "kigo-stores"]);
}

#[test]
fn every_public_type_is_formatted_here_or_said_why_not() {
    let mut problems = Vec::new();
    for (krate, formatted) in FORMATTED {
        let formatted: Vec<&str> = formatted.split_whitespace().collect();
        let defined = public_types(krate);
        let not_here: Vec<&str> = NOT_FORMATTED_HERE
            .iter()
            .filter(|(of, _, _)| of == krate)
            .map(|(_, name, _)| *name)
            .collect();
        for name in &defined {
            if !formatted.contains(&name.as_str()) && !not_here.contains(&name.as_str()) {
                problems.push(format!(
                    "{krate}: `{name}` is public; format it in this test in the states where it \
                     holds a secret, or list it in NOT_FORMATTED_HERE with the reason"
                ));
            }
        }
        for name in formatted.iter().chain(&not_here) {
            if !defined.contains(*name) {
                problems.push(format!("{krate}: `{name}` is listed but no longer defined"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_search_finds_a_secret_in_every_form_an_output_may_take() {
    let token = r#"tok"7_0a1b2c3d4e5f6a7b"#;
    let mut secrets = Secrets::default();
    secrets.add("a token", token);
    let secret = &secrets.0[0];
    let entry = serde_json::json!({ "v": 1, "token": token, "issued_at_ms": 1 }).to_string();
    let entry = entry.as_bytes();
    let mut outputs = vec![
        ("text", token.to_owned()),
        (
            "escaped text",
            format!("{:?}", TokenSecret::new(token).expose()),
        ),
        ("decimal bytes", format!("{:?}", entry.to_vec())),
        ("decimal bytes, pretty", format!("{:#?}", entry.to_vec())),
        ("hex bytes", format!("{:x?}", entry.to_vec())),
        ("hex", hex(entry)),
        ("HEX", hex(entry).to_uppercase()),
    ];
    for prefix in ["", "a", "ab"] {
        let shifted = [prefix.as_bytes(), entry].concat();
        outputs.push(("base64", STANDARD.encode(&shifted)));
        outputs.push(("base64url", URL_SAFE.encode(&shifted)));
    }
    for (form, output) in outputs {
        assert!(secret.shows_in(&normalized(&output)).is_some(), "{form}");
    }
    let prefix_only = normalized(r#"tok"7_0a1b2c3d4e5f6a7 [redacted]"#);
    assert_eq!(secret.shows_in(&prefix_only), None);
}

/// One run against a mock Kigo API: what it formatted, and the secrets none of it may show.
struct Run {
    mock: MockKigo,
    api: KigoApi,
    /// The plaintext store that the partner, user and SSO managers share.
    store: MemoryStore,
    partners: TokenManager,
    secrets: Secrets,
    shown: Shown,
}

impl Run {
    /// The mock, an API on it built with a gateway header, and a partner manager (no token yet).
    async fn start() -> Self {
        // Quotes and backslashes: JSON and `Debug` escape them, and the secret must not show
        // escaped either.
        let api_key = format!(r#"key"{}\x"#, random_hex());
        let mock = MockKigo::builder()
            .partner("acme", api_key)
            .start()
            .await
            .expect("the mock starts");
        let mut secrets = Secrets::default();
        let mut shown = Shown::default();
        secrets.add("the API key", mock.api_key());
        let gateway = format!("gateway-{}", random_hex());
        secrets.add("the gateway header value", &gateway);
        let credentials = credentials(&mock, mock.api_key());
        shown.debug("with the API key", &credentials);
        shown.debug("the partner's", credentials.api_key());
        let gateway = HeaderValue::from_str(&gateway).expect("a header value");
        let builder = KigoApi::builder(credentials)
            .token_request_header(HeaderName::from_static("x-gateway-key"), gateway);
        shown.debug("with a gateway header", &builder);
        let api = builder.build().expect("the API builds");
        shown.debug("with a gateway header", &api);
        let store = MemoryStore::new();
        let builder = api.partner_manager().min_token_age(Duration::ZERO);
        shown.debug("with no store yet", &builder);
        let builder = builder.store(store.clone());
        shown.debug("with its store", &builder);
        let partners = builder.build().expect("the partner manager builds");
        Self {
            mock,
            api,
            store,
            partners,
            secrets,
            shown,
        }
    }

    async fn partner_manager_before_and_after_its_first_token(&mut self) {
        self.show_manager(
            "partner manager before its first token",
            &self.partners.clone(),
        )
        .await;
        let handle = self.partner_handle();
        self.shown.debug("before its first token", &handle);
        let token = self.partner_token().await;
        self.show_partner_token("the first partner token", &token)
            .await;
        self.shown.debug(
            "the shared store after the first partner token",
            &self.store,
        );
        let snapshot = self
            .store
            .load(&self.api.partner_key())
            .await
            .expect("the memory store loads");
        self.shown
            .debug("holding the first partner token", &snapshot);
        self.shown
            .debug("holding the first partner token", &snapshot.entry);
        self.shown
            .debug("for the partner token", &self.api.partner_source());
    }

    async fn partner_manager_after_a_401_and_renewal(&mut self) {
        let handle = self.partner_handle();
        let first = self.partner_token().await;
        let client = self.api.client(handle.clone());
        self.shown.debug("with the first partner token", &client);
        let layer = self.api.layer::<String>(handle.clone());
        self.shown.debug("with the first partner token", &layer);
        self.shown.debug("around a client", &layer.layer(()));
        self.shown.debug(
            "with the first partner token",
            &self.api.middleware(handle.clone()),
        );
        self.shown
            .debug("replaying by clone", &Replay::<String>::by_clone());
        self.shown
            .debug("never replaying", &Replay::<String>::never());
        self.shown.debug("per request", &RetryOn401::Never);
        self.mock.revoke_all();
        let request = client.get(PROTECTED_PATH).expect("a path of the API");
        let response = client.send(request).await.expect("the request is answered");
        assert!(
            response.status().is_success(),
            "the retry after the 401 succeeds"
        );
        let sent_with = *response.extensions().get::<SentWith>().expect("noted");
        self.shown.debug("of the retry after a 401", &sent_with);
        let metrics = client.metrics();
        assert_eq!(metrics.retried, 1, "the request was retried after a 401");
        self.shown.debug("after a 401 and a retry", &metrics);
        let renewed = self.partner_token().await;
        assert_ne!(
            renewed.fingerprint(),
            first.fingerprint(),
            "renewed after the 401"
        );
        self.show_partner_token("the renewed partner token", &renewed)
            .await;
        self.shown.debug("after a 401 and renewal", &client);
        self.shown.debug("after a 401 and renewal", &layer);
        self.shown.debug("after a 401 and renewal", &handle);
        let foreign = self.api.http_client().get("http://127.0.0.1:1/");
        let foreign = client
            .send(foreign)
            .await
            .expect_err("another origin is refused");
        self.shown.error("for another origin", &foreign);
        let bad_path = client
            .get("no-slash")
            .expect_err("a path without `/` is refused");
        self.shown.error("for a bad path", &bad_path);
        self.mock.inject(Endpoint::Protected, [Fault::Reset]);
        let request = client.get(PROTECTED_PATH).expect("a path of the API");
        let reset = client
            .send(request)
            .await
            .expect_err("the connection is reset");
        self.shown.error("after a connection reset", &reset);
    }

    /// A user manager sharing the store, its user-level token with a refresh token, handle,
    /// front-end session, and the same after an operator's renewal.
    async fn user_tokens_with_refresh_tokens(&mut self) -> UserTokens {
        let hashing_key = random_bytes();
        self.secrets.add("the user-ID hashing key", hashing_key);
        let logging = UserIdLogging::hashed_with(hashing_key);
        self.shown.debug("with a key of its own", &logging);
        let store = self.store.clone();
        let users = self
            .api
            .user_tokens(&self.partners, |manager| {
                manager.store(store).log_user_ids(logging)
            })
            .expect("the user manager builds");
        self.shown.debug("before the first user token", &users);
        self.shown.debug(
            "for user-level tokens",
            &self
                .api
                .user_source(self.partner_handle())
                .expect("the partner manager's handle"),
        );
        let handle = users.handle(user("alice")).expect("a user of the partner");
        self.show_user_token("the first user token", &users, &handle)
            .await;
        handle.handle().renew().await.expect("renewed");
        self.show_user_token("the renewed user token", &users, &handle)
            .await;
        users
    }

    /// The user token of `handle`, noted as the secret `state` with its refresh token, and
    /// what holds it.
    async fn show_user_token(&mut self, state: &str, users: &UserTokens, handle: &UserHandle) {
        let token = handle.token().await.expect("a user token");
        self.secrets.add(state, token.secret().expose());
        let refresh = token
            .refresh_token()
            .expect("the mock sends refresh tokens");
        self.secrets
            .add(format!("the refresh token of {state}"), refresh.expose());
        self.shown.debug(state, &token);
        self.show_token(state, &token);
        let session = handle.session().await.expect("a front-end session");
        self.shown.debug(state, &session);
        self.shown.debug(state, handle);
        self.shown.debug(state, users);
        self.show_manager(&format!("user manager with {state}"), users.manager())
            .await;
    }

    /// Reusable and single-use SSO sessions of a manager sharing the store.
    async fn sso_sessions(&mut self) -> SsoSessions {
        let store = self.store.clone();
        let sso = self
            .api
            .sso_sessions(&self.partners, |manager| manager.store(store))
            .expect("the SSO manager builds");
        self.shown.debug("before its first session", &sso);
        let program = ProgramId::new("spring").expect("a program ID");
        self.shown.both("of a session", &program);
        let session = sso
            .session(user("alice"), Some(program.clone()))
            .await
            .expect("a reusable session");
        self.secrets
            .add("a reusable SSO session ID", session.session_id().expose());
        self.shown.debug("reusable", &session);
        let request = SsoRequest::new(user("bob"))
            .program(program.clone())
            .email("bob@example.com")
            .attribute("tier", "gold");
        self.shown.debug("single-use, with an email", &request);
        let single = sso.single_use(request).await.expect("a single-use session");
        self.secrets
            .add("a single-use SSO session ID", single.session_id().expose());
        self.shown.debug("single-use", &single);
        self.shown.debug("after two sessions", &sso);
        self.show_manager("SSO manager after a session", sso.manager())
            .await;
        let too_long = user(&"u".repeat(MAX_ID_LEN));
        let invalid = sso
            .session(too_long, Some(program))
            .await
            .expect_err("too long for a key");
        self.shown.error("for IDs too long together", &invalid);
        sso
    }

    /// Refusals whose answers echo a secret, a wrong API key, and a rate limit: each on a
    /// manager of its own, since a refusal pauses the key.
    async fn refusals_by_the_api(&mut self, users: &UserTokens, sso: &SsoSessions) {
        let key = self.mock.api_key().to_owned();
        let echo = serde_json::json!({
            "message": format!("api_key {key} is not valid"),
            "error": key,
        })
        .to_string();
        let request = serde_json::json!({ "api_key": key, "partner_id": "acme" }).to_string();
        let api = self.api.clone();
        for (state, body) in [
            ("a 400 echoing the API key", echo.clone()),
            ("a 400 echoing the request", request),
        ] {
            let fault = Fault::StatusWithBody { status: 400, body };
            let error = self.refused(&api, state, Some(fault)).await;
            let message = error
                .cause::<CreateError>()
                .and_then(CreateError::server_message);
            assert!(message.is_some(), "{state}: the message is kept, scrubbed");
        }
        let unauthorized = Fault::StatusWithBody {
            status: 401,
            body: echo,
        };
        let rate_limited = Fault::TooManyRequests(Some(RetryAfter::Seconds(30)));
        self.refused(&api, "a 401 echoing the API key", Some(unauthorized))
            .await;
        self.refused(&api, "a 429 with Retry-After", Some(rate_limited))
            .await;
        let wrong_key = format!("wrong-key-{}", random_hex());
        self.secrets.add("a wrong API key", &wrong_key);
        let wrong = KigoApi::builder(credentials(&self.mock, &wrong_key))
            .build()
            .expect("an API with a wrong key builds");
        self.shown.debug("with a wrong API key", &wrong);
        self.refused(&wrong, "a wrong API key", None).await;

        let partner_token = self.partner_token().await;
        let bearer = partner_token.secret().expose().to_owned();
        let echo =
            serde_json::json!({ "message": format!("bearer {bearer} cannot create sessions") });
        let fault = Fault::StatusWithBody {
            status: 400,
            body: echo.to_string(),
        };
        self.mock.inject(Endpoint::UserSession, [fault.clone()]);
        let refused = users.session(user("carol")).await.expect_err("refused");
        self.shown
            .error("a 400 echoing the partner token", &refused);
        self.show_manager(
            "user manager after a 400 echoing the partner token",
            users.manager(),
        )
        .await;
        self.mock.inject(Endpoint::SsoSession, [fault]);
        let refused = sso
            .single_use(SsoRequest::new(user("dave")))
            .await
            .expect_err("refused");
        self.shown
            .error("a 400 echoing the partner token", &refused);
    }

    /// A partner manager of `api`, refused by the API (as the mock does, or with `fault`): its
    /// error.
    async fn refused(&mut self, api: &KigoApi, state: &str, fault: Option<Fault>) -> Error {
        if let Some(fault) = fault {
            self.mock.inject(Endpoint::PartnerSession, [fault]);
        }
        let manager = api
            .partner_manager()
            .store(MemoryStore::new())
            .build()
            .expect("the partner manager builds");
        let error = manager
            .token(&api.partner_key())
            .await
            .expect_err("the API refuses");
        self.shown.error(state, &error);
        if let Error::Permanent { source, .. }
        | Error::Unavailable {
            source: Some(source),
            ..
        } = &error
        {
            self.shown.error(state, source);
        }
        let create = error.cause::<CreateError>().expect("the source's error");
        self.shown.error(state, create);
        self.shown.debug(state, &create.kind());
        self.show_manager(&format!("partner manager after {state}"), &manager)
            .await;
        let handle = manager.handle(api.partner_key()).expect("its own key");
        let client = api.client(handle.clone());
        let request = client.get(PROTECTED_PATH).expect("a path of the API");
        let failed = client.send(request).await.expect_err("no token to send");
        self.shown.error(state, &failed);
        let service_error = KigoServiceError::<std::io::Error>::Token(error.clone());
        self.shown.error(state, &service_error);
        self.shown.debug(state, &api.layer::<String>(handle));
        error
    }

    /// Every operation of a plaintext memory store, on a user token with its refresh token.
    async fn store_operations(&mut self, users: &UserTokens) {
        let handle = users.handle(user("alice")).expect("a user of the partner");
        let token = Token::clone(&*handle.token().await.expect("a user token"));
        let key = handle.handle().key().clone();
        let clock = SystemClock::new();
        let request = CreateRequest::new(&key, Some(&token), &clock);
        self.shown.debug("renewing a user token", &request);
        let store = MemoryStore::new();
        let holder = HolderId::random();
        self.shown.both("of a lease", &holder);
        let attempt = store
            .acquire_lease(&key, &holder, LEASE_TTL)
            .await
            .expect("the memory store answers");
        self.shown.debug("granted", &attempt);
        let LeaseAttempt::Acquired(lease) = attempt else {
            panic!("a new key's lease is free");
        };
        self.shown.debug("granted", &lease);
        let held = store
            .acquire_lease(&key, &HolderId::random(), LEASE_TTL)
            .await
            .expect("the memory store answers");
        self.shown.debug("held by another", &held);
        let committed = store.commit(&lease, &token).await.expect("committed");
        self.shown.debug("of a user token", &committed);
        self.shown
            .debug("with a plaintext user token and its refresh token", &store);
        let snapshot = store.load(&key).await.expect("the memory store answers");
        self.shown
            .debug("of a user token with its refresh token", &snapshot);
        self.shown.debug(
            "of a committed user token",
            &ChangeNotice { key: key.clone() },
        );
        let invalidated = store
            .invalidate(&key, &token.fingerprint())
            .await
            .expect("the memory store answers");
        self.shown.debug("of a user token", &invalidated);
    }

    /// A store that fails, under a manager that fails closed.
    async fn failing_stores(&mut self) {
        let faulty = FaultyStore::new(Arc::new(self.store.clone()));
        self.shown
            .debug("over the store holding every token", &faulty);
        faulty.set_failing(true);
        let manager = self
            .api
            .partner_manager()
            .store(faulty.clone())
            .store_failure(StoreFailurePolicy::FailClosed)
            .build()
            .expect("the partner manager builds");
        let error = manager
            .token(&self.api.partner_key())
            .await
            .expect_err("the store fails");
        self.shown.error("from a failing store", &error);
        self.show_manager("partner manager on a failing store", &manager)
            .await;
        self.shown.debug("failing", &faulty);
    }

    /// A memory store sealed with a keyring of two keys, holding a token, and a replica that
    /// opens it with another fleet's key.
    async fn sealed_stores(&mut self) -> Keyring {
        let (current, current_text) = self.sealing_key("the current sealing key");
        let (older, _) = self.sealing_key("an older sealing key");
        let (foreign, _) = self.sealing_key("another fleet's sealing key");
        let keyring = Keyring::new(current)
            .with_older_key(older)
            .expect("two different keys");
        self.shown.debug("of two keys", &keyring);
        self.shown
            .both("of the current key", &keyring.current().id());
        let api_key = self.mock.api_key().to_owned();
        for (state, text) in [
            (
                "a key followed by the API key",
                format!("{current_text},{api_key}"),
            ),
            ("a key twice", format!("{current_text},{current_text}")),
        ] {
            let error = Keyring::parse(&text).expect_err("refused");
            self.shown.error(state, &error);
        }
        for sealing in [
            Sealing::Keyring(keyring.clone()),
            Sealing::FromEnv,
            Sealing::Plaintext,
        ] {
            self.shown.debug("of a store builder", &sealing);
        }
        let codec = Sealing::Keyring(keyring.clone())
            .codec("memory", "no-secret:")
            .expect("a keyring was given");
        self.shown.debug("sealing with two keys", &codec);
        let store = MemoryStore::with_codec(Arc::new(SystemClock::new()), codec);
        let manager = self
            .api
            .partner_manager()
            .store(store.clone())
            .build()
            .expect("the partner manager builds");
        let key = self.api.partner_key();
        let token = manager
            .token(&key)
            .await
            .expect("a token in the sealed store");
        self.secrets.add(
            "the partner token in the sealed store",
            token.secret().expose(),
        );
        self.show_manager("partner manager on a sealed store", &manager)
            .await;
        self.shown.debug("sealed, holding a partner token", &store);
        let check = store.check().await.expect("the memory store answers");
        self.shown.debug("of a sealed store", &check);
        let resealed = store.reseal(&key).await.expect("the memory store answers");
        self.shown.both("of a current entry", &resealed);
        let keys = store
            .keys(None, 10)
            .await
            .expect("the memory store answers");
        self.shown.debug("of a sealed store", &keys);

        let codec = EntryCodec::sealed(Keyring::new(foreign)).in_namespace("no-secret:");
        let wrong = store.handle_with_codec(codec);
        self.shown.debug("with another fleet's key", &wrong);
        let snapshot = wrong.load(&key).await.expect("the memory store answers");
        self.shown
            .debug("sealed with a key this replica lacks", &snapshot);
        if let Entry::Corrupt(corrupt) = &snapshot.entry {
            self.shown
                .error("sealed with a key this replica lacks", corrupt);
        }
        let unreadable = wrong.reseal(&key).await.expect("the memory store answers");
        self.shown
            .both("sealed with a key this replica lacks", &unreadable);
        let misconfigured = self
            .api
            .partner_manager()
            .store(wrong)
            .build()
            .expect("the partner manager builds");
        let error = misconfigured
            .token(&key)
            .await
            .expect_err("this replica cannot open the fleet's entry");
        self.shown.error("with another fleet's key", &error);
        self.show_manager("partner manager with another fleet's key", &misconfigured)
            .await;
        keyring
    }

    /// Redis stores whose URLs hold a password: built, used while no Redis answers, and refused.
    async fn redis_stores(&mut self, keyring: &Keyring) {
        let password = format!("redis-pw-{}", random_hex());
        self.secrets.add("the Redis password", &password);
        let builder = RedisStore::builder()
            .url(format!("redis://app:{password}@127.0.0.1:1/0"))
            .prefix("no-secret:")
            .keyring(keyring.clone());
        self.shown.debug("with a URL holding a password", &builder);
        let store = builder.build().expect("built; it connects on first use");
        self.shown.debug("with a URL holding a password", &store);
        let key = self.api.partner_key();
        self.shown
            .debug("of the partner key", &store.key_names(&key));
        let error = store.load(&key).await.expect_err("no Redis on port 1");
        self.shown
            .error("from a Redis that does not answer", &error);
        let manager = self
            .api
            .partner_manager()
            .store(store)
            .store_failure(StoreFailurePolicy::FailClosed)
            .build()
            .expect("the partner manager builds");
        let error = manager.token(&key).await.expect_err("no Redis on port 1");
        self.shown
            .error("from a Redis that does not answer", &error);
        self.show_manager("partner manager on a Redis that does not answer", &manager)
            .await;
        let url = format!("redis://app:{password}@127.0.0.1:1/0");
        let client = kigo_store_redis::redis::Client::open(url).expect("a valid URL");
        let builder = RedisStore::builder().client(client).plaintext();
        self.shown
            .debug("with a client holding a password", &builder);
        let store = builder.build().expect("built; it connects on first use");
        self.shown.debug("with a client holding a password", &store);
        let cluster = RedisStore::builder()
            .cluster_nodes([format!("redis://app:{password}@127.0.0.1:2")])
            .plaintext();
        self.shown.debug("of a cluster, with a password", &cluster);
        let cluster = cluster.build().expect("built; it connects on first use");
        self.shown.debug("of a cluster, with a password", &cluster);
        for (state, url) in [
            (
                "an invalid URL with a password",
                format!("redis://app:{password}@[::1:bad/0"),
            ),
            (
                "a remote Redis without TLS",
                format!("redis://app:{password}@10.0.0.1:6379"),
            ),
        ] {
            let builder = RedisStore::builder().url(url).keyring(keyring.clone());
            let error = builder.build().expect_err("refused");
            self.shown.error(state, &error);
        }
    }

    /// SQL stores whose URLs hold passwords: built, used while no database answers, refused;
    /// and an SQLite store holding a sealed token.
    async fn sql_stores(&mut self) {
        let mut stores = Vec::new();
        for scheme in ["postgres", "mysql"] {
            let password = format!("{scheme}-pw-{}", random_hex());
            self.secrets
                .add(format!("the {scheme} password"), &password);
            let url = format!("{scheme}://kigo:{password}@127.0.0.1:9/db");
            let store = SqlStore::connect(&url)
                .await
                .expect("built; it connects on first use");
            stores.push((scheme, password, store));
        }
        let key = self.api.partner_key();
        let (postgres, mysql) = (&stores[0].2, &stores[1].2);
        let (postgres_load, mysql_load) = tokio::join!(postgres.load(&key), mysql.load(&key));
        let loads = [postgres_load, mysql_load];
        for (load, (scheme, password, store)) in loads.into_iter().zip(&stores) {
            self.shown.debug("with a URL holding a password", store);
            self.shown
                .debug("of a URL holding a password", store.pool());
            self.shown
                .debug("of a URL holding a password", &store.kind());
            let url = format!("{scheme}://kigo:{password}@127.0.0.1:9/db");
            let builder = SqlStore::builder()
                .url(&url)
                .listen_url(url)
                .keyring(Keyring::from_env().expect("the keyring this run set"));
            self.shown
                .debug("given URLs holding a password, and the keyring", &builder);
            let error = load.expect_err("no database on port 9");
            self.shown
                .error("from a database that does not answer", &error);
            for (state, url) in [
                (
                    "a remote database without TLS",
                    format!("{scheme}://kigo:{password}@10.0.0.1:5432/db"),
                ),
                (
                    "a connection string",
                    format!("password={password} host=db.internal"),
                ),
                (
                    "a URL of another database",
                    format!("redis://kigo:{password}@127.0.0.1:1"),
                ),
                (
                    "a URL with a bad port",
                    format!("{scheme}://kigo:{password}@127.0.0.1:port/db"),
                ),
            ] {
                let error = SqlStore::connect(&url).await.expect_err("refused");
                self.shown.error(state, &error);
            }
        }
        let dir = tempfile::tempdir().expect("a temporary directory");
        let sqlite = SqlStore::sqlite(dir.path().join("tokens.db"))
            .await
            .expect("an SQLite store");
        let manager = self
            .api
            .partner_manager()
            .store(sqlite.clone())
            .build()
            .expect("the partner manager builds");
        let token = manager.token(&key).await.expect("a token in SQLite");
        self.secrets
            .add("the partner token in SQLite", token.secret().expose());
        self.shown.debug("holding a sealed partner token", &sqlite);
        self.shown.debug("of SQLite", sqlite.pool());
        self.show_manager("partner manager on SQLite", &manager)
            .await;
    }

    /// Stores `kigo_stores::open` builds from URLs holding passwords, their kinds, and the errors
    /// of URLs it refuses.
    async fn stores_opened_from_urls(&mut self) {
        let password = format!("any-store-pw-{}", random_hex());
        self.secrets.add("the password of a store URL", &password);
        for url in [
            format!("redis://kigo:{password}@127.0.0.1:9/0"),
            format!("redis+cluster://kigo:{password}@127.0.0.1:9,127.0.0.1:10"),
            format!("postgres://kigo:{password}@127.0.0.1:9/db"),
            format!("mysql://kigo:{password}@127.0.0.1:9/db"),
        ] {
            let kind = StoreKind::of(&url).expect("a known scheme");
            self.shown.debug("of a URL holding a password", &kind);
            let store = kigo_stores::open(&url)
                .await
                .expect("built; it connects on first use");
            self.shown
                .debug("opened from a URL holding a password", &store);
        }
        for (state, url) in [
            (
                "an unknown scheme",
                format!("ftp://kigo:{password}@127.0.0.1"),
            ),
            (
                "a Cluster URL without nodes",
                format!("redis+cluster://kigo:{password}@"),
            ),
            (
                "a remote server without TLS",
                format!("redis://kigo:{password}@10.0.0.1:6379"),
            ),
        ] {
            let error = kigo_stores::open(&url).await.expect_err("refused");
            self.shown.error(state, &error);
        }
        let unknown = StoreKind::of(&format!("ftp://kigo:{password}@127.0.0.1"))
            .expect_err("an unknown scheme");
        self.shown.error("an unknown scheme", &unknown);
    }

    /// Values made without a manager, from secrets: bad keys, IDs, tokens and settings.
    fn values_without_a_manager(&mut self) {
        let api_key = self.mock.api_key().to_owned();
        let with_space = ApiKey::new(format!("{api_key} {api_key}")).expect_err("refused");
        self.shown.error("an API key with a space", &with_space);
        let password = format!("base-url-pw-{}", random_hex());
        self.secrets.add("the base URL password", &password);
        let key = ApiKey::new(&api_key).expect("a valid key");
        let url = format!("https://kigo:{password}@api.kigo.example");
        let refused = Credentials::new(key, self.mock.partner_id().clone(), &url)
            .expect_err("user information is refused");
        self.shown.error("a base URL holding a password", &refused);
        let missing =
            Credentials::from_lookup(|name| (name == API_KEY_VAR).then(|| api_key.clone()))
                .expect_err("the partner ID is missing");
        self.shown.error("only the API key set", &missing);
        let insecure = credentials_at(&self.mock, &api_key, "http://kigo.example.com");
        let insecure = KigoApi::builder(insecure)
            .build()
            .expect_err("plain http to another host");
        self.shown.error("plain http with the API key", &insecure);
        let store = self.store.clone();
        let unbuildable = self
            .api
            .user_tokens(&self.partners, |manager| {
                manager.store(store).max_concurrent_creations(0)
            })
            .expect_err("no creation could run");
        self.shown
            .error("a manager that cannot be built", &unbuildable);
        let no_scope = TokenManager::builder(FakeSource::new())
            .local_only()
            .build()
            .expect_err("no scope");
        self.shown.error("a source without a scope", &no_scope);
        let control = UserId::new(format!("{api_key}\u{7}")).expect_err("refused");
        self.shown.error("the API key as a user ID", &control);
        let now = SystemTime::now();
        let unsendable = Token::new(
            TokenSecret::new(format!("{api_key} x")),
            now,
            now + Duration::from_secs(60),
        )
        .expect_err("not header-safe");
        self.shown
            .error("the API key with a space as a token", &unsendable);
        let policy = BackoffPolicy::new(Duration::ZERO, Duration::ZERO).expect_err("refused");
        self.shown.error("a zero backoff", &policy);
        self.shown.debug("the default", &ExpiryPolicy::default());
        self.shown.debug("the default", &BackoffPolicy::default());
        self.shown
            .debug("the default", &StoreFailurePolicy::default());
        self.shown.debug("the default", &ApiConfig::default());
        self.shown
            .debug("the default", &CredentialPlacement::default());
        self.shown.debug("the default", &ResponseFields::default());
        self.shown
            .error("after 10 s", &CreateTimedOut(Duration::from_secs(10)));
        self.shown
            .error("after 5 s", &StoreTimedOut(Duration::from_secs(5)));
        self.shown.error("of a token", &StaleOnArrival);
        self.shown.error("of a refresh", &RefreshPanicked);
        self.shown.debug("of tokio", &TokioSleep);
        self.shown
            .debug("of this runtime", &TokioSpawn::current().expect("in tokio"));
        self.shown
            .debug("of this runtime", &RuntimeEnv::tokio().expect("in tokio"));
        self.shown.debug("of tokio", &SystemClock::new());
        self.shown
            .both("of the partner", &self.mock.partner_id().clone());
        self.shown
            .both("of the partner manager", self.partners.scope());
        self.shown.both("of the partner", &self.api.partner_key());
        self.shown.both("of a user", &user("alice"));
        self.shown.both("of any user", &KeyScope::AnyUser);
        let empty = PartnerId::new("").expect_err("refused");
        self.shown.error("an empty partner ID", &empty);
    }

    /// kigo-testkit's types, the mock after it issued every kind of token among them.
    async fn testkit(&mut self) {
        let api_key = self.mock.api_key().to_owned();
        let builder = MockKigo::builder().partner("acme", &api_key);
        self.shown.debug("given the API key", &builder);
        let error = MockKigo::builder()
            .partner("", &api_key)
            .start()
            .await
            .expect_err("an empty partner ID is refused");
        self.shown
            .error("an empty partner ID with the API key", &error);
        self.shown
            .debug("after issuing every kind of token", &self.mock);
        self.shown
            .debug("after issuing every kind of token", &self.mock.counters());
        let seen = self.mock.seen();
        self.shown.debug(
            "a token request with a gateway header",
            seen.first().expect("requests"),
        );
        let sessions = self.mock.sso_sessions();
        self.shown.debug(
            "a single-use session with an email",
            sessions.last().expect("sessions"),
        );
        self.shown.debug("an endpoint", &Endpoint::PartnerSession);
        self.shown.debug("the default", &ExpiryShape::default());
        self.shown.debug("of a 429", &RetryAfter::Seconds(30));
        let script = FaultScript {
            endpoint: Endpoint::PartnerSession,
            once: vec![Fault::Status(503)],
            always: Some(Fault::TooManyRequests(None)),
        };
        self.shown.debug("without a secret", &script);
        self.shown.debug("without a secret", &script.once[0]);
        let fake = FakeSource::new();
        fake.script([Scripted::Transient(None)]);
        let manager = TokenManager::builder(fake.clone())
            .scope(KeyScope::AnyPartner)
            .local_only()
            .build()
            .expect("a manager on the fake");
        let failed = manager
            .token(&self.api.partner_key())
            .await
            .expect_err("scripted");
        self.shown.error("a scripted transient failure", &failed);
        self.shown.debug("after a call", &fake);
        self.shown
            .debug("a call", fake.calls().first().expect("called"));
        self.shown.debug("a step", &Scripted::Panic);
        self.shown.error("scripted", &FakeFailure::Permanent);
        self.shown
            .debug("without expectations", &MockTokenSource(MockRespond::new()));
        self.shown.debug("a gate", &Gate::BeforeCommit);
        self.shown.error("injected", &InjectedFault);
        self.shown
            .debug("fresh", &kigo_testkit::conformance::MemoryHarness::new());
        self.shown.debug("fresh", &ManualClock::new());
        self.shown.debug("empty", &Capture::default());
        let key = kigo_testkit::fill::user_keys(1).remove(0);
        for failed in [
            FillError::Store {
                key: key.clone(),
                source: StoreError::unavailable(InjectedFault),
            },
            FillError::LeaseHeld { key: key.clone() },
            FillError::Rejected { key },
        ] {
            self.shown.error("a fill that failed", &failed);
        }
    }

    /// Every manager shut down, and what callers then get.
    async fn after_shutdown(&mut self, users: &UserTokens, sso: &SsoSessions) {
        for manager in [&self.partners, users.manager(), sso.manager()] {
            manager.shutdown().await;
        }
        self.show_manager("partner manager after shutdown", &self.partners.clone())
            .await;
        self.show_manager("user manager after shutdown", users.manager())
            .await;
        self.shown.debug("after shutdown", users);
        self.shown.debug("after shutdown", sso);
        let renewal = self.partner_handle().renew().await.expect_err("shut down");
        self.shown.error("after shutdown", &renewal);
        let session = sso
            .session(user("erin"), None)
            .await
            .expect_err("shut down");
        self.shown.error("after shutdown", &session);
        self.shown.debug("after shutdown", &self.store);
    }

    /// Searches every output for every secret, then checks that `crates`' types were formatted.
    fn finish(self, crates: &[&str]) {
        self.shown.assert_no_secret(&self.secrets);
        self.shown.assert_formatted(crates);
    }

    fn partner_handle(&self) -> kigo_core::TokenHandle {
        self.partners
            .handle(self.api.partner_key())
            .expect("the partner manager's own key")
    }

    /// The partner manager's current token.
    async fn partner_token(&self) -> Token {
        let token = self
            .partners
            .token(&self.api.partner_key())
            .await
            .expect("a partner token");
        Token::clone(&token)
    }

    /// The partner manager's `token`, noted as the secret `name`, and the manager holding it.
    async fn show_partner_token(&mut self, name: &str, token: &Token) {
        self.secrets.add(name, token.secret().expose());
        self.show_token(name, token);
        let manager = self.partners.clone();
        self.show_manager(&format!("partner manager with {name}"), &manager)
            .await;
    }

    /// A token and its parts.
    fn show_token(&mut self, state: &str, token: &Token) {
        self.shown.debug(state, token);
        self.shown.debug(state, token.secret());
        self.shown.debug(state, token.bearer());
        self.shown.both(state, &token.fingerprint());
        if let Some(refresh) = token.refresh_token() {
            self.shown.debug(state, refresh);
        }
    }

    /// A manager with its handles, guard, statuses, metrics and health, and its store's view.
    async fn show_manager(&mut self, state: &str, manager: &TokenManager) {
        let shown = &mut self.shown;
        shown.debug(state, manager);
        shown.debug(state, &manager.metrics());
        shown.debug(state, &manager.health());
        let status = manager.status();
        shown.debug(state, &status);
        for key in &status.partner_keys {
            shown.debug(state, key);
            if let Some(token) = &key.token {
                shown.debug(state, token);
                shown.debug(state, &token.origin);
            }
        }
        // SSO sessions are keyed by kigo-http alone: their manager is shown without a handle.
        let key = match manager.scope() {
            KeyScope::UsersOf(partner) if partner == self.mock.partner_id() => {
                TokenKey::user(partner.clone(), user("alice"))
            }
            KeyScope::UsersOf(_) => return,
            _ => self.api.partner_key(),
        };
        let handle = manager.handle(key.clone()).expect("a key of its scope");
        shown.debug(state, &handle);
        shown.debug(state, &handle.status());
        if let Some(guard) = handle.cached() {
            shown.debug(state, &guard);
        }
        let mut future = manager.token(&key);
        shown.debug(state, &future);
        let polled = Pin::new(&mut future).poll(&mut Context::from_waker(Waker::noop()));
        shown.debug(state, &future);
        drop(polled);
        match manager.inspect(&key).await {
            Ok(inspected) => shown.debug(state, &inspected),
            Err(error) => shown.error(state, &error),
        }
    }

    /// A new random sealing key, its base64 and its bytes noted as secrets.
    fn sealing_key(&mut self, name: &str) -> (SealingKey, String) {
        let text = SealingKey::generate_base64();
        let text = text.expose_secret().to_owned();
        let key = self.note_sealing_key(name, &text);
        (key, text)
    }

    /// The sealing key in `text` (base64), its text and its bytes noted as secrets.
    fn note_sealing_key(&mut self, name: &str, text: &str) -> SealingKey {
        let bytes = STANDARD.decode(text).expect("a sealing key is base64");
        self.secrets.add(format!("{name} (base64)"), text);
        self.secrets.add(format!("{name} (bytes)"), bytes);
        let key = SealingKey::from_base64(text).expect("a sealing key");
        self.shown.debug(name, &key);
        key
    }
}

/// Runs the test `name` of this binary again, in a child process with a new keyring in
/// `KIGO_SEALING_KEYS`, and fails if it fails (its output names secrets, never shows them).
async fn rerun_with_a_keyring(name: &str) {
    let keys = SealingKey::generate_base64();
    let binary = std::env::current_exe().expect("this test binary");
    let output = tokio::process::Command::new(binary)
        .args(["--exact", name])
        .env(SEALING_KEYS_VAR, keys.expose_secret())
        .kill_on_drop(true)
        .output()
        .await
        .expect("this test binary runs again");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "{name}, run with a keyring:\n{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// What was formatted: each output, named by how, what and in which state; and the types seen.
#[derive(Default)]
struct Shown {
    outputs: Vec<(String, String)>,
    /// (crate, type) of every type formatted, generic parameters included.
    types: BTreeSet<(String, String)>,
}

impl Shown {
    /// `{:?}` and `{:#?}` of `value`.
    fn debug<T: Debug + ?Sized>(&mut self, state: &str, value: &T) {
        let name = self.note::<T>();
        self.outputs.push((
            format!("`{{:?}}` of {name} ({state})"),
            format!("{value:?}"),
        ));
        self.outputs.push((
            format!("`{{:#?}}` of {name} ({state})"),
            format!("{value:#?}"),
        ));
    }

    /// The same, and `{}` and `{:#}`.
    fn both<T: Debug + Display + ?Sized>(&mut self, state: &str, value: &T) {
        self.debug(state, value);
        let name = std::any::type_name::<T>();
        self.outputs
            .push((format!("`{{}}` of {name} ({state})"), format!("{value}")));
        self.outputs.push((
            format!("`{{:#}}` of {name} ({state})"),
            format!("{value:#}"),
        ));
    }

    /// The same, and every error of its `source()` chain as `{}`, `{:?}` and `{:#?}`.
    fn error<E: StdError + 'static>(&mut self, state: &str, error: &E) {
        self.both(state, error);
        let name = std::any::type_name::<E>();
        let causes = std::iter::successors(error.source(), |&cause| cause.source());
        for (depth, cause) in causes.enumerate() {
            let what = format!("source {} of {name} ({state})", depth + 1);
            self.outputs
                .push((format!("`{{}}` of {what}"), format!("{cause}")));
            self.outputs
                .push((format!("`{{:?}}` of {what}"), format!("{cause:?}")));
            self.outputs
                .push((format!("`{{:#?}}` of {what}"), format!("{cause:#?}")));
        }
    }

    /// Notes the crate and name of `T` and of its generic parameters; returns its name.
    fn note<T: ?Sized>(&mut self) -> &'static str {
        let name = std::any::type_name::<T>();
        let paths = name.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'));
        for path in paths {
            if let (Some((krate, _)), Some(last)) =
                (path.split_once("::"), path.rsplit("::").next())
            {
                self.types
                    .insert((krate.replace('_', "-"), last.to_owned()));
            }
        }
        name
    }

    /// Fails naming each output in which a secret shows, the secret and its form.
    fn assert_no_secret(&self, secrets: &Secrets) {
        let found: Vec<String> = self
            .outputs
            .iter()
            .flat_map(|(what, text)| {
                let text = normalized(text);
                secrets.0.iter().filter_map(move |secret| {
                    let form = secret.shows_in(&text)?;
                    Some(format!("{what} shows {} (as {form})", secret.name))
                })
            })
            .collect();
        assert!(
            found.is_empty(),
            "secrets shown in {} of {} outputs:\n{}",
            found.len(),
            self.outputs.len(),
            found.join("\n")
        );
    }

    /// Fails naming each type [`FORMATTED`] lists for `crates` that was not formatted.
    fn assert_formatted(&self, crates: &[&str]) {
        let missing: Vec<String> = FORMATTED
            .iter()
            .filter(|(krate, _)| crates.contains(krate))
            .flat_map(|(krate, names)| names.split_whitespace().map(move |name| (*krate, name)))
            .filter(|(krate, name)| {
                !self
                    .types
                    .contains(&((*krate).to_owned(), (*name).to_owned()))
            })
            .map(|(krate, name)| format!("{krate}: {name}"))
            .collect();
        assert!(
            missing.is_empty(),
            "listed as formatted, but not formatted: {}",
            missing.join(", ")
        );
    }
}

/// The secrets of a run, each with the forms it is searched for in.
#[derive(Default)]
struct Secrets(Vec<Secret>);

impl Secrets {
    fn add(&mut self, name: impl Into<String>, value: impl AsRef<[u8]>) {
        let name = name.into();
        let value = value.as_ref();
        assert!(
            value.len() >= MIN_SECRET_LEN,
            "{name} is too short to search for"
        );
        assert!(
            self.0.iter().all(|secret| secret.name != name),
            "{name} is noted twice"
        );
        self.0.push(Secret {
            forms: forms(value),
            name,
        });
    }
}

struct Secret {
    name: String,
    /// (name of the form, the secret in it), without whitespace.
    forms: Vec<(String, String)>,
}

impl Secret {
    /// The form in which this secret shows in `text` (whitespace removed), if it does.
    fn shows_in(&self, text: &str) -> Option<&str> {
        self.forms
            .iter()
            .find(|(_, pattern)| text.contains(pattern.as_str()))
            .map(|(form, _)| form.as_str())
    }
}

/// `value` in every encoding of [`encodings`], and so again its text escaped as `Debug` and
/// JSON escape `"` and `\\`, if it is text that this changes.
fn forms(value: &[u8]) -> Vec<(String, String)> {
    let escaped = std::str::from_utf8(value)
        .ok()
        .map(|text| text.escape_debug().to_string().into_bytes())
        .filter(|escaped| escaped != value);
    let mut forms = encodings("", value);
    if let Some(escaped) = escaped {
        forms.extend(encodings("escaped ", &escaped));
    }
    forms
}

/// `bytes` as text (if it is), as a decimal and a hex list (`{:?}` and `{:x?}` of `Vec<u8>`), as
/// hex, and as standard and URL-safe base64 wherever in a longer encoded text it starts; each
/// named after `variant`, without whitespace.
fn encodings(variant: &str, bytes: &[u8]) -> Vec<(String, String)> {
    let list = |digits: fn(&u8) -> String| bytes.iter().map(digits).collect::<Vec<_>>().join(",");
    let mut forms = Vec::new();
    if let Ok(text) = std::str::from_utf8(bytes) {
        forms.push(("text", text.to_owned()));
    }
    forms.push(("decimal bytes", list(|byte| byte.to_string())));
    forms.push(("hex bytes", list(|byte| format!("{byte:x}"))));
    forms.push(("hex", hex(bytes)));
    forms.push(("HEX", hex(bytes).to_uppercase()));
    for offset in 0..3 {
        forms.push(("base64", base64_core(&STANDARD_NO_PAD, bytes, offset)));
        forms.push(("base64url", base64_core(&URL_SAFE_NO_PAD, bytes, offset)));
    }
    forms
        .into_iter()
        .map(|(form, pattern)| (format!("{variant}{form}"), normalized(&pattern)))
        .collect()
}

/// The characters of the base64 of `value` that do not depend on what surrounds it, when it
/// starts `offset` bytes (0 to 2) into a longer encoded text.
fn base64_core(engine: &impl Engine, value: &[u8], offset: usize) -> String {
    let shifted = [&vec![0; offset], value].concat();
    let encoded = engine.encode(&shifted);
    let first = (offset * 8).div_ceil(6);
    let end = shifted.len() * 8 / 6;
    encoded[first..end].to_owned()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// `text` without whitespace, so that pretty-printed lists match too.
fn normalized(text: &str) -> String {
    text.chars().filter(|c| !c.is_whitespace()).collect()
}

/// The names of the `pub struct`s and `pub enum`s in the sources of `krate`.
fn public_types(krate: &str) -> BTreeSet<String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(krate)
        .join("src");
    let mut names = BTreeSet::new();
    let mut dirs = vec![src];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("a source directory") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                let source = std::fs::read_to_string(&path).expect("a source file");
                names.extend(source.lines().filter_map(declared_type));
            }
        }
    }
    names
}

/// The name a line declares as a `pub struct` or `pub enum`, if it does (not one a macro names
/// with a `$` variable).
fn declared_type(line: &str) -> Option<String> {
    let line = line.trim_start();
    let rest = ["pub struct ", "pub enum "]
        .iter()
        .find_map(|keyword| line.strip_prefix(keyword))?;
    let name: String = rest
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    (!name.is_empty()).then_some(name)
}

/// The credentials of the mock's partner with `api_key`.
fn credentials(mock: &MockKigo, api_key: &str) -> Credentials {
    credentials_at(mock, api_key, mock.base_url())
}

fn credentials_at(mock: &MockKigo, api_key: &str, base_url: &str) -> Credentials {
    let key = ApiKey::new(api_key).expect("a valid API key");
    Credentials::new(key, mock.partner_id().clone(), base_url).expect("valid credentials")
}

fn user(id: &str) -> UserId {
    UserId::new(id).expect("a valid user ID")
}

/// 32 random hex digits (std's per-process random hasher keys).
fn random_hex() -> String {
    let state = RandomState::new();
    format!("{:016x}{:016x}", state.hash_one(1_u8), state.hash_one(2_u8))
}

/// 32 random bytes.
fn random_bytes() -> [u8; 32] {
    let key = SealingKey::generate_base64();
    let bytes = STANDARD.decode(key.expose_secret()).expect("base64");
    bytes.try_into().expect("32 bytes")
}
