//! The mock Kigo API as a process, for multi-process tests and demos.
//!
//! ```text
//! kigo-mock-server [--port N] [--partner-id ID] [--api-key KEY] [--lifetime-secs S]
//!                  [--https --ca-out FILE]
//! ```
//!
//! Prints one line, `KIGO_BASE_URL=<url>`, once it listens, then serves until killed. The API key
//! can also come from `KIGO_MOCK_API_KEY` (so that it stays out of process listings). Counters,
//! revocation and faults are reachable over HTTP under `/_mock/` (see `kigo_testkit::mock`).

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use kigo_testkit::mock::MockKigo;

struct Args {
    port: u16,
    partner_id: String,
    api_key: Option<String>,
    lifetime: Option<Duration>,
    ca_out: Option<String>,
    https: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        port: 0,
        partner_id: "acme".to_owned(),
        api_key: std::env::var("KIGO_MOCK_API_KEY").ok(),
        lifetime: None,
        ca_out: None,
        https: false,
    };
    let mut given = std::env::args().skip(1);
    while let Some(flag) = given.next() {
        if flag == "--https" {
            args.https = true;
            continue;
        }
        let value = given
            .next()
            .ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--port" => args.port = value.parse().map_err(|_| "--port needs a number")?,
            "--partner-id" => args.partner_id = value,
            "--api-key" => args.api_key = Some(value),
            "--lifetime-secs" => {
                let seconds: f64 = value
                    .parse()
                    .map_err(|_| "--lifetime-secs needs a number")?;
                let lifetime = Duration::try_from_secs_f64(seconds)
                    .map_err(|_| "--lifetime-secs must be positive")?;
                args.lifetime = Some(lifetime);
            }
            "--ca-out" => args.ca_out = Some(value),
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(args)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            let _ = writeln!(std::io::stderr(), "kigo-mock-server: {message}");
            return ExitCode::from(2);
        }
    };
    let mut builder = MockKigo::builder().port(args.port);
    if let Some(api_key) = &args.api_key {
        builder = builder.partner(&args.partner_id, api_key);
    }
    if let Some(lifetime) = args.lifetime {
        builder = builder.lifetime(lifetime);
    }
    if args.https {
        builder = builder.https();
    }
    let mock = match builder.start().await {
        Ok(mock) => mock,
        Err(error) => {
            let _ = writeln!(std::io::stderr(), "kigo-mock-server: {error}");
            return ExitCode::FAILURE;
        }
    };
    if let (Some(path), Some(pem)) = (&args.ca_out, mock.ca_certificate_pem())
        && let Err(error) = std::fs::write(path, pem)
    {
        let _ = writeln!(
            std::io::stderr(),
            "kigo-mock-server: writing {path}: {error}"
        );
        return ExitCode::FAILURE;
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
