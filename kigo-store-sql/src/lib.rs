#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![cfg_attr(
    not(test),
    warn(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

#[cfg(not(any(feature = "postgres", feature = "mysql", feature = "sqlite")))]
compile_error!("kigo-store-sql needs at least one of the features `postgres`, `mysql`, `sqlite`");

mod backend;
mod builder;
mod error;
mod migrate;
mod names;
#[cfg(feature = "sqlite")]
mod owner_only;
mod pool;
mod row;
mod store;
#[cfg(any(feature = "postgres", feature = "mysql"))]
mod transport;

pub use backend::BackendKind;
pub use builder::{MAX_CONNECTIONS_VAR, STORE_URL_VAR, SqlStoreBuilder};
pub use kigo_core::codec::{Keyring, SealingKey};
pub use pool::SqlPool;
pub use store::SqlStore;

/// The sqlx this crate is built on, so that pools you pass in have matching types.
pub use sqlx;
