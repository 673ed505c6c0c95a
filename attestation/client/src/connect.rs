//! The node's address, TCP and the RA-TLS handshake.

use std::sync::Arc;
use std::time::Duration;

use chrysalis_ratls::{ClientOptions, RaTlsServerVerifier, VerifiedPeer, VerifierConfig};

use crate::error::{Error, Result};

/// The TLS stream to a verified node.
pub type TlsStream = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// `https://HOST:PORT[/…]` → (host, port). IPv6 hosts in brackets.
pub fn parse_url(url: &str) -> Result<(String, u16)> {
    let bad = |reason: &str| Error::BadUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let rest = url
        .strip_prefix("https://")
        .ok_or_else(|| bad("expected https://HOST:PORT (RA-TLS needs TLS)"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, p) = v6
            .split_once("]:")
            .ok_or_else(|| bad("expected https://[IPv6]:PORT"))?;
        (h.to_string(), p)
    } else {
        authority
            .rsplit_once(':')
            .map(|(h, p)| (h.to_string(), p))
            .ok_or_else(|| bad("missing :PORT"))?
    };
    let port = port
        .parse()
        .map_err(|_| bad(&format!("bad port {port:?}")))?;
    if host.is_empty() {
        return Err(bad("missing host"));
    }
    Ok((host, port))
}

/// Connects to `url` and completes a verified TLS 1.3 handshake (ALPN
/// http/1.1) within `timeout`. The policy's rejection fails the handshake
/// (nothing is sent to a rejected node).
pub async fn connect(
    url: &str,
    verifier: Arc<VerifierConfig>,
    timeout: Duration,
) -> Result<(TlsStream, VerifiedPeer)> {
    let (host, port) = parse_url(url)?;
    let ra = Arc::new(RaTlsServerVerifier::new(verifier));
    let tls = chrysalis_ratls::client_config_with(
        ra.clone(),
        &ClientOptions {
            alpn: vec![b"http/1.1".to_vec()],
            ..Default::default()
        },
    )?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls));
    let name =
        rustls::pki_types::ServerName::try_from(host.clone()).map_err(|e| Error::BadUrl {
            url: url.to_owned(),
            reason: format!("{host}: not a valid server name: {e}"),
        })?;
    let fut = async {
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| Error::Connection {
                what: format!("connect to {host}:{port}"),
                reason: e.to_string(),
            })?;
        let _ = tcp.set_nodelay(true);
        connector.connect(name, tcp).await.map_err(Error::Handshake)
    };
    let stream = match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r?,
        Err(_) => {
            return Err(Error::TimedOut {
                what: format!("{host}:{port}: TLS handshake"),
                after: timeout,
            })
        }
    };
    let peer = ra.peer().ok_or_else(|| Error::Connection {
        what: format!("{host}:{port}"),
        reason: "handshake completed without a verified peer".into(),
    })?;
    Ok((stream, peer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("https://127.0.0.1:8443").unwrap(),
            ("127.0.0.1".into(), 8443)
        );
        assert_eq!(
            parse_url("https://[::1]:443/v1").unwrap(),
            ("::1".into(), 443)
        );
        for bad in ["http://x:1", "https://x", "https://:80", "https://x:port"] {
            let e = parse_url(bad).unwrap_err();
            assert!(matches!(e, Error::BadUrl { .. }), "{bad}: {e}");
            assert!(e.to_string().starts_with(bad), "{e}");
        }
    }
}
