//! `kigo-fleet run`: the mock Kigo API in this process, and for each design a fleet of replica
//! processes on the store, under the same load; then kigo again through each fault.

use std::io::IsTerminal;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use examples::replicas::Fleet;
use indicatif::{ProgressBar, ProgressStyle};
use kigo_testkit::mock::MockKigo;
use reqwest::Url;
use serde::Serialize;
use tokio::process::Command as Process;
use tokio::time::{Instant, sleep_until};

use crate::design::Design;
use crate::faults::{CLOCK_AHEAD, Fault, Live};
use crate::proxy::Proxy;
use crate::report::{Figures, ReplicaReport, compare_with_kigo, markdown, renewals};
use crate::store::FleetStore;
use crate::{Failure, RunArgs};

/// How often the progress display updates, and a fault's schedule is checked.
pub(crate) const TICK: Duration = Duration::from_millis(10);

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

/// Where the fleet keeps its token, and the load.
struct Setup<'a> {
    store: FleetStore,
    args: &'a RunArgs,
    /// Different partner IDs per phase and per invocation: each phase starts from an empty key.
    run_id: String,
    progress: ProgressBar,
}

/// Runs every design asked for, then (with `--faults`) kigo through each fault.
pub(crate) async fn run(args: &RunArgs) -> Result<Outcome, Failure> {
    let setup = Setup {
        store: FleetStore::from_env(args.most_replicas())?,
        args,
        run_id: format!("{:08x}", fastrand::u32(..)),
        progress: progress(args.load.json),
    };
    setup.store.migrate().await?;
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
        store: setup.store.kind(),
        replicas: args.load.replicas,
        workers: args.load.workers,
        seconds: args.load.seconds(),
        token_lifetime_seconds: args.lifetime().as_secs_f64(),
        designs,
        faults,
    })
}

impl Setup<'_> {
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
            .map_or(self.store.url(), |redis| redis.url());
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
        let at_start = fault.map_or(self.args.load.replicas, |f| {
            f.replicas_at_start(self.args.load.replicas)
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
            .set_length(self.args.load.duration().as_millis() as u64);
        self.progress.set_position(0);
        let started = Instant::now();
        live.fleet.go().await?;
        let mut fault =
            fault.map(|fault| fault.schedule(self.args.load.duration(), self.args.lifetime()));
        while started.elapsed() < self.args.load.duration() {
            if let Some(schedule) = fault.as_mut() {
                schedule.step(started.elapsed(), &mut live).await?;
            }
            sleep_until((Instant::now() + TICK).min(started + self.args.load.duration())).await;
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
        // Only kigo's replicas share every token: the others' reports never settle.
        let shared = |reports: &[ReplicaReport]| match design {
            Design::Kigo => renewals(reports),
            _ => u64::MAX,
        };
        let (mut reports, creations) = fleet
            .settled_reports(|| mock.creations(&mock.partner_key()), shared)
            .await?;
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
        let (workers, pause) = (
            self.args.load.workers.to_string(),
            self.args.pause_ms.to_string(),
        );
        let args = ["replica", "--design", design.name(), "--name", name];
        let mut process = self.store.replica(args, mock, url);
        process.args(["--workers", &workers, "--pause-ms", &pause]);
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

/// A progress bar, shown only to a person at a terminal.
pub(crate) fn progress(json: bool) -> ProgressBar {
    if json || !std::io::stdout().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(0);
    if let Ok(style) = ProgressStyle::with_template("{msg} [{bar:30}] {elapsed}") {
        bar.set_style(style);
    }
    bar
}
