//! The schema, shipped as versioned SQL templates and applied through sqlx's [`Migrate`] trait.
//!
//! sqlx's `migrate!()` embeds SQL with fixed names and tracks it in one `_sqlx_migrations`
//! table per database. A configurable table name needs both to vary, so the templates (in
//! `migrations/<database>/`) name the token table `{table}`, are rendered at run time for the
//! configured table, and are tracked in a table of their own, `<table>_migrations`: two stores
//! with different tables in one database never mix up their histories, and each rendered
//! migration keeps a stable checksum.

use sqlx::migrate::{Migrate, MigrateError, Migration, MigrationType};
use sqlx::{AssertSqlSafe, SqlSafeStr};

use crate::BackendKind;
use crate::names::{TableRef, quote};

/// One versioned migration, with `{table}` where the token table's name goes, `{index}` where
/// the name of its index on token expiry goes, and `{key_index}` that of its index on keys
/// (`{qualified_index}` and `{qualified_key_index}`: qualified by the schema, for `DROP INDEX`).
#[derive(Debug)]
pub(crate) struct Template {
    pub(crate) version: i64,
    pub(crate) description: &'static str,
    pub(crate) sql: &'static str,
}

/// `templates` rendered for `table`.
fn migrations(templates: &[Template], table: &TableRef, kind: BackendKind) -> Vec<Migration> {
    let quoted = table.quoted(kind);
    let index = table.expiry_index_quoted(kind);
    let key_index = table.key_index_quoted(kind);
    let qualified_index = table.expiry_index_qualified(kind);
    let qualified_key_index = table.key_index_qualified(kind);
    templates
        .iter()
        .map(|template| {
            let sql = template
                .sql
                .replace("{table}", &quoted)
                .replace("{index}", &index)
                .replace("{key_index}", &key_index)
                .replace("{qualified_index}", &qualified_index)
                .replace("{qualified_key_index}", &qualified_key_index);
            let sql = AssertSqlSafe(sql).into_sql_str();
            let description = template.description.into();
            Migration::new(
                template.version,
                description,
                MigrationType::Simple,
                sql,
                false,
            )
        })
        .collect()
}

/// Applies on `connection` the migrations of `templates` that `table` has not seen, after
/// creating its schema (if one is configured) and its migrations table if missing, and checking
/// the history: what sqlx's `Migrator::run` does, through the public [`Migrate`] trait (the
/// migrator's own entry point for a borrowed connection is not public API). The caller holds
/// whatever lock keeps concurrent runs apart.
pub(crate) async fn apply<C: Migrate>(
    connection: &mut C,
    templates: &[Template],
    table: &TableRef,
    kind: BackendKind,
) -> Result<(), MigrateError> {
    if let Some(schema) = table.schema() {
        connection
            .create_schema_if_not_exists(&quote(kind, schema))
            .await?;
    }
    let tracking = table.tracking_quoted(kind);
    connection.ensure_migrations_table(&tracking).await?;
    if let Some(version) = connection.dirty_version(&tracking).await? {
        return Err(MigrateError::Dirty(version));
    }
    let applied = connection.list_applied_migrations(&tracking).await?;
    let migrations = migrations(templates, table, kind);
    for done in &applied {
        match migrations
            .iter()
            .find(|shipped| shipped.version == done.version)
        {
            None => return Err(MigrateError::VersionMissing(done.version)),
            Some(shipped) if shipped.checksum != done.checksum => {
                return Err(MigrateError::VersionMismatch(done.version));
            }
            Some(_) => {}
        }
    }
    for migration in &migrations {
        if !applied.iter().any(|done| done.version == migration.version) {
            connection.apply(&tracking, migration).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATES: &[Template] = &[
        Template {
            version: 1,
            description: "create token table",
            sql: "CREATE TABLE {table} (token_key TEXT PRIMARY KEY, expires_at TIMESTAMPTZ)",
        },
        Template {
            version: 2,
            description: "index token expiry",
            sql: "CREATE INDEX {index} ON {table} (expires_at)",
        },
    ];

    #[test]
    fn templates_render_for_the_table() {
        let table = TableRef::new(Some("auth"), "tokens").unwrap();
        let rendered = migrations(TEMPLATES, &table, BackendKind::Postgres);
        assert_eq!(
            rendered[0].sql.as_str(),
            "CREATE TABLE \"auth\".\"tokens\" (token_key TEXT PRIMARY KEY, expires_at TIMESTAMPTZ)"
        );
        assert_eq!(
            rendered[1].sql.as_str(),
            "CREATE INDEX \"tokens_expires_at\" ON \"auth\".\"tokens\" (expires_at)"
        );
        let other = TableRef::new(Some("auth"), "other").unwrap();
        let other = migrations(TEMPLATES, &other, BackendKind::Postgres);
        assert_ne!(other[0].checksum, rendered[0].checksum);
    }
}
