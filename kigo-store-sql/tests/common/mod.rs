//! What the backend test binaries share: the harness of a store on a fresh database, a store
//! wrapper that stops a chosen call, and the scenarios every backend runs (fleet, store contract,
//! expired tokens).

pub(crate) mod contract;
pub(crate) mod expired;
pub(crate) mod fleet;
pub(crate) mod harness;
pub(crate) mod tripwire;
