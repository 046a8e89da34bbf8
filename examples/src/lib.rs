//! Runnable programs for kigo-rs, and what they share.
//!
//! - `quickstart`: a fleet of replica processes sharing one token through one SQLite file,
//!   against a mock Kigo API in the quickstart's process; with `KIGO_API_KEY`, `KIGO_PARTNER_ID`
//!   and `KIGO_BASE_URL` set, it creates one real token instead and prints its expiry (never the
//!   token).
//! - `partner_service`: the axum backend a partner team would ship: the partner-level token
//!   shared by the fleet through `KIGO_STORE_URL`, each signed-in user's front-end session and
//!   SSO redirect, a Kigo API call as the user, `/healthz`, `/metrics` and a front-end page; a
//!   mock Kigo API in the process when no credentials are set.
//!
//! And library modules: [`file_store`], a custom `TokenStore` worked out (a directory shared by
//! the processes of one machine), with the harness that runs the conformance suite on it; and
//! [`replicas`], the replica processes the quickstart and the `kigo-fleet` benchmark drive.

pub mod file_store;
pub mod replicas;

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
