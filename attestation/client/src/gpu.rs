//! The GPU requirement: when GPU evidence must be present and what it must
//! show.
//!
//! GPU evidence is required when the matched configuration belongs to a
//! gpu release (CC mode on, dev tools off, authentic, bound to the
//! certificate) or when the caller gave a GPU policy (`--gpu-policy`);
//! otherwise evidence the node committed to is still verified (authenticity
//! only) and reported.

use chrysalis_gpu::verify::{Collateral, VerifiedGpuSet};
use chrysalis_gpu::{GpuPolicy, OcspRequirement};
use chrysalis_ratls::{FreshEvidence, VerifiedPeer};
use time::OffsetDateTime;

use crate::error::{Error, Result};
use crate::pin::NodeIdentity;

/// What GPU evidence a client requires, with the collateral to check it.
#[derive(Debug, Clone)]
pub struct GpuRequirement {
    explicit: Option<(GpuPolicy, String)>,
    collateral: Collateral,
    has_rims: bool,
}

impl Default for GpuRequirement {
    fn default() -> Self {
        GpuRequirement {
            explicit: None,
            collateral: Collateral::new(Vec::new()),
            has_rims: false,
        }
    }
}

impl GpuRequirement {
    /// GPU evidence is required and judged by `policy` (`--gpu-policy`),
    /// labelled `label` in output.
    pub fn with_policy(mut self, policy: GpuPolicy, label: String) -> Self {
        self.explicit = Some((policy, label));
        self
    }

    /// The RIMs and OCSP client to check GPU evidence with; `rim_count` is
    /// how many RIMs it holds. RIMs are then compared by default when it
    /// holds any or has a RIM service client (which fetches those the
    /// report needs).
    pub fn with_collateral(mut self, collateral: Collateral, rim_count: usize) -> Self {
        self.has_rims = rim_count > 0 || collateral.rim_service().is_some();
        self.collateral = collateral;
        self
    }

    /// True when the caller asked for a GPU check whatever the release.
    pub fn forced(&self) -> bool {
        self.explicit.is_some()
    }

    /// The policy a gpu release's node is held to: authentic, CC on, dev
    /// tools off; RIMs compared when supplied; OCSP when reachable.
    pub fn release_policy(&self) -> GpuPolicy {
        GpuPolicy {
            require_gpu: true,
            require_cc_mode: true,
            require_devtools_off: true,
            min_driver_version: None,
            ocsp: OcspRequirement::IfAvailable,
            max_measurement_mismatches: 0,
            require_rim_version_match: false,
            require_rims: self.has_rims,
        }
    }

    /// The policy and its label for a node with `identity`, and whether
    /// evidence is required.
    fn policy_for(&self, identity: &NodeIdentity) -> (GpuPolicy, String, bool) {
        if let Some((p, label)) = &self.explicit {
            return (p.clone(), label.clone(), true);
        }
        if identity.requires_gpu() {
            return (
                self.release_policy(),
                format!("required by {identity}: CC on, dev tools off"),
                true,
            );
        }
        (
            GpuPolicy::authenticity_only(),
            "authenticity only (not required by the configuration)".into(),
            false,
        )
    }

    /// Verifies the GPU bundle the node served against the digest its
    /// certificate commits to. Returns the verified set (or `None` when
    /// nothing is required and nothing was committed) and the label of the
    /// policy applied.
    pub fn check(
        &self,
        peer: &VerifiedPeer,
        fresh: Option<&FreshEvidence>,
        identity: &NodeIdentity,
        now: OffsetDateTime,
    ) -> Result<(Option<VerifiedGpuSet>, String)> {
        let (policy, label, required) = self.policy_for(identity);
        let bundle = fresh.and_then(|f| f.gpu_evidence.as_ref());
        let (Some(digest), Some(bundle)) = (peer.gpu_evidence_digest(), bundle) else {
            if required {
                let why = if peer.gpu_evidence_digest().is_none() {
                    "the node's certificate commits to none"
                } else {
                    "the node served no GPU evidence with its fresh evidence"
                };
                return Err(Error::GpuEvidenceMissing(format!(
                    "GPU evidence is required ({label}), but {why}"
                )));
            }
            return Ok((None, label));
        };
        let set = chrysalis_gpu::verify::verify_bound_bundle(
            bundle.as_bytes(),
            digest,
            &self.collateral,
            &policy,
            now,
        )?;
        Ok((Some(set), label))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrysalis_gpu::rim_service::NVIDIA_RIM_SERVICE;
    use chrysalis_gpu::RimServiceClient;

    #[test]
    fn rims_are_required_with_rim_files_or_a_rim_service_only() {
        let plain = GpuRequirement::default();
        assert!(!plain.release_policy().require_rims);
        let service = RimServiceClient::new(NVIDIA_RIM_SERVICE, None, true).unwrap();
        let fetching = GpuRequirement::default()
            .with_collateral(Collateral::new(vec![]).with_rim_service(service), 0);
        assert!(fetching.release_policy().require_rims);
        let none = GpuRequirement::default().with_collateral(Collateral::new(vec![]), 0);
        assert!(!none.release_policy().require_rims);
    }
}
