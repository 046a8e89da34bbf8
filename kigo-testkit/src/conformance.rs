//! The [`TokenStore`] conformance suite: one plain async function per "# Behavior" line of the
//! trait, run against a [`StoreHarness`].
//!
//! Every backend in the workspace runs it, and so should a custom store. A harness is a store on
//! a namespace of its own (a fresh directory, prefix or schema) plus the means to reach behind
//! it: planting and reading raw entries, letting the store's time pass. [`MemoryHarness`] is the
//! memory store's; the `TokenStore` docs of `kigo-core` prove a custom store with one, and the
//! repository's `examples` crate has one for a store on files (`examples/src/file_store`).
//!
//! In a test file, one line makes one `#[tokio::test]` per function of the suite, each on a
//! harness of its own (with tokio's `macros` and `rt-multi-thread` features):
//! `kigo_testkit::store_conformance_tests!(async { MemoryHarness::new() });` is the whole of
//! `kigo-core`'s `tests/memory_store.rs` (see
//! [`store_conformance_tests!`](crate::store_conformance_tests)). [`run_all`] runs every
//! function in turn on one harness, wherever a future can run:
//!
//! ```
//! use kigo_testkit::conformance::{MemoryHarness, run_all};
//!
//! let runtime = tokio::runtime::Builder::new_current_thread()
//!     .enable_time()
//!     .build()
//!     .unwrap();
//! runtime.block_on(run_all(&MemoryHarness::new()));
//! ```
//!
//! Each function uses keys of its own, so the functions can share one store.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use futures_util::StreamExt;
use futures_util::future::join_all;
use kigo_core::codec::{CorruptEntry, EntryCodec, Keyring, SealingKey};
use kigo_core::runtime::TimeSource;
use kigo_core::store::{
    CommitOutcome, Entry, HolderId, InvalidateOutcome, Lease, LeaseAttempt, MemoryStore,
};
use kigo_core::{PartnerId, Token, TokenKey, TokenSecret, TokenStore, UserId};

use crate::ManualClock;

/// A store under test, with the means to reach behind it.
#[async_trait]
pub trait StoreHarness: Send + Sync {
    /// Another handle on the same shared store, as another replica would open it.
    async fn handle(&self) -> Arc<dyn TokenStore>;

    /// Writes `raw` where the store keeps the token of `key`, bypassing the store (as a bug,
    /// an old version, an operator or an attacker with write access might); the generation
    /// stored for `key` stays as it is.
    async fn write_raw(&self, key: &TokenKey, raw: &[u8]);

    /// What the store keeps as the token of `key`, read behind its back; `None` if nothing.
    async fn read_raw(&self, key: &TokenKey) -> Option<Vec<u8>>;

    /// Lets `duration` pass on the store's clock: advances a manual clock, or waits for a real
    /// server's own clock.
    async fn pass(&self, duration: Duration);

    /// The current time as the store sees it (close enough to stamp tokens with).
    fn now(&self) -> SystemTime;

    /// A lease TTL that is reliably held during a few operations and short enough to wait out.
    fn short_ttl(&self) -> Duration {
        Duration::from_millis(500)
    }
}

/// The harness of [`MemoryStore`] on a [`ManualClock`], sealing its entries as the shared stores
/// do by default (so that the suite's checks on moved and replayed entries apply).
#[derive(Debug, Clone)]
pub struct MemoryHarness {
    /// The clock the store runs on.
    pub clock: ManualClock,
    /// The store.
    pub store: MemoryStore,
    /// The keys the store seals with.
    pub keyring: Keyring,
}

impl MemoryHarness {
    /// A fresh memory store on a fresh manual clock.
    pub fn new() -> Self {
        let clock = ManualClock::new();
        let keyring = test_keyring();
        let store = MemoryStore::with_codec(Arc::new(clock.clone()), memory_codec(keyring.clone()));
        Self {
            clock,
            store,
            keyring,
        }
    }
}

impl Default for MemoryHarness {
    fn default() -> Self {
        Self::new()
    }
}

/// The codec of the memory harness's handles.
fn memory_codec(keyring: Keyring) -> EntryCodec {
    EntryCodec::sealed(keyring).in_namespace("memory-harness")
}

#[async_trait]
impl crate::admin_conformance::AdminHarness for MemoryHarness {
    async fn admin_with(&self, keyring: Keyring) -> Arc<dyn kigo_core::store::StoreAdmin> {
        Arc::new(self.store.handle_with_codec(memory_codec(keyring)))
    }

    fn keyring(&self) -> Keyring {
        self.keyring.clone()
    }
}

#[async_trait]
impl StoreHarness for MemoryHarness {
    async fn handle(&self) -> Arc<dyn TokenStore> {
        Arc::new(self.store.clone())
    }

    async fn write_raw(&self, key: &TokenKey, raw: &[u8]) {
        self.store.write_raw(key, raw);
    }

    async fn read_raw(&self, key: &TokenKey) -> Option<Vec<u8>> {
        self.store.read_raw(key)
    }

    async fn pass(&self, duration: Duration) {
        self.clock.advance(duration);
    }

    fn now(&self) -> SystemTime {
        self.clock.now()
    }
}

const LONG_TTL: Duration = Duration::from_secs(60);

/// A keyring of one random key, for a test's stores (every replica of the test shares it).
pub fn test_keyring() -> Keyring {
    Keyring::new(SealingKey::from_bytes(std::array::from_fn(|_| {
        fastrand::u8(..)
    })))
}

/// A partner key no other test uses.
pub fn fresh_key() -> TokenKey {
    let partner = format!("conformance-{:016x}", fastrand::u64(..));
    TokenKey::partner(PartnerId::new(partner).unwrap_or_else(|_| unreachable!()))
}

fn token(harness: &dyn StoreHarness, name: &str) -> Token {
    let now = harness.now();
    Token::new(
        TokenSecret::new(format!("{name}-{:08x}", fastrand::u32(..))),
        now,
        now + Duration::from_secs(1800),
    )
    .unwrap_or_else(|error| panic!("test token: {error}"))
}

async fn acquire(store: &dyn TokenStore, key: &TokenKey, ttl: Duration) -> Lease {
    acquire_as(store, key, &HolderId::random(), ttl).await
}

async fn acquire_as(
    store: &dyn TokenStore,
    key: &TokenKey,
    holder: &HolderId,
    ttl: Duration,
) -> Lease {
    match store
        .acquire_lease(key, holder, ttl)
        .await
        .unwrap_or_else(|error| panic!("acquire_lease failed: {error}"))
    {
        LeaseAttempt::Acquired(lease) => lease,
        LeaseAttempt::Held { .. } => panic!("the lease of a fresh key was held"),
    }
}

async fn stored(store: &dyn TokenStore, key: &TokenKey) -> Option<Token> {
    let snapshot = store
        .load(key)
        .await
        .unwrap_or_else(|error| panic!("load failed: {error}"));
    snapshot.token().cloned()
}

async fn commit(store: &dyn TokenStore, lease: &Lease, token: &Token) -> CommitOutcome {
    store
        .commit(lease, token)
        .await
        .unwrap_or_else(|error| panic!("commit failed: {error}"))
}

/// Commits a new 30-minute token named after `name` for `key`, through a lease of its own.
pub async fn commit_token(harness: &dyn StoreHarness, key: &TokenKey, name: &str) -> Token {
    commit_token_for(harness, key, name, Duration::from_secs(1800)).await
}

/// Commits a new token living `lifetime` for `key`, through a lease of its own.
pub async fn commit_token_for(
    harness: &dyn StoreHarness,
    key: &TokenKey,
    name: &str,
    lifetime: Duration,
) -> Token {
    let store = harness.handle().await;
    let lease = acquire(store.as_ref(), key, LONG_TTL).await;
    let now = harness.now();
    let token = Token::new(
        TokenSecret::new(format!("{name}-{:08x}", fastrand::u32(..))),
        now,
        now + lifetime,
    )
    .unwrap_or_else(|error| panic!("test token: {error}"));
    assert_eq!(
        commit(store.as_ref(), &lease, &token).await,
        CommitOutcome::Committed
    );
    token
}

/// A key never written loads as absent, with no cool-down.
pub async fn absent_key_loads_absent(harness: &dyn StoreHarness) {
    let store = harness.handle().await;
    let snapshot = store.load(&fresh_key()).await.unwrap();
    assert!(
        matches!(snapshot.entry, Entry::Absent),
        "{:?}",
        snapshot.entry
    );
    assert_eq!(snapshot.cooldown, None);
}

/// A committed token is what every handle loads: same secret, times (to the millisecond),
/// refresh token, and the lease's fence as its generation.
pub async fn commit_is_seen_by_every_handle(harness: &dyn StoreHarness) {
    let key = fresh_key();
    let writer = harness.handle().await;
    let lease = acquire(writer.as_ref(), &key, LONG_TTL).await;
    let token = token(harness, "shared").with_refresh_token(TokenSecret::new("refresh-1"));
    assert_eq!(
        commit(writer.as_ref(), &lease, &token).await,
        CommitOutcome::Committed
    );
    for _ in 0..3 {
        let reader = harness.handle().await;
        let loaded = stored(reader.as_ref(), &key)
            .await
            .expect("committed token");
        assert_eq!(loaded.secret().expose(), token.secret().expose());
        assert_eq!(loaded.fingerprint(), token.fingerprint());
        assert_eq!(loaded.generation(), lease.fence());
        assert_eq!(
            loaded.refresh_token().map(TokenSecret::expose),
            Some("refresh-1")
        );
        let skew = |a: SystemTime, b: SystemTime| {
            a.duration_since(b)
                .or_else(|_| b.duration_since(a))
                .unwrap()
        };
        assert!(skew(loaded.issued_at(), token.issued_at()) < Duration::from_millis(1));
        assert!(skew(loaded.expires_at(), token.expires_at()) < Duration::from_millis(1));
    }
}

/// Of 16 concurrent claims by 16 handles, exactly one wins; the others see it held.
pub async fn concurrent_claims_have_one_winner(harness: &dyn StoreHarness) {
    let key = fresh_key();
    let mut stores = Vec::new();
    for _ in 0..16 {
        stores.push(harness.handle().await);
    }
    let attempts = join_all(stores.iter().map(|store| {
        let key = key.clone();
        async move {
            store
                .acquire_lease(&key, &HolderId::random(), LONG_TTL)
                .await
                .unwrap()
        }
    }))
    .await;
    let winners = attempts
        .iter()
        .filter(|attempt| matches!(attempt, LeaseAttempt::Acquired(_)))
        .count();
    assert_eq!(winners, 1, "{attempts:?}");
    for attempt in &attempts {
        if let LeaseAttempt::Held {
            remaining: Some(left),
        } = attempt
        {
            assert!(*left <= LONG_TTL, "{left:?}");
        }
    }
}

/// A lease lapses after its TTL by the store's clock, and then someone else can take it.
pub async fn lease_lapses_after_ttl(harness: &dyn StoreHarness) {
    let key = fresh_key();
    let store = harness.handle().await;
    let ttl = harness.short_ttl();
    let first = acquire(store.as_ref(), &key, ttl).await;
    let other = harness.handle().await;
    let held = other
        .acquire_lease(&key, &HolderId::random(), ttl)
        .await
        .unwrap();
    assert!(matches!(held, LeaseAttempt::Held { .. }), "{held:?}");
    harness.pass(ttl + ttl / 2).await;
    let second = acquire(other.as_ref(), &key, ttl).await;
    assert!(second.fence() > first.fence());
}

/// Releasing is compare-and-delete: a forged lease of another holder releases nothing, the
/// holder's release frees the lease, and releasing twice is fine.
pub async fn release_is_compare_and_delete(harness: &dyn StoreHarness) {
    let key = fresh_key();
    let store = harness.handle().await;
    let lease = acquire(store.as_ref(), &key, LONG_TTL).await;
    let forged = Lease::new(key.clone(), HolderId::random(), lease.fence());
    store.release_lease(&forged).await.unwrap();
    let attempt = store
        .acquire_lease(&key, &HolderId::random(), LONG_TTL)
        .await
        .unwrap();
    assert!(matches!(attempt, LeaseAttempt::Held { .. }), "{attempt:?}");
    store.release_lease(&lease).await.unwrap();
    store.release_lease(&lease).await.unwrap();
    acquire(store.as_ref(), &key, LONG_TTL).await;
}

/// A lapsed lease since granted to another holder is not released by the old holder.
pub async fn late_release_leaves_the_new_holder_alone(harness: &dyn StoreHarness) {
    release_of_a_lapsed_grant_spares_the_next(harness, HolderId::random(), HolderId::random())
        .await;
}

/// A release names one grant: the same holder's release of a lapsed grant leaves the holder's
/// newer grant alone.
pub async fn release_of_an_older_grant_leaves_the_newer_one_alone(harness: &dyn StoreHarness) {
    let holder = HolderId::random();
    release_of_a_lapsed_grant_spares_the_next(harness, holder.clone(), holder).await;
}

/// Grants a lease to `old`, lets it lapse, grants the next to `new`, then releases the first:
/// the second stays held and commits.
async fn release_of_a_lapsed_grant_spares_the_next(
    harness: &dyn StoreHarness,
    old: HolderId,
    new: HolderId,
) {
    let key = fresh_key();
    let store = harness.handle().await;
    let ttl = harness.short_ttl();
    let old = acquire_as(store.as_ref(), &key, &old, ttl).await;
    harness.pass(ttl + ttl / 2).await;
    let new = acquire_as(store.as_ref(), &key, &new, LONG_TTL).await;
    assert!(new.fence() > old.fence());
    store.release_lease(&old).await.unwrap();
    let attempt = store
        .acquire_lease(&key, &HolderId::random(), LONG_TTL)
        .await
        .unwrap();
    assert!(matches!(attempt, LeaseAttempt::Held { .. }), "{attempt:?}");
    assert_eq!(
        commit(store.as_ref(), &new, &token(harness, "new")).await,
        CommitOutcome::Committed
    );
}

/// Fences grow with every grant and stay above the stored generation.
pub async fn fences_increase(harness: &dyn StoreHarness) {
    let key = fresh_key();
    let store = harness.handle().await;
    let mut last = 0;
    for round in 0..3 {
        let lease = acquire(store.as_ref(), &key, LONG_TTL).await;
        assert!(
            lease.fence() > last,
            "round {round}: {} <= {last}",
            lease.fence()
        );
        last = lease.fence();
        if round == 1 {
            assert_eq!(
                commit(store.as_ref(), &lease, &token(harness, "t")).await,
                CommitOutcome::Committed
            );
        } else {
            store.release_lease(&lease).await.unwrap();
        }
    }
    let generation = stored(store.as_ref(), &key).await.unwrap().generation();
    assert!(last > generation);
}

/// A holder whose lease lapsed and was granted anew cannot commit: the newer holder's token
/// stays, and exactly one token is stored.
pub async fn stale_commit_is_rejected(harness: &dyn StoreHarness) {
    let key = fresh_key();
    let paused = harness.handle().await;
    let ttl = harness.short_ttl();
    let stale = acquire(paused.as_ref(), &key, ttl).await;
    harness.pass(ttl + ttl / 2).await;
    let other = harness.handle().await;
    let fresh = acquire(other.as_ref(), &key, LONG_TTL).await;
    let winner = token(harness, "winner");
    assert_eq!(
        commit(other.as_ref(), &fresh, &winner).await,
        CommitOutcome::Committed
    );
    let late = token(harness, "late");
    assert_eq!(
        commit(paused.as_ref(), &stale, &late).await,
        CommitOutcome::Rejected
    );
    let kept = stored(paused.as_ref(), &key).await.unwrap();
    assert_eq!(kept.fingerprint(), winner.fingerprint());
    assert_eq!(kept.generation(), fresh.fence());
}

/// A commit after the lease lapsed is rejected even if nobody took the lease since.
pub async fn commit_after_lapse_is_rejected(harness: &dyn StoreHarness) {
    let key = fresh_key();
    let store = harness.handle().await;
    let ttl = harness.short_ttl();
    let lease = acquire(store.as_ref(), &key, ttl).await;
    harness.pass(ttl + ttl / 2).await;
    assert_eq!(
        commit(store.as_ref(), &lease, &token(harness, "late")).await,
        CommitOutcome::Rejected
    );
    assert!(stored(store.as_ref(), &key).await.is_none());
}

/// A commit under a released lease is rejected.
pub async fn commit_after_release_is_rejected(harness: &dyn StoreHarness) {
    let key = fresh_key();
    let store = harness.handle().await;
    let lease = acquire(store.as_ref(), &key, LONG_TTL).await;
    store.release_lease(&lease).await.unwrap();
    assert_eq!(
        commit(store.as_ref(), &lease, &token(harness, "t")).await,
        CommitOutcome::Rejected
    );
    assert!(stored(store.as_ref(), &key).await.is_none());
}

/// A commit under a lease of another holder (with the right fence) is rejected, and the real
/// holder can still commit.
pub async fn commit_by_another_holder_is_rejected(harness: &dyn StoreHarness) {
    let key = fresh_key();
    let store = harness.handle().await;
    let lease = acquire(store.as_ref(), &key, LONG_TTL).await;
    let forged = Lease::new(key.clone(), HolderId::random(), lease.fence());
    assert_eq!(
        commit(store.as_ref(), &forged, &token(harness, "forged")).await,
        CommitOutcome::Rejected
    );
    assert!(stored(store.as_ref(), &key).await.is_none());
    let real = token(harness, "real");
    assert_eq!(
        commit(store.as_ref(), &lease, &real).await,
        CommitOutcome::Committed
    );
    assert_eq!(
        stored(store.as_ref(), &key).await.unwrap().fingerprint(),
        real.fingerprint()
    );
}

/// A commit with a fence that was never granted is rejected, even by the holder: otherwise the
/// next grant's fence would not exceed the stored generation.
pub async fn commit_with_a_fence_never_granted_is_rejected(harness: &dyn StoreHarness) {
    let key = fresh_key();
    let store = harness.handle().await;
    let lease = acquire(store.as_ref(), &key, LONG_TTL).await;
    let ahead = Lease::new(key.clone(), lease.holder().clone(), lease.fence() + 1);
    assert_eq!(
        commit(store.as_ref(), &ahead, &token(harness, "ahead")).await,
        CommitOutcome::Rejected
    );
    assert!(stored(store.as_ref(), &key).await.is_none());
    assert_eq!(
        commit(store.as_ref(), &lease, &token(harness, "granted")).await,
        CommitOutcome::Committed
    );
    let next = acquire(store.as_ref(), &key, LONG_TTL).await;
    assert!(next.fence() > stored(store.as_ref(), &key).await.unwrap().generation());
}

/// A commit ends the lease: the next claim succeeds at once, and a second commit under the
/// same lease is rejected.
pub async fn commit_releases_the_lease(harness: &dyn StoreHarness) {
    let key = fresh_key();
    let store = harness.handle().await;
    let lease = acquire(store.as_ref(), &key, LONG_TTL).await;
    let first = token(harness, "first");
    assert_eq!(
        commit(store.as_ref(), &lease, &first).await,
        CommitOutcome::Committed
    );
    assert_eq!(
        commit(store.as_ref(), &lease, &token(harness, "again")).await,
        CommitOutcome::Rejected
    );
    let next = acquire(store.as_ref(), &key, LONG_TTL).await;
    assert!(next.fence() > lease.fence());
    assert_eq!(
        stored(store.as_ref(), &key).await.unwrap().fingerprint(),
        first.fingerprint()
    );
}

/// Invalidate removes only the token with the given fingerprint; a newer one is left alone.
pub async fn invalidate_leaves_a_newer_token_alone(harness: &dyn StoreHarness) {
    let key = fresh_key();
    let store = harness.handle().await;
    let old = commit_token(harness, &key, "old").await;
    let new = commit_token(harness, &key, "new").await;
    let outcome = store.invalidate(&key, &old.fingerprint()).await.unwrap();
    assert_eq!(outcome, InvalidateOutcome::NotCurrent);
    assert_eq!(
        stored(store.as_ref(), &key).await.unwrap().fingerprint(),
        new.fingerprint()
    );
    let outcome = store.invalidate(&key, &new.fingerprint()).await.unwrap();
    assert_eq!(outcome, InvalidateOutcome::Removed);
    assert!(stored(store.as_ref(), &key).await.is_none());
    let again = store.invalidate(&key, &new.fingerprint()).await.unwrap();
    assert_eq!(again, InvalidateOutcome::NotCurrent);
    let absent = store
        .invalidate(&fresh_key(), &new.fingerprint())
        .await
        .unwrap();
    assert_eq!(absent, InvalidateOutcome::NotCurrent);
}

/// After an invalidation, fences keep growing past the removed token's generation.
pub async fn invalidate_keeps_generations_growing(harness: &dyn StoreHarness) {
    let key = fresh_key();
    let store = harness.handle().await;
    let removed = commit_token(harness, &key, "removed").await;
    let generation = stored(store.as_ref(), &key).await.unwrap().generation();
    store
        .invalidate(&key, &removed.fingerprint())
        .await
        .unwrap();
    let lease = acquire(store.as_ref(), &key, LONG_TTL).await;
    assert!(lease.fence() > generation);
}

/// A cool-down is seen by every handle, is never shortened, and runs out by the store's clock.
pub async fn cooldown_is_shared_and_never_shortened(harness: &dyn StoreHarness) {
    let key = fresh_key();
    let setter = harness.handle().await;
    let ttl = harness.short_ttl();
    setter.set_cooldown(&key, ttl * 2).await.unwrap();
    setter.set_cooldown(&key, ttl / 10).await.unwrap();
    for _ in 0..3 {
        let reader = harness.handle().await;
        let left = reader
            .load(&key)
            .await
            .unwrap()
            .cooldown
            .expect("cool-down visible");
        assert!(left > ttl && left <= ttl * 2, "{left:?}");
    }
    harness.pass(ttl * 3).await;
    assert_eq!(setter.load(&key).await.unwrap().cooldown, None);
    let unrelated = setter.load(&fresh_key()).await.unwrap();
    assert_eq!(unrelated.cooldown, None);
}

/// A successful commit ends the cool-down.
pub async fn commit_ends_the_cooldown(harness: &dyn StoreHarness) {
    let key = fresh_key();
    let store = harness.handle().await;
    store.set_cooldown(&key, LONG_TTL).await.unwrap();
    commit_token(harness, &key, "recovered").await;
    assert_eq!(store.load(&key).await.unwrap().cooldown, None);
}

/// Garbage, unknown format versions and planted plaintext load as corrupt entries (never as
/// tokens, never a panic), and the next commit replaces them.
///
/// The store decodes what it reads with `kigo_core::codec::EntryCodec`, whose [`CorruptEntry`]
/// kinds these are.
pub async fn corrupt_entries_are_reported_and_replaced(harness: &dyn StoreHarness) {
    let store = harness.handle().await;
    let planted = EntryCodec::plaintext().encode(&fresh_key(), 1, &token(harness, "planted"));
    let cases: [(&[u8], CorruptEntry); 6] = [
        (b"\x00\xffnot json at all", CorruptEntry::Malformed),
        (b"\x02\x01truncated", CorruptEntry::Malformed),
        (&planted, CorruptEntry::Plaintext),
        (
            br#"{"v":999,"token":"from-the-future"}"#,
            CorruptEntry::UnknownVersion(999),
        ),
        (
            br#"{"v":1,"token":"planted","issued_at_ms":1,"expires_at_ms":99999999999999}"#,
            CorruptEntry::Plaintext,
        ),
        (br#"{"unrelated":"json"}"#, CorruptEntry::Malformed),
    ];
    for (raw, expected) in cases {
        let key = fresh_key();
        harness.write_raw(&key, raw).await;
        let snapshot = store.load(&key).await.unwrap();
        match &snapshot.entry {
            Entry::Corrupt(found) => assert_eq!(found, &expected),
            other => panic!("{raw:?} loaded as {other:?}"),
        }
        let replacement = commit_token(harness, &key, "replacement").await;
        let loaded = stored(store.as_ref(), &key).await.expect("replaced");
        assert_eq!(loaded.fingerprint(), replacement.fingerprint());
    }
}

/// An entry copied to another key, or an older entry written back over a newer one, is never
/// handed out: sealed entries are bound to their key and generation.
pub async fn moved_and_replayed_entries_are_never_tokens(harness: &dyn StoreHarness) {
    let store = harness.handle().await;
    let partner_key = fresh_key();
    let user_key = TokenKey::user(
        partner_key.partner_id().clone(),
        UserId::new("mallory").unwrap_or_else(|_| unreachable!()),
    );
    let older = commit_token(harness, &partner_key, "older").await;
    let older_raw = harness.read_raw(&partner_key).await.expect("an entry");
    commit_token(harness, &user_key, "mallory").await;
    let newer = commit_token(harness, &partner_key, "newer").await;

    // The partner's entry copied into the user's place; an older entry replayed.
    harness.write_raw(&user_key, &older_raw).await;
    harness.write_raw(&partner_key, &older_raw).await;
    for (key, not) in [(&user_key, &older), (&partner_key, &older)] {
        let entry = store.load(key).await.unwrap().entry;
        match &entry {
            Entry::Corrupt(CorruptEntry::Unauthentic) => {}
            other => panic!("{key}: expected a failed authentication, got {other:?}"),
        }
        assert!(entry_fingerprint(&entry) != Some(not.fingerprint()));
    }
    assert_ne!(newer.fingerprint(), older.fingerprint());
}

fn entry_fingerprint(entry: &Entry) -> Option<kigo_core::Fingerprint> {
    match entry {
        Entry::Present(token) => Some(token.fingerprint()),
        Entry::Absent | Entry::Corrupt(_) => None,
    }
}

/// A token past its expiry loads as absent.
pub async fn expired_tokens_load_absent(harness: &dyn StoreHarness) {
    let key = fresh_key();
    let store = harness.handle().await;
    let lease = acquire(store.as_ref(), &key, LONG_TTL).await;
    let now = harness.now();
    let lifetime = harness.short_ttl();
    let short = Token::new(TokenSecret::new("short-lived"), now, now + lifetime).unwrap();
    assert_eq!(
        commit(store.as_ref(), &lease, &short).await,
        CommitOutcome::Committed
    );
    harness.pass(lifetime * 2).await;
    assert!(stored(store.as_ref(), &key).await.is_none());
}

/// A store with change notices sends one naming the key on commit and on invalidation.
pub async fn changes_name_the_key(harness: &dyn StoreHarness) {
    let listener = harness.handle().await;
    let Some(mut feed) = listener.changes() else {
        return; // No notices: the manager polls, which the other functions cover.
    };
    let key = fresh_key();
    // A subscription may take a moment to be in place; commit until a notice comes.
    let committed = async {
        loop {
            let token = commit_token(harness, &key, "noticed").await;
            tokio::select! {
                Some(notice) = feed.next() => return (notice, token),
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
    };
    let (notice, token) = tokio::time::timeout(Duration::from_secs(10), committed)
        .await
        .expect("a change notice within 10 s");
    assert_eq!(notice.key, key);
    let store = harness.handle().await;
    store.invalidate(&key, &token.fingerprint()).await.unwrap();
    let notice = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match feed.next().await {
                Some(notice) if notice.key == key => {
                    if stored(store.as_ref(), &key).await.is_none() {
                        return notice;
                    }
                }
                Some(_) => {}
                None => panic!("the feed ended"),
            }
        }
    })
    .await
    .expect("an invalidation notice within 10 s");
    assert_eq!(notice.key, key);
}

/// Partner and user keys of one partner, and users whose IDs look alike, never share state.
pub async fn keys_are_isolated(harness: &dyn StoreHarness) {
    let partner = match fresh_key() {
        TokenKey::Partner(partner) => partner,
        TokenKey::User { partner, .. } => partner,
    };
    let user = |id: &str| TokenKey::user(partner.clone(), UserId::new(id).unwrap());
    let keys = [
        TokenKey::partner(partner.clone()),
        user("alice"),
        user("alice/admin"),
        user("{alice}"),
        user("al ice%2F"),
    ];
    let mut tokens = Vec::new();
    for key in &keys {
        tokens.push(commit_token(harness, key, "isolated").await);
    }
    let store = harness.handle().await;
    for (key, token) in keys.iter().zip(&tokens) {
        assert_eq!(
            stored(store.as_ref(), key).await.unwrap().fingerprint(),
            token.fingerprint()
        );
    }
}

crate::store_conformance_tests!(@list [run_all]);

/// Makes one `#[tokio::test]` per conformance function, each on a harness from `$make` (an
/// expression that evaluates to a future of a [`StoreHarness`]).
///
/// The list of functions is written once, here: [`run_all`] is made from it too.
#[macro_export]
macro_rules! store_conformance_tests {
    ($make:expr) => {
        $crate::store_conformance_tests!(@list [tests ($make)]);
    };
    (@list [$($mode:tt)*]) => {
        $crate::store_conformance_tests!(@$($mode)*;
            absent_key_loads_absent,
            commit_is_seen_by_every_handle,
            concurrent_claims_have_one_winner,
            lease_lapses_after_ttl,
            release_is_compare_and_delete,
            late_release_leaves_the_new_holder_alone,
            release_of_an_older_grant_leaves_the_newer_one_alone,
            fences_increase,
            stale_commit_is_rejected,
            commit_after_lapse_is_rejected,
            commit_after_release_is_rejected,
            commit_by_another_holder_is_rejected,
            commit_with_a_fence_never_granted_is_rejected,
            commit_releases_the_lease,
            invalidate_leaves_a_newer_token_alone,
            invalidate_keeps_generations_growing,
            cooldown_is_shared_and_never_shortened,
            commit_ends_the_cooldown,
            corrupt_entries_are_reported_and_replaced,
            moved_and_replayed_entries_are_never_tokens,
            expired_tokens_load_absent,
            changes_name_the_key,
            keys_are_isolated,
        );
    };
    (@tests ($make:expr); $($name:ident,)*) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let harness = $make.await;
                $crate::conformance::$name(&harness).await;
            }
        )*
    };
    (@run_all; $($name:ident,)*) => {
        /// Runs every function of the suite in turn.
        pub async fn run_all(harness: &dyn StoreHarness) {
            $( $name(harness).await; )*
        }
    };
}
