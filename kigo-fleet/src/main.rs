//! `kigo-fleet`: the fleet benchmark as a tool. See the README.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

mod design;
mod faults;
mod proxy;
mod replica;
mod report;
mod run;

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
    /// One replica process (started by `run`).
    #[command(hide = true)]
    Replica(ReplicaArgs),
}

/// The load and what to run.
#[derive(Debug, Args)]
struct RunArgs {
    /// Replica processes per design.
    #[arg(long, short = 'n', default_value_t = 8)]
    replicas: usize,
    /// Concurrent request loops per replica.
    #[arg(long, short = 'c', default_value_t = 8)]
    workers: usize,
    /// Seconds of traffic per design.
    #[arg(long, short = 'd', default_value_t = 10.0)]
    duration: f64,
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
    /// A few seconds per design, for CI (sets --duration 3).
    #[arg(long)]
    short: bool,
    /// The report as JSON, and no progress display.
    #[arg(long)]
    json: bool,
}

impl RunArgs {
    fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.seconds())
    }

    fn seconds(&self) -> f64 {
        if self.short { 3.0 } else { self.duration }
    }

    fn lifetime(&self) -> Duration {
        Duration::from_secs_f64(self.lifetime)
    }

    fn designs(&self) -> Vec<Design> {
        if self.designs.is_empty() {
            Design::ALL.to_vec()
        } else {
            self.designs.clone()
        }
    }
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
            Ok(outcome) => {
                let text = if args.json {
                    serde_json::to_string_pretty(&outcome).map_err(Failure::from)
                } else {
                    Ok(outcome.markdown())
                };
                match text {
                    Ok(text) => {
                        let _ = writeln!(std::io::stdout().lock(), "{text}");
                        ExitCode::SUCCESS
                    }
                    Err(error) => fail("kigo-fleet", &*error),
                }
            }
            Err(error) => fail("kigo-fleet", &*error),
        },
        Commands::Migrate => match migrate().await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => fail("kigo-fleet migrate", &*error),
        },
        Commands::Replica(args) => match replica::run(&args).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => fail(&args.name, &*error),
        },
    }
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
