//! What a parent and its replica processes say to each other: commands as lines on a replica's
//! standard input, answers as JSON lines on its standard output. The end of a replica's input
//! means "stop and exit".

use std::io::{BufRead, Write};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// A command from the parent to a replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Start sending requests.
    Go,
    /// Stop sending requests (if still sending), and report.
    Report,
}

impl Command {
    const GO: &str = "go";
    const REPORT: &str = "report";

    /// The command as sent, without the newline.
    pub fn line(self) -> &'static str {
        match self {
            Self::Go => Self::GO,
            Self::Report => Self::REPORT,
        }
    }

    /// The command on `line`, if it is one.
    pub fn parse(line: &str) -> Option<Self> {
        match line.trim() {
            Self::GO => Some(Self::Go),
            Self::REPORT => Some(Self::Report),
            _ => None,
        }
    }
}

/// An answer from a replica, with its report of type `R`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "message", rename_all = "snake_case")]
pub enum Answer<R> {
    /// The replica is set up: waiting for [`Command::Go`].
    Ready,
    /// Everything the replica saw so far.
    Report(R),
}

/// Lines of standard input, read on a thread of their own: a blocking read cannot be cancelled,
/// and a thread outside the runtime does not hold up its shutdown.
pub fn commands() -> mpsc::Receiver<String> {
    let (sender, receiver) = mpsc::channel(4);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if sender.blocking_send(line).is_err() {
                break;
            }
        }
    });
    receiver
}

/// Writes `answer` as one JSON line on standard output.
pub fn answer<R: Serialize>(answer: &Answer<R>) -> std::io::Result<()> {
    let line = serde_json::to_string(answer)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_read_back_as_sent() {
        for command in [Command::Go, Command::Report] {
            assert_eq!(
                Command::parse(&format!("{}\n", command.line())),
                Some(command)
            );
        }
        assert_eq!(Command::parse("stop"), None);
    }

    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    struct Seen {
        requests: u64,
        tokens: Vec<String>,
    }

    #[test]
    fn answers_read_back_as_sent() {
        let report = Answer::Report(Seen {
            requests: 3,
            tokens: vec!["00ff".into()],
        });
        for answer in [Answer::Ready, report] {
            let line = serde_json::to_string(&answer).unwrap();
            assert!(!line.contains('\n'));
            assert_eq!(serde_json::from_str::<Answer<Seen>>(&line).unwrap(), answer);
        }
    }
}
