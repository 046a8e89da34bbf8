//! A `TokenStore` on Redis (standalone and Cluster): one shared token per key across replicas,
//! with a lease, fenced commits and pub/sub wake-ups.
//!
//! **Not implemented yet.** This crate is a placeholder in the workspace; it offers nothing to use.
