//! Key to slot: partner-level keys kept for the manager's life, user-level keys in a bounded
//! cache so that memory stays flat however many users come by.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use super::slot::KeySlot;
use crate::{PartnerId, TokenKey};

pub(super) struct Registry {
    partners: RwLock<HashMap<PartnerId, Arc<KeySlot>>>,
    users: quick_cache::sync::Cache<TokenKey, Arc<KeySlot>>,
}

impl Registry {
    pub(super) fn new(user_capacity: usize) -> Self {
        Self {
            partners: RwLock::new(HashMap::new()),
            users: quick_cache::sync::Cache::new(user_capacity),
        }
    }

    pub(super) fn get(&self, key: &TokenKey) -> Option<Arc<KeySlot>> {
        match key {
            TokenKey::Partner(partner) => self
                .partners
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .get(partner)
                .cloned(),
            TokenKey::User { .. } => self.users.get(key),
        }
    }

    /// The slot of `key`, and whether this call created it.
    pub(super) fn get_or_insert(&self, key: &TokenKey) -> (Arc<KeySlot>, bool) {
        if let Some(slot) = self.get(key) {
            return (slot, false);
        }
        let mut created = false;
        let slot = match key {
            TokenKey::Partner(partner) => Arc::clone(
                self.partners
                    .write()
                    .unwrap_or_else(PoisonError::into_inner)
                    .entry(partner.clone())
                    .or_insert_with(|| {
                        created = true;
                        Arc::new(KeySlot::new(key.clone()))
                    }),
            ),
            TokenKey::User { .. } => {
                let inserted = self.users.get_or_insert_with(key, || {
                    created = true;
                    Ok::<_, std::convert::Infallible>(Arc::new(KeySlot::new(key.clone())))
                });
                match inserted {
                    Ok(slot) => slot,
                    Err(never) => match never {},
                }
            }
        };
        (slot, created)
    }

    /// The partner-level keys' slots.
    pub(super) fn partner_slots(&self) -> Vec<Arc<KeySlot>> {
        let partners = self.partners.read().unwrap_or_else(PoisonError::into_inner);
        partners.values().cloned().collect()
    }

    /// How many user-level keys are cached.
    pub(super) fn user_keys(&self) -> usize {
        self.users.len()
    }
}
