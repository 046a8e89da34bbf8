//! The mock Kigo API as a process, for multi-process tests and demos: `kigo-mock-server --help`
//! says how to run it.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use kigo_testkit::mock::MockKigo;

/// The mock Kigo API as a process.
///
/// Prints one line, `KIGO_BASE_URL=<url>`, once it listens, then serves until killed. Counters,
/// revocation and faults are reachable over HTTP under `/_mock/` (see `kigo_testkit::mock`).
/// Bad arguments exit with status 2 and say why.
#[derive(Debug, Parser)]
#[command(name = "kigo-mock-server", version)]
struct Args {
    /// The API key partners must present; from the environment it stays out of process listings.
    #[arg(long, env = "KIGO_MOCK_API_KEY", hide_env_values = true, value_parser = non_blank)]
    api_key: String,
    /// The partner ID it serves.
    #[arg(long, default_value = "acme")]
    partner_id: String,
    /// The port to listen on (loopback); 0 picks a free one.
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// The lifetime of the session tokens it issues, in seconds (default: Kigo's 30 minutes for
    /// partner-level tokens, 1 hour for user-level ones).
    #[arg(long, value_name = "SECONDS", value_parser = positive_seconds, allow_negative_numbers = true)]
    lifetime_secs: Option<Duration>,
    /// Serve HTTPS with a certificate authority made at start (needs --ca-out).
    #[arg(long, requires = "ca_out")]
    https: bool,
    /// Where to write that certificate authority (PEM), for clients to trust.
    #[arg(long, value_name = "FILE", requires = "https")]
    ca_out: Option<PathBuf>,
}

fn non_blank(key: &str) -> Result<String, String> {
    if key.trim().is_empty() {
        return Err("the API key is empty".to_owned());
    }
    Ok(key.to_owned())
}

fn positive_seconds(text: &str) -> Result<Duration, String> {
    text.parse::<f64>()
        .ok()
        .and_then(|seconds| Duration::try_from_secs_f64(seconds).ok())
        .filter(|lifetime| !lifetime.is_zero())
        .ok_or_else(|| "the lifetime must be positive seconds".to_owned())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    let mut builder = MockKigo::builder()
        .port(args.port)
        .partner(&args.partner_id, &args.api_key);
    if let Some(lifetime) = args.lifetime_secs {
        builder = builder.lifetime(lifetime);
    }
    if args.https {
        builder = builder.https();
    }
    let mock = match builder.start().await {
        Ok(mock) => mock,
        Err(error) => return fail(format_args!("{error}")),
    };
    if let (Some(path), Some(pem)) = (&args.ca_out, mock.ca_certificate_pem())
        && let Err(error) = std::fs::write(path, pem)
    {
        return fail(format_args!("writing {}: {error}", path.display()));
    }
    let mut stdout = std::io::stdout();
    if writeln!(stdout, "KIGO_BASE_URL={}", mock.base_url())
        .and_then(|()| stdout.flush())
        .is_err()
    {
        return ExitCode::FAILURE;
    }
    std::future::pending::<()>().await;
    ExitCode::SUCCESS
}

fn fail(message: std::fmt::Arguments<'_>) -> ExitCode {
    let _ = writeln!(std::io::stderr(), "kigo-mock-server: {message}");
    ExitCode::FAILURE
}
