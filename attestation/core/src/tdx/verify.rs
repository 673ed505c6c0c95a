//! TDX quote verification: one function of quote + collateral + anchors + time.
//!
//! The cryptographic chain (PCK chain to the root with CRLs, TCB info and QE
//! identity signatures, QE report signature and binding, quote signature,
//! TCB level matching) is done by `dcap-qvl`; this module chooses the trust
//! anchor, checks collateral freshness first so that staleness gets a clear
//! message, names dcap-qvl's refusals by typed re-checks ([`super::diagnose`]), and
//! explains an out-of-date TCB component by component.

use dcap_qvl::tcb_info::{SvnComponent, TcbInfo, TcbStatus as QvlTcbStatus};
use dcap_qvl::verify::QuoteVerifier;
use time::OffsetDateTime;

use super::collateral::TdxCollateral;
pub use super::pem::pem_certificates;
use super::quote::TdxQuote;
use crate::error::{Error, Result};
use crate::verified::{
    Identity, TcbStatus, TdxIdentity, TrustAnchor, VerifiedEvidence, VerifiedParts,
};

/// DER of the Intel SGX Root CA, pinned in the binary.
///
/// Published by Intel as `Intel_SGX_Provisioning_Certification_RootCA.cer`;
/// SHA-256 of the DER: `44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3`
/// (checked by a unit test).
pub fn intel_sgx_root_ca() -> &'static [u8] {
    include_bytes!("../../roots/intel-sgx-root-ca.der")
}

/// The roots a TDX verifier trusts, each with the kind of anchor it is.
#[derive(Debug, Clone)]
pub struct TdxRoots {
    roots: Vec<(TrustAnchor, Vec<u8>)>,
}

impl TdxRoots {
    /// Only the pinned Intel SGX Root CA.
    pub fn production() -> Self {
        Self {
            roots: vec![(TrustAnchor::Production, intel_sgx_root_ca().to_vec())],
        }
    }

    /// No roots at all (add some with [`TdxRoots::with_root`]).
    pub fn empty() -> Self {
        Self { roots: Vec::new() }
    }

    /// Adds a root of the given kind (tests, private PKIs, the simulator).
    pub fn with_root(mut self, anchor: TrustAnchor, der: Vec<u8>) -> Self {
        self.roots.push((anchor, der));
        self
    }

    /// The DER roots with their anchor kinds.
    pub fn iter(&self) -> impl Iterator<Item = (TrustAnchor, &[u8])> {
        self.roots.iter().map(|(a, d)| (*a, d.as_slice()))
    }
}

/// Verifies a parsed `quote` against `collateral` at `now`.
///
/// The quote is parsed once, at the edge ([`TdxQuote::parse`] or
/// [`crate::evidence`]); dcap-qvl is handed its canonical serialisation
/// ([`TdxQuote::to_bytes`], byte-identical to the parsed input), so TDX and
/// SNP verification take the same shape: parsed evidence, collateral,
/// roots, time.
///
/// The anchor is chosen by the root certificate at the end of the quote's PCK
/// chain: it must be byte-identical to one of `roots`, or to the simulated
/// root shipped in `collateral` (then the result is
/// [`TrustAnchor::Simulated`]). Debug TDs verify (they are authentic) but are
/// reported as such; [`crate::Policy::check`] rejects them.
pub fn verify(
    quote: &TdxQuote,
    collateral: &TdxCollateral,
    roots: &TdxRoots,
    now: OffsetDateTime,
) -> Result<VerifiedEvidence> {
    let raw = quote.to_bytes();
    let (anchor, root_der) = choose_anchor(quote, collateral, roots)?;
    let collateral_expires = collateral.check_freshness(now)?;
    let now_secs = u64::try_from(now.unix_timestamp())
        .map_err(|_| Error::Encoding("verification time before 1970".into()))?;

    let td = quote.td_report();
    let report = match QuoteVerifier::new(root_der.to_vec())
        .allow_debug(true)
        .verify(&raw, &collateral.v3, now_secs)
    {
        Ok(r) => r,
        // dcap-qvl's errors are untyped text: name the failure by re-checking
        // the quote with typed checks (see `diagnose`), never by its words.
        Err(e) => {
            let chain = quote
                .pck_chain_pem()
                .map(pem_certificates)
                .transpose()?
                .unwrap_or_default();
            return Err(
                match super::diagnose::diagnose(quote, &chain, collateral, now, format!("{e:#}")) {
                    // An authentic quote from a platform older than every
                    // level Intel still lists: say which components are behind.
                    Error::Rejected(what) => {
                        let pck = pck_extension(quote)?;
                        let notes = explain_tcb(&collateral.v3.tcb_info, &pck, &td.tee_tcb_svn);
                        Error::Rejected(format!("{what}: {}", notes.join("; ")))
                    }
                    other => other,
                },
            );
        }
    };

    let tcb_status = map_status(&report.status)?;
    let pck = pck_extension(quote)?;
    let tcb_notes = if tcb_status == TcbStatus::UpToDate {
        Vec::new()
    } else {
        explain_tcb(&collateral.v3.tcb_info, &pck, &td.tee_tcb_svn)
    };

    Ok(VerifiedEvidence::from_verified_parts(VerifiedParts {
        identity: Identity::Tdx(TdxIdentity {
            mrtd: td.mrtd,
            rtmr: td.rtmr,
            mrseam: td.mrseam,
            mrconfigid: td.mrconfigid,
            mrowner: td.mrowner,
            mrownerconfig: td.mrownerconfig,
            td_attributes: td.td_attributes,
            xfam: td.xfam,
            tee_tcb_svn: td.tee_tcb_svn,
            fmspc: pck.fmspc,
        }),
        anchor,
        tcb_status,
        advisory_ids: report.advisory_ids,
        tcb_notes,
        report_data: td.report_data,
        // The whole TUD byte, not only DEBUG: dcap-qvl runs with debug
        // allowed (so that a debug TD is reported, not refused unnamed),
        // which also switches off its own check of the other TUD bits.
        debug: td.is_under_debug(),
        verified_at: now,
        collateral_expires: Some(collateral_expires),
    }))
}

fn choose_anchor<'a>(
    quote: &TdxQuote,
    collateral: &'a TdxCollateral,
    roots: &'a TdxRoots,
) -> Result<(TrustAnchor, &'a [u8])> {
    let pem = quote.pck_chain_pem().ok_or_else(|| {
        Error::Unsupported(
            "quote carries no PCK certificate chain (certification data type 5); only type 5/6 quotes are supported offline".into(),
        )
    })?;
    let chain = pem_certificates(pem)?;
    let last = chain.last().ok_or_else(|| {
        Error::verification("PCK chain", "certification data holds no certificate")
    })?;
    if let Some((anchor, der)) = roots.iter().find(|(_, der)| *der == last.as_slice()) {
        return Ok((anchor, der));
    }
    if let Some(sim) = collateral.simulated_root_ca.as_deref() {
        if sim == last.as_slice() {
            return Ok((TrustAnchor::Simulated, sim));
        }
    }
    Err(Error::verification(
        "PCK chain",
        format!(
            "chain ends at \"{}\", which is not a trusted root (expected the Intel SGX Root CA)",
            subject_of(last)
        ),
    ))
}

fn subject_of(der: &[u8]) -> String {
    use x509_parser::prelude::FromDer;
    x509_parser::certificate::X509Certificate::from_der(der)
        .map(|(_, c)| c.subject().to_string())
        .unwrap_or_else(|_| "<unparseable certificate>".into())
}

fn pck_extension(quote: &TdxQuote) -> Result<dcap_qvl::intel::PckExtension> {
    let chain = pem_certificates(quote.pck_chain_pem().unwrap_or_default())?;
    let leaf = chain
        .first()
        .ok_or_else(|| Error::verification("PCK chain", "empty"))?;
    dcap_qvl::intel::parse_pck_extension(leaf)
        .map_err(|e| Error::verification("PCK certificate SGX extension", format!("{e:#}")))
}

fn map_status(s: &str) -> Result<TcbStatus> {
    s.parse().map_err(|_| {
        Error::verification(
            "TCB status",
            format!("unknown TCB status {s:?} from the verifier"),
        )
    })
}

/// Lists which components are behind the newest UpToDate TCB level.
fn explain_tcb(
    tcb_info_json: &str,
    pck: &dcap_qvl::intel::PckExtension,
    tee_tcb_svn: &[u8; 16],
) -> Vec<String> {
    let Ok(info) = serde_json::from_str::<TcbInfo>(tcb_info_json) else {
        return vec!["TCB info could not be re-read to explain the status".into()];
    };
    let Some(latest) = info
        .tcb_levels
        .iter()
        .find(|l| l.tcb_status == QvlTcbStatus::UpToDate)
    else {
        return vec!["TCB info lists no UpToDate level".into()];
    };
    match latest.shortfalls(&pck.cpu_svn, pck.pce_svn, Some(tee_tcb_svn)) {
        Ok(short) if short.is_empty() => vec![format!(
            "platform meets the latest TCB level ({}) but a component (QE or TDX module) is behind",
            latest.tcb_date
        )],
        Ok(short) => short
            .iter()
            .map(|s| {
                let what = match s.component {
                    SvnComponent::Sgx(i) => format!("SGX TCB component {i}"),
                    SvnComponent::Tdx(i) => format!("TDX TCB component {i}"),
                    SvnComponent::PceSvn => "PCE SVN".to_string(),
                    SvnComponent::TdxModuleIsvSvn => "TDX module ISVSVN".to_string(),
                };
                format!(
                    "{what} is {} but the latest level ({}) needs {}",
                    s.have, latest.tcb_date, s.needs
                )
            })
            .collect(),
        Err(e) => vec![format!("could not compare TCB components: {e}")],
    }
}
