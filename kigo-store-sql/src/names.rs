//! The table (and schema) a store keeps its rows in: checked identifiers, quoted per database.
//!
//! Names end up in SQL text (a table name cannot be a bind parameter), so they are restricted to
//! plain identifiers before any statement is rendered: no quoting tricks, no injection.

use crate::BackendKind;

/// The table name used when none is configured.
pub(crate) const DEFAULT_TABLE: &str = "kigo_tokens";

/// The suffix of the table that records the migrations applied to a token table.
const TRACKING_SUFFIX: &str = "_migrations";

/// The suffix of the token table's index on token expiry (no longer than [`TRACKING_SUFFIX`],
/// so that the index's name stays within the identifier limit too).
const EXPIRY_INDEX_SUFFIX: &str = "_expires_at";

/// The suffix of the token table's index on its keys in byte order (PostgreSQL), as short.
const KEY_INDEX_SUFFIX: &str = "_key_order";

/// PostgreSQL's identifier limit (NAMEDATALEN - 1).
const MAX_IDENTIFIER: usize = 63;

/// A table or schema name that is not a plain identifier.
#[derive(Debug, thiserror::Error)]
#[error(
    "invalid {what} name {name:?}: use ASCII letters, digits and underscores, not starting with a \
     digit, at most {max} bytes"
)]
pub(crate) struct InvalidName {
    what: &'static str,
    name: String,
    max: usize,
}

/// A schema's name qualified by the token table's name, once checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TableRef {
    schema: Option<String>,
    table: String,
}

impl TableRef {
    /// Checks `table` (and `schema`): each a plain identifier within PostgreSQL's 63-byte
    /// limit, the table short enough that its tracking table's name stays within it too.
    pub(crate) fn new(schema: Option<&str>, table: &str) -> Result<Self, InvalidName> {
        let table_max = MAX_IDENTIFIER - TRACKING_SUFFIX.len();
        check("table", table, table_max)?;
        if let Some(schema) = schema {
            check("schema", schema, MAX_IDENTIFIER)?;
        }
        Ok(Self {
            schema: schema.map(str::to_owned),
            table: table.to_owned(),
        })
    }

    /// The schema, if one is configured.
    pub(crate) fn schema(&self) -> Option<&str> {
        self.schema.as_deref()
    }

    /// The unquoted table name.
    pub(crate) fn table(&self) -> &str {
        &self.table
    }

    /// The table as SQL text for `kind`: quoted, and qualified by its schema.
    pub(crate) fn quoted(&self, kind: BackendKind) -> String {
        qualified(kind, self.schema(), &self.table)
    }

    /// The table that records the migrations applied to this token table, as SQL text.
    pub(crate) fn tracking_quoted(&self, kind: BackendKind) -> String {
        let tracking = format!("{}{TRACKING_SUFFIX}", self.table);
        qualified(kind, self.schema(), &tracking)
    }

    /// The token table's index on token expiry, as SQL text: quoted, never qualified
    /// (PostgreSQL creates an index in its table's schema and takes no schema in its name).
    pub(crate) fn expiry_index_quoted(&self, kind: BackendKind) -> String {
        quote(kind, &format!("{}{EXPIRY_INDEX_SUFFIX}", self.table))
    }

    /// The token table's index on its keys in byte order, as SQL text (see
    /// [`Self::expiry_index_quoted`]).
    pub(crate) fn key_index_quoted(&self, kind: BackendKind) -> String {
        quote(kind, &format!("{}{KEY_INDEX_SUFFIX}", self.table))
    }

    /// [`Self::expiry_index_quoted`] qualified by the table's schema, as `DROP INDEX` takes it.
    pub(crate) fn expiry_index_qualified(&self, kind: BackendKind) -> String {
        let index = format!("{}{EXPIRY_INDEX_SUFFIX}", self.table);
        qualified(kind, self.schema(), &index)
    }

    /// [`Self::key_index_quoted`] qualified by the table's schema, as `DROP INDEX` takes it.
    pub(crate) fn key_index_qualified(&self, kind: BackendKind) -> String {
        let index = format!("{}{KEY_INDEX_SUFFIX}", self.table);
        qualified(kind, self.schema(), &index)
    }

    /// `schema.table` (or `table`), unquoted: how the table is named in logs and `Debug`.
    pub(crate) fn name(&self) -> String {
        match &self.schema {
            Some(schema) => format!("{schema}.{}", self.table),
            None => self.table.clone(),
        }
    }

    /// What sealed entries of this table on `kind` are bound to: `<database>:<schema.table>`,
    /// the table named as configured (an unqualified table as given, whatever schema the
    /// connection resolves it in), so that an entry copied to another table or database does
    /// not open.
    pub(crate) fn namespace(&self, kind: BackendKind) -> String {
        format!("{}:{}", kind.name(), self.name())
    }
}

/// `name` quoted as an identifier of `kind`.
pub(crate) fn quote(kind: BackendKind, name: &str) -> String {
    match kind {
        BackendKind::MySql => format!("`{name}`"),
        BackendKind::Postgres | BackendKind::Sqlite => format!("\"{name}\""),
    }
}

fn qualified(kind: BackendKind, schema: Option<&str>, name: &str) -> String {
    match schema {
        Some(schema) => format!("{}.{}", quote(kind, schema), quote(kind, name)),
        None => quote(kind, name),
    }
}

fn check(what: &'static str, name: &str, max: usize) -> Result<(), InvalidName> {
    let mut bytes = name.bytes();
    let plain = bytes
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == b'_')
        && bytes.all(|byte| byte.is_ascii_alphanumeric() || byte == b'_');
    if plain && name.len() <= max {
        return Ok(());
    }
    Err(InvalidName {
        what,
        name: name.to_owned(),
        max,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_identifiers_are_accepted_and_quoted() {
        let table = TableRef::new(Some("auth"), "Kigo_Tokens2").unwrap();
        assert_eq!(
            table.quoted(BackendKind::Postgres),
            "\"auth\".\"Kigo_Tokens2\""
        );
        assert_eq!(table.quoted(BackendKind::MySql), "`auth`.`Kigo_Tokens2`");
        assert_eq!(
            table.tracking_quoted(BackendKind::Sqlite),
            "\"auth\".\"Kigo_Tokens2_migrations\""
        );
        assert_eq!(table.name(), "auth.Kigo_Tokens2");
        assert_eq!(
            table.expiry_index_quoted(BackendKind::MySql),
            "`Kigo_Tokens2_expires_at`"
        );
        let plain = TableRef::new(None, DEFAULT_TABLE).unwrap();
        assert_eq!(plain.quoted(BackendKind::Sqlite), "\"kigo_tokens\"");
        assert_eq!(plain.name(), "kigo_tokens");
        assert_eq!(plain.namespace(BackendKind::Sqlite), "sqlite:kigo_tokens");
        assert_eq!(
            table.namespace(BackendKind::Postgres),
            "postgres:auth.Kigo_Tokens2"
        );
    }

    #[test]
    fn anything_else_is_refused() {
        for bad in [
            "",
            "1tokens",
            "tokens;drop",
            "to\"kens",
            "to`kens",
            "tök",
            "a b",
            "a.b",
        ] {
            assert!(TableRef::new(None, bad).is_err(), "{bad:?}");
            assert!(TableRef::new(Some(bad), "tokens").is_err(), "{bad:?}");
        }
        assert!(TableRef::new(None, &"t".repeat(53)).is_err());
        assert!(TableRef::new(None, &"t".repeat(52)).is_ok());
        assert!(TableRef::new(Some(&"s".repeat(63)), &"t".repeat(52)).is_ok());
        assert!(TableRef::new(Some(&"s".repeat(64)), "tokens").is_err());
    }
}
