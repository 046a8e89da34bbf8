//! The command line: where to listen, where the tokens live, where the SSO page is.

use std::net::SocketAddr;
use std::path::PathBuf;

use kigo_http::reqwest::Url;

/// The partner service: user sessions, SSO redirects and Kigo API calls for a partner's users,
/// one partner-level token for the whole fleet.
///
/// The store is `KIGO_STORE_URL` (Redis, PostgreSQL, MySQL/MariaDB or SQLite), sealed with
/// `KIGO_SEALING_KEYS`; without it, an SQLite file. With none of `KIGO_API_KEY`,
/// `KIGO_PARTNER_ID`, `KIGO_BASE_URL` set the service runs in demo mode: a mock Kigo API in the
/// process and, unless `KIGO_STORE_URL` is set, a fresh SQLite file sealed with a key made for
/// the run.
#[derive(Debug, clap::Parser)]
#[command(name = "partner_service", version)]
pub(crate) struct Options {
    /// The address to listen on (port 0: any free port; the bound address is printed).
    #[arg(long, env = "PARTNER_SERVICE_LISTEN", default_value = "127.0.0.1:8080")]
    pub(crate) listen: SocketAddr,

    /// The SQLite file that holds the tokens when `KIGO_STORE_URL` is not set (outside demo
    /// mode).
    #[arg(
        long,
        env = "PARTNER_SERVICE_SQLITE_FILE",
        default_value = "kigo-tokens.db"
    )]
    pub(crate) sqlite_file: PathBuf,

    /// The Kigo-hosted page `/kigo/sso` sends users to (with `?session-id=`) [default:
    /// <https://app.kigo.io/rewards>; in demo mode, the mock's stand-in page].
    #[arg(long, env = "KIGO_SSO_PAGE_URL")]
    pub(crate) sso_page: Option<Url>,

    /// The Kigo API path `GET /api/kigo` calls as the signed-in user (the default is the mock's
    /// protected endpoint: point it at the endpoint your front end needs).
    #[arg(long, env = "PARTNER_SERVICE_USER_CALL", default_value = kigo_testkit::mock::PROTECTED_PATH)]
    pub(crate) user_call: String,
}

/// The hosted page when none is given: an assumption, like the API paths, to check against the
/// partner's Kigo configuration.
pub(crate) const DEFAULT_SSO_PAGE: &str = "https://app.kigo.io/rewards";
