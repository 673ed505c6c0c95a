//! TDX collateral: Intel PCS / PCCS data needed to verify a quote.
//!
//! Collateral is untrusted input. It is loaded from disk (a
//! `QuoteCollateralV3` JSON as used by dcap-qvl and PCCS clients, or a
//! directory of PCS responses written by `chrysalis attest collateral fetch`)
//! and every piece is re-verified by signature against the trust anchor on
//! every verification. Nothing here decides trust.

use std::path::Path;

use dcap_qvl::QuoteCollateralV3;
use serde::Deserialize;
use time::OffsetDateTime;

use crate::error::{Error, Result};
use crate::timefmt::{format_rfc3339, human_duration, parse_rfc3339};

/// File names inside a collateral directory (the layout `collateral fetch` writes).
pub mod files {
    /// PCS `tcb` response body: `{"tcbInfo":{…},"signature":"hex"}`.
    pub const TCB_INFO: &str = "tcbinfo.json";
    /// PEM chain from the `TCB-Info-Issuer-Chain` response header.
    pub const TCB_INFO_ISSUER_CHAIN: &str = "tcbinfo-issuer-chain.pem";
    /// PCS `qe/identity` response body: `{"enclaveIdentity":{…},"signature":"hex"}`.
    pub const QE_IDENTITY: &str = "qeidentity.json";
    /// PEM chain from the `SGX-Enclave-Identity-Issuer-Chain` header.
    pub const QE_IDENTITY_ISSUER_CHAIN: &str = "qeidentity-issuer-chain.pem";
    /// PCK CRL (DER or PEM).
    pub const PCK_CRL: &str = "pckcrl.der";
    /// PEM chain from the `SGX-PCK-CRL-Issuer-Chain` header.
    pub const PCK_CRL_ISSUER_CHAIN: &str = "pckcrl-issuer-chain.pem";
    /// Intel SGX Root CA CRL (DER or PEM).
    pub const ROOT_CA_CRL: &str = "rootcacrl.der";
    /// Simulated root (present only in collateral written by the `sim` provider).
    pub const SIM_ROOT_CA: &str = "sim-root-ca.der";
}

/// Collateral for one TDX quote.
#[derive(Debug, Clone)]
pub struct TdxCollateral {
    /// The collateral in dcap-qvl's `QuoteCollateralV3` shape.
    pub v3: QuoteCollateralV3,
    /// DER of a simulated root CA shipped with simulated collateral. It is
    /// only ever used as a [`crate::TrustAnchor::Simulated`] anchor.
    pub simulated_root_ca: Option<Vec<u8>>,
}

/// The JSON file format: `QuoteCollateralV3` plus an optional simulated root.
#[derive(Deserialize, serde::Serialize)]
struct CollateralFile {
    #[serde(flatten)]
    v3: QuoteCollateralV3,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "chrysalis_simulated_root_ca"
    )]
    simulated_root_ca: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Validity {
    issue_date: String,
    next_update: String,
}

impl TdxCollateral {
    /// Loads collateral from a JSON file or a PCS response directory.
    pub fn load(path: &Path) -> Result<Self> {
        if path.is_dir() {
            Self::from_dir(path)
        } else {
            let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
            Self::from_json(&text).map_err(|e| match e {
                Error::MalformedCollateral(m) => {
                    Error::MalformedCollateral(format!("{}: {m}", path.display()))
                }
                other => other,
            })
        }
    }

    /// Parses the `QuoteCollateralV3` JSON shape (byte fields hex-encoded).
    pub fn from_json(text: &str) -> Result<Self> {
        let file: CollateralFile = serde_json::from_str(text).map_err(|e| {
            Error::MalformedCollateral(format!(
                "not QuoteCollateralV3 JSON (line {}, column {}): {e}",
                e.line(),
                e.column()
            ))
        })?;
        let simulated_root_ca = file
            .simulated_root_ca
            .map(|h| {
                hex::decode(h.trim()).map_err(|e| {
                    Error::MalformedCollateral(format!("chrysalis_simulated_root_ca: {e}"))
                })
            })
            .transpose()?;
        Ok(Self {
            v3: file.v3,
            simulated_root_ca,
        })
    }

    /// Serialises to the JSON file format.
    pub fn to_json(&self) -> String {
        let file = CollateralFile {
            v3: self.v3.clone(),
            simulated_root_ca: self.simulated_root_ca.as_ref().map(hex::encode),
        };
        serde_json::to_string_pretty(&file).unwrap_or_default()
    }

    /// Loads a directory of PCS responses (see [`files`]).
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let read = |name: &str| -> Result<Vec<u8>> {
            let p = dir.join(name);
            std::fs::read(&p).map_err(|e| Error::io(p, e))
        };
        let read_text = |name: &str| -> Result<String> {
            String::from_utf8(read(name)?).map_err(|_| {
                Error::MalformedCollateral(format!("{}: not UTF-8 text", dir.join(name).display()))
            })
        };
        let (tcb_info, tcb_info_signature) =
            split_signed_body(&read_text(files::TCB_INFO)?, "tcbInfo", files::TCB_INFO)?;
        let (qe_identity, qe_identity_signature) = split_signed_body(
            &read_text(files::QE_IDENTITY)?,
            "enclaveIdentity",
            files::QE_IDENTITY,
        )?;
        let simulated_root_ca = match std::fs::read(dir.join(files::SIM_ROOT_CA)) {
            Ok(b) => Some(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(Error::io(dir.join(files::SIM_ROOT_CA), e)),
        };
        Ok(Self {
            v3: QuoteCollateralV3 {
                pck_crl_issuer_chain: read_text(files::PCK_CRL_ISSUER_CHAIN)?,
                root_ca_crl: crl_der(read(files::ROOT_CA_CRL)?, files::ROOT_CA_CRL)?,
                pck_crl: crl_der(read(files::PCK_CRL)?, files::PCK_CRL)?,
                tcb_info_issuer_chain: read_text(files::TCB_INFO_ISSUER_CHAIN)?,
                tcb_info,
                tcb_info_signature,
                qe_identity_issuer_chain: read_text(files::QE_IDENTITY_ISSUER_CHAIN)?,
                qe_identity,
                qe_identity_signature,
                pck_certificate_chain: None,
            },
            simulated_root_ca,
        })
    }

    /// Writes the collateral as a PCS response directory (atomically per
    /// file: written to a temporary name, then renamed).
    pub fn write_dir(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let v = &self.v3;
        let tcb = format!(
            "{{\"tcbInfo\":{},\"signature\":\"{}\"}}",
            v.tcb_info,
            hex::encode(&v.tcb_info_signature)
        );
        let qe = format!(
            "{{\"enclaveIdentity\":{},\"signature\":\"{}\"}}",
            v.qe_identity,
            hex::encode(&v.qe_identity_signature)
        );
        let mut entries: Vec<(&str, &[u8])> = vec![
            (files::TCB_INFO, tcb.as_bytes()),
            (
                files::TCB_INFO_ISSUER_CHAIN,
                v.tcb_info_issuer_chain.as_bytes(),
            ),
            (files::QE_IDENTITY, qe.as_bytes()),
            (
                files::QE_IDENTITY_ISSUER_CHAIN,
                v.qe_identity_issuer_chain.as_bytes(),
            ),
            (files::PCK_CRL, &v.pck_crl),
            (
                files::PCK_CRL_ISSUER_CHAIN,
                v.pck_crl_issuer_chain.as_bytes(),
            ),
            (files::ROOT_CA_CRL, &v.root_ca_crl),
        ];
        if let Some(root) = &self.simulated_root_ca {
            entries.push((files::SIM_ROOT_CA, root));
        }
        for (name, bytes) in entries {
            crate::fsutil::write_atomic(&dir.join(name), bytes)?;
        }
        Ok(())
    }

    /// Checks every validity window of the collateral at `now` and fails
    /// closed with a message that says how stale it is. Returns the earliest
    /// expiry. Signatures are checked by the verifier, not here.
    pub fn check_freshness(&self, now: OffsetDateTime) -> Result<OffsetDateTime> {
        let mut windows: Vec<(&str, OffsetDateTime, OffsetDateTime)> = Vec::with_capacity(4);
        for (what, json) in [
            ("TCB info", &self.v3.tcb_info),
            ("QE identity", &self.v3.qe_identity),
        ] {
            let v: Validity = serde_json::from_str(json)
                .map_err(|e| Error::MalformedCollateral(format!("{what}: {e}")))?;
            windows.push((
                what,
                parse_rfc3339(&v.issue_date)
                    .map_err(|e| Error::MalformedCollateral(format!("{what} issueDate: {e}")))?,
                parse_rfc3339(&v.next_update)
                    .map_err(|e| Error::MalformedCollateral(format!("{what} nextUpdate: {e}")))?,
            ));
        }
        for (what, der) in [
            ("PCK CRL", &self.v3.pck_crl),
            ("Root CA CRL", &self.v3.root_ca_crl),
        ] {
            let (this, next) =
                crl_window(der).map_err(|e| Error::MalformedCollateral(format!("{what}: {e}")))?;
            windows.push((what, this, next));
        }
        let mut earliest = None::<OffsetDateTime>;
        for (what, from, until) in windows {
            if now < from {
                return Err(Error::StaleCollateral(format!(
                    "{what} is not valid until {} ({} after the verification time {}); check the clock or --at",
                    format_rfc3339(from),
                    human_duration(from - now),
                    format_rfc3339(now)
                )));
            }
            if now > until {
                return Err(Error::StaleCollateral(format!(
                    "{what} expired {} ago (nextUpdate {}); fetch fresh collateral with `chrysalis attest collateral fetch`",
                    human_duration(now - until),
                    format_rfc3339(until)
                )));
            }
            earliest = Some(earliest.map_or(until, |e: OffsetDateTime| e.min(until)));
        }
        earliest.ok_or_else(|| Error::MalformedCollateral("no validity windows".into()))
    }

    /// A fingerprint of the collateral contents, for verification caches.
    pub fn fingerprint(&self) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        let v = &self.v3;
        let mut h = Sha256::new();
        for part in [
            v.pck_crl_issuer_chain.as_bytes(),
            &v.root_ca_crl,
            &v.pck_crl,
            v.tcb_info_issuer_chain.as_bytes(),
            v.tcb_info.as_bytes(),
            &v.tcb_info_signature,
            v.qe_identity_issuer_chain.as_bytes(),
            v.qe_identity.as_bytes(),
            &v.qe_identity_signature,
            self.simulated_root_ca.as_deref().unwrap_or_default(),
        ] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part);
        }
        h.finalize().into()
    }
}

/// Splits a PCS signed response `{"<key>":{…},"signature":"hex"}` into the
/// exact bytes of the signed object and the raw signature.
fn split_signed_body(text: &str, key: &str, file: &str) -> Result<(String, Vec<u8>)> {
    #[derive(Deserialize)]
    struct Signed<'a> {
        #[serde(borrow, rename = "tcbInfo", alias = "enclaveIdentity")]
        body: &'a serde_json::value::RawValue,
        signature: String,
    }
    let signed: Signed<'_> = serde_json::from_str(text.trim()).map_err(|e| {
        Error::MalformedCollateral(format!(
            "{file}: expected {{\"{key}\":{{…}},\"signature\":\"…\"}}: {e}"
        ))
    })?;
    let sig = hex::decode(signed.signature.trim())
        .map_err(|e| Error::MalformedCollateral(format!("{file}: signature: {e}")))?;
    Ok((signed.body.get().to_string(), sig))
}

/// Accepts a CRL as DER, PEM, or hex text; returns DER.
fn crl_der(bytes: Vec<u8>, file: &str) -> Result<Vec<u8>> {
    if bytes.first() == Some(&0x30) {
        return Ok(bytes);
    }
    let text = String::from_utf8_lossy(&bytes);
    if let Ok((_, pem)) = x509_parser::pem::parse_x509_pem(text.as_bytes()) {
        return Ok(pem.contents);
    }
    hex::decode(text.trim())
        .map_err(|_| Error::MalformedCollateral(format!("{file}: not a DER, PEM or hex CRL")))
}

/// (thisUpdate, nextUpdate) of a DER CRL.
fn crl_window(der: &[u8]) -> std::result::Result<(OffsetDateTime, OffsetDateTime), String> {
    use x509_parser::prelude::FromDer;
    let (_, crl) = x509_parser::revocation_list::CertificateRevocationList::from_der(der)
        .map_err(|e| format!("not a DER CRL: {e}"))?;
    let this = crl.last_update().to_datetime();
    let next = crl
        .next_update()
        .ok_or("CRL has no nextUpdate")?
        .to_datetime();
    Ok((this, next))
}
