//! Which store a URL names, read from its scheme alone (the rest is the backend's to parse), and
//! a Cluster's node list.

use std::fmt;

/// What an operator is told when a store URL cannot be used.
pub(crate) const HINT: &str = "set KIGO_STORE_URL to the fleet's store: rediss://..., \
    rediss+cluster://host:port,host:port, postgres://..., mysql://... or sqlite:<path>";

/// The kinds of store a URL can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreKind {
    /// `redis://`, `rediss://`.
    Redis,
    /// `redis+cluster://`, `rediss+cluster://`.
    RedisCluster,
    /// `postgres://`, `postgresql://`.
    Postgres,
    /// `mysql://`, `mariadb://`.
    MySql,
    /// `sqlite:`.
    Sqlite,
}

/// Why a store URL cannot be used. Never repeats the URL: it may hold a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidStoreUrl {
    /// `KIGO_STORE_URL` is not set.
    #[error("KIGO_STORE_URL is not set")]
    Missing,
    /// The text has no scheme this crate knows.
    #[error(
        "the store URL's scheme is not one of redis, rediss, redis+cluster, rediss+cluster, postgres, postgresql, mysql, mariadb, sqlite"
    )]
    UnknownScheme,
    /// The kind is known, but this build leaves it out (a cargo feature).
    #[error("this build has no {0:?} store (a cargo feature of kigo-stores leaves it out)")]
    NotCompiledIn(StoreKind),
    /// A Cluster URL names no node.
    #[error("the Redis Cluster URL names no node")]
    NoNodes,
}

impl StoreKind {
    /// The kind `url` names, by its scheme.
    pub fn of(url: &str) -> Result<Self, InvalidStoreUrl> {
        let scheme = url
            .split_once(':')
            .map(|(scheme, _)| scheme.to_ascii_lowercase())
            .ok_or(InvalidStoreUrl::UnknownScheme)?;
        Ok(match scheme.as_str() {
            "redis" | "rediss" => Self::Redis,
            "redis+cluster" | "rediss+cluster" => Self::RedisCluster,
            "postgres" | "postgresql" => Self::Postgres,
            "mysql" | "mariadb" => Self::MySql,
            "sqlite" => Self::Sqlite,
            _ => return Err(InvalidStoreUrl::UnknownScheme),
        })
    }
}

impl fmt::Display for StoreKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Redis => "redis",
            Self::RedisCluster => "redis cluster",
            Self::Postgres => "postgres",
            Self::MySql => "mysql",
            Self::Sqlite => "sqlite",
        })
    }
}

/// The node URLs of `redis[s]+cluster://[userinfo@]host:port,host:port[/...]`: each
/// `redis[s]://[userinfo@]host:port`.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) fn cluster_nodes(url: &str) -> Result<Vec<String>, InvalidStoreUrl> {
    let (scheme, rest) = url.split_once("://").ok_or(InvalidStoreUrl::NoNodes)?;
    let scheme = scheme.trim_end_matches("+cluster");
    let rest = rest.split(['/', '?']).next().unwrap_or_default();
    let (userinfo, hosts) = match rest.rsplit_once('@') {
        Some((userinfo, hosts)) => (format!("{userinfo}@"), hosts),
        None => (String::new(), rest),
    };
    let nodes: Vec<String> = hosts
        .split(',')
        .map(str::trim)
        .filter(|host| !host.is_empty())
        .map(|host| format!("{scheme}://{userinfo}{host}"))
        .collect();
    if nodes.is_empty() {
        return Err(InvalidStoreUrl::NoNodes);
    }
    Ok(nodes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_names_its_kind_by_its_scheme() {
        for (url, kind) in [
            ("rediss://cache.internal:6380", StoreKind::Redis),
            ("REDIS://127.0.0.1", StoreKind::Redis),
            ("rediss+cluster://a:1,b:2", StoreKind::RedisCluster),
            ("postgresql://db/app", StoreKind::Postgres),
            ("mariadb://db/app", StoreKind::MySql),
            ("sqlite:kigo.db", StoreKind::Sqlite),
        ] {
            assert_eq!(StoreKind::of(url), Ok(kind), "{url}");
        }
        for url in ["", "kigo.db", "http://x", "password=secret host=db"] {
            assert_eq!(
                StoreKind::of(url),
                Err(InvalidStoreUrl::UnknownScheme),
                "{url}"
            );
        }
    }

    #[test]
    fn a_cluster_url_lists_its_nodes_with_their_credentials() {
        assert_eq!(
            cluster_nodes("rediss+cluster://app:pw@a.internal:7000,b.internal:7001/0").unwrap(),
            [
                "rediss://app:pw@a.internal:7000",
                "rediss://app:pw@b.internal:7001"
            ]
        );
        assert_eq!(
            cluster_nodes("redis+cluster://127.0.0.1:7000").unwrap(),
            ["redis://127.0.0.1:7000"]
        );
        assert_eq!(
            cluster_nodes("redis+cluster://"),
            Err(InvalidStoreUrl::NoNodes)
        );
        let error = InvalidStoreUrl::UnknownScheme.to_string();
        assert!(!error.contains("pw"));
    }
}
