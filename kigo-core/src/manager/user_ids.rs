//! User IDs are personal data: the manager's logs and traces name a user by a short keyed hash,
//! unless the operator opts in to the IDs themselves.

use std::fmt;

use sha2::{Digest, Sha256};

use crate::TokenKey;

/// How the manager's logs and traces name the user of a user-level key.
///
/// The default, [`UserIdLogging::hashed`], writes `user #3f9a1c2b of partner acme`: eight hex
/// digits of a SHA-256 keyed with a random key of this manager, so that one user's events can be
/// followed in one replica's logs without the logs holding the ID. Give every replica the same
/// key with [`UserIdLogging::hashed_with`] to follow a user across the fleet.
#[derive(Clone)]
pub struct UserIdLogging(Mode);

#[derive(Clone)]
enum Mode {
    Hashed([u8; 32]),
    AsIs,
}

impl UserIdLogging {
    /// A keyed hash, with a random key of this process.
    pub fn hashed() -> Self {
        Self(Mode::Hashed(std::array::from_fn(|_| fastrand::u8(..))))
    }

    /// A keyed hash with `key`: the same user gets the same hash on every replica given it.
    pub fn hashed_with(key: [u8; 32]) -> Self {
        Self(Mode::Hashed(key))
    }

    /// The user IDs as they are, by the operator's choice (the logs then hold personal data).
    pub fn as_is() -> Self {
        Self(Mode::AsIs)
    }

    /// `key` as logs show it.
    pub(super) fn show<'a>(&'a self, key: &'a TokenKey) -> Logged<'a> {
        Logged { key, logging: self }
    }
}

impl Default for UserIdLogging {
    fn default() -> Self {
        Self::hashed()
    }
}

impl fmt::Debug for UserIdLogging {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.0 {
            Mode::Hashed(_) => "UserIdLogging::Hashed",
            Mode::AsIs => "UserIdLogging::AsIs",
        })
    }
}

/// A token key as the manager's logs show it.
pub(super) struct Logged<'a> {
    key: &'a TokenKey,
    logging: &'a UserIdLogging,
}

impl fmt::Display for Logged<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.key, &self.logging.0) {
            (TokenKey::User { partner, user }, Mode::Hashed(secret)) => {
                let digest = Sha256::new()
                    .chain_update(secret)
                    .chain_update(user.as_str().as_bytes())
                    .finalize();
                write!(f, "user #")?;
                digest[..4]
                    .iter()
                    .try_for_each(|byte| write!(f, "{byte:02x}"))?;
                write!(f, " of partner {partner}")
            }
            (key, _) => write!(f, "{key}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{PartnerId, UserId};

    fn user(id: &str) -> TokenKey {
        TokenKey::user(PartnerId::new("acme").unwrap(), UserId::new(id).unwrap())
    }

    #[test]
    fn user_ids_are_hashed_unless_asked_for() {
        let key = [9; 32];
        let hashed = UserIdLogging::hashed_with(key);
        let shown = hashed.show(&user("alice@example.com")).to_string();
        assert!(!shown.contains("alice"), "{shown}");
        assert!(
            shown.starts_with("user #") && shown.ends_with(" of partner acme"),
            "{shown}"
        );
        assert_eq!(
            shown,
            UserIdLogging::hashed_with(key)
                .show(&user("alice@example.com"))
                .to_string()
        );
        assert_ne!(shown, hashed.show(&user("bob")).to_string());
        assert_ne!(
            shown,
            UserIdLogging::hashed()
                .show(&user("alice@example.com"))
                .to_string()
        );
        assert_eq!(
            UserIdLogging::as_is().show(&user("alice")).to_string(),
            "user alice of partner acme"
        );
        let partner = TokenKey::partner(PartnerId::new("acme").unwrap());
        assert_eq!(hashed.show(&partner).to_string(), "partner acme");
        assert!(!format!("{hashed:?}").contains('9'));
    }
}
