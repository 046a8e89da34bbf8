#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![cfg_attr(
    not(test),
    warn(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod api;
mod auth;
mod client;
mod config;
mod credentials;
mod error;
mod exchange;
mod expiring;
mod front_end;
mod layer;
mod managers;
#[cfg(feature = "reqwest-middleware")]
mod middleware;
mod origin;
mod parse;
mod partner;
mod partner_bearer;
mod sso;
mod user;

pub use api::{KigoApi, KigoApiBuilder};
pub use auth::{ClientMetrics, RetryOn401, SentWith};
pub use client::{ClientError, KigoClient};
pub use config::{ApiConfig, CredentialPlacement, ResponseFields, USER_AGENT};
pub use credentials::{API_KEY_VAR, ApiKey, BASE_URL_VAR, Credentials, PARTNER_ID_VAR};
pub use error::{ConfigError, CreateError, ErrorKind};
pub use front_end::{FrontEndSession, UserHandle, UserToken, UserTokens};
pub use layer::{KigoLayer, KigoService, KigoServiceError, Replay};
#[cfg(feature = "reqwest-middleware")]
pub use middleware::KigoAuth;
pub use partner::PartnerTokenSource;
pub use sso::{ProgramId, SESSION_ID_PARAMETER, SsoError, SsoRequest, SsoSession, SsoSessions};
pub use user::UserTokenSource;

pub use reqwest;
#[cfg(feature = "reqwest-middleware")]
pub use reqwest_middleware;
