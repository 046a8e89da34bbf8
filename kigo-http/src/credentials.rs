//! The partner's secrets and where the API is: from the environment or given in code.

use std::fmt;

use http::HeaderValue;
use kigo_core::PartnerId;
use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};

use crate::error::ConfigError;

/// The environment variable holding the API key.
pub const API_KEY_VAR: &str = "KIGO_API_KEY";
/// The environment variable holding the partner ID.
pub const PARTNER_ID_VAR: &str = "KIGO_PARTNER_ID";
/// The environment variable holding the base URL of the Kigo API.
pub const BASE_URL_VAR: &str = "KIGO_BASE_URL";

/// A Kigo API key. Its `Debug` says `[redacted]`, it has no `Display`, and nothing in this crate
/// logs it or puts it in an error.
#[derive(Clone)]
pub struct ApiKey {
    key: SecretString,
    /// The same key as a header value marked sensitive, checked once here.
    header: HeaderValue,
}

impl ApiKey {
    /// Wraps `key`, without surrounding whitespace (a secret file's trailing newline); refuses an
    /// empty key or one that cannot travel in a header.
    pub fn new(key: impl Into<String>) -> Result<Self, ConfigError> {
        Self::parse(key.into(), "api_key")
    }

    /// Like [`ApiKey::new`], naming `setting` (a variable or argument) in errors.
    fn parse(key: String, setting: &'static str) -> Result<Self, ConfigError> {
        let key = SecretString::from(key);
        let text = key.expose_secret().trim();
        if text.is_empty() {
            return Err(ConfigError::invalid(setting, "the API key is empty"));
        }
        let not_visible = || {
            ConfigError::invalid(
                setting,
                "the API key holds characters that are not visible ASCII",
            )
        };
        if !text.bytes().all(|byte| byte.is_ascii_graphic()) {
            return Err(not_visible());
        }
        let mut header = HeaderValue::from_str(text).map_err(|_| not_visible())?;
        header.set_sensitive(true);
        Ok(Self {
            key: SecretString::from(text),
            header,
        })
    }

    /// The key itself, for the one request that sends it.
    pub(crate) fn expose(&self) -> &str {
        self.key.expose_secret()
    }

    /// The key as a header value marked sensitive.
    pub(crate) fn header(&self) -> HeaderValue {
        self.header.clone()
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// What a partner needs to talk to the Kigo API: its API key, its partner ID and the base URL.
#[derive(Clone)]
pub struct Credentials {
    api_key: ApiKey,
    partner_id: PartnerId,
    base_url: Url,
}

impl Credentials {
    /// Credentials given in code. `base_url` is the API's root, e.g. `https://<host>`; its scheme
    /// is checked when the [`crate::KigoApi`] is built.
    pub fn new(
        api_key: ApiKey,
        partner_id: PartnerId,
        base_url: &str,
    ) -> Result<Self, ConfigError> {
        Ok(Self {
            api_key,
            partner_id,
            base_url: parse_base_url(base_url)?,
        })
    }

    /// Reads [`API_KEY_VAR`], [`PARTNER_ID_VAR`] and [`BASE_URL_VAR`]. A missing or empty
    /// variable gives an error that names it (never a value).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`Credentials::from_env`], with the variables looked up by `lookup` (for a vault, a
    /// config file, or tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let var = |name: &'static str| {
            lookup(name)
                .filter(|value| !value.trim().is_empty())
                .ok_or(ConfigError::MissingVariable { variable: name })
        };
        let api_key = ApiKey::parse(var(API_KEY_VAR)?, API_KEY_VAR)?;
        let partner_id = PartnerId::new(var(PARTNER_ID_VAR)?.trim())
            .map_err(|_| ConfigError::invalid(PARTNER_ID_VAR, "not a valid partner ID"))?;
        Self::new(api_key, partner_id, var(BASE_URL_VAR)?.trim())
    }

    /// The API key.
    pub fn api_key(&self) -> &ApiKey {
        &self.api_key
    }

    /// The partner ID.
    pub fn partner_id(&self) -> &PartnerId {
        &self.partner_id
    }

    /// The base URL of the API.
    pub fn base_url(&self) -> &Url {
        &self.base_url
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("api_key", &self.api_key)
            .field("partner_id", &self.partner_id)
            .field("base_url", &self.base_url.as_str())
            .finish()
    }
}

fn parse_base_url(text: &str) -> Result<Url, ConfigError> {
    let url =
        Url::parse(text).map_err(|_| ConfigError::invalid(BASE_URL_VAR, "not an absolute URL"))?;
    if url.host_str().is_none() {
        return Err(ConfigError::invalid(BASE_URL_VAR, "the URL has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ConfigError::invalid(
            BASE_URL_VAR,
            "the URL must not carry user information",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ConfigError::invalid(
            BASE_URL_VAR,
            "the URL must not have a query or fragment",
        ));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn surrounding_whitespace_is_trimmed_and_errors_name_the_setting() {
        let key = ApiKey::new("sk_test_123\n").unwrap();
        assert_eq!(key.expose(), "sk_test_123");
        assert_eq!(key.header(), "sk_test_123");
        assert!(key.header().is_sensitive());
        for bad in ["", " \n", "sk test"] {
            assert!(
                matches!(
                    ApiKey::new(bad),
                    Err(ConfigError::Invalid {
                        setting: "api_key",
                        ..
                    })
                ),
                "{bad:?}"
            );
        }
        let from_env = Credentials::from_lookup(|name| match name {
            API_KEY_VAR => Some("sk test".to_owned()),
            PARTNER_ID_VAR => Some("acme".to_owned()),
            _ => Some("https://kigo.example.com".to_owned()),
        });
        assert!(matches!(
            from_env,
            Err(ConfigError::Invalid {
                setting: API_KEY_VAR,
                ..
            })
        ));
    }
}
