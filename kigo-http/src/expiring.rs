//! A secret with its expiry, as front ends receive it: the shared part of
//! [`crate::FrontEndSession`] and [`crate::SsoSession`] (their JSON and their redacted `Debug`).

use std::fmt;
use std::time::{Duration, SystemTime};

use kigo_core::{Token, TokenSecret};
use serde::Serializer;
use serde::ser::{Error as _, SerializeStruct};

/// A token's secret, its expiry, and the time it had left when this was made.
#[derive(Clone)]
pub(crate) struct Expiring {
    pub(crate) secret: TokenSecret,
    pub(crate) expires_at: SystemTime,
    expires_in: Duration,
}

impl Expiring {
    /// `token` as seen at `now`.
    pub(crate) fn of(token: &Token, now: SystemTime) -> Self {
        let expires_at = token.expires_at();
        Self {
            secret: token.secret().clone(),
            expires_at,
            expires_in: expires_at.duration_since(now).unwrap_or_default(),
        }
    }

    /// Whole seconds left when this was made.
    pub(crate) fn expires_in_seconds(&self) -> u64 {
        self.expires_in.as_secs()
    }

    /// `{<secret_field>, "expires_at", "expires_in_seconds"}`, `expires_at` in RFC 3339 (UTC).
    pub(crate) fn serialize<S: Serializer>(
        &self,
        name: &'static str,
        secret_field: &'static str,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let expires_at = rfc3339(self.expires_at)
            .ok_or_else(|| S::Error::custom("the expiry cannot be written as RFC 3339"))?;
        let mut fields = serializer.serialize_struct(name, 3)?;
        fields.serialize_field(secret_field, self.secret.expose())?;
        fields.serialize_field("expires_at", &expires_at)?;
        fields.serialize_field("expires_in_seconds", &self.expires_in_seconds())?;
        fields.end()
    }

    /// The same fields, the secret redacted.
    pub(crate) fn debug(
        &self,
        name: &'static str,
        secret_field: &'static str,
        f: &mut fmt::Formatter<'_>,
    ) -> fmt::Result {
        f.debug_struct(name)
            .field(secret_field, &self.secret)
            .field("expires_at", &self.expires_at)
            .field("expires_in_seconds", &self.expires_in_seconds())
            .finish()
    }
}

/// `at` as RFC 3339 in UTC, whole seconds; `None` before 1970 or past year 9999.
fn rfc3339(at: SystemTime) -> Option<String> {
    let seconds = at.duration_since(SystemTime::UNIX_EPOCH).ok()?.as_secs();
    let at = time::OffsetDateTime::from_unix_timestamp(i64::try_from(seconds).ok()?).ok()?;
    at.format(&time::format_description::well_known::Rfc3339)
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiries_are_written_in_whole_seconds_and_absurd_ones_not_at_all() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_893_459_600_750);
        assert_eq!(rfc3339(at).as_deref(), Some("2030-01-01T01:00:00Z"));
        let far = SystemTime::UNIX_EPOCH + Duration::from_secs(400_000_000_000);
        assert_eq!(rfc3339(far), None);
        let before = SystemTime::UNIX_EPOCH - Duration::from_secs(1);
        assert_eq!(rfc3339(before), None);
    }
}
