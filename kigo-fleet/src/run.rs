//! `kigo-fleet run`: the mock Kigo API in this process, and for each design a fleet of replica
//! processes on the store, under the same load; then kigo again through each fault.

use std::io::IsTerminal;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use examples::replicas::Fleet;
use indicatif::{ProgressBar, ProgressStyle};
use kigo_core::codec::{SEALING_KEYS_VAR, SealingKey};
use kigo_core::store::STORE_URL_VAR;
use kigo_testkit::mock::MockKigo;
use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use tokio::process::Command as Process;
use tokio::time::{Instant, sleep, sleep_until};

use crate::design::Design;
use crate::faults::{CLOCK_AHEAD, Fault, Live};
use crate::proxy::Proxy;
use crate::report::{Figures, ReplicaReport, compare_with_kigo, markdown, renewals};
use crate::{Failure, RunArgs};

/// How long to keep asking kigo's replicas for their token after the traffic, until one of them
/// has seen every token the server created (a renewal just before the end).
const SETTLE_FOR: Duration = Duration::from_secs(1);
const SETTLE_PAUSE: Duration = Duration::from_millis(20);
/// How often the progress display updates, and a fault's schedule is checked.
const TICK: Duration = Duration::from_millis(10);

/// Everything one invocation measured.
#[derive(Debug, Serialize)]
pub(crate) struct Outcome {
    store: String,
    replicas: usize,
    workers: usize,
    seconds: f64,
    token_lifetime_seconds: f64,
    designs: Vec<Figures>,
    faults: Vec<Figures>,
}

/// Where the fleet keeps its token, and what the replicas are told.
struct Setup<'a> {
    url: String,
    keys: SecretString,
    args: &'a RunArgs,
    program: std::path::PathBuf,
    /// Different partner IDs per phase and per invocation: each phase starts from an empty key.
    run_id: String,
    progress: ProgressBar,
}

/// Runs every design asked for, then (with `--faults`) kigo through each fault.
pub(crate) async fn run(args: &RunArgs) -> Result<Outcome, Failure> {
    let dir = tempfile::Builder::new().prefix("kigo-fleet-").tempdir()?;
    let url = match std::env::var(STORE_URL_VAR) {
        Ok(url) if !url.trim().is_empty() => url,
        _ => sqlite_url(&dir.path().join("kigo-tokens.db")),
    };
    let keys = match std::env::var(SEALING_KEYS_VAR) {
        Ok(keys) if !keys.trim().is_empty() => SecretString::from(keys),
        _ => SealingKey::generate_base64(),
    };
    let setup = Setup {
        url,
        keys,
        args,
        program: std::env::current_exe()?,
        run_id: format!("{:08x}", fastrand::u32(..)),
        progress: progress(args.json),
    };
    setup.migrate().await?;
    let mut designs = Vec::new();
    for design in args.designs() {
        designs.push(setup.phase(design.name(), design, None).await?);
    }
    compare_with_kigo(&mut designs);
    let mut faults = Vec::new();
    if args.faults {
        for fault in Fault::ALL {
            faults.push(setup.phase(fault.name(), Design::Kigo, Some(fault)).await?);
        }
    }
    setup.progress.finish_and_clear();
    Ok(Outcome {
        store: store_kind(&setup.url),
        replicas: args.replicas,
        workers: args.workers,
        seconds: args.seconds(),
        token_lifetime_seconds: args.lifetime().as_secs_f64(),
        designs,
        faults,
    })
}

impl Setup<'_> {
    /// Applies the store's migrations once, in a child process with the fleet's environment (the
    /// store opens with the sealing keys of `KIGO_SEALING_KEYS`, as a replica's does).
    async fn migrate(&self) -> Result<(), Failure> {
        let status = Process::new(&self.program)
            .arg("migrate")
            .env(STORE_URL_VAR, &self.url)
            .env(SEALING_KEYS_VAR, self.keys.expose_secret())
            .status()
            .await?;
        if !status.success() {
            return Err(format!("the store's migration failed ({status}); see above").into());
        }
        Ok(())
    }

    /// One fleet of `design` under the load, through `fault` if any.
    async fn phase(
        &self,
        name: &str,
        design: Design,
        fault: Option<Fault>,
    ) -> Result<Figures, Failure> {
        // A store of its own for a fault that kills it or its connections; a private server is stopped when dropped.
        let private = match fault {
            Some(fault) if fault.needs_private_store() => {
                Some(kigo_test_services::redis::private_redis().await?)
            }
            _ => None,
        };
        let url = private
            .as_ref()
            .map_or(self.url.as_str(), |redis| redis.url());
        // The first replica's connections to the store go through a proxy that can cut them.
        let proxy = match fault {
            Some(Fault::ConnectionCut) => Some(Proxy::start(socket_address(url)?).await?),
            _ => None,
        };
        let proxied = match &proxy {
            Some(proxy) => Some(through(url, proxy)?),
            None => None,
        };
        let partner = format!("fleet-{}-{name}", self.run_id);
        let mock = MockKigo::builder()
            .partner(partner, format!("key-{}", fastrand::u64(..)))
            .lifetime(self.args.lifetime())
            .start()
            .await?;
        let replica = |n: usize| {
            let name = format!("{}-{n}", design.name());
            let ahead = fault == Some(Fault::ClockAhead) && n == 0;
            let url = proxied.as_deref().filter(|_| n == 0).unwrap_or(url);
            let process = self.replica(&name, design, &mock, url, ahead);
            (name, process)
        };
        let at_start = fault.map_or(self.args.replicas, |f| {
            f.replicas_at_start(self.args.replicas)
        });
        let mut fleet = Fleet::start((0..at_start).map(replica)).await?;
        let mut retired = Vec::new();
        let mut live = Live {
            mock: &mock,
            fleet: &mut fleet,
            retired: &mut retired,
            store: private.as_ref().and_then(|redis| redis.local_server()),
            proxy: proxy.as_ref(),
            replica: &replica,
        };
        self.progress.set_message(format!("{name}:"));
        self.progress
            .set_length(self.args.duration().as_millis() as u64);
        self.progress.set_position(0);
        let started = Instant::now();
        live.fleet.go().await?;
        let mut fault =
            fault.map(|fault| fault.schedule(self.args.duration(), self.args.lifetime()));
        while started.elapsed() < self.args.duration() {
            if let Some(schedule) = fault.as_mut() {
                schedule.step(started.elapsed(), &mut live).await?;
            }
            sleep_until((Instant::now() + TICK).min(started + self.args.duration())).await;
            self.progress
                .set_position(started.elapsed().as_millis() as u64);
            self.progress.set_message(format!(
                "{name}: {} tokens created",
                mock.creations(&mock.partner_key())
            ));
        }
        let seconds = started.elapsed().as_secs_f64();
        if let Some(schedule) = fault.as_mut() {
            schedule.end(&mut live).await?;
        }
        // The server's count is read after the reports, so that no creation escapes them.
        let mut reports: Vec<ReplicaReport> = fleet.reports().await?;
        let mut creations = mock.creations(&mock.partner_key());
        let settled = Instant::now() + SETTLE_FOR;
        while design == Design::Kigo && renewals(&reports) < creations && Instant::now() < settled {
            sleep(SETTLE_PAUSE).await;
            reports = fleet.reports().await?;
            creations = mock.creations(&mock.partner_key());
        }
        fleet.finish().await?;
        mock.shutdown();
        reports.append(&mut retired);
        Ok(Figures::of(name, &reports, creations, seconds))
    }

    /// This program as replica `name` of `design`, against `mock`, on the store `url` names,
    /// its clock ahead by [`CLOCK_AHEAD`] if `ahead`.
    fn replica(
        &self,
        name: &str,
        design: Design,
        mock: &MockKigo,
        url: &str,
        ahead: bool,
    ) -> Process {
        let mut process = Process::new(&self.program);
        process
            .args(["replica", "--design", design.name(), "--name", name])
            .args(["--workers", &self.args.workers.to_string()])
            .args(["--pause-ms", &self.args.pause_ms.to_string()])
            .env(kigo_http::API_KEY_VAR, mock.api_key())
            .env(kigo_http::PARTNER_ID_VAR, mock.partner_id().as_str())
            .env(kigo_http::BASE_URL_VAR, mock.base_url())
            .env(STORE_URL_VAR, url)
            .env(SEALING_KEYS_VAR, self.keys.expose_secret());
        if ahead {
            let ahead = CLOCK_AHEAD.as_millis().to_string();
            process.args(["--clock-ahead-ms", &ahead]);
        }
        process
    }
}

impl Outcome {
    /// The report as Markdown: a table of the designs, and one of the faults if run.
    pub(crate) fn markdown(&self) -> String {
        let mut text = format!(
            "{} replicas x {} workers on {}, {:.0} s per design, tokens of {:.0} s\n\n{}",
            self.replicas,
            self.workers,
            self.store,
            self.seconds,
            self.token_lifetime_seconds,
            markdown("design", &self.designs)
        );
        if !self.faults.is_empty() {
            text.push_str("\nkigo through each fault:\n\n");
            text.push_str(&markdown("fault", &self.faults));
        }
        text
    }
}

/// The host and port of the server `url` names.
fn socket_address(url: &str) -> Result<SocketAddr, Failure> {
    let url = Url::parse(url)?;
    let host = url.host_str().ok_or("a store URL without a host")?;
    let port = url.port().ok_or("a store URL without a port")?;
    let mut addresses = (host, port).to_socket_addrs()?;
    Ok(addresses.next().ok_or("a store host without an address")?)
}

/// `url` with `proxy` in place of its server.
fn through(url: &str, proxy: &Proxy) -> Result<String, Failure> {
    let mut url = Url::parse(url)?;
    url.set_ip_host(proxy.addr().ip())
        .map_err(|()| "a store URL that cannot have a host")?;
    url.set_port(Some(proxy.addr().port()))
        .map_err(|()| "a store URL that cannot have a port")?;
    Ok(url.into())
}

fn sqlite_url(file: &Path) -> String {
    format!("sqlite:{}", file.display())
}

/// The kind of store `url` names, never the URL (it may hold a password).
fn store_kind(url: &str) -> String {
    kigo_stores::StoreKind::of(url)
        .map_or_else(|_| "an unknown store".to_owned(), |kind| kind.to_string())
}

/// A progress bar, shown only to a person at a terminal.
fn progress(json: bool) -> ProgressBar {
    if json || !std::io::stdout().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(0);
    if let Ok(style) = ProgressStyle::with_template("{msg} [{bar:30}] {elapsed}") {
        bar.set_style(style);
    }
    bar
}
