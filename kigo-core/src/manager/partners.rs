//! Cool-downs that pause every key of a partner: a `429` or `5xx` while creating one user's
//! token means the partner as a whole is being turned away, so none of its keys calls the token
//! endpoint until the pause ends. The pause is kept in the store on the partner-level key, where
//! every replica finds it; this remembers what was last read there, so that user keys cost one
//! store read per partner and poll interval, not one per creation.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use crate::PartnerId;

#[derive(Debug, Default)]
pub(super) struct PartnerPauses(Mutex<HashMap<PartnerId, Known>>);

#[derive(Debug, Clone, Copy)]
struct Known {
    /// When the pause ends; `None` if none runs.
    until: Option<SystemTime>,
    /// When the store was last asked.
    read_at: SystemTime,
}

impl PartnerPauses {
    /// The end of `partner`'s pause as last read, if that read is younger than `fresh_for`.
    pub(super) fn known(
        &self,
        partner: &PartnerId,
        now: SystemTime,
        fresh_for: Duration,
    ) -> Option<Option<SystemTime>> {
        let known = *self.lock().get(partner)?;
        let age = now.duration_since(known.read_at).unwrap_or_default();
        (age < fresh_for).then_some(known.until)
    }

    /// What the store said at `now`: a pause until `until`, or none.
    pub(super) fn read(&self, partner: &PartnerId, until: Option<SystemTime>, now: SystemTime) {
        self.lock().insert(
            partner.clone(),
            Known {
                until,
                read_at: now,
            },
        );
    }

    /// A failure here paused the partner until `until` (never shortening a longer pause).
    pub(super) fn extend(&self, partner: &PartnerId, until: SystemTime, now: SystemTime) {
        let mut map = self.lock();
        let known = map.entry(partner.clone()).or_insert(Known {
            until: None,
            read_at: now,
        });
        known.until = Some(known.until.map_or(until, |current| current.max(until)));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PartnerId, Known>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
