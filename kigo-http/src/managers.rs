//! The token managers of one [`KigoApi`], configured so that a creation fits its deadline
//! whatever the HTTP timeout: nobody has to work out timeouts across crates.

use std::time::Duration;

use kigo_core::manager::{HasStore, NeedsStore};
use kigo_core::{ManagerBuilder, TokenHandle, TokenManager};

use crate::api::KigoApi;
use crate::error::ConfigError;
use crate::front_end::UserTokens;
use crate::sso::SsoSessions;

/// What a creation's timeout adds to the HTTP calls it makes: the manager's own work around them.
const CREATION_MARGIN: Duration = Duration::from_secs(2);

impl KigoApi {
    /// A builder for the partner-level manager: this API's partner source (which sets the
    /// scope), and a creation timeout that covers one token request (the HTTP timeout plus 2 s).
    /// Choose its store next; the lease and the callers' wait follow the creation timeout.
    ///
    /// ```no_run
    /// # async fn demo(store: impl kigo_core::TokenStore) -> Result<(), Box<dyn std::error::Error>> {
    /// let api = kigo_http::KigoApi::from_env()?;
    /// let partners = api.partner_manager().store(store).build()?;
    /// # Ok(()) }
    /// ```
    pub fn partner_manager(&self) -> ManagerBuilder<NeedsStore> {
        TokenManager::builder(self.partner_source()).create_timeout(self.partner_creation())
    }

    /// A builder for the user-level manager of this partner's users, creating their tokens with
    /// the partner-level token of `partners` (the manager from [`KigoApi::partner_manager`]).
    ///
    /// Its creation timeout covers the worst path of one user-level creation: waiting for a
    /// partner-level creation, the user call, and after a `401` another partner-level creation
    /// and user call. Its scope is this partner's users: it can never hand out the
    /// partner-level token. Choose its store next (the partner manager's store is fine).
    pub fn user_manager(
        &self,
        partners: &TokenManager,
    ) -> Result<ManagerBuilder<NeedsStore>, ConfigError> {
        let source = self.user_source(self.partner_handle(partners)?)?;
        Ok(TokenManager::builder(source).create_timeout(self.partner_bearer_creation()))
    }

    /// The user-level tokens of this partner's users, ready for front ends
    /// ([`crate::FrontEndSession`]): the manager of [`KigoApi::user_manager`] for `partners`,
    /// configured by `configure` (choose its store there, and any other setting), built, and
    /// wrapped so that what it hands out is known, by its type, to be user-level.
    ///
    /// ```no_run
    /// # async fn demo(store: impl kigo_core::TokenStore + Clone) -> Result<(), Box<dyn std::error::Error>> {
    /// let api = kigo_http::KigoApi::from_env()?;
    /// let partners = api.partner_manager().store(store.clone()).build()?;
    /// let users = api.user_tokens(&partners, |manager| manager.store(store))?;
    /// let session = users.session(kigo_core::UserId::new("user-42")?).await?;
    /// # Ok(()) }
    /// ```
    pub fn user_tokens(
        &self,
        partners: &TokenManager,
        configure: impl FnOnce(ManagerBuilder<NeedsStore>) -> ManagerBuilder<HasStore>,
    ) -> Result<UserTokens, ConfigError> {
        let manager = configure(self.user_manager(partners)?)
            .build()
            .map_err(ConfigError::Manager)?;
        let partner = self.partner_key().partner_id().clone();
        Ok(UserTokens::new(manager, partner))
    }

    /// The SSO sessions of this partner's users for Kigo-hosted pages, created with the
    /// partner-level token of `partners`: a manager of reusable sessions (configured by
    /// `configure`: its store, any setting; creation timeout as for [`KigoApi::user_manager`]),
    /// whose scope holds this partner's SSO sessions only, and single-use sessions that are
    /// never cached.
    ///
    /// ```no_run
    /// # async fn demo(store: impl kigo_core::TokenStore + Clone) -> Result<(), Box<dyn std::error::Error>> {
    /// use kigo_http::{KigoApi, ProgramId, reqwest::Url};
    ///
    /// let api = KigoApi::from_env()?;
    /// let partners = api.partner_manager().store(store.clone()).build()?;
    /// let sso = api.sso_sessions(&partners, |manager| manager.store(store))?;
    /// let user = kigo_core::UserId::new("user-42")?;
    /// let session = sso.session(user, Some(ProgramId::new("spring")?)).await?;
    /// // Redirect the user's browser there (the URL carries the session: do not log it).
    /// let page = session.page_url(&Url::parse("https://acme.kigo.example/rewards")?);
    /// # Ok(()) }
    /// ```
    pub fn sso_sessions(
        &self,
        partners: &TokenManager,
        configure: impl FnOnce(ManagerBuilder<NeedsStore>) -> ManagerBuilder<HasStore>,
    ) -> Result<SsoSessions, ConfigError> {
        let source = self.sso_source(self.partner_handle(partners)?)?;
        let builder =
            TokenManager::builder(source.clone()).create_timeout(self.partner_bearer_creation());
        let manager = configure(builder).build().map_err(ConfigError::Manager)?;
        Ok(SsoSessions::new(manager, source))
    }

    /// The handle of this partner's partner-level token in `partners`.
    fn partner_handle(&self, partners: &TokenManager) -> Result<TokenHandle, ConfigError> {
        partners.handle(self.partner_key()).map_err(|_| {
            ConfigError::invalid(
                "partner manager",
                "not a manager of this partner's partner-level token",
            )
        })
    }

    /// How long one creation with the partner-level token as bearer may take: waiting for a
    /// partner-level creation, the call, and after a `401` another partner-level creation and
    /// call.
    fn partner_bearer_creation(&self) -> Duration {
        self.partner_creation()
            .saturating_add(self.request_timeout())
            .saturating_mul(2)
            .saturating_add(CREATION_MARGIN)
    }

    /// How long one partner-level creation may take.
    fn partner_creation(&self) -> Duration {
        self.request_timeout().saturating_add(CREATION_MARGIN)
    }
}

#[cfg(test)]
mod tests {
    use kigo_core::{KeyScope, MemoryStore, PartnerId};

    use super::*;
    use crate::{ApiKey, Credentials};

    fn credentials(partner: &str) -> Credentials {
        let key = ApiKey::new("key-0123456789").unwrap();
        let partner = PartnerId::new(partner).unwrap();
        Credentials::new(key, partner, "https://api.kigo.example").unwrap()
    }

    fn api(timeout: Duration) -> KigoApi {
        KigoApi::builder(credentials("acme"))
            .timeout(timeout)
            .build()
            .unwrap()
    }

    #[tokio::test]
    async fn the_managers_of_an_api_build_for_any_http_timeout() {
        for seconds in [1, 8, 30, 120] {
            let api = api(Duration::from_secs(seconds));
            let partners = api.partner_manager().store(MemoryStore::new()).build();
            let partners = partners.unwrap_or_else(|error| panic!("{seconds} s: {error}"));
            assert_eq!(
                partners.scope(),
                &KeyScope::Partner(api.partner_key().partner_id().clone())
            );
            let users = api
                .user_manager(&partners)
                .unwrap()
                .store(MemoryStore::new())
                .build()
                .unwrap_or_else(|error| panic!("{seconds} s: {error}"));
            assert_eq!(
                users.scope(),
                &KeyScope::UsersOf(api.partner_key().partner_id().clone())
            );
        }
    }

    #[tokio::test]
    async fn a_user_manager_needs_this_partners_partner_manager() {
        let acme = api(Duration::from_secs(8));
        let other = KigoApi::builder(credentials("globex")).build().unwrap();
        let partners = other
            .partner_manager()
            .store(MemoryStore::new())
            .build()
            .unwrap();
        assert!(matches!(
            acme.user_manager(&partners),
            Err(ConfigError::Invalid { .. })
        ));
    }
}
