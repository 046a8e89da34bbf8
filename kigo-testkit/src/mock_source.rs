//! A token source whose answers are mockall expectations (feature `mockall`).

use std::time::SystemTime;

use async_trait::async_trait;
use kigo_core::{CreateRequest, Fingerprint, SourceError, Token, TokenKey, TokenSource};

/// One answer of a token endpoint as a plain function: the part [`MockTokenSource`] lets mockall
/// set expectations on (`MockRespond`), since mockall cannot mock the borrowed request directly.
#[mockall::automock]
pub trait Respond: Send + Sync + 'static {
    /// Answers a request for `key`, sent at `sent_at`, replacing the token `previous`.
    fn respond(
        &self,
        key: &TokenKey,
        previous: Option<Fingerprint>,
        sent_at: SystemTime,
    ) -> Result<Token, SourceError>;
}

/// A [`TokenSource`] that answers through a mockall mock of [`Respond`].
pub struct MockTokenSource(pub MockRespond);

impl std::fmt::Debug for MockTokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MockTokenSource")
    }
}

#[async_trait]
impl TokenSource for MockTokenSource {
    async fn create(&self, request: CreateRequest<'_>) -> Result<Token, SourceError> {
        let previous = request.previous.map(Token::fingerprint);
        self.0.respond(request.key, previous, request.clock.now())
    }
}
