//! The commands on the store itself: `store migrate`, `store check`, `store purge`.

use std::process::ExitCode;

use kigo_core::store::StoreAdmin;
use serde_json::json;

use crate::failure::{Failure, PROBLEMS_FOUND};
use crate::keys;
use crate::report::{self, Report};

/// `kigo store migrate`.
pub(crate) async fn migrate(report: &Report) -> Result<ExitCode, Failure> {
    let store = keys::store().await?;
    store.migrate().await?;
    report.show(&json!({ "migrated": true }), || {
        "the store's migrations are applied".to_owned()
    });
    Ok(ExitCode::SUCCESS)
}

/// `kigo store check`: exit code 4 if it finds a problem.
pub(crate) async fn check(report: &Report) -> Result<ExitCode, Failure> {
    let store = keys::store().await?;
    let check = store.check().await?;
    let mut problems = Vec::new();
    if !check.permissions_ok {
        let what = check
            .permission_problem
            .as_deref()
            .unwrap_or("a permission");
        problems.push(format!(
            "the store refuses {what}: grant it (see the store's README)"
        ));
    }
    if check.entries_unreadable > 0 {
        problems.push(format!(
            "KIGO_SEALING_KEYS does not open {} in the store: give this replica the fleet's keys",
            report::entries(check.entries_unreadable)
        ));
    }
    let clock_off = check
        .clock_offset_ms
        .is_some_and(|offset| offset.abs() > 5_000);
    if clock_off {
        problems.push("this machine's clock is more than 5 s off the store's: fix NTP".to_owned());
    }
    report.show(&json!({ "check": check, "problems": problems }), || {
        let mut text = format!(
            "store        {}\ntransport    {}\nclock        {}\nschema       {}\npermissions  {}\nentries      {} read, {} unreadable, {} under older keys",
            check.store,
            check.transport,
            check
                .clock_offset_ms
                .map_or_else(|| "no clock".to_owned(), |ms| format!("{ms} ms off this machine's")),
            check.schema.as_deref().unwrap_or("none"),
            if check.permissions_ok { "ok" } else { "refused" },
            check.entries_read,
            check.entries_unreadable,
            check.entries_under_older_keys,
        );
        for problem in &problems {
            text.push_str("\nproblem: ");
            text.push_str(problem);
        }
        text
    });
    Ok(if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(PROBLEMS_FOUND)
    })
}

/// `kigo store purge`.
pub(crate) async fn purge(report: &Report) -> Result<ExitCode, Failure> {
    let store = keys::store().await?;
    let cleared = store.purge_expired().await?;
    report.show(&json!({ "cleared": cleared }), || {
        format!(
            "cleared {} holding expired tokens",
            report::entries(cleared)
        )
    });
    Ok(ExitCode::SUCCESS)
}
