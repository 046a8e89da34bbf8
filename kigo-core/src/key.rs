//! Which token: partner-level (one per partner ID) or user-level (one per partner and user).

use std::fmt;
use std::sync::Arc;

/// The longest partner or user ID accepted, in bytes.
///
/// IDs end up in store keys and URLs; a bound keeps a bad input from growing them without limit.
pub const MAX_ID_LEN: usize = 256;

/// Why a partner or user ID was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidId {
    /// The ID is empty.
    #[error("{what} is empty")]
    Empty {
        /// "partner ID" or "user ID".
        what: &'static str,
    },
    /// The ID is longer than [`MAX_ID_LEN`] bytes.
    #[error("{what} is {len} bytes long, more than the {MAX_ID_LEN} allowed")]
    TooLong {
        /// "partner ID" or "user ID".
        what: &'static str,
        /// The length that was given.
        len: usize,
    },
    /// The ID contains a control character (line breaks, NUL, ...).
    #[error("{what} contains a control character")]
    ControlCharacter {
        /// "partner ID" or "user ID".
        what: &'static str,
    },
}

fn validate(what: &'static str, id: &str) -> Result<Arc<str>, InvalidId> {
    if id.is_empty() {
        return Err(InvalidId::Empty { what });
    }
    if id.len() > MAX_ID_LEN {
        return Err(InvalidId::TooLong {
            what,
            len: id.len(),
        });
    }
    if id.chars().any(char::is_control) {
        return Err(InvalidId::ControlCharacter { what });
    }
    Ok(Arc::from(id))
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Arc<str>);

        impl $name {
            #[doc = concat!("Checks and wraps a ", $what, ": non-empty, at most [`MAX_ID_LEN`] bytes, no control characters.")]
            pub fn new(id: impl AsRef<str>) -> Result<Self, InvalidId> {
                validate($what, id.as_ref()).map(Self)
            }

            /// The ID as given.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&*self.0, f)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = InvalidId;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::new(s)
            }
        }
    };
}

id_type!(
    /// A partner ID issued by Kigo. Not a secret: it names the partner, the API key authenticates it.
    PartnerId,
    "partner ID"
);

id_type!(
    /// The partner's own ID for one of its users, the subject of a user-level token.
    UserId,
    "user ID"
);

/// Which token a manager, source or store is asked about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TokenKey {
    /// The partner-level session token: full API access, never for a front end.
    Partner(PartnerId),
    /// A user-level session token for one user of a partner: what a front end may receive.
    User {
        /// The partner the user belongs to.
        partner: PartnerId,
        /// The user the token is for.
        user: UserId,
    },
}

impl TokenKey {
    /// The partner-level key for `partner`.
    pub fn partner(partner: PartnerId) -> Self {
        Self::Partner(partner)
    }

    /// The user-level key for `user` of `partner`.
    pub fn user(partner: PartnerId, user: UserId) -> Self {
        Self::User { partner, user }
    }

    /// The partner this key belongs to.
    pub fn partner_id(&self) -> &PartnerId {
        match self {
            Self::Partner(partner) | Self::User { partner, .. } => partner,
        }
    }

    /// The user, for a user-level key.
    pub fn user_id(&self) -> Option<&UserId> {
        match self {
            Self::Partner(_) => None,
            Self::User { user, .. } => Some(user),
        }
    }

    /// A canonical, reversible text form for store keys and change notifications.
    ///
    /// `p/<partner>` or `u/<partner>/<user>`, each ID percent-encoded outside `[A-Za-z0-9._-]`, so
    /// the result holds no `/` separators of its own, no `{`/`}` (Redis hash tags) and no spaces.
    pub fn storage_id(&self) -> String {
        match self {
            Self::Partner(partner) => format!("p/{}", escape(partner.as_str())),
            Self::User { partner, user } => {
                format!("u/{}/{}", escape(partner.as_str()), escape(user.as_str()))
            }
        }
    }

    /// Parses what [`TokenKey::storage_id`] wrote; `None` for anything else.
    pub fn from_storage_id(id: &str) -> Option<Self> {
        let mut parts = id.split('/');
        let key = match (parts.next()?, parts.next(), parts.next()) {
            ("p", Some(partner), None) => Self::Partner(PartnerId::new(unescape(partner)?).ok()?),
            ("u", Some(partner), Some(user)) => Self::User {
                partner: PartnerId::new(unescape(partner)?).ok()?,
                user: UserId::new(unescape(user)?).ok()?,
            },
            _ => return None,
        };
        parts.next().is_none().then_some(key)
    }
}

/// Which keys a token manager serves: it refuses every other key before touching its store or
/// its source, so that a manager of user-level tokens (what front ends receive) can never hand out
/// the partner-level token, nor one partner's manager another partner's tokens.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyScope {
    /// The partner-level token of this partner.
    Partner(PartnerId),
    /// User-level tokens of this partner's users.
    UsersOf(PartnerId),
    /// The partner-level tokens of every partner (a backend acting for several partners).
    AnyPartner,
    /// User-level tokens of every partner's users (a backend acting for several partners).
    AnyUser,
}

impl KeyScope {
    /// Whether `key` is one this scope serves.
    pub fn contains(&self, key: &TokenKey) -> bool {
        match (self, key) {
            (Self::Partner(scope), TokenKey::Partner(partner)) => scope == partner,
            (Self::UsersOf(scope), TokenKey::User { partner, .. }) => scope == partner,
            (Self::AnyPartner, TokenKey::Partner(_)) | (Self::AnyUser, TokenKey::User { .. }) => {
                true
            }
            _ => false,
        }
    }
}

impl fmt::Display for KeyScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Partner(partner) => write!(f, "the partner-level token of partner {partner}"),
            Self::UsersOf(partner) => write!(f, "user-level tokens of partner {partner}"),
            Self::AnyPartner => f.write_str("partner-level tokens"),
            Self::AnyUser => f.write_str("user-level tokens"),
        }
    }
}

impl fmt::Display for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Partner(partner) => write!(f, "partner {partner}"),
            Self::User { partner, user } => write!(f, "user {user} of partner {partner}"),
        }
    }
}

fn is_plain(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-')
}

fn escape(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for &byte in id.as_bytes() {
        if is_plain(byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn unescape(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = text.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            byte if is_plain(byte) => {
                out.push(byte);
                i += 1;
            }
            _ => return None,
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user_key(partner: &str, user: &str) -> TokenKey {
        TokenKey::user(PartnerId::new(partner).unwrap(), UserId::new(user).unwrap())
    }

    #[test]
    fn ids_are_validated() {
        assert!(matches!(PartnerId::new(""), Err(InvalidId::Empty { .. })));
        assert!(matches!(
            UserId::new("a\nb"),
            Err(InvalidId::ControlCharacter { .. })
        ));
        assert!(matches!(
            PartnerId::new("x".repeat(MAX_ID_LEN + 1)),
            Err(InvalidId::TooLong { len: 257, .. })
        ));
        assert_eq!(PartnerId::new("acme").unwrap().as_str(), "acme");
    }

    #[test]
    fn storage_ids_round_trip_and_stay_plain() {
        let keys = [
            TokenKey::partner(PartnerId::new("acme-1").unwrap()),
            user_key("acme", "alice@example.com"),
            user_key("a/b", "{tag} %41 ünï"),
        ];
        for key in keys {
            let id = key.storage_id();
            assert!(!id.contains(['{', '}', ' ']), "{id}");
            assert_eq!(
                id.matches('/').count(),
                usize::from(key.user_id().is_some()) + 1
            );
            assert_eq!(TokenKey::from_storage_id(&id), Some(key));
        }
    }

    #[test]
    fn scopes_keep_levels_and_partners_apart() {
        let acme = PartnerId::new("acme").unwrap();
        let partner = TokenKey::partner(acme.clone());
        let user = user_key("acme", "alice");
        let other_user = user_key("globex", "alice");
        let cases = [
            (KeyScope::Partner(acme.clone()), [true, false, false]),
            (KeyScope::UsersOf(acme), [false, true, false]),
            (KeyScope::AnyPartner, [true, false, false]),
            (KeyScope::AnyUser, [false, true, true]),
        ];
        for (scope, expected) in cases {
            let found = [&partner, &user, &other_user].map(|key| scope.contains(key));
            assert_eq!(found, expected, "{scope}");
        }
    }

    #[test]
    fn foreign_storage_ids_are_refused() {
        for id in [
            "", "p", "p/", "x/acme", "p/a/b", "u/a", "p/%zz", "p/a b", "u/a/b/c",
        ] {
            assert_eq!(TokenKey::from_storage_id(id), None, "{id}");
        }
    }
}
