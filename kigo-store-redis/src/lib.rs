#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![cfg_attr(
    not(test),
    warn(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod builder;
mod connection;
mod error;
mod keys;
mod scripts;
mod store;
mod subscription;
mod transport;

pub use builder::{DEFAULT_PREFIX, RedisStoreBuilder, STORE_URL_VAR};
pub use keys::KeyNames;
pub use kigo_core::codec::{Keyring, SealingKey};
pub use redis;
pub use store::RedisStore;
