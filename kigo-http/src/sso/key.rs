//! Where reusable SSO sessions are cached: kigo-core knows partner- and user-level keys only, so a
//! session for (partner, program, user) is kept under a user-level key of a partner ID of its own,
//! `sso:<partner>`, whose user ID names the program and the user unambiguously. An SSO manager's
//! scope is that partner ID's users: it can never hand out a user token or the partner token.

use std::fmt;
use std::sync::Arc;

use kigo_core::{InvalidId, KeyScope, PartnerId, TokenKey, UserId};

/// What a Kigo program is called in an SSO session request (`external_program_id`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProgramId(Arc<str>);

impl ProgramId {
    /// Checks and wraps a program ID: non-empty, at most [`kigo_core::MAX_ID_LEN`] bytes, no
    /// control characters.
    pub fn new(id: impl AsRef<str>) -> Result<Self, InvalidId> {
        let checked = UserId::new(id.as_ref()).map_err(|invalid| named("program ID", invalid))?;
        Ok(Self(Arc::from(checked.as_str())))
    }

    /// The ID as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ProgramId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for ProgramId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `invalid`, saying it is about `what`.
fn named(what: &'static str, invalid: InvalidId) -> InvalidId {
    match invalid {
        InvalidId::Empty { .. } => InvalidId::Empty { what },
        InvalidId::TooLong { len, .. } => InvalidId::TooLong { what, len },
        InvalidId::ControlCharacter { .. } => InvalidId::ControlCharacter { what },
        other => other,
    }
}

/// The SSO session keys of one partner.
#[derive(Debug, Clone)]
pub(crate) struct SsoKeys {
    /// `sso:<partner>`: the partner ID of every key, and of the scope.
    namespace: PartnerId,
}

impl SsoKeys {
    pub(crate) fn of(partner: &PartnerId) -> Result<Self, InvalidId> {
        let namespace = PartnerId::new(format!("sso:{partner}"))?;
        Ok(Self { namespace })
    }

    /// The keys of this partner's SSO sessions, and no other.
    pub(crate) fn scope(&self) -> KeyScope {
        KeyScope::UsersOf(self.namespace.clone())
    }

    /// The key of `user`'s session in `program`: user ID `<program>/<user>` (the program with
    /// `%` and `/` percent-encoded, so the first `/` ends it), or `/<user>` without a program.
    pub(crate) fn key(
        &self,
        program: Option<&ProgramId>,
        user: &UserId,
    ) -> Result<TokenKey, InvalidId> {
        let program = program.map(|program| escape(program.as_str()));
        let id = format!("{}/{user}", program.unwrap_or_default());
        let id = UserId::new(id).map_err(|invalid| named("program and user ID", invalid))?;
        Ok(TokenKey::user(self.namespace.clone(), id))
    }

    /// The program and user of one of these keys; `None` for any other key.
    pub(crate) fn decode(&self, key: &TokenKey) -> Option<(Option<ProgramId>, UserId)> {
        let TokenKey::User { partner, user } = key else {
            return None;
        };
        if partner != &self.namespace {
            return None;
        }
        let (program, user) = user.as_str().split_once('/')?;
        let program = match program {
            "" => None,
            escaped => Some(ProgramId::new(unescape(escaped)?).ok()?),
        };
        Some((program, UserId::new(user).ok()?))
    }
}

fn escape(program: &str) -> String {
    program.replace('%', "%25").replace('/', "%2F")
}

/// The inverse of [`escape`]; `None` for text it cannot have written.
fn unescape(escaped: &str) -> Option<String> {
    let mut out = String::with_capacity(escaped.len());
    let mut rest = escaped;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let decoded = match rest.get(at + 1..at + 3)? {
            "25" => '%',
            "2F" => '/',
            _ => return None,
        };
        out.push(decoded);
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> SsoKeys {
        SsoKeys::of(&PartnerId::new("acme").unwrap()).unwrap()
    }

    fn program(id: &str) -> ProgramId {
        ProgramId::new(id).unwrap()
    }

    fn user(id: &str) -> UserId {
        UserId::new(id).unwrap()
    }

    #[test]
    fn every_program_and_user_has_a_key_of_its_own_that_decodes_back() {
        let cases = [
            (None, "alice"),
            (Some("spring"), "alice"),
            (Some("spring/summer"), "alice"),
            (Some("spring"), "summer/alice"),
            (Some("100%"), "a%2Fb"),
            (Some("%2F"), "/"),
            (None, "/alice"),
        ];
        let keys = keys();
        let mut seen = std::collections::HashSet::new();
        for (program_id, user_id) in cases {
            let program = program_id.map(program);
            let key = keys.key(program.as_ref(), &user(user_id)).unwrap();
            assert!(seen.insert(key.clone()), "{key} is not unique");
            assert_eq!(
                keys.decode(&key),
                Some((program, user(user_id))),
                "{program_id:?} {user_id}"
            );
        }
    }

    #[test]
    fn sso_keys_are_neither_user_nor_partner_keys_of_the_partner() {
        let keys = keys();
        let acme = PartnerId::new("acme").unwrap();
        let scope = keys.scope();
        assert!(scope.contains(&keys.key(None, &user("alice")).unwrap()));
        for foreign in [
            TokenKey::partner(acme.clone()),
            TokenKey::user(acme.clone(), user("/alice")),
            TokenKey::user(acme, user("spring/alice")),
        ] {
            assert!(!scope.contains(&foreign), "{foreign}");
            assert_eq!(keys.decode(&foreign), None, "{foreign}");
        }
        let namespace = PartnerId::new("sso:acme").unwrap();
        for odd in ["alice", "a%zz/alice", "a%2f/alice", "%2/alice"] {
            let key = TokenKey::user(namespace.clone(), user(odd));
            assert_eq!(keys.decode(&key), None, "{odd}");
        }
    }

    #[test]
    fn ids_too_long_together_are_refused_with_a_clear_error() {
        let long = "u".repeat(kigo_core::MAX_ID_LEN);
        assert!(keys().key(None, &user(&long)).is_err());
        let error = keys()
            .key(Some(&program("spring")), &user(&long))
            .unwrap_err();
        assert!(
            error.to_string().starts_with("program and user ID"),
            "{error}"
        );
        assert!(matches!(
            ProgramId::new(""),
            Err(InvalidId::Empty { what: "program ID" })
        ));
    }
}
