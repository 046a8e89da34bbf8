//! The schema, shipped as versioned SQL templates and applied with sqlx's migrator.
//!
//! sqlx's `migrate!()` embeds SQL with fixed names and tracks it in one `_sqlx_migrations`
//! table per database. A configurable table name needs both to vary, so the templates (in
//! `migrations/<database>/`) name the token table `{table}`, are rendered at run time for the
//! configured table, and are tracked in a table of their own, `<table>_migrations`, with sqlx's
//! runtime [`Migrator`]: two stores with different tables in one database never mix up their
//! histories, and each rendered migration keeps a stable checksum.

use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AssertSqlSafe, SqlSafeStr};

use crate::BackendKind;
use crate::names::{TableRef, quote};

/// One versioned migration, with `{table}` where the token table's name goes.
#[derive(Debug)]
pub(crate) struct Template {
    pub(crate) version: i64,
    pub(crate) description: &'static str,
    pub(crate) sql: &'static str,
}

/// A migrator for `templates` on `table`, tracking them in the table's own migrations table and
/// creating its schema if one is configured.
pub(crate) fn migrator(templates: &[Template], table: &TableRef, kind: BackendKind) -> Migrator {
    let quoted = table.quoted(kind);
    let migrations = templates
        .iter()
        .map(|template| {
            let sql = AssertSqlSafe(template.sql.replace("{table}", &quoted)).into_sql_str();
            Migration::new(
                template.version,
                template.description.into(),
                MigrationType::Simple,
                sql,
                false,
            )
        })
        .collect();
    let mut migrator = Migrator::with_migrations(migrations);
    migrator.dangerous_set_table_name(table.tracking_quoted(kind));
    if let Some(schema) = table.schema() {
        migrator.create_schema(quote(kind, schema));
    }
    migrator
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATES: &[Template] = &[Template {
        version: 1,
        description: "create token table",
        sql: "CREATE TABLE {table} (token_key TEXT PRIMARY KEY)",
    }];

    #[test]
    fn templates_render_for_the_table_and_track_per_table() {
        let table = TableRef::new(Some("auth"), "tokens").unwrap();
        let migrator = migrator(TEMPLATES, &table, BackendKind::Postgres);
        let migration = migrator.iter().next().unwrap();
        assert_eq!(
            migration.sql.as_str(),
            "CREATE TABLE \"auth\".\"tokens\" (token_key TEXT PRIMARY KEY)"
        );
        assert_eq!(migrator.table_name, "\"auth\".\"tokens_migrations\"");
        let other = TableRef::new(Some("auth"), "other").unwrap();
        let other = super::migrator(TEMPLATES, &other, BackendKind::Postgres);
        assert_ne!(other.iter().next().unwrap().checksum, migration.checksum);
    }
}
