//! The partner backend a team would ship: an axum service holding the fleet's partner-level
//! token (shared through a store), handing each signed-in user their user-level session and SSO
//! page, calling the Kigo API for them, and showing its health and metrics.
//!
//! With `KIGO_API_KEY`, `KIGO_PARTNER_ID` and `KIGO_BASE_URL` set it talks to that API; with none
//! of them it runs in demo mode against an in-process mock Kigo API. Prints
//! `listening on http://<address>` once it accepts connections; SIGTERM or Ctrl-C stop it
//! gracefully (requests in flight finish, refresh leases are released) with exit code 0.

mod error;
mod kigo;
mod options;
mod routes;
mod shutdown;
mod sign_in;

use std::process::ExitCode;

use clap::Parser;
use examples::say;
use metrics_exporter_prometheus::PrometheusBuilder;
use tracing_subscriber::EnvFilter;

use crate::kigo::Kigo;
use crate::options::Options;

type Failure = Box<dyn std::error::Error>;

#[tokio::main]
async fn main() -> ExitCode {
    let options = Options::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    match run(options).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = %error::chain(error.as_ref()), "partner service failed");
            ExitCode::FAILURE
        }
    }
}

async fn run(options: Options) -> Result<(), Failure> {
    let stop = shutdown::signal()?;
    let metrics = PrometheusBuilder::new().install_recorder()?;
    let kigo = Kigo::start(&options).await?;
    let listener = tokio::net::TcpListener::bind(options.listen).await?;
    say(format_args!(
        "listening on http://{}",
        listener.local_addr()?
    ));
    let app = routes::router(kigo.clone(), metrics, options.user_call.clone());
    axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await?;
    tracing::info!("stopped serving; releasing leases");
    kigo.shutdown().await;
    Ok(())
}
