//! What the backend test binaries share: the harness of a store on a fresh database, and the
//! fleet scenarios every backend runs.

pub(crate) mod fleet;
pub(crate) mod harness;
