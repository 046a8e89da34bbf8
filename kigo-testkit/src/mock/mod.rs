//! A mock Kigo API over real HTTP (feature `mock`): partner- and user-level session tokens, SSO
//! sessions and a hosted page that opens them, a protected endpoint, counters and fault
//! injection.
//!
//! ```no_run
//! # async fn demo() -> Result<(), kigo_testkit::mock::MockError> {
//! use std::time::Duration;
//! use kigo_testkit::mock::{Endpoint, Fault, MockKigo};
//!
//! let mock = MockKigo::builder().lifetime(Duration::from_secs(5)).start().await?;
//! // Point a client at `mock.base_url()` with `mock.api_key()` and `mock.partner_id()`.
//! mock.inject(Endpoint::PartnerSession, [Fault::Status(503)]);
//! // ... run the code under test ...
//! assert_eq!(mock.creations(&mock.partner_key()), 1);
//! # Ok(()) }
//! ```
//!
//! # The API it serves
//!
//! | request | answer |
//! |---|---|
//! | `POST` [`PARTNER_SESSION_PATH`], JSON `{"api_key", "partner_id"}` or headers `X-Api-Key` / `X-Partner-Id` | `200 {"session_token", "expires_in"}`; `401` for wrong credentials, `400` when missing |
//! | `POST` [`USER_SESSION_PATH`], `Authorization: Bearer <partner token>`, JSON `{"external_user_id"}` | `200 {"session_token", "expires_in", "refresh_token"}`; `401` for a bad bearer |
//! | `POST` [`USER_REFRESH_PATH`], JSON `{"refresh_token"}` | a new user token and refresh token (refresh tokens rotate); `401` for an unknown one |
//! | `POST` [`SSO_SESSION_PATH`], `Authorization: Bearer <partner token>`, JSON `{"external_user_id", "external_program_id"?, "single_use"?, "attributes"?, "email"?}` | `200 {"session_id", "expires_in"}`; `401` for a bad bearer, `403` for a user-level one, `400` for a missing user or a field of the wrong type |
//! | `GET` [`SSO_PAGE_PATH`]`?session-id=<id>` (the hosted page) | `200 {"partner", "program", "user"}`; `401` for an unknown, expired or used single-use session |
//! | any method on [`PROTECTED_PATH`], `Authorization: Bearer <any session token>` | `200 {"key", "received_bytes"}`; `401` for unknown, expired or revoked tokens |
//! | `GET /_mock/counters` | the [`Counters`] as JSON |
//! | `POST /_mock/revoke` | revokes every session token |
//! | `POST /_mock/faults` with a [`FaultScript`], `DELETE /_mock/faults` | scripts or clears faults |
//!
//! Lifetimes follow Kigo's reference unless configured: partner-level tokens 30 minutes,
//! user-level tokens 1 hour, their refresh tokens 1 year, SSO sessions 30 minutes. The expiry
//! field follows [`ExpiryShape`]. Every answer carries a `Date` header from the mock's clock,
//! which may be a manual clock. SSO sessions are counted per (partner, program, user)
//! ([`MockKigo::sso_creations`]) and noted with their fields ([`MockKigo::sso_sessions`]).

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use kigo_core::runtime::{SystemClock, TimeSource};
use kigo_core::{InvalidId, PartnerId, TokenKey, UserId};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::watch;

mod fault;
mod handlers;
mod server;
mod sso;
mod state;
mod tls;

pub use fault::{Endpoint, Fault, FaultScript, RetryAfter};
pub use sso::SsoSessionSeen;
pub use state::{Counters, SeenRequest};

use fault::FaultPlan;
use state::{Ledger, Minter};

/// Where partner-level session tokens are created.
pub const PARTNER_SESSION_PATH: &str = "/api/v1/auth/session";
/// Where user-level session tokens are created.
pub const USER_SESSION_PATH: &str = "/api/v1/auth/account-space/session";
/// Where user-level session tokens are renewed with a refresh token.
pub const USER_REFRESH_PATH: &str = "/api/v1/auth/account-space/session/refresh";
/// Where SSO sessions for Kigo-hosted pages are created.
pub const SSO_SESSION_PATH: &str = "/api/v1/auth/sso/session";
/// The mock's stand-in for a Kigo-hosted page, opened with `?session-id=<SSO session ID>`.
pub const SSO_PAGE_PATH: &str = "/sso/page";
/// A sample endpoint that needs a valid session token.
pub const PROTECTED_PATH: &str = "/api/v1/protected";

/// The lifetime of partner-level tokens unless configured: Kigo's documented 30 minutes.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(30 * 60);
/// The lifetime of user-level tokens unless configured: Kigo's documented 1 hour.
pub const DEFAULT_USER_LIFETIME: Duration = Duration::from_secs(60 * 60);
/// The lifetime of SSO sessions unless configured: Kigo's documented 30 minutes.
pub const DEFAULT_SSO_LIFETIME: Duration = Duration::from_secs(30 * 60);
/// The lifetime of refresh tokens unless configured: Kigo's documented 1 year.
pub const DEFAULT_REFRESH_LIFETIME: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// How a token's expiry appears in the mock's answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExpiryShape {
    /// `"expires_in": <seconds>`.
    #[default]
    ExpiresIn,
    /// `"expires_at": "<RFC 3339 time>"`.
    ExpiresAtRfc3339,
    /// `"expires_at": <seconds since the epoch>`.
    ExpiresAtEpoch,
    /// No expiry at all (clients fall back to the documented 30 minutes).
    Omitted,
}

/// The mock could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MockError {
    /// No listening socket.
    #[error("the mock Kigo server could not listen: {0}")]
    Bind(#[source] std::io::Error),
    /// The certificate or the TLS configuration could not be made.
    #[error("the mock Kigo server could not set up TLS")]
    Tls(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A partner ID given to the builder is not valid.
    #[error("invalid partner ID for the mock Kigo server: {0}")]
    PartnerId(#[from] InvalidId),
}

/// State shared by the server tasks and the handle.
struct Shared {
    /// API key per partner.
    partners: HashMap<PartnerId, String>,
    lifetimes: Lifetimes,
    refresh_tokens: bool,
    shape: Mutex<ExpiryShape>,
    clock: Arc<dyn TimeSource>,
    ledger: Mutex<Ledger>,
    faults: Mutex<FaultPlan>,
    minter: Minter,
    shutdown: watch::Sender<bool>,
}

impl Shared {
    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        lock(&self.ledger)
    }

    fn faults(&self) -> MutexGuard<'_, FaultPlan> {
        lock(&self.faults)
    }

    fn shape(&self) -> ExpiryShape {
        *lock(&self.shape)
    }
}

/// Partner IDs and counts only: the keys and tokens are secrets, even in a mock.
impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let partners: Vec<&str> = self.partners.keys().map(PartnerId::as_str).collect();
        f.debug_struct("Shared")
            .field("partners", &partners)
            .field("lifetimes", &self.lifetimes)
            .field("refresh_tokens", &self.refresh_tokens)
            .field("ledger", &*self.ledger())
            .finish_non_exhaustive()
    }
}

/// How long what the mock issues lives.
#[derive(Debug, Clone, Copy)]
struct Lifetimes {
    partner: Duration,
    user: Duration,
    sso: Duration,
    refresh: Duration,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Configures a [`MockKigo`].
pub struct MockKigoBuilder {
    partners: Vec<(String, String)>,
    lifetime: Option<Duration>,
    user_lifetime: Option<Duration>,
    sso_lifetime: Option<Duration>,
    refresh_lifetime: Duration,
    clock: Option<Arc<dyn TimeSource>>,
    https: bool,
    refresh_tokens: bool,
    shape: ExpiryShape,
    port: u16,
}

impl fmt::Debug for MockKigoBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let partners: Vec<&str> = self.partners.iter().map(|(id, _)| id.as_str()).collect();
        f.debug_struct("MockKigoBuilder")
            .field("partners", &partners)
            .field("lifetime", &self.lifetime)
            .field("user_lifetime", &self.user_lifetime)
            .field("sso_lifetime", &self.sso_lifetime)
            .field("refresh_lifetime", &self.refresh_lifetime)
            .field("https", &self.https)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl MockKigoBuilder {
    /// Accepts `api_key` for `partner_id`. Without any, the mock has one partner `acme` with a
    /// random key (see [`MockKigo::api_key`]).
    pub fn partner(mut self, partner_id: impl Into<String>, api_key: impl Into<String>) -> Self {
        self.partners.push((partner_id.into(), api_key.into()));
        self
    }

    /// How long session tokens live: partner-level ones (default [`DEFAULT_LIFETIME`]), and the
    /// other kinds unless set on their own.
    pub fn lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = Some(lifetime);
        self
    }

    /// How long user-level tokens live (default: [`Self::lifetime`] if set, else
    /// [`DEFAULT_USER_LIFETIME`]).
    pub fn user_lifetime(mut self, lifetime: Duration) -> Self {
        self.user_lifetime = Some(lifetime);
        self
    }

    /// How long SSO sessions live (default: [`Self::lifetime`] if set, else
    /// [`DEFAULT_SSO_LIFETIME`]).
    pub fn sso_lifetime(mut self, lifetime: Duration) -> Self {
        self.sso_lifetime = Some(lifetime);
        self
    }

    /// How long refresh tokens stay valid (default [`DEFAULT_REFRESH_LIFETIME`]); an expired one
    /// is refused with `401`.
    pub fn refresh_lifetime(mut self, lifetime: Duration) -> Self {
        self.refresh_lifetime = lifetime;
        self
    }

    /// The clock that issues and judges tokens (default: the system clock), for example a
    /// [`kigo_core::runtime::ManualClock`].
    pub fn clock(mut self, clock: Arc<dyn TimeSource>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Serves HTTPS with a certificate made at start (see [`MockKigo::ca_certificate_pem`]).
    pub fn https(mut self) -> Self {
        self.https = true;
        self
    }

    /// Whether user-level tokens come with a refresh token (default: yes).
    pub fn refresh_tokens(mut self, enabled: bool) -> Self {
        self.refresh_tokens = enabled;
        self
    }

    /// How expiries appear in answers (default [`ExpiryShape::ExpiresIn`]).
    pub fn expiry_shape(mut self, shape: ExpiryShape) -> Self {
        self.shape = shape;
        self
    }

    /// The loopback port to listen on (default 0: any free port).
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Starts serving on `127.0.0.1`, on the caller's tokio runtime.
    pub async fn start(self) -> Result<MockKigo, MockError> {
        let mut pairs = self.partners;
        if pairs.is_empty() {
            pairs.push(("acme".to_owned(), Minter::default().mint("test-api-key")));
        }
        let mut partners = HashMap::new();
        for (partner, key) in &pairs {
            partners.insert(PartnerId::new(partner)?, key.clone());
        }
        let (first_partner, first_key) = pairs.swap_remove(0);
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], self.port)))
            .await
            .map_err(MockError::Bind)?;
        let address = listener.local_addr().map_err(MockError::Bind)?;
        let tls = if self.https {
            Some(tls::generate()?)
        } else {
            None
        };
        let lifetimes = Lifetimes {
            partner: self.lifetime.unwrap_or(DEFAULT_LIFETIME),
            user: self
                .user_lifetime
                .or(self.lifetime)
                .unwrap_or(DEFAULT_USER_LIFETIME),
            sso: self
                .sso_lifetime
                .or(self.lifetime)
                .unwrap_or(DEFAULT_SSO_LIFETIME),
            refresh: self.refresh_lifetime,
        };
        let shared = Arc::new(Shared {
            partners,
            lifetimes,
            refresh_tokens: self.refresh_tokens,
            shape: Mutex::new(self.shape),
            clock: self.clock.unwrap_or_else(|| Arc::new(SystemClock::new())),
            ledger: Mutex::default(),
            faults: Mutex::default(),
            minter: Minter::default(),
            shutdown: watch::Sender::new(false),
        });
        let scheme = if tls.is_some() { "https" } else { "http" };
        let (ca_pem, acceptor) = match tls {
            Some(tls) => (Some(tls.ca_pem), Some(tls.acceptor)),
            None => (None, None),
        };
        tokio::spawn(server::run(listener, Arc::clone(&shared), acceptor));
        Ok(MockKigo {
            shared,
            base_url: format!("{scheme}://{address}"),
            ca_pem,
            api_key: first_key,
            partner_id: PartnerId::new(first_partner)?,
        })
    }
}

/// A running mock Kigo API. Stops when dropped. Its `Debug` shows the base URL, the partner IDs
/// and counts, never a key or token.
pub struct MockKigo {
    shared: Arc<Shared>,
    base_url: String,
    ca_pem: Option<String>,
    api_key: String,
    partner_id: PartnerId,
}

impl fmt::Debug for MockKigo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockKigo")
            .field("base_url", &self.base_url)
            .field("partner_id", &self.partner_id)
            .field("shared", &self.shared)
            .finish_non_exhaustive()
    }
}

impl MockKigo {
    /// Starts configuring a mock.
    pub fn builder() -> MockKigoBuilder {
        MockKigoBuilder {
            partners: Vec::new(),
            lifetime: None,
            user_lifetime: None,
            sso_lifetime: None,
            refresh_lifetime: DEFAULT_REFRESH_LIFETIME,
            clock: None,
            https: false,
            refresh_tokens: true,
            shape: ExpiryShape::default(),
            port: 0,
        }
    }

    /// Starts a mock with the defaults: one partner, 30-minute partner tokens, 1-hour user tokens
    /// with 1-year refresh tokens, plain HTTP.
    pub async fn start() -> Result<Self, MockError> {
        Self::builder().start().await
    }

    /// `http://127.0.0.1:<port>` (or `https://...`), without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The API key of the first configured partner (a test secret: tests check that it never
    /// shows up in logs or errors).
    pub fn api_key(&self) -> &str {
        &self.api_key
    }

    /// The first configured partner.
    pub fn partner_id(&self) -> &PartnerId {
        &self.partner_id
    }

    /// The partner-level key of the first configured partner.
    pub fn partner_key(&self) -> TokenKey {
        TokenKey::partner(self.partner_id.clone())
    }

    /// The certificate authority to trust for HTTPS (PEM); `None` for plain HTTP.
    pub fn ca_certificate_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// A reading of the counters.
    pub fn counters(&self) -> Counters {
        self.shared.ledger().counters()
    }

    /// Every request to an endpoint so far, in order of arrival.
    pub fn seen(&self) -> Vec<SeenRequest> {
        self.shared.ledger().seen()
    }

    /// Tokens created for `key` so far.
    pub fn creations(&self, key: &TokenKey) -> u64 {
        self.counters().creations_for(key)
    }

    /// SSO sessions created so far for `user` in `program` (of the first configured partner),
    /// single-use ones included.
    pub fn sso_creations(&self, program: Option<&str>, user: &UserId) -> u64 {
        self.counters()
            .sso_creations_for(&self.partner_id, program, user)
    }

    /// Every SSO session created so far, in order.
    pub fn sso_sessions(&self) -> Vec<SsoSessionSeen> {
        self.shared.ledger().sso_seen()
    }

    /// The URL of the mock's stand-in for a Kigo-hosted page ([`SSO_PAGE_PATH`]).
    pub fn sso_page_url(&self) -> String {
        format!("{}{SSO_PAGE_PATH}", self.base_url)
    }

    /// Makes the next requests to `endpoint` misbehave, one fault per request, in order.
    pub fn inject(&self, endpoint: Endpoint, faults: impl IntoIterator<Item = Fault>) {
        self.shared.faults().once(endpoint, faults);
    }

    /// Makes every request to `endpoint` misbehave (after any scripted ones); `None` stops it.
    pub fn inject_always(&self, endpoint: Endpoint, fault: Option<Fault>) {
        self.shared.faults().always(endpoint, fault);
    }

    /// Forgets every scripted and standing fault.
    pub fn clear_faults(&self) {
        self.shared.faults().clear();
    }

    /// Revokes every session token issued so far; returns how many were still valid.
    pub fn revoke_all(&self) -> usize {
        self.shared.ledger().revoke_all(self.shared.clock.now())
    }

    /// Changes how expiries appear in later answers.
    pub fn set_expiry_shape(&self, shape: ExpiryShape) {
        *lock(&self.shared.shape) = shape;
    }

    /// Stops serving: the listener and every connection close, hanging requests end.
    pub fn shutdown(&self) {
        self.shared.shutdown.send_replace(true);
    }
}

impl Drop for MockKigo {
    fn drop(&mut self) {
        self.shutdown();
    }
}
