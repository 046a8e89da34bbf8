//! What the backend test binaries share: the harness of a store on a fresh database, a store
//! wrapper that stops a chosen call, and the fleet scenarios every backend runs.

pub(crate) mod fleet;
pub(crate) mod harness;
pub(crate) mod tripwire;
