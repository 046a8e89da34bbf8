//! Where requests may go: the scheme policy of the base URL, whether its host is this machine,
//! and joining paths under it without ever leaving its origin (a token or API key must never
//! travel to another host).

use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

use reqwest::Url;

use crate::credentials::BASE_URL_VAR;
use crate::error::ConfigError;

/// HTTPS, or plain HTTP for a `loopback` host (see [`is_loopback`]) or with the explicit opt-in.
pub(crate) fn check_scheme(
    url: &Url,
    loopback: bool,
    allow_insecure_http: bool,
) -> Result<(), ConfigError> {
    match url.scheme() {
        "https" => Ok(()),
        "http" if allow_insecure_http || loopback => Ok(()),
        "http" => Err(ConfigError::InsecureBaseUrl),
        _ => Err(ConfigError::invalid(
            BASE_URL_VAR,
            "the scheme must be https (or http for loopback)",
        )),
    }
}

/// Whether the host of `url` is this machine: a loopback address, or the name `localhost` when
/// every address std's resolver gives for it now is a loopback one. Any other name is not, even
/// one that resolves to loopback today (`localhost.evil.com`): DNS can point it elsewhere later.
pub(crate) fn is_loopback(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) if host.eq_ignore_ascii_case("localhost") => {
            only_loopback((host, 0).to_socket_addrs())
        }
        Err(_) => false,
    }
}

/// A resolution that gave addresses, all of them loopback; a failed or empty one is not.
fn only_loopback(resolved: io::Result<impl Iterator<Item = SocketAddr>>) -> bool {
    let Ok(addresses) = resolved else {
        return false;
    };
    let addresses: Vec<SocketAddr> = addresses.collect();
    !addresses.is_empty() && addresses.iter().all(|address| address.ip().is_loopback())
}

/// Same scheme, host and port.
pub(crate) fn same_origin(url: &Url, base: &Url) -> bool {
    url.scheme() == base.scheme()
        && url.host_str() == base.host_str()
        && url.port_or_known_default() == base.port_or_known_default()
}

/// Whether `uri` is absolute and on `base`'s origin: same scheme, host and port. A relative URI
/// (a path only) is not: where it goes depends on the client below, which this crate cannot see.
/// Hosts are compared as written (ASCII case aside), so an unusual spelling of the same host is
/// refused rather than trusted.
pub(crate) fn same_origin_uri(uri: &http::Uri, base: &Url) -> bool {
    let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
        return false;
    };
    let port = authority.port_u16().or(match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    });
    scheme.eq_ignore_ascii_case(base.scheme())
        && base
            .host_str()
            .is_some_and(|host| authority.host().eq_ignore_ascii_case(host))
        && port == base.port_or_known_default()
}

/// `path` (which must start with `/`, and may carry a query) under the path of `base`, on
/// `base`'s origin; anything else is refused as `setting`.
///
/// Building the URL from parts instead of text means a path like `@evil.example/collect` or
/// `.evil.example/` cannot change the host.
pub(crate) fn join_path(base: &Url, path: &str, setting: &'static str) -> Result<Url, ConfigError> {
    if !path.starts_with('/') {
        return Err(ConfigError::invalid(
            setting,
            "the path must start with '/'",
        ));
    }
    if path.contains('#') {
        return Err(ConfigError::invalid(
            setting,
            "the path must not have a fragment",
        ));
    }
    let (path, query) = match path.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (path, None),
    };
    let mut joined = base.clone();
    joined.set_path(&format!("{}{path}", base.path().trim_end_matches('/')));
    joined.set_query(query);
    if !same_origin(&joined, base) {
        return Err(ConfigError::invalid(
            setting,
            "the path leads away from the base URL's origin",
        ));
    }
    Ok(joined)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap()
    }

    fn check(url: &str, opt_in: bool) -> Result<(), ConfigError> {
        let url = Url::parse(url).unwrap();
        check_scheme(&url, is_loopback(&url), opt_in)
    }

    #[test]
    fn plain_http_only_for_loopback_or_with_the_opt_in() {
        for url in [
            "https://api.example.com",
            "http://127.0.0.1:8080",
            "http://127.1.2.3",
            "http://[::1]:80",
            // Resolves to loopback addresses only on any sane machine (and on the test's).
            "http://localhost:3000",
            "http://LocalHost",
        ] {
            assert!(check(url, false).is_ok(), "{url}");
        }
        for url in [
            "http://api.example.com",
            "http://10.0.0.1",
            "http://localhost.evil.com",
            "http://evil.localhost.com",
        ] {
            assert!(
                matches!(check(url, false), Err(ConfigError::InsecureBaseUrl)),
                "{url}"
            );
            assert!(check(url, true).is_ok(), "{url}");
        }
        assert!(matches!(
            check("ftp://api.example.com", true),
            Err(ConfigError::Invalid { .. })
        ));
    }

    #[test]
    fn localhost_is_loopback_only_when_every_address_it_resolves_to_is() {
        let resolved = |addresses: &[&str]| {
            Ok(addresses
                .iter()
                .map(|address| SocketAddr::new(address.parse().unwrap(), 0))
                .collect::<Vec<_>>()
                .into_iter())
        };
        assert!(only_loopback(resolved(&["127.0.0.1"])));
        assert!(only_loopback(resolved(&["::1", "127.0.0.1"])));
        assert!(!only_loopback(resolved(&["127.0.0.1", "10.0.0.5"])));
        assert!(!only_loopback(resolved(&["192.0.2.7"])));
        assert!(!only_loopback(resolved(&[])));
        let failed: io::Result<std::vec::IntoIter<SocketAddr>> =
            Err(io::Error::new(io::ErrorKind::NotFound, "no such host"));
        assert!(!only_loopback(failed));
    }

    #[test]
    fn a_name_that_does_not_resolve_is_not_loopback() {
        // `.invalid` never resolves (RFC 2606): std's resolver fails on it.
        assert!(!only_loopback("kigo-test.invalid:0".to_socket_addrs()));
    }

    #[test]
    fn paths_are_joined_under_the_base_path() {
        let join = |base: &str, path: &str| join_path(&url(base), path, "path").unwrap();
        assert_eq!(
            join("https://api.kigo.io", "/api/v1/x").as_str(),
            "https://api.kigo.io/api/v1/x"
        );
        assert_eq!(
            join("https://api.kigo.io/kigo/", "/api/v1/x?user=1").as_str(),
            "https://api.kigo.io/kigo/api/v1/x?user=1"
        );
        assert_eq!(
            join("http://127.0.0.1:8080/kigo", "/@evil.example/collect").host_str(),
            Some("127.0.0.1")
        );
    }

    #[test]
    fn only_absolute_uris_on_the_base_origin_are_the_same_origin() {
        let base = url("https://api.kigo.io/kigo");
        for same in [
            "https://api.kigo.io/x",
            "https://API.Kigo.io:443/x?y=1",
            "HTTPS://api.kigo.io/",
            "https://someone@api.kigo.io/x",
        ] {
            assert!(same_origin_uri(&same.parse().unwrap(), &base), "{same}");
        }
        for other in [
            "http://api.kigo.io/x",
            "https://api.kigo.io:8443/x",
            "https://api.kigo.io.evil.example/x",
            "https://api.kigo.io@evil.example/x",
            "https://evil.example/api.kigo.io",
            "/api/v1/x",
            "api.kigo.io",
        ] {
            assert!(!same_origin_uri(&other.parse().unwrap(), &base), "{other}");
        }
        let loopback = url("http://[::1]:8080");
        assert!(same_origin_uri(
            &"http://[::1]:8080/x".parse().unwrap(),
            &loopback
        ));
        assert!(!same_origin_uri(
            &"http://[::1]/x".parse().unwrap(),
            &loopback
        ));
    }

    #[test]
    fn a_path_cannot_change_the_host() {
        for path in [
            "api/v1/x",
            "@evil.example/collect",
            ".evil.example/collect",
            ":8443/x",
            "",
            "/x#fragment",
        ] {
            let joined = join_path(&url("https://api.kigo.io"), path, "path");
            assert!(
                matches!(
                    joined,
                    Err(ConfigError::Invalid {
                        setting: "path",
                        ..
                    })
                ),
                "{path}: {joined:?}"
            );
        }
    }
}
