//! The bytes of a stored entry: the binary format this version writes (2), and the JSON format
//! of version 1, still read so that a fleet's entries survive an upgrade.
//!
//! Format 2, all integers big-endian:
//!
//! ```text
//! entry     = version (1 byte: 2) kind (1 byte: 0 plaintext, 1 sealed) body
//! plaintext = payload
//! sealed    = key ID (4 bytes) nonce (24 bytes) payload sealed (its length + 16-byte tag)
//! payload   = issued at ms (8) expires at ms (8) token length (4) token
//!             [refresh token length (4) refresh token]
//! ```
//!
//! A 42-byte token sealed takes 108 bytes (the JSON of format 1 took 251). A binary version
//! byte is below 0x20, so it never starts a JSON text: format 1 entries start with `{`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;

use super::{CorruptEntry, KeyId};

/// The format this version writes.
pub(super) const CURRENT: u8 = 2;

const PLAINTEXT: u8 = 0;
const SEALED: u8 = 1;

/// The bytes of an XChaCha20-Poly1305 nonce.
pub(super) const NONCE_LEN: usize = 24;

/// The token's fields, as an entry carries them (inside the seal, when sealed).
pub(super) struct Payload {
    pub(super) token: String,
    pub(super) refresh: Option<String>,
    pub(super) issued_at_ms: u64,
    pub(super) expires_at_ms: u64,
}

/// A sealed entry's parts, as read.
pub(super) struct SealedParts {
    pub(super) kid: KeyId,
    pub(super) nonce: [u8; NONCE_LEN],
    pub(super) sealed: Vec<u8>,
}

/// What an entry holds, before opening.
pub(super) enum Body {
    Plain(Payload),
    Sealed(SealedParts),
}

/// An entry as read: its format and body.
pub(super) struct Parsed {
    pub(super) version: u8,
    pub(super) body: Body,
}

impl Parsed {
    /// Reads `stored` in whichever format wrote it.
    pub(super) fn read(stored: &[u8]) -> Result<Self, CorruptEntry> {
        match stored.first() {
            None => Err(CorruptEntry::Malformed),
            Some(&CURRENT) => Self::read_binary(&stored[1..]),
            Some(&version) if version > CURRENT && version < b' ' => {
                Err(CorruptEntry::UnknownVersion(u64::from(version)))
            }
            // No binary format was numbered 0 or 1.
            Some(&version) if version < b' ' => Err(CorruptEntry::Malformed),
            Some(_) => json::read(stored),
        }
    }

    fn read_binary(rest: &[u8]) -> Result<Self, CorruptEntry> {
        let (&kind, body) = rest.split_first().ok_or(CorruptEntry::Malformed)?;
        let body = match kind {
            PLAINTEXT => Body::Plain(Payload::from_bytes(CURRENT, body)?),
            SEALED => {
                let mut reader = Reader(body);
                let kid = KeyId::from_bytes(reader.array()?);
                let nonce = reader.array()?;
                Body::Sealed(SealedParts {
                    kid,
                    nonce,
                    sealed: reader.0.to_vec(),
                })
            }
            _ => return Err(CorruptEntry::Malformed),
        };
        Ok(Self {
            version: CURRENT,
            body,
        })
    }
}

/// A plaintext entry of the current format.
pub(super) fn write_plain(payload: &Payload) -> Vec<u8> {
    let mut entry = vec![CURRENT, PLAINTEXT];
    payload.write_to(&mut entry);
    entry
}

/// A sealed entry of the current format.
pub(super) fn write_sealed(kid: KeyId, nonce: &[u8; NONCE_LEN], sealed: &[u8]) -> Vec<u8> {
    let mut entry = Vec::with_capacity(2 + 4 + NONCE_LEN + sealed.len());
    entry.extend_from_slice(&[CURRENT, SEALED]);
    entry.extend_from_slice(&kid.to_bytes());
    entry.extend_from_slice(nonce);
    entry.extend_from_slice(sealed);
    entry
}

impl Payload {
    /// The payload bytes of the current format (what is sealed).
    pub(super) fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.issued_at_ms.to_be_bytes());
        out.extend_from_slice(&self.expires_at_ms.to_be_bytes());
        write_text(out, &self.token);
        if let Some(refresh) = &self.refresh {
            write_text(out, refresh);
        }
    }

    /// The bytes' length in the current format: the sealing buffer is allocated once, as a
    /// buffer that grew would leave copies of the token behind in freed memory.
    pub(super) fn len(&self) -> usize {
        20 + self.token.len() + self.refresh.as_ref().map_or(0, |refresh| 4 + refresh.len())
    }

    /// Reads a payload written by format `version` (opened, when it was sealed).
    pub(super) fn from_bytes(version: u8, bytes: &[u8]) -> Result<Self, CorruptEntry> {
        if version != CURRENT {
            return json::payload(bytes);
        }
        let mut reader = Reader(bytes);
        let issued_at_ms = u64::from_be_bytes(reader.array()?);
        let expires_at_ms = u64::from_be_bytes(reader.array()?);
        let token = reader.text()?;
        let refresh = if reader.0.is_empty() {
            None
        } else {
            Some(reader.text()?)
        };
        if !reader.0.is_empty() {
            return Err(CorruptEntry::Malformed);
        }
        Ok(Self {
            token,
            refresh,
            issued_at_ms,
            expires_at_ms,
        })
    }
}

fn write_text(out: &mut Vec<u8>, text: &str) {
    // A token of 4 GiB is no token: its length saturates and it fails to read back.
    let len = u32::try_from(text.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(text.as_bytes());
}

/// Reads fields off the front of a byte string; any shortfall is a malformed entry.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn array<const N: usize>(&mut self) -> Result<[u8; N], CorruptEntry> {
        let (head, rest) = self
            .0
            .split_first_chunk::<N>()
            .ok_or(CorruptEntry::Malformed)?;
        self.0 = rest;
        Ok(*head)
    }

    fn text(&mut self) -> Result<String, CorruptEntry> {
        let len = usize::try_from(u32::from_be_bytes(self.array()?))
            .map_err(|_| CorruptEntry::Malformed)?;
        if len > self.0.len() {
            return Err(CorruptEntry::Malformed);
        }
        let (text, rest) = self.0.split_at(len);
        self.0 = rest;
        String::from_utf8(text.to_vec()).map_err(|_| CorruptEntry::Malformed)
    }
}

/// Format 1: `{"v":1, ...}` with the payload's JSON in it, or sealed and in base64.
mod json {
    use super::*;

    /// The format number of these entries.
    const VERSION: u8 = 1;

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum JsonBody {
        Sealed {
            kid: String,
            nonce: String,
            sealed: String,
        },
        Plain(JsonPayload),
    }

    #[derive(Deserialize)]
    struct JsonPayload {
        token: String,
        #[serde(default)]
        refresh: Option<String>,
        issued_at_ms: u64,
        expires_at_ms: u64,
    }

    pub(super) fn read(stored: &[u8]) -> Result<Parsed, CorruptEntry> {
        #[derive(Deserialize)]
        struct Version {
            v: u64,
        }
        let version: Version =
            serde_json::from_slice(stored).map_err(|_| CorruptEntry::Malformed)?;
        if version.v != u64::from(VERSION) {
            return Err(CorruptEntry::UnknownVersion(version.v));
        }
        let body: JsonBody = serde_json::from_slice(stored).map_err(|_| CorruptEntry::Malformed)?;
        let body = match body {
            JsonBody::Plain(payload) => Body::Plain(payload.into()),
            JsonBody::Sealed { kid, nonce, sealed } => Body::Sealed(SealedParts {
                kid: KeyId::from_hex(&kid).ok_or(CorruptEntry::Malformed)?,
                nonce: STANDARD
                    .decode(nonce)
                    .ok()
                    .and_then(|nonce| nonce.try_into().ok())
                    .ok_or(CorruptEntry::Malformed)?,
                sealed: STANDARD
                    .decode(sealed)
                    .map_err(|_| CorruptEntry::Malformed)?,
            }),
        };
        Ok(Parsed {
            version: VERSION,
            body,
        })
    }

    /// A payload opened from a format 1 seal.
    pub(super) fn payload(bytes: &[u8]) -> Result<Payload, CorruptEntry> {
        serde_json::from_slice::<JsonPayload>(bytes)
            .map(Payload::from)
            .map_err(|_| CorruptEntry::Malformed)
    }

    impl From<JsonPayload> for Payload {
        fn from(json: JsonPayload) -> Self {
            Self {
                token: json.token,
                refresh: json.refresh,
                issued_at_ms: json.issued_at_ms,
                expires_at_ms: json.expires_at_ms,
            }
        }
    }
}
