//! The keys that seal tokens at rest: one current key seals, older keys still open, and every
//! sealed entry names the key that sealed it.

use std::fmt;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::XChaCha20Poly1305;
use chacha20poly1305::aead::{KeyInit, OsRng};
use secrecy::SecretString;
use secrecy::zeroize::Zeroizing;
use sha2::{Digest, Sha256};

/// The environment variable [`Keyring::from_env`] reads: comma-separated keys, each the standard
/// base64 of 32 random bytes (`openssl rand -base64 32`). The first seals; all of them open.
pub const SEALING_KEYS_VAR: &str = "KIGO_SEALING_KEYS";

/// The non-secret name of a [`SealingKey`], stored with every entry it seals: the first four
/// bytes of a SHA-256 of the key, so that two different keys practically never share an ID and
/// a replica can tell "sealed with a key I lack" from "tampered with".
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId([u8; 4]);

impl KeyId {
    /// Parses the 8 lowercase hex digits that `Display` writes.
    pub fn from_hex(hex: &str) -> Option<Self> {
        if hex.len() != 8 || !hex.is_ascii() {
            return None;
        }
        let mut bytes = [0; 4];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(Self(bytes))
    }

    /// The ID as a binary entry stores it.
    pub(super) fn from_bytes(bytes: [u8; 4]) -> Self {
        Self(bytes)
    }

    /// The ID's bytes, as a binary entry stores them.
    pub(super) fn to_bytes(self) -> [u8; 4] {
        self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// A 256-bit key that seals tokens at rest (XChaCha20-Poly1305), from a vault or the
/// environment. Its `Debug` shows only its [`KeyId`].
#[derive(Clone)]
pub struct SealingKey {
    id: KeyId,
    cipher: XChaCha20Poly1305,
}

impl SealingKey {
    /// Wraps 32 raw bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        let bytes = Zeroizing::new(bytes);
        let digest = Sha256::new()
            .chain_update(b"kigo sealing key id\0")
            .chain_update(bytes.as_slice())
            .finalize();
        let mut id = [0; 4];
        id.copy_from_slice(&digest[..4]);
        Self {
            id: KeyId(id),
            cipher: XChaCha20Poly1305::new(bytes.as_slice().into()),
        }
    }

    /// Parses the standard base64 of exactly 32 bytes (surrounding whitespace is ignored).
    pub fn from_base64(text: &str) -> Result<Self, InvalidKeyring> {
        let bytes = Zeroizing::new(
            STANDARD
                .decode(text.trim())
                .map_err(|_| InvalidKeyring::NotBase64)?,
        );
        let bytes: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| InvalidKeyring::WrongLength { len: bytes.len() })?;
        Ok(Self::from_bytes(bytes))
    }

    /// A new random key, in the text form [`SEALING_KEYS_VAR`] takes: for a vault, a test, or a
    /// demo that hands it to its replicas.
    pub fn generate_base64() -> SecretString {
        let mut key = Zeroizing::new([0_u8; 32]);
        key.copy_from_slice(&XChaCha20Poly1305::generate_key(&mut OsRng));
        SecretString::from(STANDARD.encode(key.as_slice()))
    }

    /// The key's non-secret name.
    pub fn id(&self) -> KeyId {
        self.id
    }

    pub(super) fn cipher(&self) -> &XChaCha20Poly1305 {
        &self.cipher
    }
}

impl fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SealingKey({})", self.id)
    }
}

/// Why a keyring could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidKeyring {
    /// [`SEALING_KEYS_VAR`] is not set (or empty).
    #[error(
        "{SEALING_KEYS_VAR} is not set: give it a sealing key (`openssl rand -base64 32`), pass a \
         keyring in code, or choose plaintext entries by name"
    )]
    Missing,
    /// A key is not standard base64. The text is never repeated: it is a secret.
    #[error("a sealing key is not standard base64")]
    NotBase64,
    /// A key does not decode to 32 bytes.
    #[error("a sealing key decodes to {len} bytes instead of 32")]
    WrongLength {
        /// The length it decoded to.
        len: usize,
    },
    /// The same key is listed twice.
    #[error("sealing key {0} is listed twice")]
    Duplicate(KeyId),
}

/// The keys a sealing store uses: the current key seals every new entry; the current key and the
/// older ones open entries. An entry sealed with an older key is sealed again with the current
/// one at its next commit.
///
/// Rotating across a running fleet, without a failed request:
/// 1. add the new key after the current one on every replica (`old,new`): all can open it;
/// 2. put it first (`new,old`): entries get sealed with it as they are renewed;
/// 3. once every entry was renewed (a token lifetime later), drop the old key (`new`).
#[derive(Clone)]
pub struct Keyring {
    keys: Arc<[SealingKey]>,
}

impl Keyring {
    /// A keyring that seals and opens with `current`.
    pub fn new(current: SealingKey) -> Self {
        Self {
            keys: Arc::new([current]),
        }
    }

    /// Adds `key` to open entries sealed with it (it never seals); a key already in the ring is
    /// refused.
    pub fn with_older_key(self, key: SealingKey) -> Result<Self, InvalidKeyring> {
        if self.find(key.id()).is_some() {
            return Err(InvalidKeyring::Duplicate(key.id()));
        }
        let keys = self.keys.iter().cloned().chain([key]).collect();
        Ok(Self { keys })
    }

    /// Reads comma-separated base64 keys, the current one first.
    pub fn parse(text: &str) -> Result<Self, InvalidKeyring> {
        let mut keys = text
            .split(',')
            .map(str::trim)
            .filter(|key| !key.is_empty())
            .map(SealingKey::from_base64);
        let first = keys.next().ok_or(InvalidKeyring::Missing)??;
        keys.try_fold(Self::new(first), |ring, key| ring.with_older_key(key?))
    }

    /// The keyring in [`SEALING_KEYS_VAR`].
    pub fn from_env() -> Result<Self, InvalidKeyring> {
        let text = Zeroizing::new(std::env::var(SEALING_KEYS_VAR).unwrap_or_default());
        Self::parse(&text)
    }

    /// The key that seals.
    pub fn current(&self) -> &SealingKey {
        &self.keys[0]
    }

    /// The key named `id`, if this ring has it.
    pub fn find(&self, id: KeyId) -> Option<&SealingKey> {
        self.keys.iter().find(|key| key.id() == id)
    }

    /// The IDs of every key, the current one first.
    pub fn key_ids(&self) -> impl Iterator<Item = KeyId> + '_ {
        self.keys.iter().map(SealingKey::id)
    }
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("current", &self.current().id())
            .field(
                "older",
                &self.keys[1..]
                    .iter()
                    .map(SealingKey::id)
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn a_keyring_is_read_current_key_first_and_never_shows_a_key() {
        let first = SealingKey::generate_base64();
        let second = SealingKey::generate_base64();
        let text = format!(" {} , {},", first.expose_secret(), second.expose_secret());
        let ring = Keyring::parse(&text).unwrap();
        let ids: Vec<_> = ring.key_ids().collect();
        assert_eq!(ids.len(), 2);
        assert_eq!(
            ids[0],
            SealingKey::from_base64(first.expose_secret()).unwrap().id()
        );
        let shown = format!("{ring:?} {:?}", ring.current());
        assert!(!shown.contains(first.expose_secret()), "{shown}");
        assert!(shown.contains(&ids[0].to_string()), "{shown}");
        assert_eq!(KeyId::from_hex(&ids[1].to_string()), Some(ids[1]));
    }

    #[test]
    fn unusable_keyrings_are_refused_without_repeating_the_text() {
        assert_eq!(Keyring::parse("").unwrap_err(), InvalidKeyring::Missing);
        assert_eq!(Keyring::parse(" , ").unwrap_err(), InvalidKeyring::Missing);
        assert_eq!(
            Keyring::parse("not base64!").unwrap_err(),
            InvalidKeyring::NotBase64
        );
        assert_eq!(
            Keyring::parse("c2hvcnQ=").unwrap_err(),
            InvalidKeyring::WrongLength { len: 5 }
        );
        let key = SealingKey::generate_base64();
        let twice = format!("{0},{0}", key.expose_secret());
        assert!(matches!(
            Keyring::parse(&twice),
            Err(InvalidKeyring::Duplicate(_))
        ));
        let error = Keyring::parse(&format!("{},zz", key.expose_secret())).unwrap_err();
        assert!(!error.to_string().contains("zz"));
    }
}
