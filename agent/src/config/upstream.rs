//! The engine's address: loopback-only plain HTTP.
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::error::{Error, Result};

/// The engine's address: plain HTTP on a loopback address, checked at
/// start-up (the engine runs inside this confidential VM; traffic to it
/// must never leave the machine).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// The socket address connected to.
    pub addr: SocketAddr,
    /// `host:port` as sent in the `Host` header.
    pub authority: String,
}

impl Upstream {
    /// Parses `http://ADDR:PORT` (an optional trailing `/`). ADDR is an IP
    /// literal (`[::1]` for IPv6) or `localhost` (taken as 127.0.0.1, never
    /// resolved); the port defaults to 80. Anything that is not loopback is
    /// refused.
    pub fn parse(url: &str) -> Result<Self> {
        let bad = |why: &str| Error::Config(format!("upstream `{url}`: {why}"));
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            bad("must start with http:// (the engine is spoken to in plain HTTP over loopback)")
        })?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') || rest.contains('?') || rest.contains('#') {
            return Err(bad("must not have a path, query or fragment"));
        }
        if rest.contains('@') {
            return Err(bad("must not carry credentials"));
        }
        let (host, port) = split_host_port(rest).ok_or_else(|| bad("expected ADDR:PORT"))?;
        let port: u16 = match port {
            None => 80,
            Some(p) => p
                .parse()
                .map_err(|_| bad("the port is not a number in 1..=65535"))?,
        };
        if port == 0 {
            return Err(bad("port 0 is not a port"));
        }
        let ip: IpAddr = if host.eq_ignore_ascii_case("localhost") {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            host.parse().map_err(|_| {
                bad("the host must be an IP literal or `localhost` (names are not resolved)")
            })?
        };
        if !ip.is_loopback() {
            return Err(bad(&format!(
                "{ip} is not a loopback address; the engine must run inside this machine and \
                 listen on 127.0.0.0/8 or ::1"
            )));
        }
        let addr = SocketAddr::new(ip, port);
        Ok(Self {
            addr,
            authority: addr.to_string(),
        })
    }

    /// The base URL, `http://ADDR:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.authority)
    }
}

/// `host[:port]` with IPv6 literals in brackets.
fn split_host_port(s: &str) -> Option<(&str, Option<&str>)> {
    if let Some(v6) = s.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        match after {
            "" => Some((host, None)),
            p => Some((host, Some(p.strip_prefix(':')?))),
        }
    } else {
        match s.split_once(':') {
            Some((h, p)) if !p.contains(':') => Some((h, Some(p))),
            Some(_) => None,
            None => Some((s, None)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_must_be_loopback_http() {
        let u = Upstream::parse("http://127.0.0.1:8000").unwrap();
        assert_eq!(u.addr, "127.0.0.1:8000".parse().unwrap());
        assert_eq!(u.base_url(), "http://127.0.0.1:8000");
        assert_eq!(
            Upstream::parse("http://[::1]:9/").unwrap().addr,
            "[::1]:9".parse().unwrap()
        );
        assert_eq!(
            Upstream::parse("http://localhost").unwrap().addr,
            "127.0.0.1:80".parse().unwrap()
        );
        assert_eq!(
            Upstream::parse("http://127.9.9.9:1").unwrap().addr.ip(),
            "127.9.9.9".parse::<IpAddr>().unwrap()
        );
        for (url, why) in [
            ("http://10.0.0.5:8000", "not a loopback"),
            ("http://0.0.0.0:8000", "not a loopback"),
            ("http://[2001:db8::1]:8000", "not a loopback"),
            ("https://127.0.0.1:8000", "http://"),
            ("127.0.0.1:8000", "http://"),
            ("http://engine.local:8000", "IP literal"),
            ("http://127.0.0.1:8000/v1", "path"),
            ("http://127.0.0.1:0", "port 0"),
            ("http://127.0.0.1:99999", "port"),
            ("http://u:p@127.0.0.1:1", "credentials"),
            ("http://::1:80", "ADDR:PORT"),
        ] {
            let e = Upstream::parse(url).unwrap_err().to_string();
            assert!(e.contains(why), "{url}: {e}");
            assert!(e.contains(url), "{url}: {e}");
        }
    }
}
