//! What a front end may receive: a user-level token, its expiry and the seconds it has left, as
//! JSON a handler returns as is. Only user-level tokens can become one; the types see to it.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;
use std::time::SystemTime;

use kigo_core::runtime::{SystemClock, TimeSource};
use kigo_core::{
    Error, PartnerId, Token, TokenGuard, TokenHandle, TokenKey, TokenManager, TokenSecret, UserId,
};
use serde::{Serialize, Serializer};

use crate::expiring::Expiring;

/// The user-level tokens of one partner's users: a user-level manager that kigo-http built, so
/// that everything it hands out is a user-level token. Made by [`crate::KigoApi::user_tokens`].
///
/// Cheap to clone. `expires_in_seconds` counts from its clock: the system clock unless
/// [`UserTokens::with_clock`] sets the one the manager runs on.
#[derive(Clone)]
pub struct UserTokens {
    manager: TokenManager,
    partner: PartnerId,
    clock: Arc<dyn TimeSource>,
}

impl UserTokens {
    /// `manager` must serve user-level tokens of `partner`'s users only: kigo-http builds it.
    pub(crate) fn new(manager: TokenManager, partner: PartnerId) -> Self {
        Self {
            manager,
            partner,
            clock: Arc::new(SystemClock::new()),
        }
    }

    /// Counts `expires_in_seconds` from `clock` (a manual clock in tests).
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn TimeSource>) -> Self {
        self.clock = clock;
        self
    }

    /// The handle of `user`'s token: keep it to skip the key lookup on every call.
    pub fn handle(&self, user: UserId) -> Result<UserHandle, Error> {
        let key = TokenKey::user(self.partner.clone(), user);
        Ok(UserHandle {
            handle: self.manager.handle(key)?,
            clock: Arc::clone(&self.clock),
        })
    }

    /// `user`'s front-end session: a valid user-level token, waiting for one only if none is
    /// cached (as `TokenManager::token` does).
    pub async fn session(&self, user: UserId) -> Result<FrontEndSession, Error> {
        self.handle(user)?.session().await
    }

    /// The manager, for its status, metrics and shutdown.
    pub fn manager(&self) -> &TokenManager {
        &self.manager
    }
}

impl fmt::Debug for UserTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserTokens")
            .field("partner", &self.partner)
            .field("manager", &self.manager)
            .finish_non_exhaustive()
    }
}

/// One user's user-level token, from [`UserTokens::handle`].
#[derive(Clone)]
pub struct UserHandle {
    handle: TokenHandle,
    clock: Arc<dyn TimeSource>,
}

impl UserHandle {
    /// A valid token, as [`TokenHandle::token`] gives it.
    pub async fn token(&self) -> Result<UserToken, Error> {
        Ok(UserToken(self.handle.token().await?))
    }

    /// The front-end session of this user.
    pub async fn session(&self) -> Result<FrontEndSession, Error> {
        let token = self.token().await?;
        Ok(FrontEndSession::new(&token, self.clock.now()))
    }

    /// The underlying handle: for [`crate::KigoApi::client`] (calls as this user), status and
    /// invalidation.
    pub fn handle(&self) -> &TokenHandle {
        &self.handle
    }
}

impl fmt::Debug for UserHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("UserHandle").field(&self.handle).finish()
    }
}

/// A valid user-level token, borrowed from the manager's cache like a `TokenGuard` (hold it for
/// a request, not longer). Only [`UserHandle::token`] makes one.
pub struct UserToken(TokenGuard);

impl Deref for UserToken {
    type Target = Token;

    fn deref(&self) -> &Token {
        &self.0
    }
}

impl fmt::Debug for UserToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("UserToken").field(&*self.0).finish()
    }
}

/// What a front end receives for its signed-in user: the user-level token, when it expires and
/// how many seconds it has left. Serialises to the JSON a handler returns as is:
///
/// ```json
/// {"token": "<user-level token>", "expires_at": "2030-01-01T01:00:00Z", "expires_in_seconds": 3600}
/// ```
///
/// `expires_at` is RFC 3339 in UTC, whole seconds; `expires_in_seconds` counts from when the
/// session was made (a front end whose clock is off can still tell when to ask again). The
/// refresh token stays in the backend. `Debug` shows no token.
///
/// ```no_run
/// # async fn handler(users: kigo_http::UserTokens) -> Result<String, Box<dyn std::error::Error>> {
/// let session = users.session(kigo_core::UserId::new("user-42")?).await?;
/// let json = serde_json::to_string(&session)?;
/// # Ok(json) }
/// ```
///
/// Only a [`UserToken`] becomes one; the partner-level token cannot:
///
/// ```compile_fail,E0308
/// # async fn leak(api: kigo_http::KigoApi, partners: kigo_core::TokenManager) -> Result<(), Box<dyn std::error::Error>> {
/// let partner = partners.token(&api.partner_key()).await?;
/// let session = kigo_http::FrontEndSession::new(&partner, std::time::SystemTime::now());
/// # Ok(()) }
/// ```
///
/// nor be serialised by other means (kigo-core's tokens are not `Serialize`):
///
/// ```compile_fail,E0277
/// # async fn leak(api: kigo_http::KigoApi, partners: kigo_core::TokenManager) -> Result<(), Box<dyn std::error::Error>> {
/// let partner = partners.token(&api.partner_key()).await?;
/// let json = serde_json::to_string(&*partner)?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct FrontEndSession(Expiring);

impl FrontEndSession {
    /// The session of `token`, as seen at `now`.
    pub fn new(token: &UserToken, now: SystemTime) -> Self {
        Self(Expiring::of(token, now))
    }

    /// The user-level token.
    pub fn token(&self) -> &TokenSecret {
        &self.0.secret
    }

    /// When the token expires.
    pub fn expires_at(&self) -> SystemTime {
        self.0.expires_at
    }

    /// Whole seconds left when the session was made.
    pub fn expires_in_seconds(&self) -> u64 {
        self.0.expires_in_seconds()
    }
}

impl fmt::Debug for FrontEndSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.debug("FrontEndSession", "token", f)
    }
}

impl Serialize for FrontEndSession {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize("FrontEndSession", "token", serializer)
    }
}
