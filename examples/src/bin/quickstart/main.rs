//! The quickstart: no configuration, no external service.
//!
//! Starts a mock Kigo API in this process and four replica processes (this program again, with a
//! hidden `replica` argument) that share one SQLite file in a temporary directory, each running a
//! token manager with 2-second tokens and sending requests through the authenticated client for
//! a few seconds, across several renewals; the token is revoked once on the way. Then it prints
//! what happened: requests, failures, 401s recovered, token creations (counted by the mock
//! server) per renewal (seen by the replicas). It exits non-zero if a request failed or the fleet
//! created more than one token per renewal.
//!
//! `--store-per-replica` gives each replica process a SQLite file of its own instead, to show
//! what sharing saves: every replica then creates its own tokens, and the run fails the
//! one-token-per-renewal check.
//!
//! With `KIGO_API_KEY`, `KIGO_PARTNER_ID` and `KIGO_BASE_URL` set, it creates one real
//! partner-level token instead and prints its expiry (never the token).

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use examples::{real_api_requested, say, seconds_until};
use kigo_http::KigoApi;

mod protocol;
mod replica;
mod report;
mod simulation;

use protocol::REPLICA_ARG;
use simulation::Layout;

type Failure = Box<dyn std::error::Error>;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        // First: a replica gets the `KIGO_*` variables of the quickstart's mock.
        [REPLICA_ARG, name, file] => {
            let outcome = replica::run(name, Path::new(file)).await;
            finish(outcome.map(|()| ExitCode::SUCCESS), |line| {
                let _ = writeln!(std::io::stderr().lock(), "{name}: {line}");
            })
        }
        _ if real_api_requested() => finish(real_token().await, say),
        [] => finish(simulation::run(Layout::SharedFile).await, say),
        ["--store-per-replica"] => finish(simulation::run(Layout::FilePerReplica).await, say),
        [other, ..] => {
            say(format_args!(
                "unknown argument {other}; the only one is --store-per-replica"
            ));
            ExitCode::from(2)
        }
    }
}

/// The exit code of `outcome`, writing a failure and its causes, a line each, with `write`.
fn finish(outcome: Result<ExitCode, Failure>, write: impl Fn(String)) -> ExitCode {
    match outcome {
        Ok(code) => code,
        Err(error) => {
            write(format!("quickstart failed: {error}"));
            let mut source = error.source();
            while let Some(cause) = source {
                write(format!("  caused by: {cause}"));
                source = cause.source();
            }
            ExitCode::FAILURE
        }
    }
}

/// Creates one real token with the credentials from the environment.
async fn real_token() -> Result<ExitCode, Failure> {
    let api = KigoApi::from_env()?;
    // One process making one token: a private store, chosen by name.
    let manager = api.partner_manager().local_only().build()?;
    let token = manager.token(&api.partner_key()).await?;
    say(format_args!(
        "Created a partner-level session token for {} at {}",
        api.partner_key(),
        api.base_url()
    ));
    say(format_args!("  fingerprint  {}", token.fingerprint()));
    say(format_args!(
        "  expires in   {:.0} s (lifetime {:.0} s); renewed from {:.0} s on",
        seconds_until(token.expires_at()),
        token.lifetime().as_secs_f64(),
        seconds_until(manager.refresh_at(&token))
    ));
    drop(token);
    manager.shutdown().await;
    Ok(ExitCode::SUCCESS)
}
