//! Where the store keeps each token's state: one record key, and two short-lived keys (the
//! lease and the cool-down), under one hash tag, so that every script touches a single Redis
//! Cluster slot.

use kigo_core::TokenKey;

/// The longest key prefix accepted, in bytes.
const MAX_PREFIX_LEN: usize = 128;

/// The Redis keys that hold the state of one token key.
///
/// All share the hash tag `{<storage id>}` (see [`TokenKey::storage_id`]), so that they live in
/// one Cluster slot and one script can read and write them together. An ACL user for the store
/// needs access to the pattern `<prefix>*` (see the crate docs).
///
/// Only the record persists: the lease and the cool-down expire within seconds or minutes, and a
/// commit deletes both. The two `legacy_` names are those of the three-key layout of earlier
/// versions (0.1 before the record), which `acquire_lease` reads so that fences never go back
/// across an upgrade; the store never writes them.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyNames {
    /// The record, `<prefix>{<storage id>}`: a string with the generation, the last fence
    /// granted, the token's expiry, its fingerprint and the sealed entry (see the crate docs).
    pub record: String,
    /// The refresh lease, `<fence>:<holder>`, with the lease TTL.
    pub lease: String,
    /// The shared cool-down, present while it runs.
    pub cooldown: String,
    /// The fence counter of the earlier layout (`…:fence`): read, never written.
    pub legacy_fence: String,
    /// The state hash of the earlier layout (`…:state`, its field `gen`): read, never written.
    pub legacy_state: String,
}

impl KeyNames {
    pub(crate) fn new(prefix: &str, key: &TokenKey) -> Self {
        let record = record_name(prefix, &key.storage_id());
        Self {
            lease: format!("{record}:lease"),
            cooldown: format!("{record}:cooldown"),
            legacy_fence: format!("{record}:fence"),
            legacy_state: format!("{record}:state"),
            record,
        }
    }

    /// In the order every script declares them (`KEYS[1]` to `KEYS[5]`).
    pub(crate) fn in_script_order(&self) -> [&str; 5] {
        [
            &self.record,
            &self.lease,
            &self.cooldown,
            &self.legacy_fence,
            &self.legacy_state,
        ]
    }
}

/// The name of the record of the token key with `storage_id`; the other keys' names add a
/// suffix to it.
fn record_name(prefix: &str, storage_id: &str) -> String {
    format!("{prefix}{{{storage_id}}}")
}

/// The `SCAN` pattern that matches the records under `prefix`: one per token key with state.
pub(crate) fn record_pattern(prefix: &str) -> String {
    record_name(prefix, "*")
}

/// The token key whose record under `prefix` is `name`; `None` for a name the store did not
/// make (written by another program under the prefix, or a storage ID spelled otherwise).
pub(crate) fn key_of_record(prefix: &str, name: &[u8]) -> Option<TokenKey> {
    let storage_id = std::str::from_utf8(name)
        .ok()?
        .strip_prefix(prefix)?
        .strip_prefix('{')?
        .strip_suffix('}')?;
    TokenKey::from_storage_id(storage_id).filter(|key| key.storage_id() == storage_id)
}

/// The pub/sub channel on which commits and invalidations under `prefix` are announced.
pub(crate) fn channel(prefix: &str) -> String {
    format!("{prefix}changes")
}

/// Why a key prefix was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum InvalidPrefix {
    #[error("the key prefix contains `{{` or `}}`, which would change the keys' hash tag")]
    Braces,
    #[error("the key prefix contains whitespace or control characters")]
    Unprintable,
    #[error(
        "the key prefix contains a glob character (`*`, `?`, `[`, `]` or `\\`), which would change \
         what the ACL key pattern `~<prefix>*` grants"
    )]
    Glob,
    #[error("the key prefix is longer than {MAX_PREFIX_LEN} bytes")]
    TooLong,
}

/// Checks that `prefix` keeps the hash tag of every key its own, and is matched literally by
/// the ACL pattern `~<prefix>*`.
pub(crate) fn check_prefix(prefix: &str) -> Result<(), InvalidPrefix> {
    if prefix.contains(['{', '}']) {
        return Err(InvalidPrefix::Braces);
    }
    if prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(InvalidPrefix::Unprintable);
    }
    if prefix.contains(['*', '?', '[', ']', '\\']) {
        return Err(InvalidPrefix::Glob);
    }
    if prefix.len() > MAX_PREFIX_LEN {
        return Err(InvalidPrefix::TooLong);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use kigo_core::{PartnerId, UserId};

    use super::*;

    #[test]
    fn keys_of_one_token_share_one_hash_tag() {
        let key = TokenKey::user(
            PartnerId::new("acme").unwrap(),
            UserId::new("{alice} bob").unwrap(),
        );
        let names = KeyNames::new("app:", &key);
        let tag = format!("{{{}}}", key.storage_id());
        assert_eq!(names.record, format!("app:{tag}"));
        for name in names.in_script_order() {
            assert!(name.starts_with(&format!("app:{tag}")), "{name}");
            assert_eq!(name.matches('{').count(), 1, "{name}");
        }
    }

    #[test]
    fn records_name_their_token_key_and_nothing_else_does() {
        let key = TokenKey::user(
            PartnerId::new("a/b").unwrap(),
            UserId::new("{alice} %41").unwrap(),
        );
        let names = KeyNames::new("app:", &key);
        assert_eq!(key_of_record("app:", names.record.as_bytes()), Some(key));
        assert_eq!(record_pattern("app:"), "app:{*}");
        for foreign in [
            names.lease.as_str(),
            names.legacy_state.as_str(),
            "app:{p/acme}x",
            "app:{not an id}",
            "app:{p/%61cme}",
            "app:p/acme",
            "other:{p/acme}",
        ] {
            assert_eq!(key_of_record("app:", foreign.as_bytes()), None, "{foreign}");
        }
        assert_eq!(key_of_record("app:", b"app:{p/\xff}"), None);
    }

    #[test]
    fn prefixes_that_would_break_the_hash_tag_are_refused() {
        assert_eq!(check_prefix("kigo:"), Ok(()));
        assert_eq!(check_prefix(""), Ok(()));
        assert_eq!(check_prefix("a{b"), Err(InvalidPrefix::Braces));
        assert_eq!(check_prefix("a b"), Err(InvalidPrefix::Unprintable));
        for glob in ["app*:", "app?:", "app[1]:", "app\\:"] {
            assert_eq!(check_prefix(glob), Err(InvalidPrefix::Glob), "{glob}");
        }
        assert_eq!(check_prefix(&"x".repeat(200)), Err(InvalidPrefix::TooLong));
    }
}
