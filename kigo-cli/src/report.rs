//! What a command prints: text for a person, or one JSON document for a script (`--json`).

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use serde_json::json;

use crate::failure::Failure;

/// Where a command's output goes, and in which form.
#[derive(Debug)]
pub(crate) struct Report {
    json: bool,
}

impl Report {
    pub(crate) fn new(json: bool) -> Self {
        Self { json }
    }

    /// Prints `value` as JSON, or `text` for a person.
    pub(crate) fn show(&self, value: &impl Serialize, text: impl FnOnce() -> String) {
        let line = if self.json {
            serde_json::to_string_pretty(value).unwrap_or_default()
        } else {
            text()
        };
        let _ = writeln!(std::io::stdout().lock(), "{line}");
    }

    /// Prints `failure` (to standard error as text, or as JSON on standard output) and returns
    /// its exit code.
    pub(crate) fn failure(&self, failure: &Failure) -> ExitCode {
        if self.json {
            let document = json!({
                "error": failure.message,
                "hint": failure.hint,
                "exit_code": failure.code,
            });
            let _ = writeln!(std::io::stdout().lock(), "{document:#}");
        } else {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "kigo: {}", failure.message);
            if let Some(hint) = &failure.hint {
                let _ = writeln!(err, "  what to do: {hint}");
            }
        }
        failure.exit_code()
    }

    /// A progress bar for `total` steps (none is known: a spinner), shown only to a person at a
    /// terminal.
    pub(crate) fn progress(&self, what: &str) -> ProgressBar {
        if self.json || !std::io::stderr().is_terminal() {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new_spinner();
        if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} {pos} [{elapsed}]") {
            bar.set_style(style);
        }
        bar.set_message(what.to_owned());
        bar
    }
}

/// "1 entry", "2 entries": a count of store entries in a sentence.
pub(crate) fn entries(count: u64) -> String {
    if count == 1 {
        "1 entry".to_owned()
    } else {
        format!("{count} entries")
    }
}
