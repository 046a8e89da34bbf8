//! Shared set-up: a mock Kigo server and a `KigoApi` pointed at it.

#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::time::Duration;

use kigo_core::runtime::{ManualClock, RuntimeEnv};
use kigo_core::{KeyScope, PartnerId, TokenManager, TokenSource};
use kigo_http::reqwest::Certificate;
use kigo_http::{ApiKey, Credentials, KigoApi, KigoApiBuilder};
use kigo_testkit::mock::{MockKigo, MockKigoBuilder};

/// The builder of a `KigoApi` for `mock`, trusting its certificate authority if it serves HTTPS.
pub fn api_builder(mock: &MockKigo) -> KigoApiBuilder {
    let builder = KigoApi::builder(credentials(mock)).timeout(Duration::from_secs(3));
    match ca_certificate(mock) {
        Some(certificate) => builder.add_root_certificate(certificate),
        None => builder,
    }
}

/// The certificate authority of `mock`, if it serves HTTPS.
pub fn ca_certificate(mock: &MockKigo) -> Option<Certificate> {
    let pem = mock.ca_certificate_pem()?;
    Some(Certificate::from_pem(pem.as_bytes()).unwrap())
}

/// The credentials `mock` accepts.
pub fn credentials(mock: &MockKigo) -> Credentials {
    Credentials::new(
        ApiKey::new(mock.api_key()).unwrap(),
        mock.partner_id().clone(),
        mock.base_url(),
    )
    .unwrap()
}

pub fn api(mock: &MockKigo) -> KigoApi {
    api_builder(mock).build().unwrap()
}

/// A mock whose tokens are issued and judged on `clock`.
pub fn mock_on(clock: &ManualClock) -> MockKigoBuilder {
    MockKigo::builder().clock(Arc::new(clock.clone()))
}

/// A manager on real time for `source`, on a store of its own.
///
/// These tests revoke tokens right after creating them, so a 401 drops a token of any age here;
/// the minimum age has tests of its own on the manual clock.
pub fn manager(source: impl TokenSource) -> TokenManager {
    TokenManager::builder(source)
        .local_only()
        .min_token_age(Duration::ZERO)
        .seed(7)
        .build()
        .unwrap()
}

/// A manager for `source` serving `scope`, on a store of its own.
pub fn manager_with_scope(source: impl TokenSource, scope: KeyScope) -> TokenManager {
    TokenManager::builder(source)
        .local_only()
        .scope(scope)
        .build()
        .unwrap()
}

/// A manager on `clock` for `source`, on a store of its own.
pub fn manual_manager(source: impl TokenSource, clock: &ManualClock) -> TokenManager {
    TokenManager::builder(source)
        .runtime(RuntimeEnv::manual(clock).unwrap())
        .local_only()
        .seed(7)
        .build()
        .unwrap()
}

/// The token a response's request carried, from its extensions.
pub fn sent_with(extensions: &http::Extensions) -> kigo_core::Fingerprint {
    extensions.get::<kigo_http::SentWith>().expect("noted").0
}

/// An authenticated client's counters: requests, `401`s, retries, recoveries.
pub fn counts(metrics: kigo_http::ClientMetrics) -> (u64, u64, u64, u64) {
    (
        metrics.requests,
        metrics.unauthorized,
        metrics.retried,
        metrics.recovered,
    )
}

/// How long a test waits (real time) for background work to show.
pub const WAIT: Duration = Duration::from_secs(10);

pub fn partner(id: &str) -> PartnerId {
    PartnerId::new(id).unwrap()
}
