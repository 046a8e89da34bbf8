//! `kigo`: what a fleet of kigo-rs replicas shares, seen and changed by an operator. See the
//! README (or `kigo --help`) for the commands, their output and their exit codes.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod failure;
mod keys;
mod report;
mod rotate;
mod store_ops;
mod token_ops;

use report::Report;

/// See and change what a fleet of kigo-rs replicas shares, through its store.
///
/// The store is named by KIGO_STORE_URL (rediss://, rediss+cluster://, postgres://, mysql://,
/// sqlite:); its entries are opened with the keys in KIGO_SEALING_KEYS; the partner is
/// KIGO_PARTNER_ID. `renew` also needs KIGO_API_KEY and KIGO_BASE_URL. No command prints a
/// token: only fingerprints.
///
/// Exit codes: 0 done; 1 failed (a store or the API unreachable, a refusal); 2 bad arguments;
/// 3 misconfigured (a variable missing or invalid, a store set up wrong, credentials refused);
/// 4 `store check` found problems.
#[derive(Debug, Parser)]
#[command(name = "kigo", version)]
struct Cli {
    /// Print one JSON document instead of text (and no progress bar).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The partner-level token (and, with --user, users' tokens) as the store holds them:
    /// expiry, generation, lease holder, cool-down. Never a token.
    Status {
        /// A user whose user-level token to show too (repeat for several).
        #[arg(long = "user", value_name = "USER_ID")]
        users: Vec<String>,
    },
    /// Renews the partner-level token for the whole fleet now, through the refresh lease: one
    /// creation; the replicas take the new token from the store.
    Renew,
    /// Removes the partner-level token (or a user's) from the store; the replicas renew it at
    /// their next use, once for the fleet.
    Invalidate {
        /// The user whose user-level token to remove, instead of the partner-level one.
        #[arg(long = "user", value_name = "USER_ID")]
        user: Option<String>,
    },
    /// Operations on the store itself.
    #[command(subcommand)]
    Store(StoreCommand),
}

#[derive(Debug, Subcommand)]
enum StoreCommand {
    /// Applies the store's migrations (SQL stores; nothing to do on Redis).
    Migrate,
    /// Checks connectivity, transport, the clock, the schema, permissions, and whether the
    /// keyring opens the stored entries. Exits with 4 if it finds a problem.
    Check,
    /// Seals every stored entry again under the keyring's current key (the first of
    /// KIGO_SEALING_KEYS), without a creation. Resumable with --after.
    RotateKey {
        /// Start after this key (the storage ID a stopped run printed), instead of the first.
        #[arg(long, value_name = "STORAGE_ID")]
        after: Option<String>,
    },
    /// Removes token material that can no longer be used (expired tokens), keeping what the
    /// fences need.
    Purge,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let report = Report::new(cli.json);
    let outcome = match cli.command {
        Command::Status { users } => token_ops::status(&report, &users).await,
        Command::Renew => token_ops::renew(&report).await,
        Command::Invalidate { user } => token_ops::invalidate(&report, user.as_deref()).await,
        Command::Store(StoreCommand::Migrate) => store_ops::migrate(&report).await,
        Command::Store(StoreCommand::Check) => store_ops::check(&report).await,
        Command::Store(StoreCommand::RotateKey { after }) => {
            rotate::rotate_key(&report, after.as_deref()).await
        }
        Command::Store(StoreCommand::Purge) => store_ops::purge(&report).await,
    };
    match outcome {
        Ok(code) => code,
        Err(failure) => report.failure(&failure),
    }
}
