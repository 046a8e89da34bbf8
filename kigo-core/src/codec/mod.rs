//! How shared stores write a token: a compact binary entry (format 2, see [`FORMAT_VERSION`]),
//! sealed with an AEAD cipher unless a store is told to write plaintext by name.
//!
//! Every shared store uses this one codec, so an entry written by one backend version is read the
//! same way by all, and corrupt, foreign, moved or tampered entries are told apart from tokens.
//! Entries of format 1 (JSON, written before 0.x's binary format) are still read, and
//! [`EntryCodec::reseal`] rewrites them in the current format.
//!
//! A sealed entry is bound to where it belongs: the store's namespace (a Redis prefix, an SQL
//! table), its token key and its generation are the associated data of the seal. An entry copied
//! to another key or row, or an older entry written back over a newer generation, fails to open.

use std::fmt;
use std::time::{Duration, SystemTime};

use chacha20poly1305::aead::{Aead, AeadCore, OsRng, Payload as AeadPayload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use secrecy::zeroize::Zeroizing;

use crate::time::unix_ms;
use crate::{Token, TokenKey, TokenSecret};

mod entry;
mod keyring;
use entry::{Body, Parsed, Payload, SealedParts};
pub use keyring::{InvalidKeyring, KeyId, Keyring, SEALING_KEYS_VAR, SealingKey};

/// The entry format this version writes: 2, binary (a 42-byte token sealed takes 108 bytes).
/// Format 1 (JSON) is still read.
pub const FORMAT_VERSION: u32 = entry::CURRENT as u32;

/// Why a stored entry is not a usable token. The store reports it; the manager replaces the
/// entry, unless [`CorruptEntry::is_misconfiguration`] says this replica cannot judge it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CorruptEntry {
    /// Not an entry this codec wrote: truncated, not of its layout, or fields of the wrong type.
    #[error("the stored entry is malformed")]
    Malformed,
    /// Written by a format version this build does not know.
    #[error("the stored entry has unknown format version {0}")]
    UnknownVersion(u64),
    /// The entry decodes but does not hold a valid token (empty, unsendable, non-positive lifetime).
    #[error("the stored entry holds an invalid token")]
    InvalidToken,
    /// The entry is sealed, but this store was built to write plaintext: this replica is
    /// misconfigured (the fleet seals).
    #[error("the stored entry is sealed, but this store is configured for plaintext entries")]
    Sealed,
    /// The entry is plaintext, but this store seals: a replica configured for plaintext wrote it,
    /// or it was planted. Never handed out; the next commit replaces it with a sealed one.
    #[error("the stored entry is plaintext, but this store seals its entries")]
    Plaintext,
    /// Sealed with a key this replica's keyring does not have: this replica (or the one that
    /// wrote it) is misconfigured.
    #[error("the stored entry is sealed with key {0}, which this replica's keyring lacks")]
    UnknownKey(KeyId),
    /// Opening failed with a key this replica has: tampered with, or moved from another key, row
    /// or generation.
    #[error("the stored entry failed authentication")]
    Unauthentic,
}

impl CorruptEntry {
    /// Whether the entry may be fine and this replica unable to read it (it lacks the key, or
    /// writes plaintext while the fleet seals): the manager then leaves the entry alone and
    /// reports a misconfiguration instead of replacing the fleet's token.
    pub fn is_misconfiguration(&self) -> bool {
        matches!(self, Self::Sealed | Self::UnknownKey(_))
    }
}

/// Encodes and decodes stored tokens for one store: sealed under a [`Keyring`], or plaintext.
///
/// ```
/// use kigo_core::codec::{EntryCodec, Keyring, SealingKey};
///
/// let keyring = Keyring::new(SealingKey::from_bytes([7; 32]));
/// let codec = EntryCodec::sealed(keyring).in_namespace("redis:kigo:");
/// assert!(codec.is_sealed());
/// ```
#[derive(Clone)]
pub struct EntryCodec {
    keyring: Option<Keyring>,
    namespace: String,
}

impl fmt::Debug for EntryCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EntryCodec")
            .field("keyring", &self.keyring)
            .field("namespace", &self.namespace)
            .finish()
    }
}

impl EntryCodec {
    /// Seals entries with the current key of `keyring`; opens those sealed with any of its keys.
    pub fn sealed(keyring: Keyring) -> Self {
        Self {
            keyring: Some(keyring),
            namespace: String::new(),
        }
    }

    /// Writes tokens in the clear: anyone who can read the store (or its backups) can read and
    /// forge the tokens. For in-process stores and stores the operator chose so by name.
    pub fn plaintext() -> Self {
        Self {
            keyring: None,
            namespace: String::new(),
        }
    }

    /// Binds sealed entries to `namespace` (the store's prefix or table), so that an entry
    /// copied between stores does not open. A store sets it when it is built.
    #[must_use]
    pub fn in_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// Whether entries are sealed.
    pub fn is_sealed(&self) -> bool {
        self.keyring.is_some()
    }

    /// The keyring, for a sealing codec.
    pub fn keyring(&self) -> Option<&Keyring> {
        self.keyring.as_ref()
    }

    /// The stored form of `token` under `key`, committed as `generation`.
    pub fn encode(&self, key: &TokenKey, generation: u64, token: &Token) -> Vec<u8> {
        let payload = Payload {
            token: token.secret().expose().to_owned(),
            refresh: token.refresh_token().map(|r| r.expose().to_owned()),
            issued_at_ms: unix_ms(token.issued_at()),
            expires_at_ms: unix_ms(token.expires_at()),
        };
        match &self.keyring {
            Some(keyring) => self.seal(keyring, key, generation, &payload),
            None => entry::write_plain(&payload),
        }
    }

    /// The token stored as `stored` under `key`, given the store's `generation` for it.
    pub fn decode(
        &self,
        key: &TokenKey,
        stored: &[u8],
        generation: u64,
    ) -> Result<Token, CorruptEntry> {
        self.token_of(key, Parsed::read(stored)?, generation)
    }

    /// The token `parsed` holds under `key` at `generation`.
    fn token_of(
        &self,
        key: &TokenKey,
        parsed: Parsed,
        generation: u64,
    ) -> Result<Token, CorruptEntry> {
        let payload = match (&self.keyring, parsed.body) {
            (None, Body::Plain(payload)) => payload,
            (None, Body::Sealed(_)) => return Err(CorruptEntry::Sealed),
            (Some(_), Body::Plain(_)) => return Err(CorruptEntry::Plaintext),
            (Some(keyring), Body::Sealed(parts)) => {
                self.open(keyring, key, generation, parsed.version, &parts)?
            }
        };
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

    /// `stored` sealed again under the current key, in the current format, if it opens but was
    /// sealed with an older key of the keyring or written in an older format; `None` if it is
    /// current (or this codec writes plaintext). For rotating keys without a creation: a store
    /// writes the result back only if the entry is still `stored` at `generation`.
    pub fn reseal(
        &self,
        key: &TokenKey,
        stored: &[u8],
        generation: u64,
    ) -> Result<Option<Vec<u8>>, CorruptEntry> {
        let Some(keyring) = &self.keyring else {
            return Ok(None);
        };
        let parsed = Parsed::read(stored)?;
        let current = match &parsed {
            Parsed {
                version: entry::CURRENT,
                body: Body::Sealed(parts),
            } => parts.kid == keyring.current().id(),
            _ => false,
        };
        let token = self.token_of(key, parsed, generation)?;
        Ok((!current).then(|| self.encode(key, generation, &token)))
    }

    /// What the seal of a format `version` entry for `key` at `generation` under key `kid` is
    /// bound to.
    fn associated_data(&self, key: &TokenKey, generation: u64, version: u8, kid: KeyId) -> Vec<u8> {
        format!(
            "kigo entry v{version}\0{}\0{}\0{generation}\0{kid}",
            self.namespace,
            key.storage_id()
        )
        .into_bytes()
    }

    fn seal(
        &self,
        keyring: &Keyring,
        key: &TokenKey,
        generation: u64,
        payload: &Payload,
    ) -> Vec<u8> {
        let sealing = keyring.current();
        let mut plain = Zeroizing::new(Vec::with_capacity(payload.len()));
        payload.write_to(&mut plain);
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let aad = self.associated_data(key, generation, entry::CURRENT, sealing.id());
        let sealed = sealing
            .cipher()
            .encrypt(
                &nonce,
                AeadPayload {
                    msg: &plain,
                    aad: &aad,
                },
            )
            .unwrap_or_default();
        entry::write_sealed(sealing.id(), &nonce.into(), &sealed)
    }

    fn open(
        &self,
        keyring: &Keyring,
        key: &TokenKey,
        generation: u64,
        version: u8,
        parts: &SealedParts,
    ) -> Result<Payload, CorruptEntry> {
        let opening = keyring
            .find(parts.kid)
            .ok_or(CorruptEntry::UnknownKey(parts.kid))?;
        let aad = self.associated_data(key, generation, version, parts.kid);
        let plain = Zeroizing::new(
            opening
                .cipher()
                .decrypt(
                    &XNonce::from(parts.nonce),
                    AeadPayload {
                        msg: &parts.sealed,
                        aad: &aad,
                    },
                )
                .map_err(|_| CorruptEntry::Unauthentic)?,
        );
        Payload::from_bytes(version, &plain)
    }
}

/// The key that sealed `stored`, read without opening it (for an operator's tool, or a test
/// that watches a rotation): `None` for a plaintext entry or one that is no entry.
pub fn sealed_with(stored: &[u8]) -> Option<KeyId> {
    match Parsed::read(stored).ok()?.body {
        Body::Sealed(parts) => Some(parts.kid),
        Body::Plain(_) => None,
    }
}

/// How a shared store is told to write its entries: sealed under the keyring in
/// [`SEALING_KEYS_VAR`] (the default), sealed under a keyring given in code, or plaintext, which
/// must be asked for by name. Store builders hold one and turn it into their codec at `build()`.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub enum Sealing {
    /// Sealed under [`Keyring::from_env`]; building fails if the variable is missing.
    #[default]
    FromEnv,
    /// Sealed under this keyring.
    Keyring(Keyring),
    /// Plaintext: anyone who can read the store, its backups or its command log can read and
    /// forge tokens. Logged at warn when a store is built so.
    Plaintext,
}

/// What an operator is told when a store cannot get its keyring.
pub const KEYRING_HINT: &str = "set KIGO_SEALING_KEYS to the fleet's sealing key (standard base64 \
    of 32 random bytes, e.g. `openssl rand -base64 32`; the same on every replica), pass a keyring \
    to the store's builder, or choose plaintext entries by name";

impl Sealing {
    /// The codec for a store whose entries live in `namespace`; `store` names it in the warning a
    /// plaintext choice logs.
    pub fn codec(self, store: &str, namespace: &str) -> Result<EntryCodec, InvalidKeyring> {
        let codec = match self {
            Self::FromEnv => EntryCodec::sealed(Keyring::from_env()?),
            Self::Keyring(keyring) => EntryCodec::sealed(keyring),
            Self::Plaintext => {
                tracing::warn!(
                    store,
                    namespace,
                    "token store built with plaintext entries: anyone who can read it can read \
                     and forge tokens"
                );
                EntryCodec::plaintext()
            }
        };
        Ok(codec.in_namespace(namespace))
    }
}

fn from_millis(ms: u64) -> SystemTime {
    crate::time::after(SystemTime::UNIX_EPOCH, Duration::from_millis(ms))
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

    fn sealing(byte: u8) -> EntryCodec {
        EntryCodec::sealed(Keyring::new(SealingKey::from_bytes([byte; 32]))).in_namespace("ns")
    }

    fn contains(stored: &[u8], text: &str) -> bool {
        stored
            .windows(text.len())
            .any(|window| window == text.as_bytes())
    }

    /// `token` as version 0.x before the binary format sealed it: JSON, the payload's JSON
    /// sealed and in base64, bound to `v1` in the associated data.
    fn sealed_in_format_1(
        codec: &EntryCodec,
        key: &TokenKey,
        generation: u64,
        token: &Token,
    ) -> Vec<u8> {
        use base64::Engine;
        use base64::engine::general_purpose::STANDARD;
        let sealing = codec.keyring().unwrap().current();
        let payload = serde_json::json!({
            "token": token.secret().expose(),
            "refresh": token.refresh_token().map(TokenSecret::expose),
            "issued_at_ms": unix_ms(token.issued_at()),
            "expires_at_ms": unix_ms(token.expires_at()),
        });
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let aad = codec.associated_data(key, generation, 1, sealing.id());
        let sealed = sealing
            .cipher()
            .encrypt(
                &nonce,
                AeadPayload {
                    msg: payload.to_string().as_bytes(),
                    aad: &aad,
                },
            )
            .unwrap();
        serde_json::json!({
            "v": 1,
            "kid": sealing.id().to_string(),
            "nonce": STANDARD.encode(nonce),
            "sealed": STANDARD.encode(sealed),
        })
        .to_string()
        .into_bytes()
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
    fn plaintext_round_trip_keeps_everything_and_takes_the_stored_generation() {
        let codec = EntryCodec::plaintext();
        let stored = codec.encode(&key("a"), 3, &token());
        let decoded = codec.decode(&key("a"), &stored, 7).unwrap();
        assert_same(&decoded, &token());
        assert_eq!(decoded.generation(), 7);
    }

    #[test]
    fn garbage_and_foreign_versions_are_reported() {
        for codec in [EntryCodec::plaintext(), sealing(1)] {
            let k = key("a");
            for garbage in [
                &b""[..],
                b"\xff\x00",
                b"null",
                b"{}",
                b"{\"v\":1}",
                b"[1,2]",
                br#"{"v":1,"kid":"zz","nonce":"","sealed":""}"#,
                b"\x02",
                b"\x02\x07",
                b"\x02\x00\x00\x00",
                b"\x02\x01\x01\x02\x03\x04\x05",
                b"\x00\xffnot an entry",
                b"\x01\x00",
            ] {
                assert_eq!(
                    codec.decode(&k, garbage, 1).unwrap_err(),
                    CorruptEntry::Malformed,
                    "{garbage:?}"
                );
            }
            assert_eq!(
                codec
                    .decode(&k, br#"{"v":99,"anything":true}"#, 1)
                    .unwrap_err(),
                CorruptEntry::UnknownVersion(99)
            );
            assert_eq!(
                codec.decode(&k, b"\x03\x01", 1).unwrap_err(),
                CorruptEntry::UnknownVersion(3)
            );
        }
        let plain = EntryCodec::plaintext();
        let mut trailing = plain.encode(&key("a"), 1, &token());
        trailing.push(0);
        assert_eq!(
            plain.decode(&key("a"), &trailing, 1).unwrap_err(),
            CorruptEntry::Malformed
        );
        let plain = EntryCodec::plaintext();
        let empty = br#"{"v":1,"token":"","issued_at_ms":1,"expires_at_ms":2}"#;
        assert_eq!(
            plain.decode(&key("a"), empty, 1).unwrap_err(),
            CorruptEntry::InvalidToken
        );
        let backwards = br#"{"v":1,"token":"t","issued_at_ms":2,"expires_at_ms":1}"#;
        assert_eq!(
            plain.decode(&key("a"), backwards, 1).unwrap_err(),
            CorruptEntry::InvalidToken
        );
        let far = format!(
            r#"{{"v":1,"token":"t","issued_at_ms":1,"expires_at_ms":{}}}"#,
            u64::MAX
        );
        assert!(plain.decode(&key("a"), far.as_bytes(), 1).is_ok());
    }

    #[test]
    fn sealed_entries_hide_the_token() {
        let codec = sealing(7);
        let stored = codec.encode(&key("a"), 4, &token());
        assert!(!contains(&stored, "secret-token"));
        assert!(!contains(&stored, "refresh-token"));
        let decoded = codec.decode(&key("a"), &stored, 4).unwrap();
        assert_same(&decoded, &token());
        assert_eq!(decoded.generation(), 4);
    }

    #[test]
    fn a_sealed_entry_opens_only_for_its_namespace_key_and_generation() {
        let codec = sealing(7);
        let stored = &codec.encode(&key("a"), 4, &token());
        let moved = [
            codec.decode(&key("b"), stored, 4),
            codec.decode(&key("a"), stored, 5),
            codec
                .clone()
                .in_namespace("other")
                .decode(&key("a"), stored, 4),
        ];
        for opened in moved {
            assert_eq!(opened.unwrap_err(), CorruptEntry::Unauthentic);
        }
    }

    #[test]
    fn a_replica_without_the_key_is_told_apart_from_tampering() {
        let stored = &sealing(7).encode(&key("a"), 1, &token());
        assert!(matches!(
            sealing(8).decode(&key("a"), stored, 1),
            Err(CorruptEntry::UnknownKey(_))
        ));
        assert_eq!(
            EntryCodec::plaintext()
                .decode(&key("a"), stored, 1)
                .unwrap_err(),
            CorruptEntry::Sealed
        );
        let plain = EntryCodec::plaintext().encode(&key("a"), 1, &token());
        assert_eq!(
            sealing(7).decode(&key("a"), &plain, 1).unwrap_err(),
            CorruptEntry::Plaintext
        );
        assert!(
            CorruptEntry::UnknownKey(KeyId::from_hex("00000000").unwrap()).is_misconfiguration()
        );
        assert!(CorruptEntry::Sealed.is_misconfiguration());
        assert!(!CorruptEntry::Plaintext.is_misconfiguration());
        assert!(!CorruptEntry::Unauthentic.is_misconfiguration());
    }

    #[test]
    fn older_keys_open_and_the_current_key_seals() {
        let old = SealingKey::from_bytes([1; 32]);
        let new = SealingKey::from_bytes([2; 32]);
        let before = EntryCodec::sealed(Keyring::new(old.clone()));
        let after = EntryCodec::sealed(Keyring::new(new.clone()).with_older_key(old).unwrap());
        let sealed_before = before.encode(&key("a"), 1, &token());
        assert_same(
            &after.decode(&key("a"), &sealed_before, 1).unwrap(),
            &token(),
        );
        let sealed_after = after.encode(&key("a"), 2, &token());
        assert_eq!(sealed_with(&sealed_after), Some(new.id()));
        assert!(matches!(
            before.decode(&key("a"), &sealed_after, 2),
            Err(CorruptEntry::UnknownKey(id)) if id == new.id()
        ));
    }

    #[test]
    fn an_entry_under_an_older_key_is_sealed_again_under_the_current_one() {
        let old = SealingKey::from_bytes([1; 32]);
        let new = SealingKey::from_bytes([2; 32]);
        let before = EntryCodec::sealed(Keyring::new(old.clone()));
        let after = EntryCodec::sealed(Keyring::new(new.clone()).with_older_key(old).unwrap());
        let stored = before.encode(&key("a"), 3, &token());
        let old_id = before.keyring().unwrap().current().id();
        let resealed = after
            .reseal(&key("a"), &stored, 3)
            .unwrap()
            .expect("sealed with an older key");
        assert_eq!(sealed_with(&resealed), Some(new.id()));
        assert_eq!(sealed_with(&stored), Some(old_id));
        assert_eq!(
            sealed_with(&EntryCodec::plaintext().encode(&key("a"), 3, &token())),
            None
        );
        assert_eq!(sealed_with(b"{}"), None);
        assert_same(&after.decode(&key("a"), &resealed, 3).unwrap(), &token());
        assert_eq!(after.reseal(&key("a"), &resealed, 3), Ok(None));
        assert_eq!(
            after.reseal(&key("b"), &stored, 3),
            Err(CorruptEntry::Unauthentic)
        );
        assert_eq!(
            EntryCodec::plaintext().reseal(&key("a"), b"{}", 3),
            Ok(None)
        );
    }

    #[test]
    fn a_sealed_entry_takes_66_bytes_beyond_its_token() {
        let issued = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let token = Token::new(
            TokenSecret::new("t".repeat(42)),
            issued,
            issued + Duration::from_secs(1800),
        )
        .unwrap();
        assert_eq!(sealing(7).encode(&key("a"), 1, &token).len(), 108);
        assert_eq!(
            EntryCodec::plaintext().encode(&key("a"), 1, &token).len(),
            64
        );
    }

    #[test]
    fn entries_of_format_1_are_read_and_resealed_in_the_current_format() {
        let codec = sealing(7);
        let old = sealed_in_format_1(&codec, &key("a"), 5, &token());
        assert_same(&codec.decode(&key("a"), &old, 5).unwrap(), &token());
        assert_eq!(
            codec.decode(&key("a"), &old, 6).unwrap_err(),
            CorruptEntry::Unauthentic
        );
        let current = codec
            .reseal(&key("a"), &old, 5)
            .unwrap()
            .expect("an entry of format 1 is rewritten");
        assert_eq!(current.first(), Some(&2));
        assert_same(&codec.decode(&key("a"), &current, 5).unwrap(), &token());
        assert_eq!(codec.reseal(&key("a"), &current, 5), Ok(None));

        let plain = br#"{"v":1,"token":"t","refresh":"r","issued_at_ms":1,"expires_at_ms":2}"#;
        let read = EntryCodec::plaintext().decode(&key("a"), plain, 1).unwrap();
        assert_eq!(read.secret().expose(), "t");
        assert_eq!(read.refresh_token().map(TokenSecret::expose), Some("r"));
        assert_eq!(read.expires_at(), from_millis(2));
    }

    #[test]
    fn debug_shows_key_ids_only() {
        let codec = sealing(7);
        let shown = format!("{codec:?}");
        assert!(shown.contains("KeyId("), "{shown}");
        assert!(!shown.contains("[7, 7"), "{shown}");
    }
}
