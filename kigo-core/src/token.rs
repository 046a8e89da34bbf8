//! Session tokens: the secret, its non-secret fingerprint, its absolute validity and its generation.

use std::fmt;
use std::time::{Duration, SystemTime};

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

/// A secret string (a session token or a refresh token) that never shows in Debug output.
///
/// There is no `Display`; reading the value takes an explicit [`TokenSecret::expose`].
#[derive(Clone)]
pub struct TokenSecret(SecretString);

impl TokenSecret {
    /// Wraps `secret`.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(SecretString::from(secret.into()))
    }

    /// The secret itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for TokenSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A non-secret identity of a token: the first 16 bytes of the SHA-256 of its secret.
///
/// Used to say *which* token was rejected (401 handling, store invalidation) and in logs, without
/// ever carrying the token itself.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 16]);

impl Fingerprint {
    /// The fingerprint of `secret`.
    pub fn of(secret: &str) -> Self {
        let digest = Sha256::digest(secret.as_bytes());
        let mut bytes = [0; 16];
        bytes.copy_from_slice(&digest[..16]);
        Self(bytes)
    }

    /// Rebuilds a fingerprint from its bytes (as kept by a store).
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// Parses the 32 lowercase hex digits that `Display` writes.
    pub fn from_hex(hex: &str) -> Option<Self> {
        if hex.len() != 32 || !hex.is_ascii() {
            return None;
        }
        let mut bytes = [0; 16];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(Self(bytes))
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// Why a token could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidToken {
    /// The token string is empty.
    #[error("the token is empty")]
    Empty,
    /// The token holds characters that cannot travel in an `Authorization` header.
    #[error("the token holds characters that are not visible ASCII")]
    NotHeaderSafe,
    /// The expiry is not after the issue time.
    #[error("the token expires at or before its issue time")]
    NonPositiveLifetime,
}

/// A session token with its validity.
///
/// `issued_at` is the send time of the request that created it, on the creating replica's clock;
/// `expires_at` is absolute. Both are stored so that any replica can judge the token, whatever its
/// own clock says (see [`crate::ExpiryPolicy`] for the skew allowance).
#[derive(Clone)]
pub struct Token {
    secret: TokenSecret,
    bearer: TokenSecret,
    fingerprint: Fingerprint,
    issued_at: SystemTime,
    expires_at: SystemTime,
    generation: u64,
    refresh: Option<TokenSecret>,
}

impl Token {
    /// Builds a token, checking that the secret can be sent and that the lifetime is positive.
    pub fn new(
        secret: TokenSecret,
        issued_at: SystemTime,
        expires_at: SystemTime,
    ) -> Result<Self, InvalidToken> {
        let text = secret.expose();
        if text.is_empty() {
            return Err(InvalidToken::Empty);
        }
        if !text.bytes().all(|byte| byte.is_ascii_graphic()) {
            return Err(InvalidToken::NotHeaderSafe);
        }
        if expires_at <= issued_at {
            return Err(InvalidToken::NonPositiveLifetime);
        }
        Ok(Self {
            bearer: TokenSecret::new(format!("Bearer {text}")),
            fingerprint: Fingerprint::of(text),
            secret,
            issued_at,
            expires_at,
            generation: 0,
            refresh: None,
        })
    }

    /// A stand-in for "no token", never handed out: the manager's empty slot holds it so that the
    /// hot path needs no `Option`.
    pub(crate) fn placeholder() -> Self {
        Self {
            secret: TokenSecret::new(""),
            bearer: TokenSecret::new(""),
            fingerprint: Fingerprint([0; 16]),
            issued_at: SystemTime::UNIX_EPOCH,
            expires_at: SystemTime::UNIX_EPOCH,
            generation: 0,
            refresh: None,
        }
    }

    /// Attaches a refresh token (user-level tokens may come with one).
    #[must_use]
    pub fn with_refresh_token(mut self, refresh: TokenSecret) -> Self {
        self.refresh = Some(refresh);
        self
    }

    /// Sets the generation: the fence of the lease under which it was committed to a store.
    ///
    /// Sources leave it at 0; the manager and stores set it.
    #[must_use]
    pub fn with_generation(mut self, generation: u64) -> Self {
        self.generation = generation;
        self
    }

    /// The token itself.
    pub fn secret(&self) -> &TokenSecret {
        &self.secret
    }

    /// `Bearer <token>`, built once so that sending a request copies instead of formatting.
    pub fn bearer(&self) -> &TokenSecret {
        &self.bearer
    }

    /// The refresh token, if the API returned one.
    pub fn refresh_token(&self) -> Option<&TokenSecret> {
        self.refresh.as_ref()
    }

    /// The non-secret identity of this token.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// When the creating request was sent (creating replica's clock).
    pub fn issued_at(&self) -> SystemTime {
        self.issued_at
    }

    /// When the token stops being accepted.
    pub fn expires_at(&self) -> SystemTime {
        self.expires_at
    }

    /// `expires_at - issued_at`.
    pub fn lifetime(&self) -> Duration {
        self.expires_at
            .duration_since(self.issued_at)
            .unwrap_or_default()
    }

    /// The store generation this token was committed under; 0 if never committed.
    pub fn generation(&self) -> u64 {
        self.generation
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("secret", &self.secret)
            .field("fingerprint", &self.fingerprint)
            .field("issued_at", &self.issued_at)
            .field("expires_at", &self.expires_at)
            .field("generation", &self.generation)
            .field("refresh", &self.refresh)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "tok_live_9f8e7d6c5b4a";

    fn token() -> Token {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        Token::new(
            TokenSecret::new(SECRET),
            now,
            now + Duration::from_secs(1800),
        )
        .unwrap()
        .with_refresh_token(TokenSecret::new("refresh_0123456789"))
    }

    #[test]
    fn debug_never_shows_secrets() {
        let token = token();
        for text in [format!("{token:?}"), format!("{token:#?}")] {
            assert!(!text.contains(SECRET), "{text}");
            assert!(!text.contains("refresh_0123456789"), "{text}");
            assert!(text.contains("[redacted]"));
        }
        assert_eq!(format!("{:?}", token.bearer()), "[redacted]");
        assert_eq!(token.bearer().expose(), format!("Bearer {SECRET}"));
    }

    #[test]
    fn fingerprint_identifies_without_revealing() {
        let token = token();
        let shown = token.fingerprint().to_string();
        assert_eq!(shown.len(), 32);
        assert!(!shown.contains(SECRET));
        assert_eq!(Fingerprint::from_hex(&shown), Some(token.fingerprint()));
        assert_ne!(token.fingerprint(), Fingerprint::of("another"));
        assert_eq!(Fingerprint::from_hex("zz"), None);
    }

    #[test]
    fn bad_tokens_are_refused() {
        let now = SystemTime::UNIX_EPOCH;
        let later = now + Duration::from_secs(1);
        let new = |secret: &str, expires| Token::new(TokenSecret::new(secret), now, expires);
        assert_eq!(new("", later).unwrap_err(), InvalidToken::Empty);
        assert_eq!(new("a b", later).unwrap_err(), InvalidToken::NotHeaderSafe);
        assert_eq!(
            new("a\r\n", later).unwrap_err(),
            InvalidToken::NotHeaderSafe
        );
        assert_eq!(
            new("abc", now).unwrap_err(),
            InvalidToken::NonPositiveLifetime
        );
        assert_eq!(
            new("abc", later).unwrap().lifetime(),
            Duration::from_secs(1)
        );
    }
}
