//! Runnable programs for kigo-rs, and what they share.
//!
//! - `quickstart`: a fleet of replica processes sharing one token through one SQLite file,
//!   against a mock Kigo API in the quickstart's process; with `KIGO_API_KEY`, `KIGO_PARTNER_ID`
//!   and `KIGO_BASE_URL` set, it creates one real token instead and prints its expiry (never the
//!   token).
//! - `partner_backend`: how a partner backend wires the partner- and user-level managers, the
//!   authenticated client, and hands a user-level token to its front end.
//!
//! And a library module: [`file_store`], a custom `TokenStore` worked out (a directory shared by
//! the processes of one machine), with the harness that runs the conformance suite on it.

pub mod file_store;

use std::io::Write;
use std::time::SystemTime;

/// Whether any of the Kigo credential variables is set: then the programs talk to the real API.
pub fn real_api_requested() -> bool {
    [
        kigo_http::API_KEY_VAR,
        kigo_http::PARTNER_ID_VAR,
        kigo_http::BASE_URL_VAR,
    ]
    .iter()
    .any(|name| std::env::var_os(name).is_some())
}

/// Writes one line of the report on standard output.
pub fn say(line: impl std::fmt::Display) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
}

/// Seconds from now until `at` (negative if past), for printing.
pub fn seconds_until(at: SystemTime) -> f64 {
    match at.duration_since(SystemTime::now()) {
        Ok(left) => left.as_secs_f64(),
        Err(past) => -past.duration().as_secs_f64(),
    }
}
