//! How shared stores write a token: versioned JSON, optionally sealed with an AEAD cipher.
//!
//! Every shared store uses this one codec, so an entry written by one backend version is read the
//! same way by all, and corrupt, foreign or tampered entries are told apart from tokens.

use std::fmt;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::{Token, TokenKey, TokenSecret};

/// The entry format this version writes.
pub const FORMAT_VERSION: u32 = 1;

/// Why a stored entry is not a usable token. The store reports it; the manager replaces the entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CorruptEntry {
    /// Not an entry this codec wrote: not JSON, or fields missing or of the wrong type.
    #[error("the stored entry is malformed")]
    Malformed,
    /// Written by a format version this build does not know.
    #[error("the stored entry has unknown format version {0}")]
    UnknownVersion(u64),
    /// The entry decodes but does not hold a valid token (empty, unsendable, non-positive lifetime).
    #[error("the stored entry holds an invalid token")]
    InvalidToken,
    /// The entry is sealed but this codec has no key, or the other way round.
    #[error("the stored entry is {found}, but the store is configured for {expected} entries")]
    EncryptionMismatch {
        /// "encrypted" or "plain".
        found: &'static str,
        /// "encrypted" or "plain".
        expected: &'static str,
    },
    /// Decryption failed: wrong key, tampering, or an entry moved from another key.
    #[error("the stored entry failed authentication")]
    Unauthentic,
}

/// Encodes and decodes stored tokens for one store.
#[derive(Clone)]
pub struct EntryCodec {
    #[cfg(feature = "encryption")]
    cipher: Option<sealing::Sealer>,
}

impl fmt::Debug for EntryCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EntryCodec")
            .field("encrypted", &self.is_encrypted())
            .finish()
    }
}

impl Default for EntryCodec {
    fn default() -> Self {
        Self::plain()
    }
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    v: u64,
    #[serde(flatten)]
    body: Body,
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Body {
    Sealed { nonce: String, sealed: String },
    Plain(Payload),
}

#[derive(Serialize, Deserialize)]
struct Payload {
    token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    refresh: Option<String>,
    issued_at_ms: u64,
    expires_at_ms: u64,
}

impl EntryCodec {
    /// Stores tokens as plain JSON (anyone who can read the store can read the token).
    pub fn plain() -> Self {
        Self {
            #[cfg(feature = "encryption")]
            cipher: None,
        }
    }

    /// Seals tokens with XChaCha20-Poly1305 under `key`, bound to the token key they belong to.
    #[cfg(feature = "encryption")]
    pub fn encrypted(key: &EncryptionKey) -> Self {
        Self {
            cipher: Some(sealing::Sealer::new(key)),
        }
    }

    /// Whether entries are sealed.
    pub fn is_encrypted(&self) -> bool {
        #[cfg(feature = "encryption")]
        return self.cipher.is_some();
        #[cfg(not(feature = "encryption"))]
        false
    }

    /// The stored form of `token` under `key`.
    pub fn encode(&self, key: &TokenKey, token: &Token) -> String {
        let payload = Payload {
            token: token.secret().expose().to_owned(),
            refresh: token.refresh_token().map(|r| r.expose().to_owned()),
            issued_at_ms: millis(token.issued_at()),
            expires_at_ms: millis(token.expires_at()),
        };
        let body = self.seal(key, payload);
        serde_json::to_string(&Envelope {
            v: u64::from(FORMAT_VERSION),
            body,
        })
        .unwrap_or_default()
    }

    /// The token stored as `stored` under `key`, given the store's `generation` for it.
    pub fn decode(
        &self,
        key: &TokenKey,
        stored: &[u8],
        generation: u64,
    ) -> Result<Token, CorruptEntry> {
        #[derive(Deserialize)]
        struct Version {
            v: u64,
        }
        let version: Version =
            serde_json::from_slice(stored).map_err(|_| CorruptEntry::Malformed)?;
        if version.v != u64::from(FORMAT_VERSION) {
            return Err(CorruptEntry::UnknownVersion(version.v));
        }
        let envelope: Envelope =
            serde_json::from_slice(stored).map_err(|_| CorruptEntry::Malformed)?;
        let payload = self.open(key, envelope.body)?;
        let mut token = Token::new(
            TokenSecret::new(payload.token),
            from_millis(payload.issued_at_ms),
            from_millis(payload.expires_at_ms),
        )
        .map_err(|_| CorruptEntry::InvalidToken)?
        .with_generation(generation);
        if let Some(refresh) = payload.refresh {
            token = token.with_refresh_token(TokenSecret::new(refresh));
        }
        Ok(token)
    }

    fn seal(&self, key: &TokenKey, payload: Payload) -> Body {
        #[cfg(feature = "encryption")]
        if let Some(cipher) = &self.cipher {
            let plain = serde_json::to_vec(&payload).unwrap_or_default();
            let (nonce, sealed) = cipher.seal(&key.storage_id(), &plain);
            return Body::Sealed { nonce, sealed };
        }
        let _ = key;
        Body::Plain(payload)
    }

    fn open(&self, key: &TokenKey, body: Body) -> Result<Payload, CorruptEntry> {
        let _ = key;
        match body {
            #[cfg(feature = "encryption")]
            Body::Sealed { nonce, sealed } => {
                let Some(cipher) = &self.cipher else {
                    return Err(mismatch("encrypted", "plain"));
                };
                let plain = cipher.open(&key.storage_id(), &nonce, &sealed)?;
                serde_json::from_slice(&plain).map_err(|_| CorruptEntry::Malformed)
            }
            #[cfg(not(feature = "encryption"))]
            Body::Sealed { .. } => Err(mismatch("encrypted", "plain")),
            Body::Plain(payload) => {
                if self.is_encrypted() {
                    return Err(mismatch("plain", "encrypted"));
                }
                Ok(payload)
            }
        }
    }
}

fn mismatch(found: &'static str, expected: &'static str) -> CorruptEntry {
    CorruptEntry::EncryptionMismatch { found, expected }
}

fn millis(time: SystemTime) -> u64 {
    let since_epoch = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX)
}

fn from_millis(ms: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
}

#[cfg(feature = "encryption")]
pub use sealing::EncryptionKey;

#[cfg(feature = "encryption")]
mod sealing {
    use std::fmt;

    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
    use chacha20poly1305::{XChaCha20Poly1305, XNonce};

    use super::CorruptEntry;

    /// A 256-bit key for sealing tokens at rest, from a vault or the environment.
    #[derive(Clone)]
    pub struct EncryptionKey([u8; 32]);

    impl EncryptionKey {
        /// Wraps 32 raw bytes.
        pub fn from_bytes(bytes: [u8; 32]) -> Self {
            Self(bytes)
        }

        /// Parses standard base64 of exactly 32 bytes.
        pub fn from_base64(text: &str) -> Option<Self> {
            let bytes = STANDARD.decode(text.trim()).ok()?;
            Some(Self(bytes.try_into().ok()?))
        }
    }

    impl fmt::Debug for EncryptionKey {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("EncryptionKey([redacted])")
        }
    }

    #[derive(Clone)]
    pub(super) struct Sealer(XChaCha20Poly1305);

    impl Sealer {
        pub(super) fn new(key: &EncryptionKey) -> Self {
            Self(XChaCha20Poly1305::new(&key.0.into()))
        }

        /// Seals `plain`, binding it to `aad` (the token key) so an entry cannot be moved.
        pub(super) fn seal(&self, aad: &str, plain: &[u8]) -> (String, String) {
            let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
            let sealed = self
                .0
                .encrypt(
                    &nonce,
                    Payload {
                        msg: plain,
                        aad: aad.as_bytes(),
                    },
                )
                .unwrap_or_default();
            (STANDARD.encode(nonce), STANDARD.encode(sealed))
        }

        pub(super) fn open(
            &self,
            aad: &str,
            nonce: &str,
            sealed: &str,
        ) -> Result<Vec<u8>, CorruptEntry> {
            let nonce = STANDARD
                .decode(nonce)
                .map_err(|_| CorruptEntry::Malformed)?;
            let sealed = STANDARD
                .decode(sealed)
                .map_err(|_| CorruptEntry::Malformed)?;
            let nonce: [u8; 24] = nonce.try_into().map_err(|_| CorruptEntry::Malformed)?;
            self.0
                .decrypt(
                    &XNonce::from(nonce),
                    Payload {
                        msg: &sealed,
                        aad: aad.as_bytes(),
                    },
                )
                .map_err(|_| CorruptEntry::Unauthentic)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PartnerId;

    fn key(partner: &str) -> TokenKey {
        TokenKey::partner(PartnerId::new(partner).unwrap())
    }

    fn token() -> Token {
        let issued = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        Token::new(
            TokenSecret::new("secret-token"),
            issued,
            issued + Duration::from_secs(1800),
        )
        .unwrap()
        .with_refresh_token(TokenSecret::new("refresh-token"))
    }

    fn assert_same(a: &Token, b: &Token) {
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_eq!(a.issued_at(), b.issued_at());
        assert_eq!(a.expires_at(), b.expires_at());
        assert_eq!(
            a.refresh_token().map(TokenSecret::expose),
            b.refresh_token().map(TokenSecret::expose)
        );
    }

    #[test]
    fn plain_round_trip_keeps_everything_but_generation() {
        let codec = EntryCodec::plain();
        let stored = codec.encode(&key("a"), &token());
        let decoded = codec.decode(&key("a"), stored.as_bytes(), 7).unwrap();
        assert_same(&decoded, &token());
        assert_eq!(decoded.generation(), 7);
    }

    #[test]
    fn garbage_and_foreign_versions_are_reported() {
        let codec = EntryCodec::plain();
        let k = key("a");
        for garbage in [
            &b""[..],
            b"\xff\x00",
            b"null",
            b"{}",
            b"{\"v\":1}",
            b"[1,2]",
        ] {
            assert_eq!(
                codec.decode(&k, garbage, 1).unwrap_err(),
                CorruptEntry::Malformed
            );
        }
        assert_eq!(
            codec
                .decode(&k, br#"{"v":99,"anything":true}"#, 1)
                .unwrap_err(),
            CorruptEntry::UnknownVersion(99)
        );
        let empty = br#"{"v":1,"token":"","issued_at_ms":1,"expires_at_ms":2}"#;
        assert_eq!(
            codec.decode(&k, empty, 1).unwrap_err(),
            CorruptEntry::InvalidToken
        );
        let backwards = br#"{"v":1,"token":"t","issued_at_ms":2,"expires_at_ms":1}"#;
        assert_eq!(
            codec.decode(&k, backwards, 1).unwrap_err(),
            CorruptEntry::InvalidToken
        );
    }

    #[cfg(feature = "encryption")]
    #[test]
    fn sealed_entries_hide_the_token_and_are_bound_to_their_key() {
        let sealing = EntryCodec::encrypted(&EncryptionKey::from_bytes([7; 32]));
        let stored = sealing.encode(&key("a"), &token());
        assert!(!stored.contains("secret-token"));
        assert!(!stored.contains("refresh-token"));
        assert_same(
            &sealing.decode(&key("a"), stored.as_bytes(), 1).unwrap(),
            &token(),
        );

        assert_eq!(
            sealing.decode(&key("b"), stored.as_bytes(), 1).unwrap_err(),
            CorruptEntry::Unauthentic
        );
        let other_key = EntryCodec::encrypted(&EncryptionKey::from_bytes([8; 32]));
        assert_eq!(
            other_key
                .decode(&key("a"), stored.as_bytes(), 1)
                .unwrap_err(),
            CorruptEntry::Unauthentic
        );
        assert!(matches!(
            EntryCodec::plain().decode(&key("a"), stored.as_bytes(), 1),
            Err(CorruptEntry::EncryptionMismatch { .. })
        ));
        let plain = EntryCodec::plain().encode(&key("a"), &token());
        assert!(matches!(
            sealing.decode(&key("a"), plain.as_bytes(), 1),
            Err(CorruptEntry::EncryptionMismatch { .. })
        ));
        assert!(format!("{:?}", EncryptionKey::from_bytes([7; 32])).contains("redacted"));
    }
}
