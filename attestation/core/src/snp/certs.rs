//! SEV-SNP certificates: the VCEK/VLEK that signs a report, the ASK/ASVK and
//! ARK above it, and the roots a verifier trusts.
//!
//! AMD's hierarchy per product is `ARK (self-signed) → ASK → VCEK` for
//! chip-unique keys and `ARK → ASVK → VLEK` for keys a cloud provider loads.
//! All CA signatures are RSASSA-PSS with SHA-384; the VCEK/VLEK key is ECDSA
//! P-384. The VCEK carries the TCB it was derived for and the chip id in
//! AMD-specific extensions under `1.3.6.1.4.1.3704.1`, read here with
//! `x509-parser`.

use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::tcb::Product;
use crate::error::{Error, Result};
use crate::verified::TrustAnchor;

/// AMD extension OIDs (arc 1.3.6.1.4.1.3704.1, "AMD SEV").
pub mod oid {
    /// Structure version of the AMD extensions (INTEGER).
    pub const STRUCT_VERSION: &str = "1.3.6.1.4.1.3704.1.1";
    /// Product name, e.g. `Milan-B0` (IA5String).
    pub const PRODUCT_NAME: &str = "1.3.6.1.4.1.3704.1.2";
    /// Bootloader SPL (INTEGER).
    pub const BL_SPL: &str = "1.3.6.1.4.1.3704.1.3.1";
    /// TEE (secure OS) SPL (INTEGER).
    pub const TEE_SPL: &str = "1.3.6.1.4.1.3704.1.3.2";
    /// SNP firmware SPL (INTEGER).
    pub const SNP_SPL: &str = "1.3.6.1.4.1.3704.1.3.3";
    /// Microcode SPL (INTEGER).
    pub const UCODE_SPL: &str = "1.3.6.1.4.1.3704.1.3.8";
    /// FMC SPL, Turin and later (INTEGER).
    pub const FMC_SPL: &str = "1.3.6.1.4.1.3704.1.3.9";
    /// Hardware id = the report's chip id (raw bytes, not DER-wrapped:
    /// 64 bytes on Milan/Genoa, 8 on Turin).
    pub const HW_ID: &str = "1.3.6.1.4.1.3704.1.4";
    /// CSP id of a VLEK (IA5String).
    pub const CSP_ID: &str = "1.3.6.1.4.1.3704.1.5";
}

/// SHA-256 fingerprints of the DER encodings of AMD's production ARKs. An
/// ARK is treated as [`TrustAnchor::Production`] only if its bytes hash to
/// one of these, whatever a root set or the certificate itself claims; this
/// also guards against a dependency update silently changing the builtin
/// roots.
const PINNED_ARK_SHA256: [(Product, &str); 3] = [
    (
        Product::Milan,
        "69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd",
    ),
    (
        Product::Genoa,
        "4c6598d19c18719c5dfd4a7d335f674e5bfe1d8f800cea2cf270c10d103db2f1",
    ),
    (
        Product::Turin,
        "1f084161a44bb6d93778a904877d4819cafa5d05ef4193b2ded9dd9c73dd3f6a",
    ),
];

/// The ASVKs (VLEK issuers) are not shipped by the `sev` crate; these are
/// AMD's public certificates as served by KDS `/vlek/v1/{product}/cert_chain`.
const ASVK_PEM: [(Product, &str); 3] = [
    (Product::Milan, include_str!("amd/asvk_milan.pem")),
    (Product::Genoa, include_str!("amd/asvk_genoa.pem")),
    (Product::Turin, include_str!("amd/asvk_turin.pem")),
];

/// The role of a certificate in an SNP chain, recognised by its subject CN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum CertRole {
    /// AMD Root Key (`ARK-<product>`, self-signed).
    Ark,
    /// AMD SEV Key (`SEV-<product>`), issuer of VCEKs.
    Ask,
    /// AMD SEV VLEK Key (`SEV-VLEK-<product>`), issuer of VLEKs.
    Asvk,
    /// Versioned Chip Endorsement Key (`SEV-VCEK`).
    Vcek,
    /// Versioned Loaded Endorsement Key (`SEV-VLEK`).
    Vlek,
}

/// Which kind of endorsement key signed a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum VekKind {
    /// Chip-unique key derived from the chip secret and the TCB.
    Vcek,
    /// Key loaded by the cloud provider; not chip-unique, has no hwID.
    Vlek,
}

impl VekKind {
    /// `VCEK` or `VLEK`, for messages.
    pub fn name(self) -> &'static str {
        match self {
            VekKind::Vcek => "VCEK",
            VekKind::Vlek => "VLEK",
        }
    }
}

/// The TCB a VCEK/VLEK was issued for, from its AMD extensions. A component
/// is `None` when its extension is absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct VekTcb {
    /// `blSPL`.
    pub bootloader: Option<u8>,
    /// `teeSPL`.
    pub tee: Option<u8>,
    /// `snpSPL`.
    pub snp: Option<u8>,
    /// `ucodeSPL`.
    pub microcode: Option<u8>,
    /// `fmcSPL` (Turin).
    pub fmc: Option<u8>,
}

/// What every certificate here yields: name, role, validity. Read once with
/// `x509-parser`, which (unlike stricter parsers) accepts the zero serial
/// numbers AMD's KDS issues.
#[derive(Debug, Clone)]
pub(crate) struct CertMeta {
    pub(crate) subject_cn: String,
    pub(crate) issuer_cn: String,
    pub(crate) self_signed: bool,
    pub(crate) not_before: OffsetDateTime,
    pub(crate) not_after: OffsetDateTime,
}

impl CertMeta {
    pub(crate) fn role(&self) -> Option<CertRole> {
        role_for_cn(&self.subject_cn, self.self_signed)
    }
}

fn role_for_cn(cn: &str, self_signed: bool) -> Option<CertRole> {
    match cn {
        "SEV-VCEK" => Some(CertRole::Vcek),
        "SEV-VLEK" => Some(CertRole::Vlek),
        _ if cn.starts_with("ARK-") => Some(CertRole::Ark),
        _ if cn.starts_with("SEV-VLEK-") => Some(CertRole::Asvk),
        _ if cn.starts_with("SEV-") => Some(CertRole::Ask),
        _ if self_signed => Some(CertRole::Ark),
        _ => None,
    }
}

fn parse_x509(der: &[u8]) -> Result<X509Certificate<'_>> {
    let (rest, cert) = X509Certificate::from_der(der).map_err(|e| {
        Error::MalformedCollateral(format!("SNP certificate is not X.509 DER: {e}"))
    })?;
    if !rest.is_empty() {
        return Err(Error::MalformedCollateral(format!(
            "SNP certificate has {} trailing bytes after the DER structure",
            rest.len()
        )));
    }
    Ok(cert)
}

fn common_name(name: &x509_parser::x509::X509Name<'_>) -> String {
    name.iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or_default()
        .to_owned()
}

fn meta_of(cert: &X509Certificate<'_>) -> CertMeta {
    CertMeta {
        subject_cn: common_name(cert.subject()),
        issuer_cn: common_name(cert.issuer()),
        self_signed: cert.subject().as_raw() == cert.issuer().as_raw(),
        not_before: cert.validity().not_before.to_datetime(),
        not_after: cert.validity().not_after.to_datetime(),
    }
}

/// Reads name and validity of a DER certificate.
pub(crate) fn cert_meta(der: &[u8]) -> Result<CertMeta> {
    Ok(meta_of(&parse_x509(der)?))
}

/// The role of a DER certificate, from its subject CN (`SEV-VCEK`,
/// `SEV-VLEK`, `SEV-<product>`, `SEV-VLEK-<product>`, `ARK-<product>`;
/// otherwise a self-signed certificate is taken as an ARK).
pub fn cert_role(der: &[u8]) -> Result<CertRole> {
    let meta = cert_meta(der)?;
    meta.role().ok_or_else(|| unknown_role(&meta.subject_cn))
}

fn unknown_role(cn: &str) -> Error {
    Error::MalformedCollateral(format!(
        "certificate with subject CN {cn:?} is not part of an SEV-SNP chain (expected \
         SEV-VCEK, SEV-VLEK, SEV-<product>, SEV-VLEK-<product> or ARK-<product>)"
    ))
}

/// Splits a blob into DER certificates: a single DER certificate, or PEM
/// text with one or more `CERTIFICATE` blocks (other PEM blocks are
/// ignored).
pub fn decode_certificates(blob: &[u8]) -> Result<Vec<Vec<u8>>> {
    let is_pem = blob
        .windows(b"-----BEGIN".len())
        .any(|w| w == b"-----BEGIN");
    if !is_pem {
        parse_x509(blob)?;
        return Ok(vec![blob.to_vec()]);
    }
    let mut out = Vec::new();
    for pem in x509_parser::pem::Pem::iter_from_buffer(blob) {
        let pem = pem.map_err(|e| Error::MalformedCollateral(format!("bad PEM: {e}")))?;
        if pem.label == "CERTIFICATE" {
            parse_x509(&pem.contents)?;
            out.push(pem.contents);
        }
    }
    if out.is_empty() {
        return Err(Error::MalformedCollateral(
            "PEM text holds no CERTIFICATE block".into(),
        ));
    }
    Ok(out)
}

/// A parsed VCEK or VLEK certificate with its AMD extensions.
#[derive(Debug, Clone)]
pub struct VekCertificate {
    der: Vec<u8>,
    kind: VekKind,
    meta: CertMeta,
    product_name: Option<String>,
    tcb: VekTcb,
    hw_id: Option<Vec<u8>>,
    public_key: Vec<u8>,
}

impl VekCertificate {
    /// Parses a VCEK/VLEK given as DER or as PEM (first certificate).
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let der = decode_certificates(bytes)?
            .into_iter()
            .next()
            .ok_or_else(|| Error::MalformedCollateral("no certificate".into()))?;
        Self::from_der(&der)
    }

    /// Parses a DER VCEK/VLEK. The subject CN must be `SEV-VCEK` or
    /// `SEV-VLEK`.
    pub fn from_der(der: &[u8]) -> Result<Self> {
        let cert = parse_x509(der)?;
        let meta = meta_of(&cert);
        let kind = match meta.role() {
            Some(CertRole::Vcek) => VekKind::Vcek,
            Some(CertRole::Vlek) => VekKind::Vlek,
            _ => {
                return Err(Error::MalformedCollateral(format!(
                    "expected a VCEK or VLEK certificate (subject CN SEV-VCEK / SEV-VLEK), \
                     got subject CN {:?}",
                    meta.subject_cn
                )))
            }
        };
        let mut tcb = VekTcb::default();
        let mut product_name = None;
        let mut hw_id = None;
        for ext in cert.extensions() {
            let id = ext.oid.to_id_string();
            let spl = |name: &str| spl_value(name, ext.value).map(Some);
            match id.as_str() {
                oid::BL_SPL => tcb.bootloader = spl("blSPL")?,
                oid::TEE_SPL => tcb.tee = spl("teeSPL")?,
                oid::SNP_SPL => tcb.snp = spl("snpSPL")?,
                oid::UCODE_SPL => tcb.microcode = spl("ucodeSPL")?,
                oid::FMC_SPL => tcb.fmc = spl("fmcSPL")?,
                oid::PRODUCT_NAME => product_name = Some(ia5_value("productName", ext.value)?),
                oid::HW_ID => hw_id = Some(ext.value.to_vec()),
                _ => {}
            }
        }
        let public_key = cert.public_key().subject_public_key.data.to_vec();
        Ok(VekCertificate {
            der: der.to_vec(),
            kind,
            meta,
            product_name,
            tcb,
            hw_id,
            public_key,
        })
    }

    /// The DER encoding.
    pub fn der(&self) -> &[u8] {
        &self.der
    }
    /// VCEK or VLEK.
    pub fn kind(&self) -> VekKind {
        self.kind
    }
    /// Subject common name (`SEV-VCEK` / `SEV-VLEK`).
    pub fn subject_cn(&self) -> &str {
        &self.meta.subject_cn
    }
    /// Issuer common name (`SEV-Milan`, `SEV-VLEK-Genoa`, ...).
    pub fn issuer_cn(&self) -> &str {
        &self.meta.issuer_cn
    }
    /// The `productName` extension, e.g. `Milan-B0`.
    pub fn product_name(&self) -> Option<&str> {
        self.product_name.as_deref()
    }
    /// The product this certificate names: from the issuer CN, else from
    /// the `productName` extension.
    pub fn product(&self) -> Option<Product> {
        Product::from_cert_cn(&self.meta.issuer_cn)
            .or_else(|| self.product_name.as_deref().and_then(Product::from_name))
    }
    /// TCB SPLs from the AMD extensions.
    pub fn tcb(&self) -> VekTcb {
        self.tcb
    }
    /// The `hwID` extension (the chip id); absent on VLEKs.
    pub fn hw_id(&self) -> Option<&[u8]> {
        self.hw_id.as_deref()
    }
    /// Start of validity.
    pub fn not_before(&self) -> OffsetDateTime {
        self.meta.not_before
    }
    /// End of validity.
    pub fn not_after(&self) -> OffsetDateTime {
        self.meta.not_after
    }
    /// The subject public key as SEC1 bytes (an uncompressed P-384 point for
    /// a genuine VCEK/VLEK).
    pub fn public_key_sec1(&self) -> &[u8] {
        &self.public_key
    }
    pub(crate) fn meta(&self) -> &CertMeta {
        &self.meta
    }
}

/// The SPL extensions hold a DER INTEGER in 0..=255.
fn spl_value(name: &str, value: &[u8]) -> Result<u8> {
    let bad = |why: String| Error::MalformedCollateral(format!("VCEK {name} extension: {why}"));
    let (rest, obj) = x509_parser::der_parser::der::parse_der_integer(value)
        .map_err(|e| bad(format!("not a DER INTEGER: {e}")))?;
    if !rest.is_empty() {
        return Err(bad("trailing bytes".into()));
    }
    let n = obj.as_u32().map_err(|e| bad(e.to_string()))?;
    u8::try_from(n).map_err(|_| bad(format!("{n} does not fit in a byte")))
}

fn ia5_value(name: &str, value: &[u8]) -> Result<String> {
    let bad = |why: String| Error::MalformedCollateral(format!("VCEK {name} extension: {why}"));
    let (_, obj) = x509_parser::der_parser::der::parse_der_ia5string(value)
        .map_err(|e| bad(format!("not a DER IA5String: {e}")))?;
    Ok(obj.as_str().map_err(|e| bad(e.to_string()))?.to_owned())
}

/// The certificates that come with an SNP report: the VCEK/VLEK, and
/// optionally the ASK/ASVK and ARK (all DER). Missing CA certificates are
/// taken from the [`SnpRoots`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnpCertificates {
    /// VCEK or VLEK, DER.
    pub vek: Vec<u8>,
    /// ASK (for a VCEK) or ASVK (for a VLEK), DER.
    pub ask: Option<Vec<u8>>,
    /// ARK, DER.
    pub ark: Option<Vec<u8>>,
    /// AMD's CRL for the product (DER, signed by the ARK), when cached
    /// (`attest collateral fetch` writes `crl.der`). When present it is
    /// checked: signature, validity window, and neither the ASK/ASVK nor
    /// the VCEK/VLEK listed ([`super::crl`]).
    pub crl: Option<Vec<u8>>,
}

impl SnpCertificates {
    /// Just a VCEK/VLEK (DER); the CA certificates will come from the roots.
    pub fn new(vek_der: Vec<u8>) -> Self {
        SnpCertificates {
            vek: vek_der,
            ask: None,
            ark: None,
            crl: None,
        }
    }

    /// Adds AMD's CRL (DER), checked at verification.
    pub fn with_crl(mut self, crl_der: Vec<u8>) -> Self {
        self.crl = Some(crl_der);
        self
    }

    /// Adds the CA certificates (DER).
    pub fn with_chain(mut self, ask_der: Vec<u8>, ark_der: Vec<u8>) -> Self {
        self.ask = Some(ask_der);
        self.ark = Some(ark_der);
        self
    }

    /// Sorts any mix of DER and PEM blobs (e.g. the files a user passed: a
    /// VCEK `.der` and a KDS `cert_chain` PEM) into VCEK/VLEK, ASK/ASVK and
    /// ARK by subject CN, and a CRL (DER, or PEM `X509 CRL`) into the CRL
    /// slot. Exactly one VCEK/VLEK is required; a certificate or CRL given
    /// twice with identical bytes counts once.
    pub fn from_files_bytes(blobs: Vec<Vec<u8>>) -> Result<Self> {
        // One slot per position in the chain; a VCEK and a VLEK compete for
        // the same slot, as do an ASK and an ASVK.
        let mut vek: Option<Vec<u8>> = None;
        let mut ask: Option<Vec<u8>> = None;
        let mut ark: Option<Vec<u8>> = None;
        let mut crl: Option<Vec<u8>> = None;
        for blob in &blobs {
            let (crls, has_certificates) = super::crl::decode_crls(blob)?;
            for der in crls {
                match &crl {
                    Some(old) if *old != der => {
                        return Err(Error::MalformedCollateral(
                            "two different CRLs given; pass one".into(),
                        ))
                    }
                    _ => crl = Some(der),
                }
            }
            if !has_certificates {
                continue;
            }
            for der in decode_certificates(blob)? {
                let (slot, what) = match cert_role(&der)? {
                    CertRole::Vcek | CertRole::Vlek => (&mut vek, "VCEK/VLEK"),
                    CertRole::Ask | CertRole::Asvk => (&mut ask, "ASK/ASVK"),
                    CertRole::Ark => (&mut ark, "ARK"),
                };
                match slot {
                    Some(old) if *old != der => {
                        return Err(Error::MalformedCollateral(format!(
                            "two different {what} certificates given; pass one chain"
                        )))
                    }
                    _ => *slot = Some(der),
                }
            }
        }
        let vek = vek.ok_or_else(|| {
            Error::MalformedCollateral(format!(
                "no VCEK or VLEK certificate among the {} file(s) given",
                blobs.len()
            ))
        })?;
        Ok(SnpCertificates { vek, ask, ark, crl })
    }
}

/// One trusted root: an ARK (DER) with the ASK/ASVK to use when the
/// evidence does not carry one, the product it serves, and which kind of
/// anchor evidence chaining to it gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnpRoot {
    product: Option<Product>,
    anchor: TrustAnchor,
    ark: Vec<u8>,
    ask: Option<Vec<u8>>,
    asvk: Option<Vec<u8>>,
}

impl SnpRoot {
    /// A root for `product` (`None`: any product, as for simulated roots).
    ///
    /// `anchor` is a ceiling, not a claim: [`TrustAnchor::Production`] is
    /// only kept when `ark_der` is one of AMD's pinned ARKs (otherwise it
    /// becomes [`TrustAnchor::Custom`]), and an ARK whose subject says
    /// `SIMULATED` is always [`TrustAnchor::Simulated`].
    pub fn new(product: Option<Product>, ark_der: Vec<u8>, anchor: TrustAnchor) -> Self {
        let anchor = clamp_anchor(anchor, &ark_der);
        SnpRoot {
            product,
            anchor,
            ark: ark_der,
            ask: None,
            asvk: None,
        }
    }

    /// Sets the ASK (VCEK issuer, DER) used when evidence carries none.
    pub fn with_ask(mut self, ask_der: Vec<u8>) -> Self {
        self.ask = Some(ask_der);
        self
    }

    /// Sets the ASVK (VLEK issuer, DER) used when evidence carries none.
    pub fn with_asvk(mut self, asvk_der: Vec<u8>) -> Self {
        self.asvk = Some(asvk_der);
        self
    }

    /// The product served, `None` for any.
    pub fn product(&self) -> Option<Product> {
        self.product
    }
    /// The anchor kind evidence chaining here gets.
    pub fn anchor(&self) -> TrustAnchor {
        self.anchor
    }
    /// The ARK, DER.
    pub fn ark_der(&self) -> &[u8] {
        &self.ark
    }
    /// The pinned ASK, DER.
    pub fn ask_der(&self) -> Option<&[u8]> {
        self.ask.as_deref()
    }
    /// The pinned ASVK, DER.
    pub fn asvk_der(&self) -> Option<&[u8]> {
        self.asvk.as_deref()
    }

    pub(crate) fn serves(&self, product: Product) -> bool {
        self.product.is_none_or(|p| p == product)
    }
}

/// Whether `der` is one of AMD's production ARKs, and for which product.
pub fn pinned_ark_product(der: &[u8]) -> Option<Product> {
    let fp = hex::encode(Sha256::digest(der));
    PINNED_ARK_SHA256
        .iter()
        .find(|(_, pin)| *pin == fp)
        .map(|(p, _)| *p)
}

/// The anchor kind evidence chaining to `ark_der` may get; see [`SnpRoot::new`].
pub(crate) fn clamp_anchor(requested: TrustAnchor, ark_der: &[u8]) -> TrustAnchor {
    let says_simulated = cert_meta(ark_der)
        .map(|m| m.subject_cn.to_ascii_uppercase().contains("SIMULATED"))
        .unwrap_or(false);
    if says_simulated || requested == TrustAnchor::Simulated {
        TrustAnchor::Simulated
    } else if requested == TrustAnchor::Production && pinned_ark_product(ark_der).is_some() {
        TrustAnchor::Production
    } else {
        TrustAnchor::Custom
    }
}

/// The roots an SNP verifier trusts. A parameter of [`crate::snp::verify()`]
/// so tests and the simulator can use their own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnpRoots {
    roots: Vec<SnpRoot>,
}

impl SnpRoots {
    /// No roots at all: everything fails to verify.
    pub fn empty() -> Self {
        SnpRoots::default()
    }

    /// AMD's production ARK, ASK (from the `sev` crate's builtin
    /// certificates) and ASVK for Milan, Genoa and Turin. A builtin that does
    /// not match its pinned fingerprint is left out (fail closed).
    pub fn production() -> Self {
        use sev::certs::snp::builtin::{genoa, milan, turin};
        let builtins: [(Product, &[u8], &[u8]); 3] = [
            (Product::Milan, milan::ARK, milan::ASK),
            (Product::Genoa, genoa::ARK, genoa::ASK),
            (Product::Turin, turin::ARK, turin::ASK),
        ];
        let mut roots = SnpRoots::empty();
        for (product, ark_pem, ask_pem) in builtins {
            let ark = first_der(ark_pem);
            let Some(ark) = ark.filter(|a| pinned_ark_product(a) == Some(product)) else {
                continue;
            };
            let mut root = SnpRoot::new(Some(product), ark, TrustAnchor::Production);
            if let Some(ask) = first_der(ask_pem) {
                root = root.with_ask(ask);
            }
            let asvk = ASVK_PEM
                .iter()
                .find(|(p, _)| *p == product)
                .and_then(|(_, pem)| first_der(pem.as_bytes()));
            if let Some(asvk) = asvk {
                root = root.with_asvk(asvk);
            }
            roots.roots.push(root);
        }
        roots
    }

    /// Only a simulated root (any product), as generated by
    /// `chrysalis_sim::snp::SimSnpAuthority`.
    pub fn simulated(ark_der: Vec<u8>) -> Self {
        SnpRoots::empty().with_root(SnpRoot::new(None, ark_der, TrustAnchor::Simulated))
    }

    /// Only the given ARK for `product`, with anchor kind `anchor` (clamped
    /// as in [`SnpRoot::new`]).
    pub fn with_ark(product: Product, ark_der: Vec<u8>, anchor: TrustAnchor) -> Self {
        SnpRoots::empty().with_root(SnpRoot::new(Some(product), ark_der, anchor))
    }

    /// Adds a root; earlier roots are preferred when the evidence carries no
    /// ARK.
    pub fn with_root(mut self, root: SnpRoot) -> Self {
        self.roots.push(root);
        self
    }

    /// Adds every root of `other`.
    pub fn and(mut self, other: SnpRoots) -> Self {
        self.roots.extend(other.roots);
        self
    }

    /// All roots, in preference order.
    pub fn roots(&self) -> &[SnpRoot] {
        &self.roots
    }
}

fn first_der(pem: &[u8]) -> Option<Vec<u8>> {
    decode_certificates(pem).ok()?.into_iter().next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn production_roots_are_pinned_and_complete() {
        let roots = SnpRoots::production();
        assert_eq!(roots.roots().len(), 3);
        for (root, product) in roots.roots().iter().zip(Product::ALL) {
            assert_eq!(root.product(), Some(product));
            assert_eq!(root.anchor(), TrustAnchor::Production);
            assert_eq!(pinned_ark_product(root.ark_der()), Some(product));
            let ask = cert_meta(root.ask_der().unwrap()).unwrap();
            assert_eq!(ask.subject_cn, format!("SEV-{product}"));
            let asvk = cert_meta(root.asvk_der().unwrap()).unwrap();
            assert_eq!(asvk.subject_cn, format!("SEV-VLEK-{product}"));
            assert_eq!(cert_role(root.ark_der()).unwrap(), CertRole::Ark);
        }
    }

    #[test]
    fn a_non_pinned_ark_never_becomes_production() {
        // The Milan ASK is a real AMD certificate but not a pinned ARK.
        let ask = SnpRoots::production().roots()[0]
            .ask_der()
            .unwrap()
            .to_vec();
        let root = SnpRoot::new(Some(Product::Milan), ask, TrustAnchor::Production);
        assert_eq!(root.anchor(), TrustAnchor::Custom);
    }

    #[test]
    fn garbage_is_malformed_collateral() {
        assert!(matches!(
            decode_certificates(b"not a cert"),
            Err(Error::MalformedCollateral(_))
        ));
        assert!(matches!(
            decode_certificates(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
            Err(Error::MalformedCollateral(_))
        ));
        assert!(SnpCertificates::from_files_bytes(vec![]).is_err());
    }
}
