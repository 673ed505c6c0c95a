//! The server's (or mutual client's) RA-TLS identity: a key pair generated
//! in this process, fresh evidence bound to it, and the certificate that
//! carries both; plus a resolver that swaps identities on renewal.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrysalis_attestation::provider::EvidenceProvider;
use chrysalis_attestation::Tee;
use rustls::client::ResolvesClientCert;
use rustls::pki_types::CertificateDer;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::SignatureScheme;
use time::OffsetDateTime;

use crate::cert::{CertFormat, RaTlsCertificate};
use crate::claims::{Claims, ClaimsPurpose, ImageId};
use crate::collateral::EmbeddedCollateral;
use crate::error::{Error, Result};
use crate::x509::{
    build_certificate, ratls_extensions, CertKey, CertificateParams, KeyType, SanEntry,
};

/// Default certificate lifetime.
pub const DEFAULT_VALIDITY: Duration = Duration::from_secs(24 * 3600);
/// How far notBefore is put before the creation time, for peers whose
/// clocks lag.
pub const CLOCK_SKEW: Duration = Duration::from_secs(60);
/// Default subject common name.
pub const DEFAULT_COMMON_NAME: &str = "chrysalis-ratls";

/// Options of [`RaTlsIdentity::generate`].
#[derive(Debug, Clone)]
pub struct IdentityOptions {
    /// Certificate lifetime from the creation time (default 24 h).
    pub validity: Duration,
    /// Key type (default ECDSA P-256).
    pub key_type: KeyType,
    /// Image identifiers to claim.
    pub image: Option<ImageId>,
    /// SHA-384 of the GPU evidence, once GPU attestation provides it.
    pub gpu_evidence_digest: Option<[u8; 48]>,
    /// Collateral to embed for clients without their own.
    pub collateral: Option<EmbeddedCollateral>,
    /// Subject and issuer common name.
    pub common_name: String,
    /// subjectAltName entries (default none: RA-TLS peers are identified
    /// by their evidence, not by names).
    pub subject_alt_names: Vec<SanEntry>,
    /// Creation time (default: now). Tests use it to make expired or
    /// not-yet-valid certificates.
    pub created_at: Option<OffsetDateTime>,
}

impl Default for IdentityOptions {
    fn default() -> Self {
        Self {
            validity: DEFAULT_VALIDITY,
            key_type: KeyType::default(),
            image: None,
            gpu_evidence_digest: None,
            collateral: None,
            common_name: DEFAULT_COMMON_NAME.into(),
            subject_alt_names: Vec::new(),
            created_at: None,
        }
    }
}

/// A key pair, its evidence and its RA-TLS certificate.
pub struct RaTlsIdentity {
    certified: Arc<CertifiedKey>,
    cert: RaTlsCertificate,
    cert_der: CertificateDer<'static>,
    key_type: KeyType,
}

impl std::fmt::Debug for RaTlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaTlsIdentity")
            .field("format", &self.cert.format)
            .field("key_type", &self.key_type)
            .field("tee", &self.tee())
            .field("not_before", &self.cert.not_before)
            .field("not_after", &self.cert.not_after)
            .finish_non_exhaustive()
    }
}

impl RaTlsIdentity {
    /// Generates a key pair, asks `provider` for evidence whose
    /// report_data is SHA-512 of the claims (which name the key), and
    /// builds the certificate: notBefore one minute before the creation
    /// time, notAfter `validity` after it.
    pub fn generate(provider: &dyn EvidenceProvider, opts: &IdentityOptions) -> Result<Self> {
        let key = CertKey::generate(opts.key_type)?;
        let created = whole_seconds(opts.created_at.unwrap_or_else(OffsetDateTime::now_utc))?;
        let claims = Claims {
            purpose: ClaimsPurpose::Certificate,
            tee: provider.tee(),
            spki_der: key.spki_der(),
            created_at: created,
            nonce: None,
            image: opts.image.clone(),
            gpu_evidence_digest: opts.gpu_evidence_digest,
        };
        let claims_der = claims.to_der()?;
        let evidence = evidence_for(provider, &claims_der)?;
        let (not_before, not_after) = window(created, opts.validity)?;
        let der = build_certificate(
            &key,
            &CertificateParams {
                common_name: opts.common_name.clone(),
                subject_alt_names: opts.subject_alt_names.clone(),
                not_before,
                not_after,
                critical_ext_key_usage: false,
                extensions: ratls_extensions(
                    &evidence,
                    &claims_der,
                    opts.gpu_evidence_digest.as_ref(),
                    opts.collateral.as_ref(),
                )?,
            },
        )?;
        Self::assemble(key, der)
    }

    /// An identity from a key and a certificate built for it (see
    /// [`crate::x509::build_certificate`]): the certificate must parse as
    /// an RA-TLS certificate and carry this key. Nothing is verified, so
    /// tests can serve deliberately broken certificates.
    pub fn assemble(key: CertKey, cert_der: Vec<u8>) -> Result<Self> {
        let cert = RaTlsCertificate::parse(&cert_der)?;
        if cert.spki_der != key.spki_der() {
            return Err(Error::Generation(
                "the certificate carries another public key than the key pair".into(),
            ));
        }
        let signing = key.rustls_signing_key()?;
        let cert_der = CertificateDer::from(cert_der);
        let certified = Arc::new(CertifiedKey::new(vec![cert_der.clone()], signing));
        Ok(Self {
            certified,
            cert,
            cert_der,
            key_type: key.key_type(),
        })
    }

    /// The certificate and signing key for rustls.
    pub fn certified_key(&self) -> Arc<CertifiedKey> {
        self.certified.clone()
    }

    /// The certificate, DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// The certificate, parsed.
    pub fn certificate(&self) -> &RaTlsCertificate {
        &self.cert
    }

    /// Chrysalis or Cocoon format.
    pub fn format(&self) -> CertFormat {
        self.cert.format
    }

    /// The key type.
    pub fn key_type(&self) -> KeyType {
        self.key_type
    }

    /// DER SubjectPublicKeyInfo of the key.
    pub fn spki_der(&self) -> &[u8] {
        &self.cert.spki_der
    }

    /// The claims (Chrysalis format).
    pub fn claims(&self) -> Option<&Claims> {
        self.cert.claims.as_ref()
    }

    /// The exact bytes whose SHA-512 is the evidence's report_data.
    pub fn claims_bytes(&self) -> &[u8] {
        &self.cert.claims_bytes
    }

    /// The raw evidence (TDX quote / SNP report) in the certificate.
    pub fn evidence(&self) -> &[u8] {
        &self.cert.evidence.bytes
    }

    /// The TEE of the evidence.
    pub fn tee(&self) -> Tee {
        self.cert.evidence.evidence.tee()
    }

    /// The embedded collateral, if any.
    pub fn collateral(&self) -> Option<&EmbeddedCollateral> {
        self.cert.collateral.as_ref()
    }

    /// notBefore.
    pub fn not_before(&self) -> OffsetDateTime {
        self.cert.not_before
    }

    /// notAfter: the certificate expires after this instant.
    pub fn not_after(&self) -> OffsetDateTime {
        self.cert.not_after
    }

    /// True when less than `margin` of validity is left at `now` (time to
    /// generate the next identity and swap it in).
    pub fn renewal_due(&self, now: OffsetDateTime, margin: Duration) -> bool {
        let margin = time::Duration::try_from(margin).unwrap_or(time::Duration::MAX);
        self.cert.not_after - now <= margin
    }
}

/// Asks the provider for evidence bound to `claims_bytes` and checks that
/// it is what was asked for (right report_data), so that a faulty provider
/// is caught here and not by every client.
pub(crate) fn evidence_for(
    provider: &dyn EvidenceProvider,
    claims_bytes: &[u8],
) -> Result<Vec<u8>> {
    let rd = Claims::report_data(claims_bytes);
    let raw = provider.evidence(&rd).map_err(|source| Error::Provider {
        provider: provider.name(),
        source,
    })?;
    let decoded = crate::cert::decode_evidence(&raw.bytes, true)?;
    if decoded.evidence.report_data() != rd {
        return Err(Error::Provider {
            provider: provider.name(),
            source: chrysalis_attestation::Error::Unsupported(
                "the evidence's report_data is not the one requested".into(),
            ),
        });
    }
    // Padding after a TDX quote is dropped: the certificate carries the
    // quote exactly.
    Ok(decoded.bytes)
}

pub(crate) fn whole_seconds(t: OffsetDateTime) -> Result<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp(t.unix_timestamp())
        .map_err(|e| Error::Generation(format!("time {t}: {e}")))
}

pub(crate) fn window(
    created: OffsetDateTime,
    validity: Duration,
) -> Result<(OffsetDateTime, OffsetDateTime)> {
    let skew = time::Duration::try_from(CLOCK_SKEW).unwrap_or(time::Duration::ZERO);
    let validity = time::Duration::try_from(validity)
        .ok()
        .filter(|v| v.is_positive())
        .ok_or_else(|| Error::Generation(format!("validity {validity:?} must be positive")))?;
    let not_after = created
        .checked_add(validity)
        .ok_or_else(|| Error::Generation(format!("validity {validity} overflows")))?;
    let not_before = created
        .checked_sub(skew)
        .ok_or_else(|| Error::Generation(format!("creation time {created} is out of range")))?;
    Ok((not_before, not_after))
}

/// A certificate resolver whose identity can be swapped while the server
/// runs: connections already established keep the key they started with;
/// new handshakes get the new one.
#[derive(Debug)]
pub struct ReloadableResolver {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ReloadableResolver {
    /// Serves `identity`.
    pub fn new(identity: &RaTlsIdentity) -> Self {
        Self {
            current: RwLock::new(identity.certified_key()),
        }
    }

    /// Serves `identity` from the next handshake on.
    pub fn swap(&self, identity: &RaTlsIdentity) {
        let mut w = self.current.write().unwrap_or_else(|p| p.into_inner());
        *w = identity.certified_key();
    }

    /// The certificate and key being served.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl ResolvesServerCert for ReloadableResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

impl ResolvesClientCert for ReloadableResolver {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        let ck = self.current();
        // Present the certificate only if the server accepts its scheme.
        ck.key.choose_scheme(sigschemes).map(|_| ck)
    }

    fn has_certs(&self) -> bool {
        true
    }
}
