//! rustls integration: the two certificate verifiers (client side and
//! server side of mutual RA-TLS) and TLS 1.3-only configurations.
//!
//! The handshake's CertificateVerify signature, checked with the ring
//! provider against the certificate's SubjectPublicKeyInfo, proves that the
//! peer holds the attested key; the verifiers prove that the key is the one
//! the TEE bound in its evidence.

use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption;
use rustls::pki_types::{CertificateDer, ServerName, SubjectPublicKeyInfoDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::NoServerSessionStorage;
use rustls::{
    ClientConfig, DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme,
};
use time::OffsetDateTime;
use x509_parser::nom::Parser;

use crate::crypto::algorithms;
use crate::error::{Error, Result};
use crate::identity::{RaTlsIdentity, ReloadableResolver};
use crate::peer::VerifiedPeer;
use crate::verify::{verify_certificate_der, VerifierConfig};

/// ALPN protocols offered by default: HTTP/2, then HTTP/1.1.
pub const DEFAULT_ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

pub use crate::crypto::provider;

/// Shared by both verifiers.
#[derive(Debug)]
struct Core {
    config: Arc<VerifierConfig>,
    last: Mutex<Option<VerifiedPeer>>,
    /// The last certificate accepted and its SPKI: rustls asks for the
    /// handshake signature right after the certificate, so this usually
    /// spares parsing the certificate again. Compared byte for byte, so a
    /// concurrent handshake with another certificate just misses.
    last_spki: Mutex<Option<(Vec<u8>, Vec<u8>)>>,
}

impl Core {
    fn verify(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: usize,
        now: UnixTime,
    ) -> Result<()> {
        let result = if intermediates != 0 {
            Err(Error::cert(format!(
                "RA-TLS certificates are self-signed; the peer sent {intermediates} more certificate(s)"
            )))
        } else {
            let now = self.config.time_or(unix_to_datetime(now));
            verify_certificate_der(end_entity, &self.config, now)
        };
        // A failed verification clears the slot: it never shows a peer
        // that this verifier did not just accept.
        let (slot_value, outcome) = match result {
            Ok(peer) => {
                if let Ok(mut memo) = self.last_spki.lock() {
                    *memo = Some((end_entity.to_vec(), peer.spki_der().to_vec()));
                }
                (Some(peer), Ok(()))
            }
            Err(e) => (None, Err(e)),
        };
        if let Ok(mut slot) = self.last.lock() {
            *slot = slot_value;
        }
        outcome
    }

    fn verify_tls13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let spki = self.spki_for(cert).map_err(Error::into_rustls)?;
        rustls::crypto::verify_tls13_signature_with_raw_key(
            message,
            &SubjectPublicKeyInfoDer::from(spki.as_slice()),
            dss,
            algorithms(),
        )
        .map_err(|e| Error::HandshakeSignature(e.to_string()).into_rustls())
    }

    /// The certificate's SPKI: from the memo when it is the certificate
    /// just accepted, else parsed.
    fn spki_for(&self, cert: &[u8]) -> Result<Vec<u8>> {
        let memo = self.last_spki.lock().ok().and_then(|m| {
            m.as_ref()
                .filter(|(der, _)| der.as_slice() == cert)
                .map(|(_, spki)| spki.clone())
        });
        match memo {
            Some(s) => Ok(s),
            None => spki_of(cert),
        }
    }

    fn peer_of(&self, certs: Option<&[CertificateDer<'_>]>) -> Result<VerifiedPeer> {
        match certs {
            Some([one]) => verify_certificate_der(
                one,
                &self.config,
                self.config.time_or(OffsetDateTime::now_utc()),
            ),
            Some(more) => Err(Error::cert(format!(
                "expected one self-signed certificate, the peer sent {}",
                more.len()
            ))),
            None => Err(Error::cert("the peer presented no certificate")),
        }
    }
}

/// The SubjectPublicKeyInfo of a certificate (parsed without extensions).
fn spki_of(cert: &[u8]) -> Result<Vec<u8>> {
    let (_, c) = x509_parser::certificate::X509CertificateParser::new()
        .with_deep_parse_extensions(false)
        .parse(cert)
        .map_err(|e| Error::cert(format!("not a DER X.509 certificate: {e}")))?;
    Ok(c.public_key().raw.to_vec())
}

fn unix_to_datetime(t: UnixTime) -> OffsetDateTime {
    i64::try_from(t.as_secs())
        .ok()
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// Client side: verifies the server's RA-TLS certificate.
///
/// It remembers the last peer it accepted ([`RaTlsServerVerifier::peer`]);
/// create one verifier (and [`client_config`]) per connection when you
/// need the identity of that connection — cheap, since the anchors, policy
/// and cache are shared through the `Arc<VerifierConfig>`. With a shared
/// verifier use [`RaTlsServerVerifier::peer_of`] with the connection's
/// peer certificates (a cache hit).
///
/// The server name is not checked: an RA-TLS server is identified by its
/// evidence (measurements), not by a name a CA vouched for.
#[derive(Debug)]
pub struct RaTlsServerVerifier {
    core: Core,
}

impl RaTlsServerVerifier {
    /// A verifier with this configuration.
    pub fn new(config: Arc<VerifierConfig>) -> Self {
        Self {
            core: Core {
                config,
                last: Mutex::new(None),
                last_spki: Mutex::new(None),
            },
        }
    }

    /// The last peer this verifier accepted.
    pub fn peer(&self) -> Option<VerifiedPeer> {
        self.core.last.lock().ok().and_then(|p| p.clone())
    }

    /// Verifies a connection's peer certificates again (from the cache
    /// when enabled) and returns the peer.
    pub fn peer_of(&self, certs: Option<&[CertificateDer<'_>]>) -> Result<VerifiedPeer> {
        self.core.peer_of(certs)
    }

    /// The configuration.
    pub fn config(&self) -> &Arc<VerifierConfig> {
        &self.core.config
    }
}

impl ServerCertVerifier for RaTlsServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.core
            .verify(end_entity, intermediates.len(), now)
            .map(|()| ServerCertVerified::assertion())
            .map_err(Error::into_rustls)
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(Error::Tls12NotSupported.into_rustls())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.core.verify_tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        algorithms().supported_schemes()
    }
}

/// Server side of mutual RA-TLS: verifies the client's RA-TLS certificate.
///
/// A server verifier is shared by every connection of a listener, so it
/// keeps no per-connection slot: after the handshake call
/// [`RaTlsClientVerifier::peer_of`] with the connection's peer
/// certificates (a cache hit).
#[derive(Debug)]
pub struct RaTlsClientVerifier {
    core: Core,
}

impl RaTlsClientVerifier {
    /// A verifier with this configuration.
    pub fn new(config: Arc<VerifierConfig>) -> Self {
        Self {
            core: Core {
                config,
                last: Mutex::new(None),
                last_spki: Mutex::new(None),
            },
        }
    }

    /// Verifies a connection's peer certificates again (from the cache
    /// when enabled) and returns the peer.
    pub fn peer_of(&self, certs: Option<&[CertificateDer<'_>]>) -> Result<VerifiedPeer> {
        self.core.peer_of(certs)
    }

    /// The configuration.
    pub fn config(&self) -> &Arc<VerifierConfig> {
        &self.core.config
    }
}

impl ClientCertVerifier for RaTlsClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // Self-signed certificates: there is no CA to name.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.core
            .verify(end_entity, intermediates.len(), now)
            .map(|()| ClientCertVerified::assertion())
            .map_err(Error::into_rustls)
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(Error::Tls12NotSupported.into_rustls())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.core.verify_tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        algorithms().supported_schemes()
    }
}

/// Options of [`client_config_with`].
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// ALPN protocols, most preferred first (default: h2, http/1.1).
    pub alpn: Vec<Vec<u8>>,
    /// The client's own RA-TLS certificate, for mutual RA-TLS.
    pub client_identity: Option<Arc<ReloadableResolver>>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            alpn: DEFAULT_ALPN.iter().map(|p| p.to_vec()).collect(),
            client_identity: None,
        }
    }
}

/// A client configuration verifying the server with `verifier`: TLS 1.3
/// only, no session resumption (every connection verifies the evidence),
/// no early data, ALPN h2 and http/1.1.
pub fn client_config(verifier: Arc<RaTlsServerVerifier>) -> Result<ClientConfig> {
    client_config_with(verifier, &ClientOptions::default())
}

/// [`client_config`] with options (ALPN, client certificate).
pub fn client_config_with(
    verifier: Arc<RaTlsServerVerifier>,
    opts: &ClientOptions,
) -> Result<ClientConfig> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut cfg = match &opts.client_identity {
        Some(r) => builder.with_client_cert_resolver(r.clone()),
        None => builder.with_no_client_auth(),
    };
    cfg.resumption = Resumption::disabled();
    cfg.enable_early_data = false;
    cfg.alpn_protocols = opts.alpn.clone();
    Ok(cfg)
}

/// A server configuration presenting `identity`: TLS 1.3 only, no session
/// tickets, no session cache, ALPN h2 and http/1.1; with `client_verifier`
/// the client must present an RA-TLS certificate (mutual RA-TLS).
///
/// The certificate is served through a [`ReloadableResolver`] (rustls
/// refuses certificates with unknown critical extensions in
/// `with_single_cert`); use [`server_config_with`] to keep the resolver and
/// renew the identity later.
pub fn server_config(
    identity: &RaTlsIdentity,
    client_verifier: Option<Arc<RaTlsClientVerifier>>,
) -> Result<ServerConfig> {
    server_config_with(
        Arc::new(ReloadableResolver::new(identity)),
        client_verifier,
        &DEFAULT_ALPN.iter().map(|p| p.to_vec()).collect::<Vec<_>>(),
    )
}

/// [`server_config`] with a resolver the caller keeps (to swap identities
/// without dropping connections) and explicit ALPN protocols.
pub fn server_config_with(
    resolver: Arc<ReloadableResolver>,
    client_verifier: Option<Arc<RaTlsClientVerifier>>,
    alpn: &[Vec<u8>],
) -> Result<ServerConfig> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?;
    let builder = match client_verifier {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    let mut cfg = builder.with_cert_resolver(resolver);
    cfg.session_storage = Arc::new(NoServerSessionStorage {});
    cfg.send_tls13_tickets = 0;
    cfg.max_early_data_size = 0;
    cfg.alpn_protocols = alpn.to_vec();
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrysalis_attestation::{Policy, Tee};
    use chrysalis_sim::SimProvider;

    #[test]
    fn spki_memo_is_keyed_by_the_certificate_bytes() {
        let sim = SimProvider::new(Tee::Tdx).unwrap();
        let collateral =
            chrysalis_attestation::verifier::Collateral::Tdx(sim.tdx_collateral().unwrap());
        let opts = crate::IdentityOptions::default();
        let a = RaTlsIdentity::generate(&sim, &opts).unwrap();
        let b = RaTlsIdentity::generate(&sim, &opts).unwrap();
        let cfg = VerifierConfig::new(Policy::default().allow_simulated(true))
            .with_collateral(collateral);
        let v = RaTlsServerVerifier::new(Arc::new(cfg));
        let now = UnixTime::now();
        v.core.verify(a.cert_der(), 0, now).unwrap();
        assert_eq!(v.core.spki_for(a.cert_der()).unwrap(), a.spki_der());
        // Another certificate than the one just accepted: parsed, not memoised.
        assert_eq!(v.core.spki_for(b.cert_der()).unwrap(), b.spki_der());
        assert!(v.core.spki_for(b"junk").is_err());
        // A failed verification clears the peer slot.
        assert!(v.peer().is_some());
        assert!(v.core.verify(a.cert_der(), 1, now).is_err());
        assert!(v.peer().is_none());
    }
}
