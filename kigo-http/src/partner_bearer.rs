//! Requests made with the partner-level token as bearer (user tokens, SSO sessions): the token
//! comes from the partner manager, and a `401` renews exactly that token, once.

use http::HeaderValue;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use kigo_core::runtime::TimeSource;
use kigo_core::{Token, TokenHandle};
use reqwest::Url;

use crate::api::ApiInner;
use crate::auth::bearer_header;
use crate::error::{CreateError, ErrorKind};
use crate::parse::Issued;

impl ApiInner {
    /// Posts the JSON `body` to `url` with the partner token of `partner` as bearer and reads the
    /// answer as `issued`; on a `401`, invalidates that exact partner token and tries once more
    /// with the next one.
    pub(crate) async fn post_with_partner_token(
        &self,
        partner: &TokenHandle,
        url: &Url,
        body: &str,
        issued: Issued,
        clock: &dyn TimeSource,
    ) -> Result<Token, CreateError> {
        let mut rejected_once = false;
        loop {
            // An owned copy: the manager's guard is not held across the request.
            let token = Token::clone(&*partner.token().await.map_err(partner_unavailable)?);
            let fingerprint = token.fingerprint();
            let bearer = bearer_header(&token)
                .ok_or_else(|| CreateError::new(ErrorKind::PartnerTokenRefused))?;
            let builder = self
                .http
                .post(url.clone())
                .header(AUTHORIZATION, bearer)
                .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                .body(body.to_owned());
            let answer = self
                .exchange(builder, issued, clock, &[token.secret().expose()])
                .await;
            match answer {
                Err(error) if error.kind() == ErrorKind::Unauthorized && !rejected_once => {
                    tracing::info!(partner_token = %fingerprint, ?issued, "partner token rejected; renewing it");
                    partner.invalidate(&fingerprint);
                    rejected_once = true;
                }
                answer => return answer,
            }
        }
    }
}

/// The partner manager could not hand out a token.
fn partner_unavailable(error: kigo_core::Error) -> CreateError {
    let kind = if error.is_transient() {
        ErrorKind::PartnerTokenUnavailable
    } else {
        ErrorKind::PartnerTokenRefused
    };
    CreateError::new(kind)
        .with_retry_after(error.retry_after())
        .with_source(error)
}
