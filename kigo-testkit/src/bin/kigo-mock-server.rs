//! The mock Kigo API as a process, for multi-process tests and demos.
//!
//! ```text
//! kigo-mock-server (--api-key KEY | env KIGO_MOCK_API_KEY) [--partner-id ID] [--port N]
//!                  [--lifetime-secs S] [--https --ca-out FILE]
//! ```
//!
//! Prints one line, `KIGO_BASE_URL=<url>`, once it listens, then serves until killed. The API key
//! is required; `KIGO_MOCK_API_KEY` keeps it out of process listings. The partner ID defaults to
//! `acme`. `--https` needs `--ca-out`: the certificate authority made at start is written there,
//! for clients to trust. Counters, revocation and faults are reachable over HTTP under `/_mock/`
//! (see `kigo_testkit::mock`). Bad arguments exit with status 2 and say why.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use kigo_testkit::mock::MockKigo;

struct Args {
    port: u16,
    partner_id: String,
    api_key: String,
    lifetime: Option<Duration>,
    /// Where to write the certificate authority: set exactly when serving HTTPS.
    ca_out: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut port = 0;
    let mut partner_id = "acme".to_owned();
    let mut api_key = std::env::var("KIGO_MOCK_API_KEY").ok();
    let mut lifetime = None;
    let mut ca_out = None;
    let mut https = false;
    let mut given = std::env::args().skip(1);
    while let Some(flag) = given.next() {
        if flag == "--https" {
            https = true;
            continue;
        }
        let value = given
            .next()
            .ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--port" => port = value.parse().map_err(|_| "--port needs a number")?,
            "--partner-id" => partner_id = value,
            "--api-key" => api_key = Some(value),
            "--lifetime-secs" => {
                let seconds: f64 = value
                    .parse()
                    .map_err(|_| "--lifetime-secs needs a number")?;
                let positive = Duration::try_from_secs_f64(seconds)
                    .ok()
                    .filter(|lifetime| !lifetime.is_zero());
                lifetime = Some(positive.ok_or("--lifetime-secs must be positive")?);
            }
            "--ca-out" => ca_out = Some(value),
            other => return Err(format!("unknown option {other}")),
        }
    }
    let api_key = api_key
        .filter(|key| !key.trim().is_empty())
        .ok_or("an API key is required: --api-key KEY or KIGO_MOCK_API_KEY")?;
    if https != ca_out.is_some() {
        return Err("--https and --ca-out FILE go together: clients must trust the certificate authority written there".to_owned());
    }
    Ok(Args {
        port,
        partner_id,
        api_key,
        lifetime,
        ca_out,
    })
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
    let mut builder = MockKigo::builder()
        .port(args.port)
        .partner(&args.partner_id, &args.api_key);
    if let Some(lifetime) = args.lifetime {
        builder = builder.lifetime(lifetime);
    }
    if args.ca_out.is_some() {
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
