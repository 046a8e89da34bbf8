//! Key to slot: partner-level keys kept for the manager's life, user-level keys in a bounded
//! cache so that memory stays flat however many users come by.
//!
//! The cache of user-level keys holds each key's current entry itself (the cached token, which
//! leads back to its slot), not the slot: a lookup that finds a usable token takes one reference
//! count, of the entry it hands out, and reads one allocation, as a cache of tokens would. Every
//! change of a registered slot's entry goes through [`Registry::replace_if`], under the lock of
//! the key's shard, so that the registry's value and the slot's entry never differ.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use quick_cache::sync::{EntryAction, EntryResult};
use quick_cache::{DefaultHashBuilder, Lifecycle, UnitWeighter};

use super::slot::{Cached, KeySlot, TokenGuard};
use crate::{PartnerId, TokenKey};

/// The cache of user-level keys: each key's current entry.
type Users =
    quick_cache::sync::Cache<TokenKey, Arc<Cached>, UnitWeighter, DefaultHashBuilder, Evictions>;

pub(super) struct Registry {
    partners: RwLock<HashMap<PartnerId, Arc<KeySlot>>>,
    users: Users,
}

impl Registry {
    pub(super) fn new(user_capacity: usize) -> Self {
        Self {
            partners: RwLock::new(HashMap::new()),
            users: Users::with(
                user_capacity,
                u64::try_from(user_capacity).unwrap_or(u64::MAX),
                UnitWeighter,
                DefaultHashBuilder::default(),
                Evictions,
            ),
        }
    }

    /// A token of `key` usable at `now_ns` (nanoseconds since the Unix epoch), if one is
    /// cached: the hot path of a lookup by key.
    #[inline(always)]
    pub(super) fn cached(&self, key: &TokenKey, now_ns: u64) -> Option<TokenGuard> {
        match key {
            TokenKey::User { .. } => self.users.get(key)?.hand_out(now_ns).ok(),
            TokenKey::Partner(_) => self.get(key)?.cached(now_ns),
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
            TokenKey::User { .. } => self.users.get(key)?.registered_slot(),
        }
    }

    /// The slot of `key`, and whether this call created it.
    pub(super) fn get_or_insert(&self, key: &TokenKey) -> (Arc<KeySlot>, bool) {
        loop {
            if let Some(slot) = self.get(key) {
                return (slot, false);
            }
            if let TokenKey::Partner(partner) = key {
                let mut created = false;
                let slot = Arc::clone(
                    self.partners
                        .write()
                        .unwrap_or_else(PoisonError::into_inner)
                        .entry(partner.clone())
                        .or_insert_with(|| {
                            created = true;
                            Arc::new(KeySlot::new(key.clone()))
                        }),
                );
                return (slot, created);
            }
            let mut made = None;
            let inserted = self.users.get_or_insert_with(key, || {
                let slot = Arc::new(KeySlot::new(key.clone()));
                let entry = Arc::new(Cached::empty());
                entry.register(Arc::clone(&slot));
                slot.set_current(Arc::clone(&entry));
                made = Some(slot);
                Ok::<_, std::convert::Infallible>(entry)
            });
            let entry = match inserted {
                Ok(entry) => entry,
                Err(never) => match never {},
            };
            // The key found may have been evicted since (its entry no longer leads to a slot):
            // look again.
            let created = made.is_some();
            if let Some(slot) = made.or_else(|| entry.registered_slot()) {
                return (slot, created);
            }
        }
    }

    /// Makes `next` the cached entry of `slot` if `when` holds for the current one; true if it
    /// did. For a registered user-level slot, the registry's value changes with it, atomically
    /// with respect to lookups, other changes and eviction.
    pub(super) fn replace_if(
        &self,
        slot: &KeySlot,
        next: Cached,
        when: impl Fn(&Cached) -> bool,
    ) -> bool {
        let next = Arc::new(next);
        if matches!(slot.key, TokenKey::User { .. }) {
            let changed = self.users.entry(&slot.key, None, |_, value| {
                if !value.stands_for(slot) {
                    return EntryAction::Retain(None);
                }
                if !when(value) {
                    return EntryAction::Retain(Some(false));
                }
                if let Some(registered) = value.registered_slot() {
                    next.register(registered);
                }
                slot.set_current(Arc::clone(&next));
                *value = Arc::clone(&next);
                EntryAction::Retain(Some(true))
            });
            if let EntryResult::Retained(Some(changed)) = changed {
                return changed;
            }
        }
        // Not in the registry (a partner-level key, or a user-level key evicted while a handle
        // or a flight keeps its slot): the slot alone.
        slot.replace_if(&next, when)
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

impl Drop for Registry {
    /// Ends every user-level entry's standing for its slot: a slot and its current entry point
    /// at each other, and only eviction or this breaks the pair, so a dropped manager's keys
    /// (and their tokens) would otherwise stay in memory for good.
    fn drop(&mut self) {
        for (_, entry) in self.users.drain() {
            drop(entry.unregister());
        }
    }
}

/// Ends an evicted entry's standing for its slot, so that the two stop keeping each other alive;
/// the slots are dropped after the shard's lock is released.
#[derive(Clone, Copy, Debug)]
struct Evictions;

impl Lifecycle<TokenKey, Arc<Cached>> for Evictions {
    type RequestState = Vec<Arc<KeySlot>>;

    fn on_evict(&self, evicted: &mut Self::RequestState, _: TokenKey, entry: Arc<Cached>) {
        evicted.extend(entry.unregister());
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::manager::status::TokenOrigin;
    use crate::time::unix_nanos;
    use crate::{PartnerId, Token, TokenSecret, UserId};

    fn user(id: &str) -> TokenKey {
        TokenKey::user(PartnerId::new("acme").unwrap(), UserId::new(id).unwrap())
    }

    fn entry(secret: &str, at: SystemTime) -> Cached {
        let expires = at + Duration::from_secs(1800);
        let token = Token::new(TokenSecret::new(secret), at, expires).unwrap();
        Cached::new(token, expires, expires, TokenOrigin::CreatedHere)
    }

    /// Whether `key` has a slot in `registry` but no token usable at `now`.
    fn slot_without_token(registry: &Registry, key: &TokenKey, now: SystemTime) -> bool {
        registry.cached(key, unix_nanos(now)).is_none() && registry.get(key).is_some()
    }

    #[test]
    fn a_lookup_by_key_hands_out_what_the_slot_holds() {
        let registry = Registry::new(100);
        let alice = user("alice");
        let now = SystemTime::now();
        let (slot, created) = registry.get_or_insert(&alice);
        assert!(created);
        assert!(slot_without_token(&registry, &alice, now));

        assert!(registry.replace_if(&slot, entry("first", now), |_| true));
        let Some(token) = registry.cached(&alice, unix_nanos(now)) else {
            panic!("the installed token is not handed out by key");
        };
        let first = token.fingerprint();
        assert_eq!(
            slot.cached(unix_nanos(now)).map(|t| t.fingerprint()),
            Some(first)
        );

        let rejected = |current: &Cached| current.present && current.token.fingerprint() == first;
        assert!(registry.replace_if(&slot, Cached::empty(), rejected));
        assert!(
            slot_without_token(&registry, &alice, now),
            "a dropped token is still handed out by key"
        );
        assert!(!registry.replace_if(&slot, Cached::empty(), rejected));
        assert!(!registry.get_or_insert(&alice).1, "one slot per key");
    }

    /// Fills `registry` with new keys, each with a token, until `key` is evicted.
    fn evict(registry: &Registry, kept: &KeySlot, now: SystemTime) {
        for n in 0..100_000 {
            let (slot, _) = registry.get_or_insert(&user(&format!("user-{n}")));
            assert!(registry.replace_if(&slot, entry("token", now), |_| true));
            // Without a lookup, which would make the key hot.
            if kept.current().registered_slot().is_none() {
                return;
            }
        }
        panic!("{} never evicted", kept.key);
    }

    #[test]
    fn an_evicted_user_key_lets_its_slot_go() {
        let registry = Registry::new(16);
        let now = SystemTime::now();
        let mut slots = Vec::new();
        for n in 0..1000 {
            let (slot, _) = registry.get_or_insert(&user(&format!("user-{n}")));
            assert!(registry.replace_if(&slot, entry("token", now), |_| true));
            slots.push(Arc::downgrade(&slot));
        }
        let alive = slots.iter().filter(|slot| slot.strong_count() > 0).count();
        assert!(
            registry.user_keys() <= 32,
            "{} keys kept",
            registry.user_keys()
        );
        assert_eq!(
            alive,
            registry.user_keys(),
            "the slots of evicted keys and their entries keep each other alive"
        );
    }

    #[test]
    fn a_dropped_registry_lets_its_slots_and_tokens_go() {
        let registry = Registry::new(100);
        let now = SystemTime::now();
        let slots: Vec<_> = (0..10)
            .map(|n| {
                let (slot, _) = registry.get_or_insert(&user(&format!("user-{n}")));
                assert!(registry.replace_if(&slot, entry("token", now), |_| true));
                Arc::downgrade(&slot)
            })
            .collect();
        drop(registry);
        let alive = slots.iter().filter(|slot| slot.strong_count() > 0).count();
        assert_eq!(alive, 0, "slots and their entries outlive the registry");
    }

    #[test]
    fn a_slot_kept_past_its_eviction_goes_on_alone() {
        let registry = Registry::new(16);
        let now = SystemTime::now();
        let kept_key = user("kept");
        let (kept, _) = registry.get_or_insert(&kept_key);
        assert!(registry.replace_if(&kept, entry("kept", now), |_| true));
        evict(&registry, &kept, now);
        assert!(registry.get(&kept_key).is_none());
        // A handle's slot keeps its token and its changes, outside the registry.
        assert!(kept.cached(unix_nanos(now)).is_some());
        assert!(registry.replace_if(&kept, entry("kept-again", now), |_| true));
        assert!(kept.cached(unix_nanos(now)).is_some());
        let (again, created) = registry.get_or_insert(&kept_key);
        assert!(created && !Arc::ptr_eq(&again, &kept));
        assert!(again.cached(unix_nanos(now)).is_none());
        assert!(slot_without_token(&registry, &kept_key, now));
    }
}
