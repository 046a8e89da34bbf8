//! A token source for tests: a scriptable, counting fake.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use kigo_core::runtime::AsyncSleep;
use kigo_core::{
    CreateRequest, Fingerprint, SourceError, Token, TokenKey, TokenSecret, TokenSource,
};
use tokio::sync::watch;

/// What the fake does on one call; once the script is used up, it creates tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scripted {
    /// Create a token with the default lifetime.
    Token,
    /// Create a token with this lifetime.
    TokenFor(Duration),
    /// Fail transiently, with the server's `Retry-After` if given.
    Transient(Option<Duration>),
    /// Fail permanently (as for bad credentials).
    Permanent,
    /// Never answer: the caller's timeout has to end the call.
    Hang,
    /// Panic, as a source with a bug would.
    Panic,
}

/// A call the fake received.
#[derive(Debug, Clone)]
pub struct SourceCall {
    /// Which token was asked for.
    pub key: TokenKey,
    /// When, by the request's clock.
    pub at: SystemTime,
    /// The fingerprint of the token being replaced, if the caller passed one.
    pub previous: Option<Fingerprint>,
    /// What the fake did.
    pub action: Scripted,
}

/// The failures the fake reports.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FakeFailure {
    /// A scripted transient failure.
    #[error("scripted transient failure")]
    Transient,
    /// A scripted permanent failure.
    #[error("scripted permanent failure: bad credentials")]
    Permanent,
}

/// A counting, scriptable [`TokenSource`]. Clones share their state.
#[derive(Debug, Clone)]
pub struct FakeSource {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    lifetime: Duration,
    latency: Option<(Duration, Arc<dyn AsyncSleep>)>,
    script: Mutex<VecDeque<Scripted>>,
    /// While set, what every call does instead of following the script.
    outage: Mutex<Option<Scripted>>,
    calls: Mutex<Vec<SourceCall>>,
    created: AtomicU64,
    started: watch::Sender<usize>,
    /// Calls in progress now, and the most there ever were at once.
    running: AtomicU64,
    peak: AtomicU64,
}

impl FakeSource {
    /// A fake that creates 30-minute tokens at once.
    pub fn new() -> Self {
        Self::build(Duration::from_secs(30 * 60), None)
    }

    /// A fake whose tokens live `lifetime`.
    pub fn with_lifetime(lifetime: Duration) -> Self {
        Self::build(lifetime, None)
    }

    /// The same fake, answering after `latency` on `sleeper`'s clock.
    pub fn with_latency(self, latency: Duration, sleeper: Arc<dyn AsyncSleep>) -> Self {
        Self::build(self.inner.lifetime, Some((latency, sleeper)))
    }

    fn build(lifetime: Duration, latency: Option<(Duration, Arc<dyn AsyncSleep>)>) -> Self {
        Self {
            inner: Arc::new(Inner {
                lifetime,
                latency,
                script: Mutex::new(VecDeque::new()),
                outage: Mutex::new(None),
                calls: Mutex::new(Vec::new()),
                created: AtomicU64::new(0),
                started: watch::Sender::new(0),
                running: AtomicU64::new(0),
                peak: AtomicU64::new(0),
            }),
        }
    }

    /// Appends steps to the script.
    pub fn script(&self, steps: impl IntoIterator<Item = Scripted>) {
        lock(&self.inner.script).extend(steps);
    }

    /// While `action` is set, every call does it (a failure, a hang) without using up the
    /// script: an endpoint down for a while. `None` ends the outage.
    pub fn set_outage(&self, action: Option<Scripted>) {
        *lock(&self.inner.outage) = action;
    }

    /// How many tokens it created.
    pub fn creations(&self) -> u64 {
        self.inner.created.load(Ordering::SeqCst)
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<SourceCall> {
        lock(&self.inner.calls).clone()
    }

    /// The most calls that were in progress at once.
    pub fn peak_concurrency(&self) -> u64 {
        self.inner.peak.load(Ordering::SeqCst)
    }

    /// Waits until at least `count` calls have started.
    pub async fn wait_for_calls(&self, count: usize) {
        let mut started = self.inner.started.subscribe();
        let _ = started.wait_for(|started| *started >= count).await;
    }
}

impl Default for FakeSource {
    fn default() -> Self {
        Self::new()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[async_trait]
impl TokenSource for FakeSource {
    async fn create(&self, request: CreateRequest<'_>) -> Result<Token, SourceError> {
        let sent_at = request.clock.now();
        let outage = lock(&self.inner.outage).clone();
        let action = outage
            .or_else(|| lock(&self.inner.script).pop_front())
            .unwrap_or(Scripted::Token);
        lock(&self.inner.calls).push(SourceCall {
            key: request.key.clone(),
            at: sent_at,
            previous: request.previous.map(Token::fingerprint),
            action: action.clone(),
        });
        // The delay is timed from before the call is announced: a test that advances the clock as
        // soon as it sees the call (from another thread) must not find the delay not yet started.
        let delay = self
            .inner
            .latency
            .as_ref()
            .map(|(latency, sleeper)| sleeper.sleep(*latency));
        self.inner.started.send_modify(|started| *started += 1);
        let running = Running::start(&self.inner);
        if let Some(delay) = delay {
            delay.await;
        }
        drop(running);
        let lifetime = match action {
            Scripted::Token => self.inner.lifetime,
            Scripted::TokenFor(lifetime) => lifetime,
            Scripted::Transient(retry_after) => {
                let error = SourceError::transient(FakeFailure::Transient);
                return Err(match retry_after {
                    Some(delay) => error.with_retry_after(delay),
                    None => error,
                });
            }
            Scripted::Permanent => return Err(SourceError::permanent(FakeFailure::Permanent)),
            Scripted::Hang => std::future::pending().await,
            Scripted::Panic => panic!("a scripted panic of the fake token source"),
        };
        let n = self.inner.created.fetch_add(1, Ordering::SeqCst) + 1;
        Token::new(
            TokenSecret::new(format!("fake-token-{n}")),
            sent_at,
            sent_at + lifetime,
        )
        .map_err(SourceError::permanent)
    }
}

/// Counts one call in progress (its latency) while it lives.
struct Running<'a>(&'a Inner);

impl<'a> Running<'a> {
    fn start(inner: &'a Inner) -> Self {
        let now = inner.running.fetch_add(1, Ordering::SeqCst) + 1;
        inner.peak.fetch_max(now, Ordering::SeqCst);
        Self(inner)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use kigo_core::PartnerId;
    use kigo_core::runtime::SystemClock;

    use super::*;

    async fn call(source: &FakeSource) -> Result<Token, SourceError> {
        let key = TokenKey::partner(PartnerId::new("acme").unwrap());
        source
            .create(CreateRequest::new(&key, None, &SystemClock::new()))
            .await
    }

    #[tokio::test]
    async fn an_outage_overrides_the_script_until_it_ends() {
        let source = FakeSource::new();
        source.script([Scripted::Transient(None)]);
        source.set_outage(Some(Scripted::Permanent));
        for _ in 0..3 {
            assert!(!call(&source).await.unwrap_err().is_transient());
        }
        source.set_outage(None);
        assert!(
            call(&source).await.unwrap_err().is_transient(),
            "the script is kept"
        );
        assert!(call(&source).await.is_ok());
        assert_eq!(source.creations(), 1);
    }
}
