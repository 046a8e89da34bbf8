//! How a [`RedisStore`] is configured: where Redis is, the key prefix, how entries are sealed,
//! timeouts; and the shortcuts that take every default ([`RedisStore::open`],
//! [`RedisStore::from_env`]).

use std::fmt;
use std::time::Duration;

use kigo_core::StoreError;
use kigo_core::codec::{KEYRING_HINT, Keyring, Sealing};
use redis::Client;
use redis::cluster::ClusterClient;

use crate::RedisStore;
use crate::connection::{Target, Timeouts};
use crate::error::{RedisStoreError, config_error};
use crate::keys::check_prefix;
use crate::transport::check_transport;

/// The key prefix used unless another is set.
pub const DEFAULT_PREFIX: &str = "kigo:";

/// The shortest retention: fence counters must outlive leases and tokens.
const MIN_RETENTION: Duration = Duration::from_secs(3600);
/// The longest retention: a year keeps every expiry far inside what Redis accepts.
const MAX_RETENTION: Duration = Duration::from_secs(365 * 24 * 3600);

pub use kigo_core::store::STORE_URL_VAR;

/// What an operator is told when [`RedisStore::from_env`] finds no URL.
const STORE_URL_HINT: &str = "set KIGO_STORE_URL to the Redis URL \
    (rediss://[user:password@]host[:port][/db]), or configure the store in code with \
    RedisStore::builder()";

/// Configures a [`RedisStore`]; made by [`RedisStore::builder`]. Give it a Redis with one of
/// [`Self::url`], [`Self::cluster_nodes`], [`Self::client`] or [`Self::cluster_client`] (each
/// replaces the one given before). Setters never fail: [`Self::build`] checks everything,
/// URLs included. Nothing connects until the store is first used. Entries are sealed with the
/// keys in `KIGO_SEALING_KEYS` unless [`Self::keyring`] or [`Self::plaintext`] says otherwise.
#[derive(Clone)]
pub struct RedisStoreBuilder {
    target: Pending,
    prefix: String,
    sealing: Sealing,
    timeouts: Timeouts,
    retention: Duration,
    allow_insecure_transport: bool,
}

/// The Redis a builder was given, as given: URLs are parsed by [`RedisStoreBuilder::build`].
#[derive(Clone)]
enum Pending {
    Missing,
    /// A server's URL; it may hold a password.
    Url(String),
    /// Cluster node URLs; they may hold a password.
    ClusterNodes(Vec<String>),
    Ready(Target),
}

impl Pending {
    /// What the builder's Debug output shows of it: never a URL.
    fn kind(&self) -> &'static str {
        match self {
            Self::Missing => "none",
            Self::Url(_) => "server",
            Self::ClusterNodes(_) => "cluster",
            Self::Ready(target) if target.is_cluster() => "cluster",
            Self::Ready(_) => "server",
        }
    }

    fn into_target(self, timeouts: Timeouts) -> Result<Target, StoreError> {
        match self {
            Self::Missing => Err(config_error(
                "give the store a Redis: RedisStore::builder().url(...) for a server, \
                 .cluster_nodes(...) for a Redis Cluster (or .client / .cluster_client)",
                RedisStoreError::NoTarget,
            )),
            Self::Url(url) => {
                let client = Client::open(url.as_str()).map_err(|error| {
                    config_error(
                        "the Redis URL is not valid (or needs a TLS feature)",
                        RedisStoreError::Config(error),
                    )
                })?;
                Ok(Target::Standalone(Box::new(client)))
            }
            Self::ClusterNodes(urls) => cluster_target(&urls, timeouts),
            Self::Ready(target) => Ok(target),
        }
    }
}

impl fmt::Debug for RedisStoreBuilder {
    // Hand-written: connection settings may hold a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStoreBuilder")
            .field("target", &self.target.kind())
            .field("prefix", &self.prefix)
            .field("sealing", &self.sealing)
            .field("timeouts", &self.timeouts)
            .field("retention", &self.retention)
            .field("allow_insecure_transport", &self.allow_insecure_transport)
            .finish()
    }
}

impl RedisStore {
    /// A builder with no Redis yet and every default; see [`RedisStoreBuilder`].
    pub fn builder() -> RedisStoreBuilder {
        RedisStoreBuilder {
            target: Pending::Missing,
            prefix: DEFAULT_PREFIX.to_owned(),
            sealing: Sealing::default(),
            timeouts: Timeouts {
                connect: Duration::from_secs(2),
                response: Duration::from_secs(2),
                heartbeat: Duration::from_secs(15),
            },
            retention: Duration::from_secs(7 * 24 * 3600),
            allow_insecure_transport: false,
        }
    }

    /// A store on the Redis server at `url`, with the default settings: entries sealed under the
    /// keyring in `KIGO_SEALING_KEYS`. The same as `RedisStore::builder().url(url).build()`.
    pub fn open(url: &str) -> Result<Self, StoreError> {
        Self::builder().url(url).build()
    }

    /// [`Self::open`] on the URL in [`STORE_URL_VAR`] (`KIGO_STORE_URL`). A missing or empty
    /// variable is [`StoreError::Misconfigured`], with a hint that names it.
    pub fn from_env() -> Result<Self, StoreError> {
        let url = std::env::var(STORE_URL_VAR)
            .ok()
            .filter(|url| !url.trim().is_empty())
            .ok_or_else(|| config_error(STORE_URL_HINT, RedisStoreError::NoUrlInEnv))?;
        Self::open(url.trim())
    }
}

impl RedisStoreBuilder {
    /// One Redis server at `url`: `rediss://[user:password@]host[:port][/db]` (TLS, with the
    /// default `tls-rustls` feature), or `redis://...` for a Redis on this host (see
    /// [`Self::allow_insecure_transport`] for a remote one).
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.target = Pending::Url(url.into());
        self
    }

    /// A Redis Cluster, found through any of `nodes` (URLs as for [`Self::url`]).
    pub fn cluster_nodes(mut self, nodes: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.target = Pending::ClusterNodes(nodes.into_iter().map(Into::into).collect());
        self
    }

    /// One Redis server, through a client you built (TLS certificates, RESP3, ...).
    pub fn client(mut self, client: Client) -> Self {
        self.target = Pending::Ready(Target::Standalone(Box::new(client)));
        self
    }

    /// A Redis Cluster through a client you built; change notices are subscribed to through
    /// `nodes` (clients for some of its nodes, tried in turn).
    ///
    /// [`Self::build`] checks the transport of `nodes` only: the redis crate does not show a
    /// `ClusterClient`'s nodes, so build `client` from the same `rediss://` URLs.
    pub fn cluster_client(mut self, client: ClusterClient, nodes: Vec<Client>) -> Self {
        self.target = Pending::Ready(Target::Cluster {
            client: Box::new(client),
            nodes,
        });
        self
    }

    /// The prefix of every key and of the change channel (default [`DEFAULT_PREFIX`]).
    ///
    /// Give each application (or environment) sharing a Redis its own; it must not contain `{`,
    /// `}`, glob characters (`*?[]\`) or whitespace. See the crate docs.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Seals entries with `keyring` instead of the one in `KIGO_SEALING_KEYS` (the default). Every
    /// replica sharing the prefix needs the keys of the fleet's entries; see [`Keyring`] for a
    /// rotation without a failed request.
    pub fn keyring(mut self, keyring: Keyring) -> Self {
        self.sealing = Sealing::Keyring(keyring);
        self
    }

    /// Writes tokens in the clear: anyone who can read Redis, its backups, `MONITOR` or the
    /// `SLOWLOG` can read the tokens, and anyone who can write it can plant or move one. Logged
    /// at warn when the store is built. A replica with plaintext entries reports a fleet's
    /// sealed entries as a misconfiguration and leaves them alone.
    pub fn plaintext(mut self) -> Self {
        self.sealing = Sealing::Plaintext;
        self
    }

    /// How long connecting may take (default 2 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.timeouts.connect = timeout;
        self
    }

    /// How long one command may take (default 2 s); after that the store reports the result as
    /// unknown and settles it by running the (idempotent) script again.
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.timeouts.response = timeout;
        self
    }

    /// How often the connection that receives change notices is checked with a `PING` (default
    /// 15 s). One not answered within the response timeout ends the subscription, and the
    /// manager subscribes again: a connection that died silently costs at most this long (plus
    /// the response timeout) of notices, which waiters make up for by polling.
    pub fn heartbeat(mut self, every: Duration) -> Self {
        self.timeouts.heartbeat = every;
        self
    }

    /// How long the fence counter and generation of an unused key are kept (default 7 days, at
    /// least 1 hour, at most 365 days): each lease renews the fence counter, each commit the
    /// generation (which is also kept as long as its token).
    pub fn retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// Accepts a Redis on another host without TLS (a `redis://` URL), or with TLS that does not
    /// check the server's certificate (`rediss://...#insecure`): its password and every token
    /// then cross the network readable and changeable. Without this, [`Self::build`] refuses
    /// such a Redis; with it, it logs a warning. A Redis on this host (loopback, a Unix
    /// socket) never needs it.
    pub fn allow_insecure_transport(mut self) -> Self {
        self.allow_insecure_transport = true;
        self
    }

    /// Checks every setting, the Redis URLs included, and builds the store: what cannot work
    /// (no Redis given, an invalid URL, a remote Redis without TLS, no sealing keys, ...) is
    /// [`StoreError::Misconfigured`]. The store connects on first use and reconnects by itself;
    /// it must be used inside a tokio runtime.
    pub fn build(self) -> Result<RedisStore, StoreError> {
        check_prefix(&self.prefix).map_err(|error| {
            config_error(
                "choose a key prefix without braces, glob characters or whitespace",
                RedisStoreError::Prefix(error),
            )
        })?;
        let durations = [
            self.timeouts.connect,
            self.timeouts.response,
            self.timeouts.heartbeat,
        ];
        if durations.iter().any(Duration::is_zero) {
            return Err(config_error(
                "the connect timeout, response timeout and heartbeat must be positive",
                RedisStoreError::ZeroDuration,
            ));
        }
        if !(MIN_RETENTION..=MAX_RETENTION).contains(&self.retention) {
            return Err(config_error(
                "the retention must be between one hour and 365 days",
                RedisStoreError::Retention,
            ));
        }
        let target = self.target.into_target(self.timeouts)?;
        if let Target::Cluster { nodes, .. } = &target
            && nodes.is_empty()
        {
            return Err(config_error(
                "give at least one Redis Cluster node (change notices are subscribed to through it)",
                RedisStoreError::NoNodes,
            ));
        }
        check_transport(&target, self.allow_insecure_transport)?;
        let codec = self
            .sealing
            .codec("redis", &format!("redis:{}", self.prefix))
            .map_err(|error| StoreError::misconfigured(KEYRING_HINT, error))?;
        Ok(RedisStore::new(
            target,
            self.timeouts,
            self.prefix,
            codec,
            self.retention,
        ))
    }
}

fn cluster_target(urls: &[String], timeouts: Timeouts) -> Result<Target, StoreError> {
    let clients = urls
        .iter()
        .map(|url| Client::open(url.as_str()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| {
            config_error(
                "a Redis Cluster node URL is not valid",
                RedisStoreError::Config(error),
            )
        })?;
    let nodes = clients
        .iter()
        .map(|client| client.get_connection_info().clone());
    let client = ClusterClient::builder(nodes)
        .connection_timeout(timeouts.connect)
        .response_timeout(timeouts.response)
        .build()
        .map_err(|error| {
            config_error(
                "the Redis Cluster settings are not valid",
                RedisStoreError::Config(error),
            )
        })?;
    Ok(Target::Cluster {
        client: Box::new(client),
        nodes: clients,
    })
}

#[cfg(test)]
mod tests {
    use std::error::Error;

    use kigo_core::codec::SealingKey;

    use super::*;

    fn keyring() -> Keyring {
        Keyring::new(SealingKey::from_bytes([7; 32]))
    }

    fn misconfiguration(built: Result<RedisStore, StoreError>) -> (&'static str, String) {
        let error = built.expect_err("the build is refused");
        let StoreError::Misconfigured { hint, .. } = &error else {
            panic!("expected a misconfiguration, got {error:?}");
        };
        let shown = std::iter::successors(Some(&error as &dyn Error), |&cause| cause.source())
            .map(|cause| format!("{cause} {cause:?} "))
            .collect();
        (hint, shown)
    }

    #[test]
    fn passwords_stay_out_of_debug_output_and_errors() {
        let builder = RedisStore::builder()
            .url("redis://app:hunter2-secret@127.0.0.1:6379/0")
            .prefix("app:")
            .keyring(keyring());
        assert!(!format!("{builder:?}").contains("hunter2"));
        let store = builder.build().unwrap();
        assert!(!format!("{store:?}").contains("hunter2"));
        let cluster = RedisStore::builder()
            .cluster_nodes(["redis://app:hunter2-secret@127.0.0.1:7000"])
            .keyring(keyring());
        assert!(!format!("{cluster:?}").contains("hunter2"));

        for unusable in [
            RedisStore::builder().url("redis://app:hunter2-secret@[::1:bad/0"),
            RedisStore::builder().cluster_nodes(["redis://app:hunter2-secret@[::1:bad/0"]),
        ] {
            let (_, shown) = misconfiguration(unusable.keyring(keyring()).build());
            assert!(!shown.contains("hunter2"), "{shown}");
        }
    }

    #[test]
    fn a_builder_given_no_redis_is_refused_at_build_with_a_hint_naming_the_choices() {
        let builder = RedisStore::builder().keyring(keyring());
        assert!(format!("{builder:?}").contains(r#"target: "none""#));
        let (hint, _) = misconfiguration(builder.build());
        assert!(
            hint.contains(".url(") && hint.contains(".cluster_nodes("),
            "{hint}"
        );
    }

    #[test]
    fn the_last_redis_given_is_the_one_used() {
        // The first, remote in plain text, would be refused.
        RedisStore::builder()
            .url("redis://10.0.0.1:6379")
            .cluster_nodes(["redis://10.0.0.1:7000"])
            .url("redis://127.0.0.1:6379")
            .keyring(keyring())
            .build()
            .unwrap();
    }

    /// The redis crate builds its TLS settings from rustls's own choice (the one provider
    /// compiled in, aws-lc-rs); the process-wide choice is the application's to make.
    #[cfg(feature = "tls-rustls")]
    #[test]
    fn building_a_tls_store_installs_no_process_wide_crypto_provider() {
        RedisStore::builder()
            .url("rediss://redis.internal:6380")
            .keyring(keyring())
            .build()
            .unwrap();
        assert!(rustls::crypto::CryptoProvider::get_default().is_none());
    }

    #[test]
    fn unusable_settings_are_refused_at_build() {
        let builder = || {
            RedisStore::builder()
                .url("redis://127.0.0.1:6379")
                .keyring(keyring())
        };
        for prefix in ["a{b}:", "with space:", "glob*:"] {
            assert!(matches!(
                builder().prefix(prefix).build(),
                Err(StoreError::Misconfigured { .. })
            ));
        }
        let zero = Duration::ZERO;
        for unusable in [
            builder().connect_timeout(zero),
            builder().response_timeout(zero),
            builder().heartbeat(zero),
        ] {
            assert!(matches!(
                unusable.build(),
                Err(StoreError::Misconfigured { .. })
            ));
        }
        for retention in [Duration::from_secs(60), Duration::MAX] {
            assert!(matches!(
                builder().retention(retention).build(),
                Err(StoreError::Misconfigured { .. })
            ));
        }
        let (hint, _) = misconfiguration(builder().url("not a url").build());
        assert!(hint.contains("URL"), "{hint}");
        let (hint, _) = misconfiguration(builder().cluster_nodes(["not a url"]).build());
        assert!(hint.contains("URL"), "{hint}");
        misconfiguration(builder().cluster_nodes(Vec::<String>::new()).build());
        let client = ClusterClient::new(["redis://127.0.0.1:7000"]).unwrap();
        misconfiguration(builder().cluster_client(client, Vec::new()).build());
    }
}
