//! What the user-key benchmarks share: the keys, an instant source, and a manager holding a
//! token for each key.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use kigo_core::{
    CreateRequest, KeyScope, PartnerId, SourceError, Token, TokenKey, TokenManager, TokenSecret,
    TokenSource, UserId,
};

/// Long enough that no token is renewed while a benchmark runs.
const LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// Keys being filled at once while a manager is populated.
const FILLERS: usize = 256;

/// Creates tokens at once and keeps no record of them (the testkit's `FakeSource` logs every
/// call, which would be counted as the manager's memory).
#[derive(Debug, Default)]
pub(crate) struct InstantSource {
    created: AtomicU64,
}

impl InstantSource {
    /// A new token issued at `issued_at`, its secret as long as a real one (42 bytes).
    pub(crate) fn mint(&self, issued_at: SystemTime) -> Token {
        let n = self.created.fetch_add(1, Ordering::Relaxed);
        let secret = TokenSecret::new(format!("kigo_user_{n:032x}"));
        Token::new(secret, issued_at, issued_at + LIFETIME).unwrap()
    }
}

#[async_trait]
impl TokenSource for InstantSource {
    async fn create(&self, request: CreateRequest<'_>) -> Result<Token, SourceError> {
        Ok(self.mint(request.clock.now()))
    }
}

/// A manager on a private memory store and an instant source, serving `scope`.
pub(crate) fn manager(scope: KeyScope, user_keys: usize) -> TokenManager {
    TokenManager::builder(InstantSource::default())
        .local_only()
        .scope(scope)
        .user_key_capacity(capacity_for(user_keys))
        .max_concurrent_creations(FILLERS)
        .build()
        .unwrap()
}

/// `count` user-level keys of one partner, with user IDs of a typical length (15 bytes).
pub(crate) fn user_keys(count: usize) -> Arc<[TokenKey]> {
    let partner = PartnerId::new("bench-partner").unwrap();
    (0..count)
        .map(|i| {
            TokenKey::user(
                partner.clone(),
                UserId::new(format!("user-{i:010}")).unwrap(),
            )
        })
        .collect()
}

/// Room for `count` keys in a sharded cache: a shard fills up before the whole cache does, so
/// a capacity of exactly `count` would evict some of them.
pub(crate) fn capacity_for(count: usize) -> usize {
    count * 2
}

/// A manager of user-level tokens holding a token for each of `keys`; and how long filling it
/// took.
pub(crate) fn populated_manager(
    runtime: &tokio::runtime::Runtime,
    keys: &Arc<[TokenKey]>,
) -> (TokenManager, Duration) {
    runtime.block_on(async {
        let manager = manager(KeyScope::AnyUser, keys.len());
        let began = Instant::now();
        let fillers: Vec<_> = (0..FILLERS)
            .map(|first| {
                let (manager, keys) = (manager.clone(), Arc::clone(keys));
                tokio::spawn(async move {
                    for key in keys.iter().skip(first).step_by(FILLERS) {
                        manager.token(key).await.unwrap();
                    }
                })
            })
            .collect();
        for filler in fillers {
            filler.await.unwrap();
        }
        let took = began.elapsed();
        assert_eq!(
            manager.user_keys(),
            keys.len(),
            "some user keys were evicted"
        );
        (manager, took)
    })
}

/// The counts of keys to measure: `KIGO_BENCH_USER_KEYS` (comma-separated), else `default`.
pub(crate) fn sizes(default: &[usize]) -> Vec<usize> {
    let Ok(list) = std::env::var("KIGO_BENCH_USER_KEYS") else {
        return default.to_vec();
    };
    list.split(',')
        .map(|size| {
            let size = size.trim().replace('_', "");
            size.parse()
                .unwrap_or_else(|_| panic!("KIGO_BENCH_USER_KEYS: {size:?} is not a count"))
        })
        .collect()
}

/// `1000000` as `1,000,000`.
pub(crate) fn thousands(count: usize) -> String {
    let digits = count.to_string();
    let mut text = String::with_capacity(digits.len() + digits.len() / 3);
    for (at, digit) in digits.chars().enumerate() {
        if at > 0 && (digits.len() - at).is_multiple_of(3) {
            text.push(',');
        }
        text.push(digit);
    }
    text
}
