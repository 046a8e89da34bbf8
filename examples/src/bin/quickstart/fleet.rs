//! The replica processes, seen from the quickstart: this program started again as
//! `quickstart replica <name> <file>`, configured through the `KIGO_*` variables a production
//! replica reads, driven over its standard input, answering on its standard output (its standard
//! error is the quickstart's).
//!
//! Replicas never outlive the quickstart: a [`ReplicaProcess`] dropped before
//! [`ReplicaProcess::finish`] (an error or a panic here) kills its process, and a replica whose
//! standard input ends (this process gone, even killed) stops by itself.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use kigo_core::codec::SEALING_KEYS_VAR;
use kigo_testkit::mock::MockKigo;
use secrecy::{ExposeSecret, SecretString};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command as Process};

use crate::protocol::{Answer, Command, REPLICA_ARG, ReplicaReport};

/// How long a replica may take to open its store and build its manager.
const READY_WITHIN: Duration = Duration::from_secs(30);
/// How long a replica may take to answer a report command.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);
/// How long a replica may take to shut down once its input ends, before it is killed.
const EXIT_WITHIN: Duration = Duration::from_secs(5);

/// A replica that did not do its part.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FleetError {
    /// The process could not be started.
    #[error("could not start {name}")]
    Spawn {
        name: String,
        #[source]
        source: io::Error,
    },
    /// Its pipes failed.
    #[error("could not talk to {name}")]
    Pipe {
        name: String,
        #[source]
        source: io::Error,
    },
    /// It ended before answering, or failed at the end (its errors are on standard error).
    #[error("{name} exited early or failed ({status}); see its errors above")]
    Exited { name: String, status: String },
    /// No answer in time.
    #[error("{name} did not answer within {within:?}")]
    Silent { name: String, within: Duration },
    /// An answer that is not one.
    #[error("{name} answered something unexpected: {answer}")]
    Unexpected { name: String, answer: String },
}

/// One replica process.
#[derive(Debug)]
pub(crate) struct ReplicaProcess {
    name: String,
    pid: u32,
    child: Child,
    commands: Option<ChildStdin>,
    answers: Lines<BufReader<ChildStdout>>,
}

impl ReplicaProcess {
    /// Starts replica `name` on the SQLite `file`, against `mock`, sealing with `keys` (the
    /// value of `KIGO_SEALING_KEYS`, as a production replica gets it from its environment).
    fn spawn(
        name: String,
        file: &Path,
        mock: &MockKigo,
        keys: &SecretString,
    ) -> Result<Self, FleetError> {
        let spawned = std::env::current_exe().and_then(|program| {
            Process::new(program)
                .arg(REPLICA_ARG)
                .arg(&name)
                .arg(file)
                .env(kigo_http::API_KEY_VAR, mock.api_key())
                .env(kigo_http::PARTNER_ID_VAR, mock.partner_id().as_str())
                .env(kigo_http::BASE_URL_VAR, mock.base_url())
                .env(SEALING_KEYS_VAR, keys.expose_secret())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
        });
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

    async fn receive(&mut self, within: Duration) -> Result<Answer, FleetError> {
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
    fn unexpected(&self, answer: &Answer) -> FleetError {
        FleetError::Unexpected {
            name: self.name.clone(),
            answer: format!("{answer:?}"),
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
    async fn finish(mut self) -> Result<(), FleetError> {
        drop(self.commands.take());
        match self.exit_status().await {
            Ok(status) if status.success() => Ok(()),
            outcome => Err(self.exit_error(outcome)),
        }
    }
}

/// The replica processes of one run.
#[derive(Debug)]
pub(crate) struct Fleet {
    replicas: Vec<ReplicaProcess>,
}

impl Fleet {
    /// Starts one replica per file (`replica-0`, `replica-1`, ...) and waits until all are ready.
    pub(crate) async fn start(
        files: &[PathBuf],
        mock: &MockKigo,
        keys: &SecretString,
    ) -> Result<Self, FleetError> {
        let mut replicas = Vec::with_capacity(files.len());
        for (n, file) in files.iter().enumerate() {
            replicas.push(ReplicaProcess::spawn(
                format!("replica-{n}"),
                file,
                mock,
                keys,
            )?);
        }
        for replica in &mut replicas {
            match replica.receive(READY_WITHIN).await? {
                Answer::Ready => {}
                other => return Err(replica.unexpected(&other)),
            }
        }
        Ok(Self { replicas })
    }

    /// The process IDs of the replicas.
    pub(crate) fn pids(&self) -> Vec<u32> {
        self.replicas.iter().map(|replica| replica.pid).collect()
    }

    /// Lets every replica start sending requests.
    pub(crate) async fn go(&mut self) -> Result<(), FleetError> {
        for replica in &mut self.replicas {
            replica.send(Command::Go).await?;
        }
        Ok(())
    }

    /// Stops the traffic if it still runs, and collects every replica's report.
    pub(crate) async fn reports(&mut self) -> Result<Vec<ReplicaReport>, FleetError> {
        for replica in &mut self.replicas {
            replica.send(Command::Report).await?;
        }
        let mut reports = Vec::with_capacity(self.replicas.len());
        for replica in &mut self.replicas {
            match replica.receive(ANSWER_WITHIN).await? {
                Answer::Report(report) => reports.push(report),
                other => return Err(replica.unexpected(&other)),
            }
        }
        Ok(reports)
    }

    /// Stops every replica; all must exit cleanly.
    pub(crate) async fn finish(self) -> Result<(), FleetError> {
        let mut outcome = Ok(());
        for replica in self.replicas {
            let finished = replica.finish().await;
            outcome = outcome.and(finished);
        }
        outcome
    }
}
