//! A partner backend, wired as in production: one manager for the partner-level token (shared by
//! the fleet through a store), one for user-level tokens (what the front end receives), and the
//! authenticated client for the backend's own calls to the Kigo API.
//!
//! Runs against an in-process mock Kigo API unless `KIGO_API_KEY`, `KIGO_PARTNER_ID` and
//! `KIGO_BASE_URL` are set. Prints what a front end would receive, with the token redacted.

use std::process::ExitCode;
use std::sync::Arc;

use examples::{real_api_requested, say, seconds_until};
use kigo_core::{MemoryStore, TokenHandle, TokenManager, TokenStore, UserId};
use kigo_http::{ApiKey, Credentials, KigoApi, KigoClient};
use kigo_testkit::mock::{MockKigo, PROTECTED_PATH};

/// The backend's long-lived parts: build once at start, share across request handlers.
struct Backend {
    api: KigoApi,
    partner: TokenHandle,
    users: TokenManager,
    kigo: KigoClient,
}

impl Backend {
    fn new(api: KigoApi, store: Arc<dyn TokenStore>) -> Result<Self, Failure> {
        // The partner-level token never leaves the backend.
        let partners = api.partner_manager().store(Arc::clone(&store)).build()?;
        let partner = partners.handle(api.partner_key())?;
        // User-level tokens, created with the partner token; at most 10 000 kept in memory. Its
        // scope is this partner's users: it can never hand out the partner-level token.
        let users = api
            .user_manager(&partners)?
            .store(store)
            .user_key_capacity(10_000)
            .build()?;
        let kigo = api.client(partner.clone());
        Ok(Self {
            api,
            partner,
            users,
            kigo,
        })
    }

    /// What a `GET /session` handler of the backend returns to a signed-in user's front end.
    async fn session_for_front_end(&self, user: &str) -> Result<String, Failure> {
        let key = self.api.user_key(UserId::new(user)?);
        let token = self.users.token(&key).await?;
        // A real handler would put `token.secret().expose()` in the JSON; this demo redacts it.
        Ok(format!(
            r#"{{"session_token":"[redacted {}]","expires_in":{:.0}}}"#,
            token.fingerprint(),
            seconds_until(token.expires_at())
        ))
    }
}

type Failure = Box<dyn std::error::Error>;

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            say(format_args!("partner backend failed: {error}"));
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Failure> {
    // Keep the mock alive for the whole run when no real API is configured.
    let (api, mock) = if real_api_requested() {
        (KigoApi::from_env()?, None)
    } else {
        let mock = MockKigo::start().await?;
        let credentials = Credentials::new(
            ApiKey::new(mock.api_key())?,
            mock.partner_id().clone(),
            mock.base_url(),
        )?;
        (KigoApi::builder(credentials).build()?, Some(mock))
    };
    // In production: a Redis or SQL store shared by every replica.
    let backend = Backend::new(api, Arc::new(MemoryStore::new()))?;

    for user in ["alice", "bob"] {
        let answer = backend.session_for_front_end(user).await?;
        say(format_args!("GET /session as {user:<5} -> {answer}"));
    }
    if mock.is_some() {
        let response = backend.kigo.send(backend.kigo.get(PROTECTED_PATH)?).await?;
        say(format_args!(
            "backend call to {PROTECTED_PATH} -> {} {}",
            response.status(),
            response.text().await?
        ));
    }
    if let Some(token) = backend.partner.cached() {
        say(format_args!(
            "partner-level token {} stays in the backend, valid {:.0} s more",
            token.fingerprint(),
            seconds_until(token.expires_at())
        ));
    }
    backend.users.shutdown().await;
    Ok(())
}
