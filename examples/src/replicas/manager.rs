//! The token manager of a replica in a fleet on one machine, against a mock Kigo API on
//! loopback, with tokens of a few seconds.

use std::time::Duration;

use kigo_core::manager::HasStore;
use kigo_core::{BackoffPolicy, ManagerBuilder, TokenStore};
use kigo_http::KigoApi;

/// Longer than any creation can take (`CREATE_TIMEOUT`): the lease only lapses for a holder that
/// died.
const LEASE_TTL: Duration = Duration::from_secs(2);
/// A creation on loopback takes milliseconds; one that takes a second has failed.
const CREATE_TIMEOUT: Duration = Duration::from_secs(1);
/// A store operation on a local server or file takes milliseconds; the lease must hold a
/// creation plus a re-read and a commit.
const STORE_TIMEOUT: Duration = Duration::from_millis(400);
/// For stores without change notices (SQLite): replicas waiting for another's lease re-read the
/// store this often (with jitter).
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Retries after a failed creation: the default's 1 s to 30 s fit a 30-minute token's 7.5
/// minutes between its refresh and stale points; these fit the fraction of a second that a
/// token of a few seconds leaves.
const BACKOFF_INITIAL: Duration = Duration::from_millis(20);
const BACKOFF_MAX: Duration = Duration::from_millis(200);

/// The builder of replica `name`'s partner-level manager on `store`, its timeouts fitted to
/// loopback.
pub fn loopback_manager(
    api: &KigoApi,
    store: impl TokenStore,
    name: &str,
) -> ManagerBuilder<HasStore> {
    api.partner_manager()
        .store(store)
        .replica_name(name)
        .lease_ttl(LEASE_TTL)
        .create_timeout(CREATE_TIMEOUT)
        .store_timeout(STORE_TIMEOUT)
        .poll_interval(POLL_INTERVAL)
        .backoff(BackoffPolicy::new(BACKOFF_INITIAL, BACKOFF_MAX).unwrap_or_default())
}
