//! The HTTP side of kigo-rs: token sources that create partner- and user-level session tokens over
//! HTTPS with reqwest, and an authenticated client that sends the bearer token and renews on 401.
//!
//! **Not implemented yet.** This crate is a placeholder in the workspace; it offers nothing to use.
