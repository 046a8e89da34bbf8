//! The transport rule, shared by the PostgreSQL and MySQL tests: a store whose connections would
//! reach another host without requiring TLS is refused unless the builder opts out; loopback
//! hosts, `localhost` and sockets need no TLS. Pools connect lazily, so no server is needed.

use kigo_core::StoreError;
use kigo_store_sql::{SqlPool, SqlStore, SqlStoreBuilder};
use kigo_testkit::conformance::test_keyring;
use kigo_testkit::logs::Capture;

/// Options that pass every check but the transport rule's: sealed under a keyring.
pub(crate) fn options() -> SqlStoreBuilder {
    SqlStore::builder().keyring(test_keyring())
}

/// The password every URL here carries, which must never be shown.
pub(crate) const PASSWORD: &str = "pa55-secret";

/// What an error shows: its `Debug` holds its source's, and its `Display` the hint.
fn shown(error: &StoreError) -> String {
    format!("{error:?} {error}")
}

/// Asserts that `built` was refused for plain transport to `host`, with the hint to require TLS
/// or opt out, without the password.
pub(crate) fn refused_as_insecure(built: Result<impl Sized, StoreError>, host: &str) {
    let Err(error) = built else {
        panic!("a remote database without TLS was accepted");
    };
    let StoreError::Misconfigured { hint, .. } = &error else {
        panic!("{error:?}");
    };
    assert!(
        hint.contains("sslmode") && hint.contains("allow_insecure_transport"),
        "{hint}"
    );
    let text = shown(&error);
    assert!(text.contains(host), "{text}");
    assert!(!text.contains(PASSWORD), "{text}");
}

/// What URLs of one database the rule is tried with.
pub(crate) struct Urls<'a> {
    /// Another host, TLS not required.
    pub(crate) plain: &'a str,
    /// Its host.
    pub(crate) host: &'a str,
    /// Another host, each requiring TLS in one of the accepted ways.
    pub(crate) encrypted: &'a [&'a str],
    /// This machine: loopback addresses, `localhost`, a socket.
    pub(crate) local: &'a [&'a str],
    /// A lazy pool of the database's own type for a URL.
    pub(crate) pool: fn(&str) -> SqlPool,
}

/// Remote URLs without TLS are refused, from a URL and as a pool passed in; with TLS, on this
/// machine, or with the opt-out they are accepted, the opt-out with a warning that names the
/// host and not the password.
pub(crate) async fn remote_hosts_require_tls(urls: Urls<'_>) {
    refused_as_insecure(options().url(urls.plain).build().await, urls.host);
    refused_as_insecure(
        options().pool((urls.pool)(urls.plain)).build().await,
        urls.host,
    );
    for url in urls.encrypted.iter().chain(urls.local) {
        let shown_url = url.replace(PASSWORD, "***");
        options()
            .url(*url)
            .build()
            .await
            .unwrap_or_else(|error| panic!("{shown_url}: {}", shown(&error)));
        options()
            .pool((urls.pool)(url))
            .build()
            .await
            .unwrap_or_else(|error| panic!("pool of {shown_url}: {}", shown(&error)));
    }

    let log = Capture::default();
    let _logging = tracing::subscriber::set_default(log.subscriber());
    options()
        .allow_insecure_transport()
        .url(urls.plain)
        .build()
        .await
        .unwrap();
    let text = log.text();
    assert!(
        text.contains("WARN") && text.contains("not encrypted") && text.contains(urls.host),
        "{text}"
    );
    assert!(!text.contains(PASSWORD), "{text}");
}
