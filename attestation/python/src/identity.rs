//! What a verified peer proved, flattened for Python (`VerifiedIdentity`,
//! its `to_dict()` and its JSON).

use std::sync::Arc;

use chrysalis_attestation::{timefmt::format_rfc3339, Identity, TrustAnchor};
use chrysalis_ratls::{CollateralSource, PeerFormat, RaTlsServerVerifier, VerifiedPeer};
use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::error::{Error, Result};

/// Whether GPU evidence is part of the identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GpuEvidenceStatus {
    /// The certificate binds no GPU evidence: nothing about a GPU is proven.
    Absent,
    /// The claims bind the SHA-384 of GPU evidence, but it was not
    /// verified (a plain handshake; `verify()` verifies it).
    BoundNotVerified,
    /// The GPU evidence the certificate binds was served with fresh
    /// evidence and verified (`verify()`).
    Verified,
}

impl GpuEvidenceStatus {
    /// The name used in `to_dict()` and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            GpuEvidenceStatus::Absent => "absent",
            GpuEvidenceStatus::BoundNotVerified => "bound_not_verified",
            GpuEvidenceStatus::Verified => "verified",
        }
    }
}

/// The certificate the peer presented and whether it is valid now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertificateView {
    /// SHA-256 of the certificate DER, hex.
    pub sha256: String,
    /// notBefore (RFC 3339 UTC in JSON).
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    /// notAfter (RFC 3339 UTC in JSON).
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// True when `not_before <= verified_at <= not_after` (always true for
    /// an accepted peer; kept so that a stored identity says so).
    pub valid: bool,
}

/// A verified peer's identity: every field a relying party may want to
/// check or log, as plain strings, numbers and lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IdentityView {
    /// `tdx` or `snp`.
    pub tee: String,
    /// `chrysalis`, `cocoon` or `fresh_evidence`.
    pub format: String,
    /// True when the evidence chained to a simulated root (proves nothing).
    pub simulated: bool,
    /// `production`, `simulated` or `custom`.
    pub trust_anchor: String,
    /// Measurement registers and identity fields, hex (TDX: `mrtd`,
    /// `rtmr0`..`rtmr3`, `mrseam`, `mrconfigid`, …; SNP: `measurement`,
    /// `host_data`, `family_id`, `image_id`, `policy`, …).
    pub measurements: Map<String, Value>,
    /// Platform TCB status, Intel's names (`UpToDate`, `OutOfDate`, …).
    pub tcb_status: String,
    /// Security advisories that apply at this TCB level.
    pub advisory_ids: Vec<String>,
    /// Which TCB components are behind, in words.
    pub tcb_notes: Vec<String>,
    /// True when the TD / guest runs with debugging enabled.
    pub debug: bool,
    /// GPU evidence status.
    pub gpu_evidence: GpuEvidenceStatus,
    /// SHA-384 of the bound GPU evidence, hex, when bound.
    pub gpu_evidence_digest: Option<String>,
    /// The certificate (`None` for fresh evidence).
    pub certificate: Option<CertificateView>,
    /// SHA-256 of the attested key's DER SubjectPublicKeyInfo, hex: the key
    /// this connection is pinned to.
    pub public_key_sha256: String,
    /// The attested key's DER SubjectPublicKeyInfo (what usage receipts
    /// are verified with; not in `to_dict`: `public_key_sha256` names it).
    #[serde(skip)]
    pub public_key_der: Vec<u8>,
    /// When the evidence was created (claims), RFC 3339.
    pub created_at: Option<String>,
    /// The verification time, RFC 3339.
    pub verified_at: String,
    /// When the earliest collateral used expires, RFC 3339.
    pub collateral_expires: Option<String>,
    /// `verifier` or `embedded`.
    pub collateral_source: String,
    /// Image release named in the claims.
    pub release: Option<String>,
    /// SHA-256 of the image's measurements.json named in the claims, hex.
    pub measurements_sha256: Option<String>,
    /// Policy warnings (e.g. simulated evidence accepted by flag).
    pub warnings: Vec<String>,
    /// True when the expensive checks came from the verification cache
    /// (validity and policy are checked on every connection).
    pub from_cache: bool,
    /// The accepted configuration the registers matched, e.g.
    /// `chrysalis-0.2.0-cpu / snp-2cpu-EPYC-v4`; `None` when the policy
    /// pins no image (then `warnings` says NO IMAGE PINNED).
    pub node: Option<String>,
    /// True when evidence bound to a fresh nonce of ours was verified too
    /// (`verify()`; a plain handshake checks the certificate's evidence).
    pub fresh_evidence: bool,
}

impl IdentityView {
    /// The view of `peer`.
    pub fn new(peer: &VerifiedPeer) -> Self {
        let ev = peer.evidence();
        let verified_at = ev.verified_at();
        IdentityView {
            tee: ev.tee().to_string(),
            format: match peer.format() {
                PeerFormat::Chrysalis => "chrysalis",
                PeerFormat::Cocoon => "cocoon",
                PeerFormat::FreshEvidence => "fresh_evidence",
            }
            .into(),
            simulated: peer.is_simulated(),
            trust_anchor: match ev.anchor() {
                TrustAnchor::Production => "production",
                TrustAnchor::Simulated => "simulated",
                TrustAnchor::Custom => "custom",
            }
            .into(),
            measurements: measurements(ev.identity()),
            tcb_status: ev.tcb_status().as_str().into(),
            advisory_ids: ev.advisory_ids().to_vec(),
            tcb_notes: ev.tcb_notes().to_vec(),
            debug: ev.debug(),
            gpu_evidence: match peer.gpu_evidence_digest() {
                Some(_) => GpuEvidenceStatus::BoundNotVerified,
                None => GpuEvidenceStatus::Absent,
            },
            gpu_evidence_digest: peer.gpu_evidence_digest().map(hex::encode),
            certificate: peer.certificate().map(|c| CertificateView {
                sha256: hex::encode(c.sha256),
                not_before: c.not_before,
                not_after: c.not_after,
                valid: c.not_before <= verified_at && verified_at <= c.not_after,
            }),
            public_key_sha256: hex::encode(Sha256::digest(peer.spki_der())),
            public_key_der: peer.spki_der().to_vec(),
            created_at: peer.created_at().map(format_rfc3339),
            verified_at: format_rfc3339(verified_at),
            collateral_expires: ev.collateral_expires().map(format_rfc3339),
            collateral_source: match peer.collateral_source() {
                CollateralSource::Verifier => "verifier",
                CollateralSource::Embedded => "embedded",
            }
            .into(),
            release: peer
                .claims()
                .and_then(|c| c.image.as_ref())
                .and_then(|i| i.release.clone()),
            measurements_sha256: peer
                .claims()
                .and_then(|c| c.image.as_ref())
                .and_then(|i| i.measurements_sha256.map(hex::encode)),
            warnings: peer.decision().warnings.clone(),
            from_cache: peer.from_cache(),
            node: peer.decision().matched.clone(),
            fresh_evidence: false,
        }
    }

    /// The view of a node verified by `chrysalis_client::verify_node`:
    /// fresh evidence and GPU evidence as that check found them.
    pub fn of_node(node: &chrysalis_client::VerifiedNode) -> Self {
        let mut v = IdentityView::new(node.peer());
        v.fresh_evidence = node.fresh().is_some();
        if node.gpus().is_some() {
            v.gpu_evidence = GpuEvidenceStatus::Verified;
        }
        v.node = match node.identity() {
            chrysalis_client::NodeIdentity::Unpinned => None,
            other => Some(other.to_string()),
        };
        v.warnings = node.warnings();
        v
    }

    /// The view as a JSON value (what Python's `to_dict()` returns).
    pub fn to_json(&self) -> Value {
        // Serializing plain strings, numbers, lists and maps cannot fail.
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// True when the certificate is valid at `now` (fresh evidence has no
    /// certificate: true).
    pub fn certificate_valid_at(&self, now: OffsetDateTime) -> bool {
        self.certificate
            .as_ref()
            .is_none_or(|c| c.not_before <= now && now <= c.not_after)
    }
}

/// The identity's fields as a flat map of hex strings and numbers; TDX's
/// RTMR list becomes `rtmr0`..`rtmr3`.
fn measurements(id: &Identity) -> Map<String, Value> {
    let mut map = match serde_json::to_value(id) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    // The tag repeats `tee`.
    map.remove("tee");
    if let Some(Value::Array(rtmrs)) = map.remove("rtmr") {
        for (i, r) in rtmrs.into_iter().enumerate() {
            map.insert(format!("rtmr{i}"), r);
        }
    }
    map
}

/// The identity the verifier accepted during the handshake just completed.
pub(crate) fn handshake_identity(
    verifier: &RaTlsServerVerifier,
    peer: &str,
) -> Result<Arc<IdentityView>> {
    // The verifier is this connection's own, so its last peer is this
    // connection's; a handshake cannot complete without it.
    verifier
        .peer()
        .map(|p| Arc::new(IdentityView::new(&p)))
        .ok_or_else(|| Error::Verification {
            peer: peer.to_string(),
            category: chrysalis_ratls::ErrorCategory::Verification,
            message: "the TLS handshake completed without a verified peer".into(),
            reasons: Vec::new(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrysalis_attestation::{Policy, Tee};
    use chrysalis_ratls::{
        verify_certificate_der, EmbeddedCollateral, IdentityOptions, RaTlsIdentity, VerifierConfig,
    };
    use chrysalis_sim::SimProvider;

    fn sim_identity(tee: Tee) -> RaTlsIdentity {
        let sim = SimProvider::new(tee).unwrap();
        let collateral = match tee {
            Tee::Tdx => {
                chrysalis_attestation::verifier::Collateral::Tdx(sim.tdx_collateral().unwrap())
            }
            Tee::Snp => {
                chrysalis_attestation::verifier::Collateral::Snp(sim.snp_certificates().unwrap())
            }
        };
        let opts = IdentityOptions {
            collateral: Some(EmbeddedCollateral::from_collateral(&collateral)),
            ..IdentityOptions::default()
        };
        RaTlsIdentity::generate(&sim, &opts).unwrap()
    }

    #[test]
    fn tdx_view_names_every_register_and_the_pinned_key() {
        let id = sim_identity(Tee::Tdx);
        let cfg = VerifierConfig::new(Policy::default().allow_simulated(true));
        let peer = verify_certificate_der(id.cert_der(), &cfg, OffsetDateTime::now_utc()).unwrap();
        let v = IdentityView::new(&peer);
        assert_eq!(v.tee, "tdx");
        assert!(v.simulated);
        assert_eq!(v.trust_anchor, "simulated");
        for k in ["mrtd", "rtmr0", "rtmr1", "rtmr2", "rtmr3", "mrseam"] {
            let hexval = v.measurements[k].as_str().unwrap();
            assert_eq!(hexval.len(), 96, "{k}");
        }
        assert!(!v.measurements.contains_key("tee"));
        assert!(!v.measurements.contains_key("rtmr"));
        assert_eq!(
            v.public_key_sha256,
            hex::encode(Sha256::digest(id.spki_der()))
        );
        let cert = v.certificate.as_ref().unwrap();
        assert_eq!(cert.sha256, hex::encode(Sha256::digest(id.cert_der())));
        assert!(cert.valid);
        assert!(v.certificate_valid_at(OffsetDateTime::now_utc()));
        assert!(!v.certificate_valid_at(id.not_after() + time::Duration::seconds(1)));
        assert_eq!(v.gpu_evidence, GpuEvidenceStatus::Absent);
        assert!(
            v.warnings.iter().any(|w| w.contains("SIMULATED")),
            "{:?}",
            v.warnings
        );
        let json = v.to_json();
        assert_eq!(json["gpu_evidence"], "absent");
        assert_eq!(json["measurements"]["mrtd"], v.measurements["mrtd"]);
    }

    #[test]
    fn snp_view_has_the_launch_measurement() {
        let id = sim_identity(Tee::Snp);
        let cfg = VerifierConfig::new(Policy::default().allow_simulated(true));
        let peer = verify_certificate_der(id.cert_der(), &cfg, OffsetDateTime::now_utc()).unwrap();
        let v = IdentityView::new(&peer);
        assert_eq!(v.tee, "snp");
        assert_eq!(v.measurements["measurement"].as_str().unwrap().len(), 96);
        assert!(v.measurements.contains_key("host_data"));
    }
}
