//! SSO sessions for Kigo-hosted pages: a session ID a front end puts in the hosted page's URL
//! (`?session-id=`), valid 30 minutes. Reusable sessions are cached and shared by the fleet per
//! (partner, program, user), like user tokens; single-use sessions are never cached.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use kigo_core::runtime::{SystemClock, TimeSource};
use kigo_core::{InvalidId, Token, TokenManager, TokenSecret, UserId};
use reqwest::Url;
use serde::{Serialize, Serializer};

use crate::error::CreateError;
use crate::expiring::Expiring;

mod key;
mod source;

pub use key::ProgramId;
pub(crate) use key::SsoKeys;
pub use source::SsoRequest;
pub(crate) use source::SsoSessionSource;

/// The query parameter of a Kigo-hosted page that carries the session ID.
pub const SESSION_ID_PARAMETER: &str = "session-id";

/// The SSO sessions of one partner's users. Made by [`crate::KigoApi::sso_sessions`].
///
/// Cheap to clone. `expires_in_seconds` counts from its clock: the system clock unless
/// [`SsoSessions::with_clock`] sets the one the manager runs on; single-use sessions are stamped
/// with it too.
#[derive(Clone)]
pub struct SsoSessions {
    manager: TokenManager,
    source: SsoSessionSource,
    clock: Arc<dyn TimeSource>,
}

impl SsoSessions {
    /// `manager` is built on `source` (kigo-http builds both).
    pub(crate) fn new(manager: TokenManager, source: SsoSessionSource) -> Self {
        Self {
            manager,
            source,
            clock: Arc::new(SystemClock::new()),
        }
    }

    /// Counts `expires_in_seconds`, and stamps single-use sessions, with `clock`.
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn TimeSource>) -> Self {
        self.clock = clock;
        self
    }

    /// A reusable session for `user` in `program`: the fleet's cached one while it is valid (one
    /// creation per renewal for the whole fleet, as for tokens), else a new one.
    pub async fn session(
        &self,
        user: UserId,
        program: Option<ProgramId>,
    ) -> Result<SsoSession, SsoError> {
        let key = self
            .source
            .keys()
            .key(program.as_ref(), &user)
            .map_err(SsoError::InvalidKey)?;
        let session = self
            .manager
            .token(&key)
            .await
            .map_err(SsoError::Unavailable)?;
        Ok(SsoSession::new(&session, self.clock.now()))
    }

    /// A single-use session: created for this call (never cached), opens the hosted page once.
    /// It may carry the user's email and attributes.
    pub async fn single_use(&self, request: SsoRequest) -> Result<SsoSession, SsoError> {
        let clock = self.clock.as_ref();
        let session = self
            .source
            .create_session(&request, true, clock)
            .await
            .map_err(SsoError::Create)?;
        Ok(SsoSession::new(&session, clock.now()))
    }

    /// The manager of reusable sessions, for its status, metrics and shutdown.
    pub fn manager(&self) -> &TokenManager {
        &self.manager
    }
}

impl fmt::Debug for SsoSessions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SsoSessions")
            .field("manager", &self.manager)
            .finish_non_exhaustive()
    }
}

/// Why no SSO session could be had.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SsoError {
    /// The program and user IDs are too long together for a cache key (at most
    /// [`kigo_core::MAX_ID_LEN`] bytes, plus one).
    #[error("the program and user IDs cannot name a cached SSO session")]
    InvalidKey(#[source] InvalidId),
    /// No reusable session could be had (see the manager's error for why).
    #[error("no SSO session available")]
    Unavailable(#[source] kigo_core::Error),
    /// The single-use session could not be created.
    #[error("the SSO session could not be created")]
    Create(#[source] CreateError),
}

impl SsoError {
    /// Whether trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::InvalidKey(_) => false,
            Self::Unavailable(error) => error.is_transient(),
            Self::Create(error) => error.is_transient(),
        }
    }
}

/// An SSO session for a Kigo-hosted page: its ID, when it expires, and how many seconds it has
/// left. Serialises to `{"session_id", "expires_at", "expires_in_seconds"}` (as
/// [`crate::FrontEndSession`] does); [`SsoSession::page_url`] puts it in the hosted page's URL.
/// `Debug` shows no session ID. Only [`SsoSessions`] makes one.
#[derive(Clone)]
pub struct SsoSession(Expiring);

impl SsoSession {
    fn new(session: &Token, now: SystemTime) -> Self {
        Self(Expiring::of(session, now))
    }

    /// The session ID.
    pub fn session_id(&self) -> &TokenSecret {
        &self.0.secret
    }

    /// When the session expires.
    pub fn expires_at(&self) -> SystemTime {
        self.0.expires_at
    }

    /// Whole seconds left when it was handed out.
    pub fn expires_in_seconds(&self) -> u64 {
        self.0.expires_in_seconds()
    }

    /// `page` with `session-id=<ID>` added to its query: where to send the user's browser.
    pub fn page_url(&self, page: &Url) -> Url {
        let mut url = page.clone();
        url.query_pairs_mut()
            .append_pair(SESSION_ID_PARAMETER, self.0.secret.expose());
        url
    }
}

impl fmt::Debug for SsoSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.debug("SsoSession", "session_id", f)
    }
}

impl Serialize for SsoSession {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize("SsoSession", "session_id", serializer)
    }
}
