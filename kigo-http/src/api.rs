//! [`KigoApi`]: the credentials, the assumptions about the API and the HTTP client, checked once
//! and shared by the token sources and the authenticated client.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};
use kigo_core::{TokenHandle, TokenKey, UserId};
use reqwest::Url;

use crate::client::KigoClient;
use crate::config::{ApiConfig, HttpSettings, USER_AGENT};
use crate::credentials::Credentials;
use crate::error::ConfigError;
use crate::layer::{KigoLayer, Replay};
use crate::origin::{check_scheme, is_loopback, join_path};
use crate::partner::PartnerTokenSource;
use crate::sso::{SsoKeys, SsoSessionSource};
use crate::user::UserTokenSource;

/// The Kigo API as one partner sees it. Cheap to clone.
///
/// ```no_run
/// # async fn demo(store: impl kigo_core::TokenStore) -> Result<(), Box<dyn std::error::Error>> {
/// use kigo_http::KigoApi;
///
/// let api = KigoApi::from_env()?; // KIGO_API_KEY, KIGO_PARTNER_ID, KIGO_BASE_URL
/// let manager = api.partner_manager().store(store).build()?;
/// let client = api.client(manager.handle(api.partner_key())?);
/// let response = client.send(client.get("/api/v1/some/endpoint")?).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct KigoApi {
    inner: Arc<ApiInner>,
}

#[derive(Debug)]
pub(crate) struct ApiInner {
    pub(crate) credentials: Credentials,
    pub(crate) config: ApiConfig,
    pub(crate) http: reqwest::Client,
    pub(crate) max_body_bytes: usize,
    /// How long one token request may take, set on each request (so a custom client keeps it).
    pub(crate) request_timeout: Duration,
    /// Headers every token request carries besides its own.
    pub(crate) token_headers: HeaderMap,
    pub(crate) partner_session_url: Url,
    pub(crate) user_session_url: Url,
    pub(crate) user_refresh_url: Url,
    pub(crate) sso_session_url: Url,
}

/// Configures a [`KigoApi`].
#[derive(Debug)]
pub struct KigoApiBuilder {
    credentials: Credentials,
    config: ApiConfig,
    settings: HttpSettings,
    /// Whether a connect timeout or certificate was set, which a custom client would ignore.
    transport_set: bool,
    client: Option<reqwest::Client>,
    token_headers: HeaderMap,
}

impl KigoApiBuilder {
    /// Replaces the assumptions about the API (paths, fields, lifetimes).
    pub fn config(mut self, config: ApiConfig) -> Self {
        self.config = config;
        self
    }

    /// The longest a whole request may take, body included (default 8 s). It is set on each
    /// token request, so it holds for a client of your own too. The managers from
    /// [`KigoApi::partner_manager`] and [`KigoApi::user_manager`] derive their timeouts from it.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.settings.timeout = timeout;
        self
    }

    /// Adds a header to every token request (an API gateway's key, a tracing header), without
    /// bringing a client of your own. Its value is marked sensitive: it never shows in `Debug`.
    pub fn token_request_header(mut self, name: HeaderName, mut value: HeaderValue) -> Self {
        value.set_sensitive(true);
        self.token_headers.append(name, value);
        self
    }

    /// The longest a connection (TCP and TLS) may take to set up (default 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.settings.connect_timeout = timeout;
        self.transport_set = true;
        self
    }

    /// Trusts `certificate` as an authority too, besides the platform's (e.g. a test server's).
    /// Each call adds one.
    pub fn add_root_certificate(mut self, certificate: reqwest::Certificate) -> Self {
        self.settings.root_certificates.push(certificate);
        self.transport_set = true;
        self
    }

    /// Allows a plain `http://` base URL for a host that is not loopback (default: no). Proxies
    /// from the environment (`HTTP_PROXY`, `ALL_PROXY`) then still apply, and see what is sent.
    pub fn allow_insecure_http(mut self, allow: bool) -> Self {
        self.settings.allow_insecure_http = allow;
        self
    }

    /// The cap on a token answer's body (default 64 KiB).
    pub fn max_body_bytes(mut self, cap: usize) -> Self {
        self.settings.max_body_bytes = cap;
        self
    }

    /// Uses your own `reqwest::Client` instead of building one. Its connection settings and TLS
    /// are then yours: combining it with [`Self::connect_timeout`] or
    /// [`Self::add_root_certificate`] is refused at [`Self::build`]. The base URL check, the body
    /// cap, [`Self::timeout`] and [`Self::token_request_header`] still apply to token requests.
    /// For one extra header you need no client of your own.
    ///
    /// **Turn its redirects off** (`redirect(reqwest::redirect::Policy::none())`): on a `307` or
    /// `308` to another origin reqwest re-sends the request body (which holds the API key) and
    /// custom headers (such as an API-key header); it strips only `Authorization` and cookies.
    ///
    /// **Its proxies are its own**, and cannot be changed here: reqwest sends through the proxy
    /// that `HTTP_PROXY`, `HTTPS_PROXY` or `ALL_PROXY` names, loopback hosts included (only
    /// `NO_PROXY` exempts a host). For a loopback base URL build it with
    /// `reqwest::ClientBuilder::no_proxy`, as this crate does for its own client; else the API
    /// key and tokens of a plain `http://` base URL travel in clear text to the proxy.
    pub fn client(mut self, client: reqwest::Client) -> Self {
        self.client = Some(client);
        self
    }

    /// Checks the base URL (HTTPS unless loopback or opted in), the endpoint paths and the
    /// response fields, and builds the client: for a loopback base URL (`http` or `https`), one
    /// that uses no proxy. `localhost` counts as loopback when every address it resolves to
    /// now is one.
    pub fn build(self) -> Result<KigoApi, ConfigError> {
        let base = self.credentials.base_url();
        let loopback = is_loopback(base);
        check_scheme(base, loopback, self.settings.allow_insecure_http)?;
        self.config.response.check()?;
        let http = match self.client {
            Some(_) if self.transport_set => {
                return Err(ConfigError::invalid(
                    "client",
                    "a custom client keeps its own connect timeout and certificates; set them on it",
                ));
            }
            Some(client) => client,
            None => build_client(&self.settings, loopback)?,
        };
        let endpoint = |path: &str, setting| join_path(base, path, setting);
        Ok(KigoApi {
            inner: Arc::new(ApiInner {
                partner_session_url: endpoint(
                    &self.config.partner_session_path,
                    "partner_session_path",
                )?,
                user_session_url: endpoint(&self.config.user_session_path, "user_session_path")?,
                user_refresh_url: endpoint(&self.config.user_refresh_path, "user_refresh_path")?,
                sso_session_url: endpoint(&self.config.sso_session_path, "sso_session_path")?,
                credentials: self.credentials,
                config: self.config,
                http,
                max_body_bytes: self.settings.max_body_bytes,
                request_timeout: self.settings.timeout,
                token_headers: self.token_headers,
            }),
        })
    }
}

impl KigoApi {
    /// Starts configuring the API for `credentials`.
    pub fn builder(credentials: Credentials) -> KigoApiBuilder {
        KigoApiBuilder {
            credentials,
            config: ApiConfig::default(),
            settings: HttpSettings::default(),
            transport_set: false,
            client: None,
            token_headers: HeaderMap::new(),
        }
    }

    /// The API with credentials from the environment and every default.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::builder(Credentials::from_env()?).build()
    }

    /// The key of this partner's partner-level token.
    pub fn partner_key(&self) -> TokenKey {
        TokenKey::partner(self.inner.credentials.partner_id().clone())
    }

    /// The key of `user`'s user-level token.
    pub fn user_key(&self, user: UserId) -> TokenKey {
        TokenKey::user(self.inner.credentials.partner_id().clone(), user)
    }

    /// The source of partner-level tokens, for a `TokenManager`.
    pub fn partner_source(&self) -> PartnerTokenSource {
        PartnerTokenSource::new(Arc::clone(&self.inner))
    }

    /// The source of user-level tokens, creating them with the partner token of `partner`: a
    /// handle for [`KigoApi::partner_key`], else an error (a user-level handle would make user
    /// tokens with user tokens).
    pub fn user_source(&self, partner: TokenHandle) -> Result<UserTokenSource, ConfigError> {
        self.check_partner_handle(&partner)?;
        Ok(UserTokenSource::new(Arc::clone(&self.inner), partner))
    }

    /// The source of SSO sessions, with the partner token of `partner` (checked as for
    /// [`KigoApi::user_source`]).
    pub(crate) fn sso_source(&self, partner: TokenHandle) -> Result<SsoSessionSource, ConfigError> {
        self.check_partner_handle(&partner)?;
        let keys = SsoKeys::of(self.partner_key().partner_id()).map_err(|_| {
            ConfigError::invalid(
                "partner ID",
                "too long to name SSO sessions (at most 252 bytes)",
            )
        })?;
        Ok(SsoSessionSource::new(
            Arc::clone(&self.inner),
            partner,
            keys,
        ))
    }

    /// `partner` is the handle of this partner's partner-level token.
    fn check_partner_handle(&self, partner: &TokenHandle) -> Result<(), ConfigError> {
        if partner.key() != &self.partner_key() {
            return Err(ConfigError::invalid(
                "partner handle",
                "not the handle of this partner's partner-level token",
            ));
        }
        Ok(())
    }

    /// A client that sends requests to this API with the token of `handle`, renewing on 401.
    pub fn client(&self, handle: TokenHandle) -> KigoClient {
        KigoClient::new(self.inner.http.clone(), self.base_url().clone(), handle)
    }

    /// The same as a tower layer, for a tower HTTP client of your own (hyper-util's, tonic's)
    /// whose request bodies can be cloned (`Full<Bytes>`, `String`, ...); the one retry after a
    /// `401` sends a clone. Name the body type where the compiler cannot infer it:
    /// `api.layer::<Full<Bytes>>(handle)`.
    pub fn layer<B: Clone>(&self, handle: TokenHandle) -> KigoLayer<B> {
        self.layer_with(handle, Replay::by_clone())
    }

    /// The same as [`KigoApi::layer`] for any body type, replayed as `replay` says (e.g.
    /// [`Replay::never`] for tonic's bodies and other streams).
    pub fn layer_with<B>(&self, handle: TokenHandle, replay: Replay<B>) -> KigoLayer<B> {
        KigoLayer::new(handle, self.base_url(), replay)
    }

    /// The same as a `reqwest-middleware` middleware, for a client of your own (feature
    /// `reqwest-middleware`).
    #[cfg(feature = "reqwest-middleware")]
    pub fn middleware(&self, handle: TokenHandle) -> crate::KigoAuth {
        crate::KigoAuth::new(handle, self.base_url())
    }

    /// The base URL.
    pub fn base_url(&self) -> &Url {
        self.inner.credentials.base_url()
    }

    /// The HTTP client in use.
    pub fn http_client(&self) -> &reqwest::Client {
        &self.inner.http
    }

    /// How long one request may take: [`KigoApiBuilder::timeout`] (a client of your own is
    /// assumed to keep the default, 8 s).
    pub fn request_timeout(&self) -> Duration {
        self.inner.request_timeout
    }
}

/// The client for `settings`. For a `loopback` base URL it uses no proxy: reqwest would send
/// through the one `HTTP_PROXY`/`HTTPS_PROXY`/`ALL_PROXY` names, loopback included, carrying the
/// API key and tokens of a plain-http URL in clear text off the machine; and a proxy elsewhere
/// cannot reach this machine's loopback anyway.
fn build_client(settings: &HttpSettings, loopback: bool) -> Result<reqwest::Client, ConfigError> {
    let mut builder = reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .connect_timeout(settings.connect_timeout)
        .timeout(settings.timeout)
        .redirect(reqwest::redirect::Policy::none());
    if loopback {
        builder = builder.no_proxy();
    }
    for certificate in &settings.root_certificates {
        builder = builder.add_root_certificate(certificate.clone());
    }
    builder.build().map_err(ConfigError::HttpClient)
}
