//! `kigo store rotate-key`: every stored entry sealed again under the current key, page by page,
//! resumable after the last key done.

use std::process::ExitCode;

use kigo_core::TokenKey;
use kigo_core::store::{Resealed, StoreAdmin};
use serde::Serialize;

use crate::failure::{FAILED, Failure};
use crate::keys;
use crate::report::Report;

/// Keys read from the store at a time.
const PAGE: usize = 500;

/// What a rotation did.
#[derive(Debug, Default, Serialize)]
struct Rotation {
    resealed: u64,
    already_current: u64,
    absent: u64,
    changed_meanwhile: u64,
    unreadable: u64,
    /// The storage ID of the last key done: `--after` resumes from there.
    last: Option<String>,
}

/// `kigo store rotate-key [--after STORAGE_ID]`.
pub(crate) async fn rotate_key(report: &Report, after: Option<&str>) -> Result<ExitCode, Failure> {
    let store = keys::store().await?;
    let mut after = match after {
        Some(id) => Some(TokenKey::from_storage_id(id).ok_or_else(|| Failure {
            message: format!("--after {id:?} is not a storage ID this tool printed"),
            hint: None,
            code: 2,
        })?),
        None => None,
    };
    let progress = report.progress("entries sealed again");
    let mut rotation = Rotation::default();
    loop {
        let page = match store.keys(after.as_ref(), PAGE).await {
            Ok(page) => page,
            Err(error) => return Err(stopped(error.into(), &rotation)),
        };
        let Some(last) = page.last().cloned() else {
            break;
        };
        for key in &page {
            match store.reseal(key).await {
                Ok(Resealed::Done) => rotation.resealed += 1,
                Ok(Resealed::Current) => rotation.already_current += 1,
                Ok(Resealed::Absent) => rotation.absent += 1,
                Ok(Resealed::Changed) => rotation.changed_meanwhile += 1,
                Ok(Resealed::Unreadable(_)) => rotation.unreadable += 1,
                Ok(_) => {}
                Err(error) => return Err(stopped(error.into(), &rotation)),
            }
            rotation.last = Some(key.storage_id());
            progress.inc(1);
        }
        after = Some(last);
    }
    progress.finish_and_clear();
    report.show(&rotation, || {
        format!(
            "sealed again under the current key: {} ({} already were, {} absent, {} renewed meanwhile, {} unreadable with this keyring)",
            crate::report::entries(rotation.resealed),
            rotation.already_current,
            rotation.absent,
            rotation.changed_meanwhile,
            rotation.unreadable
        )
    });
    Ok(if rotation.unreadable > 0 {
        ExitCode::from(crate::failure::PROBLEMS_FOUND)
    } else {
        ExitCode::SUCCESS
    })
}

/// A rotation stopped by `failure`: how to resume it.
fn stopped(mut failure: Failure, rotation: &Rotation) -> Failure {
    failure.code = FAILED;
    failure.hint = Some(match &rotation.last {
        Some(last) => format!("run it again with --after {last} to resume where it stopped"),
        None => "run it again: nothing was done".to_owned(),
    });
    failure
}
