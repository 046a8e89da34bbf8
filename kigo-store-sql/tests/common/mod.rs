//! What the backend test binaries share: the harness of a store on a fresh database, a store
//! wrapper that stops a chosen call, and the scenarios every backend runs (fleet, expired tokens,
//! sealed entries).

pub(crate) mod admin;
pub(crate) mod expired;
pub(crate) mod fleet;
pub(crate) mod harness;
pub(crate) mod sealing;
pub(crate) mod tripwire;
