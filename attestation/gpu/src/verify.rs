//! Verification of GPU evidence: one function of evidence + collateral
//! (pinned roots, RIMs, OCSP) + policy + nonce + time, producing a
//! [`VerifiedGpu`] that only this module can construct.
//!
//! Steps for one GPU ([`verify_gpu`]):
//! 1. decode the report and the device chain (once);
//! 2. the chain verifies to the pinned NVIDIA Device Identity CA at `at`;
//! 3. the report's ECDSA P-384 signature verifies with the leaf key;
//! 4. the request nonce equals the caller's nonce;
//! 5. the RIMs (driver and VBIOS, chosen by the report's versions; with a
//!    RIM service client, those the collateral lacks are fetched by the ids
//!    the report gives, see [`crate::rim_service`]) verify (XML-DSig +
//!    signer chain to the pinned CoRIM root) and describe this chip;
//!    every active golden measurement is compared with the report
//!    (mismatches beyond `max_measurement_mismatches` fail);
//! 6. OCSP for the device chain and the RIM signer chains per policy
//!    (`revoked`/`unknown` always fail; missing fails only when required).
//!
//! [`check_policy`] then judges the authentic result (CC mode, dev tools,
//! minimum driver version): failures there are *rejections* (exit 4), not
//! verification failures (exit 3).

use ::time::OffsetDateTime;
use chrysalis_attestation::runtime_events::GpuEventState;
use p384::ecdsa::signature::Verifier;
use p384::ecdsa::Signature;
use serde::Serialize;
use sha2::{Digest, Sha384};

use crate::bundle::{evidence_digest, CcState, GpuEvidence, GpuEvidenceBundle};
use crate::certs::{self, VerifiedChain};
use crate::error::{Error, Result};
use crate::evidence::{AttestationReport, NONCE_LEN, OPAQUE_NVDEC0_STATUS};
use crate::ocsp::{CertRevocation, OcspCheck, OcspClient};
use crate::policy::{version_at_least, GpuPolicy, OcspRequirement};
use crate::rim::{self, Rim, VerifiedRim};
use crate::rim_service::{RimIds, RimServiceClient};

/// NVDEC0 status value meaning "disabled" (measurement 35 is then not
/// compared, as NVIDIA's verifier does).
const NVDEC0_DISABLED: u8 = 0x55;

/// What verification needs besides the evidence: trust anchors, RIMs and
/// an OCSP client.
#[derive(Debug, Clone)]
pub struct Collateral {
    device_root: Vec<u8>,
    rim_root: Vec<u8>,
    rims: Vec<Rim>,
    ocsp: Option<OcspClient>,
    rim_service: Option<RimServiceClient>,
}

impl Collateral {
    /// The pinned NVIDIA roots, the given RIMs, no OCSP client.
    pub fn new(rims: Vec<Rim>) -> Self {
        Collateral {
            device_root: certs::NVIDIA_DEVICE_ROOT_DER.to_vec(),
            rim_root: certs::NVIDIA_RIM_ROOT_DER.to_vec(),
            rims,
            ocsp: None,
            rim_service: None,
        }
    }
    /// The pinned NVIDIA roots and the RIMs read from `paths` (each RIM
    /// named by its path in errors), checking revocation with `ocsp`. What
    /// the agent, `chrysalis verify` and `chrysalis gpu verify` all load.
    pub fn from_rim_files<P: AsRef<std::path::Path>>(
        paths: &[P],
        ocsp: OcspClient,
    ) -> Result<Self> {
        let mut rims = Vec::with_capacity(paths.len());
        for p in paths {
            let p = p.as_ref();
            let bytes = std::fs::read(p).map_err(|source| Error::Io {
                path: p.display().to_string(),
                source,
            })?;
            rims.push(Rim::parse(&p.display().to_string(), &bytes)?);
        }
        Ok(Self::new(rims).with_ocsp(ocsp))
    }

    /// Use this OCSP client (cache and/or network).
    pub fn with_ocsp(mut self, client: OcspClient) -> Self {
        self.ocsp = Some(client);
        self
    }
    /// Fetch the RIMs a report needs and this collateral lacks (no RIM of
    /// the report's driver or VBIOS version) from a RIM service, by the ids
    /// the report gives. Fetched RIMs are checked exactly like given ones;
    /// when a fetch fails, verification fails with
    /// [`Error::RimService`](crate::Error::RimService) naming the id and URL.
    pub fn with_rim_service(mut self, client: RimServiceClient) -> Self {
        self.rim_service = Some(client);
        self
    }
    /// The RIM service client, if any.
    pub fn rim_service(&self) -> Option<&RimServiceClient> {
        self.rim_service.as_ref()
    }
    /// Replace the pinned device root (tests with generated roots only).
    pub fn with_device_root(mut self, der: Vec<u8>) -> Self {
        self.device_root = der;
        self
    }
    /// The RIMs.
    pub fn rims(&self) -> &[Rim] {
        &self.rims
    }
}

/// Which RIM was used for which component and how the measurements compared.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RimMatch {
    /// Driver RIM (tagId, version), if compared.
    pub driver_rim: Option<RimRef>,
    /// VBIOS RIM (tagId, version), if compared.
    pub vbios_rim: Option<RimRef>,
    /// How many active golden measurements were compared.
    pub compared: usize,
    /// Indexes (RIM numbering, 0-based) that differ.
    pub mismatched: Vec<u16>,
    /// Whether the RIM versions equal the report's driver/VBIOS versions.
    pub versions_match: bool,
}

/// A RIM named in a result.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RimRef {
    /// SWID tagId.
    pub tag_id: String,
    /// colloquialVersion.
    pub version: String,
    /// File name it was read from.
    pub name: String,
}

/// OCSP outcome for one GPU.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct OcspOutcome {
    /// Verified answers (all `good` if verification succeeded).
    pub checks: Vec<OcspCheck>,
    /// Why some or all certificates were not checked, if so.
    pub not_checked: Option<String>,
}

/// GPU evidence that passed verification. No public constructor.
#[derive(Debug, Clone, Serialize)]
pub struct VerifiedGpu {
    index: u32,
    model: String,
    name: Option<String>,
    cc: Option<CcState>,
    driver_version: Option<String>,
    vbios_version: Option<String>,
    nonce: String,
    report_sha384: String,
    /// SHA-384 over the signed measurement blocks (index, value type,
    /// length, value of each, in report order): the GPU's measured state
    /// without the per-request nonce.
    measurements_sha384: String,
    device_chain: Vec<String>,
    rim: Option<RimMatch>,
    ocsp: OcspOutcome,
}

impl VerifiedGpu {
    /// NVML index.
    pub fn index(&self) -> u32 {
        self.index
    }
    /// Chip model from the device certificate (e.g. `GH100`).
    pub fn model(&self) -> &str {
        &self.model
    }
    /// Driver-reported product name.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
    /// Driver-reported CC state, if the evidence carried it.
    pub fn cc(&self) -> Option<CcState> {
        self.cc
    }
    /// Driver version from the signed report.
    pub fn driver_version(&self) -> Option<&str> {
        self.driver_version.as_deref()
    }
    /// VBIOS version from the signed report.
    pub fn vbios_version(&self) -> Option<&str> {
        self.vbios_version.as_deref()
    }
    /// The RIM comparison, if RIMs were compared.
    pub fn rim(&self) -> Option<&RimMatch> {
        self.rim.as_ref()
    }
    /// The OCSP outcome.
    pub fn ocsp(&self) -> &OcspOutcome {
        &self.ocsp
    }
    /// Subjects of the device chain, leaf first.
    pub fn device_chain(&self) -> &[String] {
        &self.device_chain
    }
}

/// All GPUs of a bundle, verified and accepted by the policy. No public
/// constructor; required by [`crate::GpuEvidenceSource::set_ready`].
#[derive(Debug, Clone, Serialize)]
pub struct VerifiedGpuSet {
    gpus: Vec<VerifiedGpu>,
    bundle_sha384: String,
    #[serde(skip)]
    digest: [u8; 48],
}

impl VerifiedGpuSet {
    /// The verified GPUs.
    pub fn gpus(&self) -> &[VerifiedGpu] {
        &self.gpus
    }
    /// SHA-384 of the bundle JSON (the RA-TLS claim `gpuEvidenceDigest`:
    /// binds the served bundle, nonce included, to the certificate).
    pub fn bundle_digest(&self) -> &[u8; 48] {
        &self.digest
    }

    /// The GPU state this boot's `gpu` RTMR3 event commits to
    /// (`chrysalis_attestation::runtime_events::GpuEventState`): the GPU
    /// count, the driver version all GPUs reported, whether every GPU has CC
    /// on and whether any has dev tools on (or did not say). No nonce, no
    /// time, nothing card-specific: two boots of the same configuration give
    /// the same state, which `chrysalis measure image` predicts. A client
    /// recomputes it from the GPU evidence it verified itself.
    pub fn event_state(&self) -> GpuEventState {
        let mut drivers: Vec<&str> = self
            .gpus
            .iter()
            .map(|g| g.driver_version.as_deref().unwrap_or("?"))
            .collect();
        drivers.sort_unstable();
        drivers.dedup();
        GpuEventState {
            cc: !self.gpus.is_empty()
                && self
                    .gpus
                    .iter()
                    .all(|g| g.cc.is_some_and(|c| c.system_cc_enabled)),
            devtools: self
                .gpus
                .iter()
                .any(|g| g.cc.is_none_or(|c| c.devtools_mode)),
            driver: drivers.join(","),
            gpus: u32::try_from(self.gpus.len()).unwrap_or(u32::MAX),
        }
    }
}

fn model_from_leaf(chain: &VerifiedChain) -> String {
    let subj = chain.subjects().first().cloned().unwrap_or_default();
    subj.split(',')
        .find_map(|p| p.trim().strip_prefix("CN=").map(str::to_string))
        .and_then(|cn| cn.split_whitespace().next().map(str::to_string))
        .unwrap_or(subj)
}

fn is_vbios_version(v: &str) -> bool {
    let parts: Vec<&str> = v.split('.').collect();
    parts.len() == 5
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()))
}

fn pick<'a>(
    rims: &[&'a Rim],
    want_vbios: bool,
    version: Option<&str>,
    what: &str,
) -> Result<Option<&'a Rim>> {
    let of_kind: Vec<&Rim> = rims
        .iter()
        .copied()
        .filter(|r| is_vbios_version(&r.version) == want_vbios)
        .collect();
    if let Some(v) = version {
        if let Some(r) = of_kind.iter().find(|r| r.version.eq_ignore_ascii_case(v)) {
            return Ok(Some(r));
        }
    }
    match of_kind.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(one)),
        _ => Err(Error::RimMismatch(format!(
            "{} {what} RIMs given and none has version {}",
            of_kind.len(),
            version.unwrap_or("(unknown)")
        ))),
    }
}

/// Whether `rims` hold one of this kind and exactly this version.
fn has_version(rims: &[Rim], want_vbios: bool, version: &str) -> bool {
    rims.iter().any(|r| {
        is_vbios_version(&r.version) == want_vbios && r.version.eq_ignore_ascii_case(version)
    })
}

/// The RIMs fetched from the collateral's RIM service for what the report
/// needs and the collateral lacks (none without a service).
fn fetch_missing(
    report: &AttestationReport,
    model: &str,
    collateral: &Collateral,
    at: OffsetDateTime,
) -> Result<Vec<Rim>> {
    let Some(service) = &collateral.rim_service else {
        return Ok(Vec::new());
    };
    let ids = RimIds::for_report(report, model)?;
    let mut out = Vec::new();
    for (id, vbios) in [(&ids.driver, false), (&ids.vbios, true)] {
        if !has_version(&collateral.rims, vbios, id.version()) {
            out.push(service.fetch(id, &collateral.rim_root, at)?);
        }
    }
    Ok(out)
}

fn rim_ref(r: &Rim) -> RimRef {
    RimRef {
        tag_id: r.tag_id.clone(),
        version: r.version.clone(),
        name: r.name.clone(),
    }
}

fn compare_measurements(
    report: &AttestationReport,
    model: &str,
    collateral: &Collateral,
    policy: &GpuPolicy,
    at: OffsetDateTime,
) -> Result<(Option<RimMatch>, Vec<VerifiedRim>)> {
    let driver_v = report.driver_version();
    let vbios_v = report.vbios_version();
    let fetched = fetch_missing(report, model, collateral, at)?;
    let pool: Vec<&Rim> = collateral.rims.iter().chain(&fetched).collect();
    let driver = pick(&pool, false, driver_v.as_deref(), "driver")?;
    let vbios = pick(&pool, true, vbios_v.as_deref(), "VBIOS")?;
    let (driver, vbios) = match (driver, vbios) {
        (Some(d), Some(v)) => (d, v),
        (d, v) => {
            if policy.require_rims || d.is_some() || v.is_some() {
                return Err(Error::RimMismatch(format!(
                    "both a driver RIM and a VBIOS RIM are needed (driver RIM: {}, VBIOS RIM: {})",
                    if d.is_some() { "given" } else { "missing" },
                    if v.is_some() { "given" } else { "missing" }
                )));
            }
            return Ok((None, Vec::new()));
        }
    };
    let mut verified = Vec::new();
    for r in [driver, vbios] {
        verified.push(rim::verify_rim(r, &collateral.rim_root, at)?);
        if !r.product.eq_ignore_ascii_case(model) {
            return Err(Error::RimMismatch(format!(
                "RIM {} is for {}, the GPU is {model}",
                r.name, r.product
            )));
        }
    }
    let versions_match = driver_v.as_deref().is_some_and(|v| v == driver.version)
        && vbios_v
            .as_deref()
            .is_some_and(|v| v.eq_ignore_ascii_case(&vbios.version));
    let skip_35 = report.opaque(OPAQUE_NVDEC0_STATUS) == Some(&[NVDEC0_DISABLED][..]);
    let mut golden = Vec::new();
    for m in driver.active() {
        if vbios.active().any(|x| x.index == m.index) {
            return Err(Error::RimMismatch(format!(
                "driver and VBIOS RIMs both have an active measurement at index {}",
                m.index
            )));
        }
        golden.push(m);
    }
    golden.extend(vbios.active());
    golden.sort_by_key(|m| m.index);
    let mut mismatched = Vec::new();
    let mut compared = 0;
    for m in golden {
        if m.index == 35 && skip_35 {
            continue;
        }
        compared += 1;
        let ok = report.measurement(m.index).is_some_and(|rt| {
            rt.len() == m.size && m.alternatives.iter().any(|a| a.as_slice() == rt)
        });
        if !ok {
            mismatched.push(m.index);
        }
    }
    if mismatched.len() > policy.max_measurement_mismatches as usize {
        return Err(Error::MeasurementMismatch {
            indexes: mismatched,
            tolerated: policy.max_measurement_mismatches,
        });
    }
    Ok((
        Some(RimMatch {
            driver_rim: Some(rim_ref(driver)),
            vbios_rim: Some(rim_ref(vbios)),
            compared,
            mismatched,
            versions_match,
        }),
        verified,
    ))
}

fn check_ocsp(
    chains: &[&[Vec<u8>]],
    collateral: &Collateral,
    policy: &GpuPolicy,
    at: OffsetDateTime,
) -> Result<OcspOutcome> {
    if policy.ocsp == OcspRequirement::Off {
        return Ok(OcspOutcome {
            checks: vec![],
            not_checked: Some("OCSP is off by policy".into()),
        });
    }
    let Some(client) = &collateral.ocsp else {
        if policy.ocsp == OcspRequirement::Required {
            return Err(Error::Ocsp(
                "policy requires OCSP but no OCSP cache or network access was given".into(),
            ));
        }
        return Ok(OcspOutcome {
            checks: vec![],
            not_checked: Some("no OCSP cache or network access given".into()),
        });
    };
    let mut checks = Vec::new();
    let mut missing = Vec::new();
    for chain in chains {
        // Every certificate but the pinned root (the last one).
        for w in chain.windows(2) {
            match client.status(&w[0], &w[1], at) {
                Ok(c) => {
                    match &c.status {
                        CertRevocation::Good => {}
                        CertRevocation::Revoked { at } => {
                            return Err(Error::Ocsp(format!("{} was revoked at {at}", c.subject)))
                        }
                        CertRevocation::Unknown => {
                            return Err(Error::Ocsp(format!(
                                "responder does not know {}",
                                c.subject
                            )))
                        }
                    }
                    checks.push(c);
                }
                Err(e)
                    if policy.ocsp == OcspRequirement::IfAvailable
                        && matches!(e, Error::Ocsp(_) | Error::Http { .. }) =>
                {
                    missing.push(e.to_string())
                }
                Err(e) => return Err(e),
            }
        }
    }
    let not_checked = (!missing.is_empty()).then(|| {
        let n = missing.len();
        missing.sort();
        missing.dedup();
        format!(
            "{n} certificate(s) without a usable response: {}",
            missing.join("; ")
        )
    });
    Ok(OcspOutcome {
        checks,
        not_checked,
    })
}

/// Verify one GPU's evidence. See the module documentation for the steps.
pub fn verify_gpu(
    ev: &GpuEvidence,
    collateral: &Collateral,
    policy: &GpuPolicy,
    nonce: &[u8; NONCE_LEN],
    at: OffsetDateTime,
) -> Result<VerifiedGpu> {
    let report = ev.parsed_report()?;
    let chain = ev.parsed_chain()?;
    let verified_chain = certs::verify_chain(&chain, &collateral.device_root, at)?;
    let sig =
        Signature::from_slice(&report.response.signature).map_err(|_| Error::ReportSignature)?;
    verified_chain
        .leaf_key()
        .verify(report.signed_bytes(), &sig)
        .map_err(|_| Error::ReportSignature)?;
    if report.nonce() != nonce {
        return Err(Error::NonceMismatch {
            expected: hex::encode(nonce),
            actual: hex::encode(report.nonce()),
        });
    }
    let model = model_from_leaf(&verified_chain);
    let (rim, verified_rims) = compare_measurements(&report, &model, collateral, policy, at)?;
    let mut chains: Vec<&[Vec<u8>]> = vec![verified_chain.ders()];
    for r in &verified_rims {
        chains.push(r.signer().ders());
    }
    let ocsp = check_ocsp(&chains, collateral, policy, at)?;
    Ok(VerifiedGpu {
        index: ev.index,
        model,
        name: ev.name.clone(),
        cc: ev.cc,
        driver_version: report.driver_version(),
        vbios_version: report.vbios_version(),
        nonce: hex::encode(nonce),
        report_sha384: hex::encode(Sha384::digest(report.raw())),
        measurements_sha384: hex::encode(measurements_digest(&report)),
        device_chain: verified_chain.subjects().to_vec(),
        rim,
        ocsp,
    })
}

/// SHA-384 over a report's measurement blocks: for each, in report order,
/// index (1 byte), DMTF value type (1 byte), value length (2 bytes,
/// little-endian) and value.
fn measurements_digest(report: &crate::AttestationReport) -> [u8; 48] {
    let mut h = Sha384::new();
    for b in &report.response.blocks {
        h.update([b.index, b.value_type]);
        h.update((b.value.len() as u16).to_le_bytes());
        h.update(&b.value);
    }
    h.finalize().into()
}

/// Judge an authentic GPU result against the policy's acceptance rules
/// (CC mode, dev tools, minimum driver, RIM versions). Failures are
/// [`Error::Policy`] (exit 4).
pub fn check_policy(gpu: &VerifiedGpu, policy: &GpuPolicy) -> Result<()> {
    let who = format!("GPU {} ({})", gpu.index, gpu.model);
    if policy.require_cc_mode {
        match gpu.cc {
            None => {
                return Err(Error::Policy(format!(
                    "{who}: policy requires CC mode on, but the evidence carries no CC state"
                )))
            }
            Some(cc) if !cc.system_cc_enabled => {
                return Err(Error::Policy(format!(
                    "{who}: confidential computing is off"
                )))
            }
            _ => {}
        }
    }
    if policy.require_devtools_off {
        match gpu.cc {
            None => {
                return Err(Error::Policy(format!(
                    "{who}: policy requires CC dev-tools off, but the evidence carries no CC state"
                )))
            }
            Some(cc) if cc.devtools_mode => {
                return Err(Error::Policy(format!("{who}: CC dev-tools mode is on")))
            }
            _ => {}
        }
    }
    if let Some(min) = &policy.min_driver_version {
        let actual = gpu.driver_version.as_deref().unwrap_or("");
        if version_at_least(actual, min) != Some(true) {
            return Err(Error::Policy(format!(
                "{who}: driver version {actual:?} is below the required {min}"
            )));
        }
    }
    if policy.require_rim_version_match && !gpu.rim.as_ref().is_some_and(|r| r.versions_match) {
        return Err(Error::Policy(format!(
            "{who}: the RIM versions do not equal the report's driver/VBIOS versions"
        )));
    }
    Ok(())
}

/// Verify a bundle a client received from a node (`GET /attestation`)
/// whose SHA-384 the node's TEE evidence binds (RA-TLS claim
/// `gpuEvidenceDigest`, RTMR3). The bytes must hash to `bound_digest`; the
/// nonce is the bundle's own (chosen by the node at boot: freshness comes
/// from the TEE evidence that binds the digest, not from this nonce).
pub fn verify_bound_bundle(
    bundle_json: &[u8],
    bound_digest: &[u8; 48],
    collateral: &Collateral,
    policy: &GpuPolicy,
    at: OffsetDateTime,
) -> Result<VerifiedGpuSet> {
    let digest = evidence_digest(bundle_json);
    if &digest != bound_digest {
        return Err(Error::DigestMismatch {
            bound: hex::encode(bound_digest),
            actual: hex::encode(digest),
        });
    }
    let nonce = GpuEvidenceBundle::from_json(bundle_json)?.nonce_bytes()?;
    verify_bundle(bundle_json, collateral, policy, &nonce, at)
}

/// Verify a whole bundle (its exact JSON bytes) for `nonce` and apply the
/// policy to every GPU. The result carries the bundle's SHA-384.
pub fn verify_bundle(
    bundle_json: &[u8],
    collateral: &Collateral,
    policy: &GpuPolicy,
    nonce: &[u8; NONCE_LEN],
    at: OffsetDateTime,
) -> Result<VerifiedGpuSet> {
    let bundle = GpuEvidenceBundle::from_json(bundle_json)?;
    if policy.require_gpu && bundle.gpus.is_empty() {
        return Err(Error::Policy(
            "policy requires a GPU but the evidence lists none".into(),
        ));
    }
    let mut gpus = Vec::with_capacity(bundle.gpus.len());
    for g in &bundle.gpus {
        let v = verify_gpu(g, collateral, policy, nonce, at)?;
        check_policy(&v, policy)?;
        gpus.push(v);
    }
    let digest = evidence_digest(bundle_json);
    Ok(VerifiedGpuSet {
        gpus,
        bundle_sha384: hex::encode(digest),
        digest,
    })
}
