//! Where to connect: `https://HOST[:PORT][/…]` parsed once, at the edge.

use std::net::IpAddr;

use rustls::pki_types::ServerName;

use crate::error::{Error, Result};

/// The default HTTPS port.
pub const HTTPS_PORT: u16 = 443;

/// A peer to connect to: host name or IP address, and TCP port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// DNS name or IP address literal (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl Target {
    /// A target from a host and a port; the host must be a valid DNS name
    /// or an IP address literal.
    pub fn new(host: &str, port: u16) -> Result<Self> {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(Error::Argument("empty host".into()));
        }
        ServerName::try_from(host).map_err(|e| Error::Argument(format!("host {host:?}: {e}")))?;
        Ok(Self {
            host: host.to_string(),
            port,
        })
    }

    /// Parses `https://HOST[:PORT][/path][?query]`. Only `https` is
    /// accepted: RA-TLS is TLS. User information (`user@`) is refused, so
    /// that a URL never carries a password to a peer not yet verified.
    pub fn parse_url(url: &str) -> Result<Self> {
        let rest = match url.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("https") => rest,
            Some((scheme, _)) => {
                return Err(Error::Argument(format!(
                    "{url}: scheme {scheme:?} is not https (RA-TLS needs TLS)"
                )))
            }
            None => {
                return Err(Error::Argument(format!(
                    "{url}: expected https://HOST[:PORT]"
                )))
            }
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority = &rest[..end];
        if authority.contains('@') {
            return Err(Error::Argument(format!(
                "{url}: user information in the URL is not supported"
            )));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| Error::Argument(format!("{url}: unterminated [IPv6] host")))?;
            if h.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(Error::Argument(format!(
                    "{url}: {h:?} is not an IPv6 address"
                )));
            }
            match after {
                "" => (h, None),
                p if p.starts_with(':') => (h, Some(&p[1..])),
                _ => return Err(Error::Argument(format!("{url}: junk after ]: {after:?}"))),
            }
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        let port = match port {
            None => HTTPS_PORT,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| Error::Argument(format!("{url}: bad port {p:?}")))?,
        };
        Target::new(host, port)
    }

    /// `HOST:PORT`, with brackets around an IPv6 address.
    pub fn authority(&self) -> String {
        match self.host.parse::<IpAddr>() {
            Ok(IpAddr::V6(_)) => format!("[{}]:{}", self.host, self.port),
            _ => format!("{}:{}", self.host, self.port),
        }
    }

    /// The TLS server name (an IP address sends no SNI). Names do not
    /// identify an RA-TLS server; the evidence does.
    pub fn server_name(&self) -> Result<ServerName<'static>> {
        ServerName::try_from(self.host.clone())
            .map_err(|e| Error::Argument(format!("host {:?}: {e}", self.host)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_hosts_ports_and_paths() {
        let t = Target::parse_url("https://node.example:8443/v1?x=1").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("node.example", 8443));
        let t = Target::parse_url("HTTPS://127.0.0.1").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("127.0.0.1", 443));
        let t = Target::parse_url("https://[::1]:9000/").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 9000));
        assert_eq!(t.authority(), "[::1]:9000");
    }

    #[test]
    fn refuses_what_is_not_an_https_url() {
        for bad in [
            "http://127.0.0.1:80",
            "127.0.0.1:443",
            "https://",
            "https://:443",
            "https://h:0",
            "https://h:70000",
            "https://h:x",
            "https://user:pw@h:1",
            "https://[::1",
            "https://[zz]:1",
            "https://[::1]x",
            "https://bad host:1",
        ] {
            let e = Target::parse_url(bad).unwrap_err();
            assert!(matches!(e, Error::Argument(_)), "{bad}: {e:?}");
        }
    }

    proptest! {
        #[test]
        fn never_panics(s in ".{0,80}") {
            let _ = Target::parse_url(&s);
            let _ = Target::parse_url(&format!("https://{s}"));
        }

        #[test]
        fn host_and_port_round_trip(a in 1u8..255, b in 0u8..255, port in 1u16..) {
            let url = format!("https://10.{a}.{b}.1:{port}/x");
            let t = Target::parse_url(&url).unwrap();
            prop_assert_eq!(t.authority(), format!("10.{a}.{b}.1:{port}"));
        }
    }
}
