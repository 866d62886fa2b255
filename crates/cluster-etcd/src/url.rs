//! `--cluster` URLs: `etcd://HOST:PORT[,HOST:PORT…][/PREFIX]`.
//!
//! The endpoints are etcd's client URLs (plain HTTP); the optional path is the key
//! prefix under which everything of this cluster lives (default `/sundial/`, always
//! normalised to start and end with `/`).

use std::fmt;
use std::str::FromStr;

use crate::ClusterError;

/// A parsed `etcd://` cluster URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterUrl {
    /// Endpoints as `http://host:port`.
    pub endpoints: Vec<String>,
    /// Key prefix, starting and ending with `/`.
    pub prefix: String,
}

impl FromStr for ClusterUrl {
    type Err = ClusterError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = |reason: &str| ClusterError::Url {
            url: text.to_owned(),
            reason: reason.to_owned(),
        };
        let rest = text
            .strip_prefix("etcd://")
            .ok_or_else(|| bad("it must start with etcd:// (e.g. etcd://127.0.0.1:2379)"))?;
        let (hosts, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let mut endpoints = Vec::new();
        for (index, host) in hosts.split(',').enumerate() {
            let host = host.trim();
            let Some((name, port)) = host.rsplit_once(':') else {
                return Err(bad(&format!(
                    "endpoint {} (`{host}`) needs HOST:PORT",
                    index + 1
                )));
            };
            if name.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
                return Err(bad(&format!(
                    "endpoint {} (`{host}`) needs a host and a port from 1 to 65535",
                    index + 1
                )));
            }
            endpoints.push(format!("http://{host}"));
        }
        let prefix = match path.trim_matches('/') {
            "" => "/sundial/".to_owned(),
            p => {
                if p.chars().any(|c| c.is_whitespace() || c == '?' || c == '#') {
                    return Err(bad("the key prefix must not contain spaces, `?` or `#`"));
                }
                format!("/{p}/")
            }
        };
        Ok(Self { endpoints, prefix })
    }
}

impl fmt::Display for ClusterUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hosts: Vec<&str> = self
            .endpoints
            .iter()
            .map(|e| e.trim_start_matches("http://"))
            .collect();
        write!(
            f,
            "etcd://{}{}",
            hosts.join(","),
            self.prefix.trim_end_matches('/')
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_endpoints_and_prefix() {
        let url: ClusterUrl = "etcd://127.0.0.1:2379,10.0.0.2:22379".parse().expect("ok");
        assert_eq!(
            url.endpoints,
            ["http://127.0.0.1:2379", "http://10.0.0.2:22379"]
        );
        assert_eq!(url.prefix, "/sundial/");
        let url: ClusterUrl = "etcd://h:1/team/a/".parse().expect("ok");
        assert_eq!(url.prefix, "/team/a/");
        assert_eq!(url.to_string(), "etcd://h:1/team/a");
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        for (text, needle) in [
            ("http://h:1", "etcd://"),
            ("etcd://h", "endpoint 1"),
            ("etcd://h:1,h2", "endpoint 2"),
            ("etcd://h:0", "port"),
            ("etcd://:1", "host"),
            ("etcd://h:1/a b", "prefix"),
        ] {
            let e = text.parse::<ClusterUrl>().expect_err(text).to_string();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }
}
