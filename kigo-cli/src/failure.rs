//! Why a command failed, with the exit code that says so and what to do about it.

use std::process::ExitCode;

use kigo_core::StoreError;

/// The exit codes, as the README documents them.
pub(crate) const FAILED: u8 = 1;
pub(crate) const MISCONFIGURED: u8 = 3;
pub(crate) const PROBLEMS_FOUND: u8 = 4;

/// A command's failure: a line to show, what to do, and the exit code.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) message: String,
    pub(crate) hint: Option<String>,
    pub(crate) code: u8,
}

impl Failure {
    /// A misconfiguration (exit code 3), with what to do.
    pub(crate) fn misconfigured(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            hint: Some(hint.into()),
            code: MISCONFIGURED,
        }
    }

    /// The process's exit code.
    pub(crate) fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.code)
    }
}

/// `error` and its causes on one line (none of them holds a secret: the workspace's errors keep
/// tokens, keys and passwords out).
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Self {
        match &error {
            StoreError::Misconfigured { hint, source } => Self {
                hint: Some((*hint).to_owned()),
                message: format!("the store is misconfigured: {}", chain(source.as_ref())),
                code: MISCONFIGURED,
            },
            _ => Self {
                hint: Some("check that the store is up and reachable from here".to_owned()),
                message: chain(&error),
                code: FAILED,
            },
        }
    }
}

impl From<kigo_core::Error> for Failure {
    fn from(error: kigo_core::Error) -> Self {
        let code = if error.is_transient() {
            FAILED
        } else {
            MISCONFIGURED
        };
        let hint = match &error {
            kigo_core::Error::StoreMisconfigured { source, .. } => match source {
                StoreError::Misconfigured { hint, .. } => Some((*hint).to_owned()),
                _ => None,
            },
            kigo_core::Error::Permanent { .. } => {
                Some("check KIGO_API_KEY and KIGO_PARTNER_ID".to_owned())
            }
            _ => error
                .retry_after()
                .map(|after| format!("try again in {} s", after.as_secs().max(1))),
        };
        Self {
            message: chain(&error),
            hint,
            code,
        }
    }
}

impl From<kigo_http::ConfigError> for Failure {
    fn from(error: kigo_http::ConfigError) -> Self {
        Self::misconfigured(
            chain(&error),
            "set KIGO_API_KEY, KIGO_PARTNER_ID and KIGO_BASE_URL (https) for the Kigo API",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_misconfiguration_is_exit_code_3_with_its_hint() {
        let error = StoreError::misconfigured("do this", std::io::Error::other("because"));
        let failure = Failure::from(error);
        assert_eq!(failure.code, MISCONFIGURED);
        assert_eq!(failure.hint.as_deref(), Some("do this"));
        assert!(failure.message.contains("because"), "{}", failure.message);
        let down = Failure::from(StoreError::unavailable(std::io::Error::other("refused")));
        assert_eq!(down.code, FAILED);
        assert!(down.message.ends_with("refused"), "{}", down.message);
    }
}
