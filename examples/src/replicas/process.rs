//! The replica processes, seen from their parent.

use std::io;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use serde::de::DeserializeOwned;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command as Process};

use super::protocol::{Answer, Command};

/// How long a replica may take to set up (open its store, build its manager).
const READY_WITHIN: Duration = Duration::from_secs(30);
/// How long a replica may take to answer a report command.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);
/// How long a replica may take to shut down once its input ends, before it is killed.
const EXIT_WITHIN: Duration = Duration::from_secs(5);
/// How long to keep asking for reports after the traffic, until they show every token the
/// server created (one created just before the end may not have reached a replica yet).
const SETTLE_FOR: Duration = Duration::from_secs(1);
const SETTLE_PAUSE: Duration = Duration::from_millis(20);

/// A replica that did not do its part.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// The process could not be started.
    #[error("could not start {name}")]
    Spawn {
        /// The replica.
        name: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Its pipes failed.
    #[error("could not talk to {name}")]
    Pipe {
        /// The replica.
        name: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// It ended before answering, or failed at the end (its errors are on standard error).
    #[error("{name} exited early or failed ({status}); see its errors above")]
    Exited {
        /// The replica.
        name: String,
        /// Its exit status, or what went wrong waiting for it.
        status: String,
    },
    /// No answer in time.
    #[error("{name} did not answer within {within:?}")]
    Silent {
        /// The replica.
        name: String,
        /// How long it was given.
        within: Duration,
    },
    /// An answer that is not one.
    #[error("{name} answered something unexpected: {answer}")]
    Unexpected {
        /// The replica.
        name: String,
        /// What it said.
        answer: String,
    },
}

/// One replica process.
#[derive(Debug)]
pub struct ReplicaProcess {
    name: String,
    pid: u32,
    child: Child,
    commands: Option<ChildStdin>,
    answers: Lines<BufReader<ChildStdout>>,
}

impl ReplicaProcess {
    /// Starts replica `name` as `process` (its program, arguments and environment), with piped
    /// standard input and output and its standard error left as the parent's.
    pub fn spawn(name: String, mut process: Process) -> Result<Self, FleetError> {
        let spawned = process
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(source) => return Err(FleetError::Spawn { name, source }),
        };
        let (Some(pid), Some(commands), Some(answers)) =
            (child.id(), child.stdin.take(), child.stdout.take())
        else {
            let source = io::Error::other("no process ID or pipes");
            return Err(FleetError::Spawn { name, source });
        };
        Ok(Self {
            name,
            pid,
            child,
            commands: Some(commands),
            answers: BufReader::new(answers).lines(),
        })
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its process ID.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    async fn send(&mut self, command: Command) -> Result<(), FleetError> {
        let pipe_error = |source| FleetError::Pipe {
            name: self.name.clone(),
            source,
        };
        let Some(commands) = self.commands.as_mut() else {
            return Err(pipe_error(io::ErrorKind::BrokenPipe.into()));
        };
        let line = format!("{}\n", command.line());
        let sent = commands.write_all(line.as_bytes()).await;
        sent.map_err(pipe_error)
    }

    async fn receive<R: DeserializeOwned>(
        &mut self,
        within: Duration,
    ) -> Result<Answer<R>, FleetError> {
        let line = match tokio::time::timeout(within, self.answers.next_line()).await {
            Err(_) => {
                let name = self.name.clone();
                return Err(FleetError::Silent { name, within });
            }
            Ok(Err(source)) => {
                let name = self.name.clone();
                return Err(FleetError::Pipe { name, source });
            }
            Ok(Ok(None)) => return Err(self.exited().await),
            Ok(Ok(Some(line))) => line,
        };
        serde_json::from_str(&line).map_err(|_| FleetError::Unexpected {
            name: self.name.clone(),
            answer: line,
        })
    }

    /// The error for a replica whose output ended.
    async fn exited(&mut self) -> FleetError {
        let outcome = self.exit_status().await;
        self.exit_error(outcome)
    }

    fn exit_error(&self, outcome: Result<ExitStatus, String>) -> FleetError {
        FleetError::Exited {
            name: self.name.clone(),
            status: outcome.map_or_else(|state| state, |status| status.to_string()),
        }
    }

    /// The error for an answer out of turn.
    fn unexpected(&self, answer: &str) -> FleetError {
        FleetError::Unexpected {
            name: self.name.clone(),
            answer: answer.to_owned(),
        }
    }

    /// Waits for the process to exit; kills it if it takes longer than [`EXIT_WITHIN`].
    async fn exit_status(&mut self) -> Result<ExitStatus, String> {
        match tokio::time::timeout(EXIT_WITHIN, self.child.wait()).await {
            Ok(Ok(status)) => Ok(status),
            Ok(Err(error)) => Err(error.to_string()),
            Err(_) => {
                let _ = self.child.kill().await;
                Err(format!("still running after {EXIT_WITHIN:?}; killed"))
            }
        }
    }

    /// Closes its input, which stops it, and waits for it to exit.
    pub async fn finish(mut self) -> Result<(), FleetError> {
        drop(self.commands.take());
        match self.exit_status().await {
            Ok(status) if status.success() => Ok(()),
            outcome => Err(self.exit_error(outcome)),
        }
    }
}

/// Starts one replica per `(name, process)` and waits until all are ready.
async fn ready(
    processes: impl IntoIterator<Item = (String, Process)>,
) -> Result<Vec<ReplicaProcess>, FleetError> {
    let mut replicas = Vec::new();
    for (name, process) in processes {
        replicas.push(ReplicaProcess::spawn(name, process)?);
    }
    for replica in &mut replicas {
        match replica
            .receive::<serde::de::IgnoredAny>(READY_WITHIN)
            .await?
        {
            Answer::Ready => {}
            Answer::Report(_) => return Err(replica.unexpected("a report")),
        }
    }
    Ok(replicas)
}

/// The replica processes of one run.
#[derive(Debug)]
pub struct Fleet {
    replicas: Vec<ReplicaProcess>,
}

impl Fleet {
    /// Starts one replica per `(name, process)` and waits until all are ready.
    pub async fn start(
        processes: impl IntoIterator<Item = (String, Process)>,
    ) -> Result<Self, FleetError> {
        let replicas = ready(processes).await?;
        Ok(Self { replicas })
    }

    /// Starts more replicas, waits until they are ready, and lets them send requests.
    pub async fn add(
        &mut self,
        processes: impl IntoIterator<Item = (String, Process)>,
    ) -> Result<(), FleetError> {
        let mut added = ready(processes).await?;
        for replica in &mut added {
            replica.send(Command::Go).await?;
        }
        self.replicas.append(&mut added);
        Ok(())
    }

    /// Takes the replicas after the first `keep` out of the fleet: their reports, then their exit.
    pub async fn retire<R: DeserializeOwned>(&mut self, keep: usize) -> Result<Vec<R>, FleetError> {
        let mut retired = Fleet {
            replicas: self.replicas.split_off(keep.min(self.replicas.len())),
        };
        let reports = retired.reports().await?;
        retired.finish().await?;
        Ok(reports)
    }

    /// Kills replica `name` at once (SIGKILL), as a crash would, and takes it out of the fleet:
    /// what it saw is lost with it. Whether it was in the fleet.
    pub async fn kill(&mut self, name: &str) -> bool {
        let Some(at) = self.replicas.iter().position(|r| r.name == name) else {
            return false;
        };
        let mut replica = self.replicas.remove(at);
        let _ = replica.child.kill().await;
        true
    }

    /// The replicas, in the order started.
    pub fn replicas(&self) -> &[ReplicaProcess] {
        &self.replicas
    }

    /// The process IDs of the replicas.
    pub fn pids(&self) -> Vec<u32> {
        self.replicas.iter().map(ReplicaProcess::pid).collect()
    }

    /// Lets every replica start sending requests.
    pub async fn go(&mut self) -> Result<(), FleetError> {
        for replica in &mut self.replicas {
            replica.send(Command::Go).await?;
        }
        Ok(())
    }

    /// Stops the traffic if it still runs, and collects every replica's report.
    pub async fn reports<R: DeserializeOwned>(&mut self) -> Result<Vec<R>, FleetError> {
        for replica in &mut self.replicas {
            replica.send(Command::Report).await?;
        }
        let mut reports = Vec::with_capacity(self.replicas.len());
        for replica in &mut self.replicas {
            match replica.receive(ANSWER_WITHIN).await? {
                Answer::Report(report) => reports.push(report),
                Answer::Ready => return Err(replica.unexpected("ready")),
            }
        }
        Ok(reports)
    }

    /// Every replica's report, as [`Fleet::reports`], and `creations()`, the server's count of
    /// tokens, read after them so that no creation escapes the reports. While the reports show
    /// fewer renewals (`renewals(reports)`) than that count, asks again, for up to a second.
    pub async fn settled_reports<R: DeserializeOwned>(
        &mut self,
        creations: impl Fn() -> u64,
        renewals: impl Fn(&[R]) -> u64,
    ) -> Result<(Vec<R>, u64), FleetError> {
        let settled = tokio::time::Instant::now() + SETTLE_FOR;
        loop {
            let reports = self.reports().await?;
            let created = creations();
            if renewals(&reports) >= created || tokio::time::Instant::now() >= settled {
                return Ok((reports, created));
            }
            tokio::time::sleep(SETTLE_PAUSE).await;
        }
    }

    /// Stops every replica; all must exit cleanly.
    pub async fn finish(self) -> Result<(), FleetError> {
        let mut outcome = Ok(());
        for replica in self.replicas {
            let finished = replica.finish().await;
            outcome = outcome.and(finished);
        }
        outcome
    }
}
