//! What a row holds, in the types every backend binds and reads, and how it becomes a
//! [`Snapshot`].

use std::time::{Duration, SystemTime};

use kigo_core::codec::{CorruptEntry, EntryCodec, FORMAT_VERSION};
use kigo_core::store::{Entry, Snapshot};
use kigo_core::{Token, TokenKey};

/// The latest instant every backend can store (9999-12-31T23:59:59.999999Z, MySQL's `DATETIME`
/// limit), in microseconds since the Unix epoch.
const MAX_MICROS: i64 = 253_402_300_799_999_999;

/// A row as read by a load, with the database clock already applied: `entry` is `None` when no
/// token is stored or it has expired, `cooldown_us` when no cool-down runs.
#[derive(Debug)]
pub(crate) struct StoredRow {
    /// The format version of the row.
    pub(crate) format: i64,
    /// The encoded token, unless absent or expired.
    pub(crate) entry: Option<Vec<u8>>,
    /// The generation of the stored token.
    pub(crate) generation: i64,
    /// The cool-down left, in microseconds.
    pub(crate) cooldown_us: Option<i64>,
}

/// A token as a commit writes it.
#[derive(Debug)]
pub(crate) struct NewEntry {
    /// The format version written.
    pub(crate) format: i64,
    /// The token through the store's codec.
    pub(crate) entry: Vec<u8>,
    /// The token's expiry, in microseconds since the Unix epoch.
    pub(crate) expires_us: i64,
}

impl NewEntry {
    /// `token` as stored under `key` at `generation` with `codec`.
    pub(crate) fn new(codec: &EntryCodec, key: &TokenKey, generation: u64, token: &Token) -> Self {
        Self {
            format: format_version(),
            entry: codec.encode(key, generation, token),
            expires_us: epoch_micros(token.expires_at()),
        }
    }
}

impl From<(i64, Option<Vec<u8>>, i64, Option<i64>)> for StoredRow {
    /// The columns of a load, in order.
    fn from(
        (format, entry, generation, cooldown_us): (i64, Option<Vec<u8>>, i64, Option<i64>),
    ) -> Self {
        Self {
            format,
            entry,
            generation,
            cooldown_us,
        }
    }
}

impl StoredRow {
    /// The row's entry sealed again under the current key of `codec` (see
    /// [`EntryCodec::reseal`]); `None` when it already is, when `codec` writes plaintext and the
    /// entry is plaintext, or when the row holds no entry. An entry `codec` cannot open (a
    /// sealed one, for a plaintext codec, included) is an error.
    pub(crate) fn resealed(
        &self,
        key: &TokenKey,
        codec: &EntryCodec,
    ) -> Result<Option<Vec<u8>>, CorruptEntry> {
        let Some(entry) = &self.entry else {
            return Ok(None);
        };
        let generation = readable(self.format, self.generation)?;
        codec.decode(key, entry, generation)?;
        codec.reseal(key, entry, generation)
    }

    /// The snapshot this row stands for.
    pub(crate) fn into_snapshot(self, key: &TokenKey, codec: &EntryCodec) -> Snapshot {
        let cooldown = self
            .cooldown_us
            .and_then(|left| u64::try_from(left).ok())
            .filter(|left| *left > 0)
            .map(Duration::from_micros);
        let entry = match self.entry {
            None => Entry::Absent,
            Some(stored) => match decode(codec, key, self.format, &stored, self.generation) {
                Ok(token) => Entry::Present(token),
                Err(corrupt) => Entry::Corrupt(corrupt),
            },
        };
        Snapshot { entry, cooldown }
    }
}

fn decode(
    codec: &EntryCodec,
    key: &TokenKey,
    format: i64,
    stored: &[u8],
    generation: i64,
) -> Result<Token, CorruptEntry> {
    codec.decode(key, stored, readable(format, generation)?)
}

/// The generation of a row whose entry the codec can read (of this format version or an older
/// one, which the codec still reads), as the codec takes it.
fn readable(format: i64, generation: i64) -> Result<u64, CorruptEntry> {
    if !(1..=i64::from(FORMAT_VERSION)).contains(&format) {
        let version = u64::try_from(format).map_err(|_| CorruptEntry::Malformed)?;
        return Err(CorruptEntry::UnknownVersion(version));
    }
    u64::try_from(generation).map_err(|_| CorruptEntry::Malformed)
}

/// The format version every row is written with.
pub(crate) fn format_version() -> i64 {
    i64::from(FORMAT_VERSION)
}

/// `time` in microseconds since the Unix epoch, clamped to what every backend can store.
pub(crate) fn epoch_micros(time: SystemTime) -> i64 {
    let since = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_micros())
        .unwrap_or(i64::MAX)
        .min(MAX_MICROS)
}

/// `duration` in microseconds, at least 1 (a lease or cool-down of zero still counts) and at
/// most a century (far past any lease or cool-down, and within every backend's date range).
pub(crate) fn micros(duration: Duration) -> i64 {
    const CENTURY_US: i64 = 100 * 366 * 24 * 3600 * 1_000_000;
    i64::try_from(duration.as_micros())
        .unwrap_or(i64::MAX)
        .clamp(1, CENTURY_US)
}

/// A non-negative count of microseconds as a duration.
pub(crate) fn duration(micros: i64) -> Duration {
    Duration::from_micros(u64::try_from(micros).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use kigo_core::codec::{Keyring, SealingKey};
    use kigo_core::{PartnerId, TokenSecret};

    use super::*;

    fn key() -> TokenKey {
        TokenKey::partner(PartnerId::new("acme").unwrap())
    }

    fn row(format: i64, entry: Option<&[u8]>, generation: i64) -> StoredRow {
        StoredRow {
            format,
            entry: entry.map(<[u8]>::to_vec),
            generation,
            cooldown_us: None,
        }
    }

    fn codec() -> EntryCodec {
        EntryCodec::sealed(Keyring::new(SealingKey::from_bytes([7; 32])))
            .in_namespace("sqlite:kigo_tokens")
    }

    #[test]
    fn rows_become_snapshots() {
        let codec = codec();
        let now = SystemTime::now();
        let token =
            Token::new(TokenSecret::new("t0k"), now, now + Duration::from_secs(60)).unwrap();
        let written = NewEntry::new(&codec, &key(), 7, &token);
        let format = written.format;

        let loaded = row(format, Some(&written.entry), 7).into_snapshot(&key(), &codec);
        let present = loaded.token().unwrap();
        assert_eq!(present.fingerprint(), token.fingerprint());
        assert_eq!(present.generation(), 7);

        let absent = row(format, None, 7).into_snapshot(&key(), &codec);
        assert!(matches!(absent.entry, Entry::Absent));

        let future = row(9, Some(&written.entry), 7).into_snapshot(&key(), &codec);
        assert!(matches!(
            future.entry,
            Entry::Corrupt(CorruptEntry::UnknownVersion(9))
        ));
        let moved = row(format, Some(&written.entry), 8).into_snapshot(&key(), &codec);
        assert!(matches!(
            moved.entry,
            Entry::Corrupt(CorruptEntry::Unauthentic)
        ));
        let negative = row(format, Some(&written.entry), -1).into_snapshot(&key(), &codec);
        assert!(matches!(
            negative.entry,
            Entry::Corrupt(CorruptEntry::Malformed)
        ));
        let garbage = row(format, Some(b"\xff"), 1).into_snapshot(&key(), &codec);
        assert!(matches!(
            garbage.entry,
            Entry::Corrupt(CorruptEntry::Malformed)
        ));
    }

    #[test]
    fn resealing_needs_an_entry_the_codec_opens() {
        let now = SystemTime::now();
        let token =
            Token::new(TokenSecret::new("t0k"), now, now + Duration::from_secs(60)).unwrap();
        let sealed = NewEntry::new(&codec(), &key(), 3, &token);
        let row = row(sealed.format, Some(&sealed.entry), 3);
        assert_eq!(row.resealed(&key(), &codec()), Ok(None), "already current");
        let rotated = EntryCodec::sealed(
            Keyring::new(SealingKey::from_bytes([8; 32]))
                .with_older_key(SealingKey::from_bytes([7; 32]))
                .unwrap(),
        )
        .in_namespace("sqlite:kigo_tokens");
        assert!(matches!(row.resealed(&key(), &rotated), Ok(Some(_))));
        let plaintext = EntryCodec::plaintext().in_namespace("sqlite:kigo_tokens");
        assert_eq!(
            row.resealed(&key(), &plaintext),
            Err(CorruptEntry::Sealed),
            "a plaintext store cannot open it"
        );
    }

    #[test]
    fn cooldowns_and_times_convert() {
        let codec = codec();
        let mut cooling = row(1, None, 0);
        cooling.cooldown_us = Some(1_500_000);
        assert_eq!(
            cooling.into_snapshot(&key(), &codec).cooldown,
            Some(Duration::from_millis(1500))
        );
        let mut over = row(1, None, 0);
        over.cooldown_us = Some(-5);
        assert_eq!(over.into_snapshot(&key(), &codec).cooldown, None);

        assert_eq!(micros(Duration::ZERO), 1);
        assert_eq!(micros(Duration::from_millis(3)), 3000);
        assert_eq!(epoch_micros(SystemTime::UNIX_EPOCH), 0);
        let far = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::from(u32::MAX) * 100);
        assert_eq!(epoch_micros(far), MAX_MICROS);
        assert_eq!(duration(-3), Duration::ZERO);
    }
}
