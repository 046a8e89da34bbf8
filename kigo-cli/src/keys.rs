//! What the commands work on: the store `KIGO_STORE_URL` names, and the keys of the partner
//! `KIGO_PARTNER_ID` names.

use kigo_core::{PartnerId, TokenKey, UserId};
use kigo_stores::AnyStore;

use crate::failure::{Failure, chain};

/// The fleet's store.
pub(crate) async fn store() -> Result<AnyStore, Failure> {
    Ok(kigo_stores::from_env().await?)
}

/// The partner `KIGO_PARTNER_ID` names.
pub(crate) fn partner() -> Result<PartnerId, Failure> {
    let var = kigo_http::PARTNER_ID_VAR;
    let id = std::env::var(var).map_err(|_| {
        Failure::misconfigured(
            format!("{var} is not set"),
            format!("set {var} to the partner ID"),
        )
    })?;
    PartnerId::new(id.trim()).map_err(|error| {
        Failure::misconfigured(
            format!("{var}: {}", chain(&error)),
            "set it to the partner ID Kigo issued",
        )
    })
}

/// The user-level key of `user` for the partner.
pub(crate) fn user_key(partner: &PartnerId, user: &str) -> Result<TokenKey, Failure> {
    let user = UserId::new(user).map_err(|error| Failure {
        message: format!("--user: {}", chain(&error)),
        hint: None,
        code: 2,
    })?;
    Ok(TokenKey::user(partner.clone(), user))
}
