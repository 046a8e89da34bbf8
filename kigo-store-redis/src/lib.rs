#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

mod builder;
mod connection;
mod error;
mod keys;
mod scripts;
mod store;

pub use builder::{DEFAULT_PREFIX, RedisStoreBuilder};
pub use keys::KeyNames;
pub use redis;
pub use store::RedisStore;
