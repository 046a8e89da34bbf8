//! The Redis store against real Redis servers (standalone and Cluster): the conformance suite and
//! the fleet and fault scenarios. One test binary, so the helpers compile once.

mod acl;
mod admin;
mod ambiguity;
mod conformance_cluster;
mod conformance_standalone;
mod contract;
mod corrupt;
mod fleet;
mod from_env;
mod holder;
mod misconfigured;
mod notifications;
mod outage;
mod proxy;
mod rotation;
mod sealing;
mod settings;
mod support;
mod tampering;
#[cfg(feature = "tls-rustls")]
mod tls;
mod transport;
