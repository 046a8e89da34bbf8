//! The service's long-lived Kigo parts, built once at start and shared by every handler: the
//! store, the partner-level manager (the token never leaves the backend), user sessions, SSO
//! sessions, and in demo mode the mock Kigo API they talk to.

use std::path::Path;
use std::sync::Arc;

use examples::real_api_requested;
use kigo_core::TokenManager;
use kigo_core::codec::{Keyring, SEALING_KEYS_VAR, SealingKey};
use kigo_core::store::{STORE_URL_VAR, StoreAdmin};
use kigo_http::reqwest::Url;
use kigo_http::{ApiKey, Credentials, KigoApi, SsoSessions, UserTokens};
use kigo_store_sql::SqlStore;
use kigo_stores::AnyStore;
use kigo_testkit::mock::MockKigo;
use secrecy::ExposeSecret;

use crate::Failure;
use crate::options::{DEFAULT_SSO_PAGE, Options};

/// At most this many users' tokens are kept in memory per manager.
const USER_KEY_CAPACITY: usize = 10_000;

/// Everything the handlers need from Kigo. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Kigo {
    pub(crate) api: KigoApi,
    pub(crate) partners: TokenManager,
    pub(crate) users: UserTokens,
    pub(crate) sso: SsoSessions,
    pub(crate) sso_page: Url,
    /// The mock Kigo API of demo mode, kept alive as long as the service.
    _demo: Option<Arc<Demo>>,
}

/// What demo mode runs for itself: the mock API and the temp dir of its SQLite file.
struct Demo {
    _mock: MockKigo,
    _dir: Option<tempfile::TempDir>,
}

impl Kigo {
    /// Opens and migrates the store, builds the managers, and starts getting the partner-level
    /// token in the background (`/healthz` says when it is there).
    pub(crate) async fn start(options: &Options) -> Result<Self, Failure> {
        let store_url = std::env::var(STORE_URL_VAR)
            .ok()
            .filter(|url| !url.trim().is_empty());
        let (api, store, sso_page, demo) = if real_api_requested() {
            let (api, store, page) = real(options, store_url).await?;
            (api, store, page, None)
        } else {
            let (api, store, page, demo) = demo(options, store_url).await?;
            (api, store, page, Some(Arc::new(demo)))
        };
        store.migrate().await?;
        let partners = api.partner_manager().store(store.clone()).build()?;
        let warm_up = partners.handle(api.partner_key())?;
        let users = api.user_tokens(&partners, |manager| {
            manager
                .store(store.clone())
                .user_key_capacity(USER_KEY_CAPACITY)
        })?;
        let sso = api.sso_sessions(&partners, |manager| {
            manager.store(store).user_key_capacity(USER_KEY_CAPACITY)
        })?;
        tokio::spawn(async move {
            if let Err(error) = warm_up.token().await {
                tracing::warn!(error = %error, "no partner-level token yet");
            }
        });
        Ok(Self {
            api,
            partners,
            users,
            sso,
            sso_page,
            _demo: demo,
        })
    }

    /// Stops the managers: their refresh leases are released for the rest of the fleet.
    pub(crate) async fn shutdown(&self) {
        self.sso.manager().shutdown().await;
        self.users.manager().shutdown().await;
        self.partners.shutdown().await;
    }
}

/// The API from the environment, and the store `KIGO_STORE_URL` names (else the SQLite file).
async fn real(
    options: &Options,
    store_url: Option<String>,
) -> Result<(KigoApi, AnyStore, Url), Failure> {
    let url = store_url.unwrap_or_else(|| sqlite_url(&options.sqlite_file));
    let store = kigo_stores::open(&url).await?;
    let page = match &options.sso_page {
        Some(page) => page.clone(),
        None => Url::parse(DEFAULT_SSO_PAGE)?,
    };
    Ok((KigoApi::from_env()?, store, page))
}

/// The mock Kigo API, an API configured for it, and the demo store.
async fn demo(
    options: &Options,
    store_url: Option<String>,
) -> Result<(KigoApi, AnyStore, Url, Demo), Failure> {
    tracing::warn!("demo mode: no Kigo credentials set, using an in-process mock Kigo API");
    let mock = MockKigo::start().await?;
    let credentials = Credentials::new(
        ApiKey::new(mock.api_key())?,
        mock.partner_id().clone(),
        mock.base_url(),
    )?;
    let api = KigoApi::builder(credentials).build()?;
    let page = match &options.sso_page {
        Some(page) => page.clone(),
        None => Url::parse(&mock.sso_page_url())?,
    };
    let (store, dir) = demo_store(store_url).await?;
    let demo = Demo {
        _mock: mock,
        _dir: dir,
    };
    Ok((api, store, page, demo))
}

/// The store of demo mode: `KIGO_STORE_URL` if set (sealed with `KIGO_SEALING_KEYS`), else a
/// fresh SQLite file for this run (the mock's tokens die with it), sealed with a key made for the
/// run unless `KIGO_SEALING_KEYS` gives one.
async fn demo_store(url: Option<String>) -> Result<(AnyStore, Option<tempfile::TempDir>), Failure> {
    if let Some(url) = url {
        return Ok((kigo_stores::open(&url).await?, None));
    }
    let keyring = match std::env::var(SEALING_KEYS_VAR) {
        Ok(keys) if !keys.trim().is_empty() => Keyring::parse(&keys)?,
        _ => Keyring::parse(SealingKey::generate_base64().expose_secret())?,
    };
    let dir = tempfile::tempdir()?;
    let store = SqlStore::builder()
        .sqlite_file(dir.path().join("kigo-tokens.db"))
        .keyring(keyring)
        .build()
        .await?;
    Ok((AnyStore::Sql(store), Some(dir)))
}

fn sqlite_url(path: &Path) -> String {
    format!("sqlite:{}", path.display())
}
