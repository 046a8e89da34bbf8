//! `kigo-fleet`: the fleet benchmark as a tool. See the README.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

mod design;
mod faults;
mod measure;
mod proxy;
mod replica;
mod report;
mod run;
mod store;
mod user_replica;
mod users;

use design::Design;

type Failure = Box<dyn std::error::Error>;

/// Replica processes on one store against a mock Kigo API: kigo next to the designs a user would
/// otherwise pick, under the same load, in the same run.
#[derive(Debug, Parser)]
#[command(name = "kigo-fleet", version)]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Debug, Subcommand)]
enum Commands {
    /// Runs the benchmark on the store `KIGO_STORE_URL` names (default: a temporary SQLite file).
    Run(RunArgs),
    /// Applies the store's migrations (run by `run` before the replicas start).
    #[command(hide = true)]
    Migrate,
    /// A million users (by default) asking for their user-level tokens, drawn from a Zipf
    /// distribution, through replica processes on the store `KIGO_STORE_URL` names: each user's
    /// token must be created once, fleet-wide.
    Users(UsersArgs),
    /// One replica process (started by `run`).
    #[command(hide = true)]
    Replica(ReplicaArgs),
    /// One replica process of the million-user load (started by `users`).
    #[command(hide = true)]
    UserReplica(UserReplicaArgs),
}

/// The fleet and its load, for every kind of run.
#[derive(Debug, Args)]
struct Load {
    /// Replica processes (per design).
    #[arg(long, short = 'n', default_value_t = 8)]
    replicas: usize,
    /// Concurrent request loops per replica.
    #[arg(long, short = 'c', default_value_t = 8)]
    workers: usize,
    /// Seconds of traffic (per design).
    #[arg(long, short = 'd', default_value_t = 10.0)]
    duration: f64,
    /// A few seconds (per design), for CI (sets --duration 3).
    #[arg(long)]
    short: bool,
    /// The report as JSON, and no progress display.
    #[arg(long)]
    json: bool,
}

impl Load {
    fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.seconds())
    }

    fn seconds(&self) -> f64 {
        if self.short { 3.0 } else { self.duration }
    }
}

/// The designs side by side, and kigo through the faults.
#[derive(Debug, Args)]
struct RunArgs {
    #[command(flatten)]
    load: Load,
    /// Lifetime of the mock's tokens, in seconds: short, for many renewals.
    #[arg(long, default_value_t = 2.0)]
    lifetime: f64,
    /// Each worker's pause between requests, in milliseconds.
    #[arg(long, default_value_t = 5)]
    pause_ms: u64,
    /// The designs to run (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    designs: Vec<Design>,
    /// After the designs, run kigo through each fault.
    #[arg(long)]
    faults: bool,
}

impl RunArgs {
    fn lifetime(&self) -> Duration {
        Duration::from_secs_f64(self.lifetime)
    }

    /// The most replicas running at once: the scaling fault grows the fleet.
    fn most_replicas(&self) -> usize {
        if self.faults {
            self.load.replicas.max(faults::SCALED_TO)
        } else {
            self.load.replicas
        }
    }

    fn designs(&self) -> Vec<Design> {
        if self.designs.is_empty() {
            Design::ALL.to_vec()
        } else {
            self.designs.clone()
        }
    }
}

/// The million-user load: user-level tokens of users drawn from a Zipf distribution.
#[derive(Debug, Args)]
struct UsersArgs {
    #[command(flatten)]
    load: Load,
    /// Users in the population the load draws from.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u32).range(1..))]
    users: u32,
    /// The Zipf distribution's exponent: 0 draws every user alike, 1 is the usual shape of web
    /// traffic (user k asked for about 1/k as often as the first).
    #[arg(long, default_value_t = 1.0)]
    zipf: f64,
}

/// One replica of the million-user load (started by `users`).
#[derive(Debug, Args)]
struct UserReplicaArgs {
    #[arg(long)]
    name: String,
    #[arg(long)]
    users: u32,
    #[arg(long)]
    zipf: f64,
    #[arg(long)]
    workers: usize,
}

/// One replica of a run.
#[derive(Debug, Args)]
struct ReplicaArgs {
    #[arg(long, value_enum)]
    design: Design,
    #[arg(long)]
    name: String,
    #[arg(long)]
    workers: usize,
    #[arg(long)]
    pause_ms: u64,
    /// How far ahead of the system clock this replica's manager's clock is.
    #[arg(long, default_value_t = 0)]
    clock_ahead_ms: u64,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Commands::Run(args) => match run::run(&args).await {
            Ok(outcome) => match print(&outcome, args.load.json, run::Outcome::markdown) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => fail("kigo-fleet", &*error),
            },
            Err(error) => fail("kigo-fleet", &*error),
        },
        Commands::Users(args) => match users::run(&args).await {
            Ok(outcome) => match print(&outcome, args.load.json, users::Outcome::markdown) {
                Ok(()) if outcome.holds() => ExitCode::SUCCESS,
                Ok(()) => fail("kigo-fleet users", &users::NotOnce),
                Err(error) => fail("kigo-fleet users", &*error),
            },
            Err(error) => fail("kigo-fleet users", &*error),
        },
        Commands::Migrate => match migrate().await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => fail("kigo-fleet migrate", &*error),
        },
        Commands::Replica(args) => match replica::run(&args).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => fail(&args.name, &*error),
        },
        Commands::UserReplica(args) => match user_replica::run(&args).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => fail(&args.name, &*error),
        },
    }
}

/// Writes `outcome` on standard output: as JSON if `json`, else as `markdown` makes it.
fn print<T: serde::Serialize>(
    outcome: &T,
    json: bool,
    markdown: impl FnOnce(&T) -> String,
) -> Result<(), Failure> {
    let text = if json {
        serde_json::to_string_pretty(outcome)?
    } else {
        markdown(outcome)
    };
    writeln!(std::io::stdout().lock(), "{text}")?;
    Ok(())
}

/// Applies the migrations of the store `KIGO_STORE_URL` names.
async fn migrate() -> Result<(), Failure> {
    let store = kigo_stores::from_env().await?;
    kigo_core::store::StoreAdmin::migrate(&store).await?;
    Ok(())
}

/// Writes `error` and its causes on standard error, a line each.
fn fail(who: &str, error: &dyn std::error::Error) -> ExitCode {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{who}: {error}");
    let mut source = error.source();
    while let Some(cause) = source {
        let _ = writeln!(err, "  caused by: {cause}");
        source = cause.source();
    }
    ExitCode::FAILURE
}
