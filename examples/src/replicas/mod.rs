//! Replica processes driven by a parent program: the parent starts them, tells each to start
//! sending requests and to report, over its standard input, and reads JSON answers from its
//! standard output. The quickstart and the `kigo-fleet` benchmark both run their fleets this way;
//! each has its own replica code and its own report type.
//!
//! Replicas never outlive their parent: a [`ReplicaProcess`] dropped before it is finished (an
//! error or a panic in the parent) kills its process, and a replica whose standard input ends
//! (the parent gone, even killed) stops by itself.

mod manager;
mod process;
mod protocol;
mod traffic;

pub use manager::loopback_manager;
pub use process::{Fleet, FleetError, ReplicaProcess};
pub use protocol::{Answer, Command, answer, commands};
pub use traffic::Traffic;
