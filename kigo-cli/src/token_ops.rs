//! The commands on the tokens the fleet shares: `status`, `renew`, `invalidate`.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use kigo_core::store::InvalidateOutcome;
use kigo_core::store::{StoreKeyStatus, inspect};
use kigo_core::{Token, TokenKey, TokenStore};
use kigo_http::KigoApi;
use serde::Serialize;

use crate::failure::Failure;
use crate::keys;
use crate::report::Report;

/// One key in `status`'s output.
#[derive(Debug, Serialize)]
struct KeyReport {
    key: String,
    #[serde(flatten)]
    status: StoreKeyStatus,
}

/// `kigo status [--user ID]...`.
pub(crate) async fn status(report: &Report, users: &[String]) -> Result<ExitCode, Failure> {
    let store = keys::store().await?;
    let partner = keys::partner()?;
    let mut wanted = vec![TokenKey::partner(partner.clone())];
    for user in users {
        wanted.push(keys::user_key(&partner, user)?);
    }
    let mut keys = Vec::new();
    for key in wanted {
        let status = inspect(&store, &key).await?;
        keys.push(KeyReport {
            key: key.to_string(),
            status,
        });
    }
    report.show(&serde_json::json!({ "keys": keys }), || {
        keys.iter().map(describe).collect::<Vec<_>>().join("\n")
    });
    Ok(ExitCode::SUCCESS)
}

/// One key, as a few lines for a person.
fn describe(key: &KeyReport) -> String {
    let status = &key.status;
    let mut text = format!("{}\n  entry        {}", key.key, status.entry);
    if let Some(fingerprint) = &status.fingerprint {
        let _ = write!(text, "\n  fingerprint  {fingerprint}");
    }
    if let Some(generation) = status.generation {
        let _ = write!(text, "\n  generation   {generation}");
    }
    if let Some(expires) = status.expires_at_ms {
        let _ = write!(text, "\n  expires      {}", from_now(expires));
    }
    let lease = match (&status.lease_holder, status.lease_remaining_ms) {
        (Some(holder), Some(left)) => format!("held by {holder} for {} more", seconds(left)),
        (Some(holder), None) => format!("held by {holder}"),
        (None, _) => "free".to_owned(),
    };
    let _ = write!(text, "\n  lease        {lease}");
    let cooldown = status.cooldown_ms.map_or_else(
        || "none".to_owned(),
        |left| format!("{} left", seconds(left)),
    );
    let _ = write!(text, "\n  cool-down    {cooldown}");
    text
}

fn seconds(ms: u64) -> String {
    format!("{:.1} s", Duration::from_millis(ms).as_secs_f64())
}

/// `ms` since the epoch, said from now: `in 1312.0 s` or `3.0 s ago`.
fn from_now(ms: u64) -> String {
    let at = SystemTime::UNIX_EPOCH + Duration::from_millis(ms);
    match at.duration_since(SystemTime::now()) {
        Ok(left) => format!("in {:.1} s", left.as_secs_f64()),
        Err(past) => format!("{:.1} s ago", past.duration().as_secs_f64()),
    }
}

/// What `renew` did.
#[derive(Debug, Serialize)]
struct Renewed {
    key: String,
    fingerprint: String,
    generation: u64,
    expires_at_ms: u64,
}

/// `kigo renew`: one renewal for the fleet, through the lease.
pub(crate) async fn renew(report: &Report) -> Result<ExitCode, Failure> {
    let store = keys::store().await?;
    let api = KigoApi::from_env()?;
    let manager = api
        .partner_manager()
        .store(store)
        .replica_name("kigo-renew")
        .build()
        .map_err(|error| {
            Failure::misconfigured(crate::failure::chain(&error), "see the manager's settings")
        })?;
    let handle = manager.handle(api.partner_key())?;
    let renewed = handle.renew().await.map(|token| Renewed {
        key: api.partner_key().to_string(),
        fingerprint: token.fingerprint().to_string(),
        generation: token.generation(),
        expires_at_ms: unix_ms(token.expires_at()),
    });
    manager.shutdown().await;
    let renewed = renewed?;
    report.show(&renewed, || {
        format!(
            "renewed {}: new token {} (generation {}), expires {}; the replicas take it from the store",
            renewed.key,
            renewed.fingerprint,
            renewed.generation,
            from_now(renewed.expires_at_ms)
        )
    });
    Ok(ExitCode::SUCCESS)
}

/// What `invalidate` did.
#[derive(Debug, Serialize)]
struct Invalidated {
    key: String,
    /// The fingerprint of the token removed; `None` if none was removed.
    removed: Option<String>,
    /// A replica renewed the token between the read and the removal: the new one stays.
    superseded: bool,
}

/// `kigo invalidate [--user ID]`: removes the stored token if it is still the one read.
pub(crate) async fn invalidate(report: &Report, user: Option<&str>) -> Result<ExitCode, Failure> {
    let store = keys::store().await?;
    let partner = keys::partner()?;
    let key = match user {
        Some(user) => keys::user_key(&partner, user)?,
        None => TokenKey::partner(partner),
    };
    let stored = store.load(&key).await?.token().map(Token::fingerprint);
    let (removed, superseded) = match stored {
        Some(fingerprint) => match store.invalidate(&key, &fingerprint).await? {
            InvalidateOutcome::Removed => (Some(fingerprint.to_string()), false),
            InvalidateOutcome::NotCurrent => (None, true),
        },
        None => (None, false),
    };
    let outcome = Invalidated {
        key: key.to_string(),
        removed,
        superseded,
    };
    report.show(&outcome, || match &outcome.removed {
        Some(fingerprint) => format!(
            "removed {fingerprint} for {}; the replicas renew it at their next use",
            outcome.key
        ),
        None if outcome.superseded => format!(
            "the token of {} was renewed meanwhile; nothing removed (run again to remove the new one)",
            outcome.key
        ),
        None => format!("no token stored for {}; nothing to remove", outcome.key),
    });
    Ok(ExitCode::SUCCESS)
}

fn unix_ms(time: SystemTime) -> u64 {
    let since = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}
