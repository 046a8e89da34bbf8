#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![cfg_attr(
    not(test),
    warn(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod codec;
mod error;
mod key;
pub mod manager;
pub mod policy;
pub mod runtime;
mod source;
pub mod store;
mod time;
mod token;

pub use error::Error;
pub use key::{InvalidId, KeyScope, MAX_ID_LEN, PartnerId, TokenKey, UserId};
pub use manager::{
    BuildError, CreateTimedOut, ManagerBuilder, RefreshPanicked, StaleOnArrival, StoreTimedOut,
    TokenFuture, TokenGuard, TokenHandle, TokenManager,
};
pub use policy::{BackoffPolicy, ExpiryPolicy, InvalidPolicy, StoreFailurePolicy};
pub use source::{CreateRequest, SharedError, SourceError, TokenSource};
pub use store::{MemoryStore, StoreError, TokenStore};
pub use token::{Fingerprint, InvalidToken, Token, TokenSecret};
