//! A `TokenStore` on SQL through sqlx: PostgreSQL, MySQL/MariaDB, and SQLite as the embedded
//! default.
//!
//! **Not implemented yet.** This crate is a placeholder in the workspace; it offers nothing to use.
