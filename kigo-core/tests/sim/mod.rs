//! The seeded simulation of a fleet: see `simulation.rs`.
#![allow(unreachable_pub)]

mod callers;
mod checks;
mod faults;
mod fleet;
mod inject;
mod ledger;
mod recorders;
mod run;
pub mod schedule;

pub use run::{Outcome, Summary, run};
