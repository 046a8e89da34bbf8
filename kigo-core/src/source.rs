//! Where tokens come from: the [`TokenSource`] trait and how its failures are classified.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::runtime::TimeSource;
use crate::{KeyScope, Token, TokenKey};

/// A backend's own error behind an `Arc`, so that one failure can be handed to every caller that
/// waited for it, and downcast to the backend's type (see [`crate::Error::cause`]).
pub type SharedError = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// What a [`TokenSource`] is asked for.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct CreateRequest<'a> {
    /// Which token.
    pub key: &'a TokenKey,
    /// The token being replaced, if any: a source may renew it with its refresh token instead
    /// of creating a new one.
    pub previous: Option<&'a Token>,
    /// The clock to stamp the token with: read it right before sending, so that the expiry is
    /// counted from the send time.
    pub clock: &'a dyn TimeSource,
}

impl<'a> CreateRequest<'a> {
    /// A request for `key`, stamped by `clock`.
    pub fn new(key: &'a TokenKey, previous: Option<&'a Token>, clock: &'a dyn TimeSource) -> Self {
        Self {
            key,
            previous,
            clock,
        }
    }
}

/// Creates tokens: the Kigo API in production, a fake in tests.
///
/// # Behavior
/// - Stamps `issued_at` with the send time of its request (from [`CreateRequest::clock`]) and
///   returns an absolute `expires_at`; the generation stays 0 (the manager sets it).
/// - Classifies failures: [`SourceError::Transient`] when trying again later may work (timeouts,
///   connection errors, 408, 429, 5xx), with the server's requested delay if it gave one;
///   [`SourceError::Permanent`] when it will not (bad credentials, bad request, unusable response).
/// - Never puts a secret (API key, token) in an error.
/// - Is cancel-safe: the manager may drop the future at any await point (on timeout).
#[async_trait]
pub trait TokenSource: Send + Sync + Debug + 'static {
    /// Creates (or renews) the token for `request.key`.
    async fn create(&self, request: CreateRequest<'_>) -> Result<Token, SourceError>;

    /// The keys this source creates tokens for, if it knows: a manager built on it then serves
    /// only those (see [`KeyScope`]). `None` (the default) makes the manager's builder require
    /// one.
    fn scope(&self) -> Option<KeyScope> {
        None
    }
}

/// Why a [`TokenSource`] could not create a token.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// Worth retrying later: the endpoint timed out, was unreachable, overloaded or rate limiting.
    #[error("token endpoint temporarily unavailable")]
    Transient {
        /// The delay the server asked for (`Retry-After`), if any.
        retry_after: Option<Duration>,
        /// The backend's error.
        #[source]
        source: SharedError,
    },
    /// Retrying will not help: bad credentials, a bad request, an unusable response.
    #[error("token endpoint refused to create a token")]
    Permanent {
        /// The backend's error.
        #[source]
        source: SharedError,
    },
}

impl SourceError {
    /// A transient failure caused by `source`.
    pub fn transient(source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Transient {
            retry_after: None,
            source: Arc::new(source),
        }
    }

    /// A permanent failure caused by `source`.
    pub fn permanent(source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Permanent {
            source: Arc::new(source),
        }
    }

    /// Adds the server's requested delay to a transient failure (no effect on a permanent one).
    #[must_use]
    pub fn with_retry_after(mut self, delay: Duration) -> Self {
        if let Self::Transient { retry_after, .. } = &mut self {
            *retry_after = Some(delay);
        }
        self
    }

    /// Whether trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Transient { .. })
    }

    /// The server's requested delay, for a transient failure that came with one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Transient { retry_after, .. } => *retry_after,
            Self::Permanent { .. } => None,
        }
    }

    /// The backend's error, to downcast to the backend's own type.
    pub fn cause(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        match self {
            Self::Transient { source, .. } | Self::Permanent { source } => source.as_ref(),
        }
    }
}

/// A source behind an `Arc` is a source: a test keeps its typed handle and gives the manager a
/// clone.
#[async_trait]
impl<T: TokenSource + ?Sized> TokenSource for Arc<T> {
    async fn create(&self, request: CreateRequest<'_>) -> Result<Token, SourceError> {
        (**self).create(request).await
    }

    fn scope(&self) -> Option<KeyScope> {
        (**self).scope()
    }
}
