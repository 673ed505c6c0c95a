//! `chrysalis verify --registry ADDR`: the allow-list of a registry contract
//! instead of the published releases compiled in.
//!
//! The node is verified as usual (authentic evidence, TCB, no debug, fresh
//! evidence for a nonce), then its complete identity — the registry's
//! image measurement (v2: every TDX register / SNP MEASUREMENT and
//! HOST_DATA, as `ton allow-measurement` computes it) — must be allowed by
//! the contract (`is_measurement_allowed`). The chain is read through the
//! TON HTTP API given; its answer is trusted as the allow-list (use your own
//! node or a lite client where that matters).

use anyhow::anyhow;
use chrysalis_attestation::{ErrorCategory, VerifiedEvidence};
use chrysalis_ton::api::{ApiVersion, StackArg, StackValue, TonApi};
use chrysalis_ton::registry::ImageMeasurement;

use super::input::parse_addr;
use super::outcome::tf;
use crate::failure::Failure;

/// A registry to take the allowed images from.
#[derive(Debug, Clone)]
pub(crate) struct RegistryPin {
    /// The contract address, as given.
    pub(crate) address: String,
    /// TON HTTP API base URL.
    pub(crate) api: String,
}

impl RegistryPin {
    /// Checks that the registry allows `ev`'s complete identity; returns
    /// the measurement (hex) on success, a policy rejection (4) otherwise.
    pub(crate) fn check(&self, ev: &VerifiedEvidence) -> Result<String, Failure> {
        let (measurement, _) = super::attested::image_measurement(ev);
        let addr = parse_addr(&self.address)?;
        let api = TonApi::new(&self.api, None, ApiVersion::V2);
        let stack = api
            .run_get_method(
                &addr,
                "is_measurement_allowed",
                &[StackArg::Uint(measurement.0.to_vec())],
            )
            .map_err(tf)?;
        let allowed = matches!(stack.first(), Some(StackValue::Int(i)) if *i != 0.into());
        if !allowed {
            return Err(Failure::new(
                ErrorCategory::Rejected,
                anyhow!(
                    "the node's image measurement {} (its complete identity) is not allowed by registry {}",
                    measurement.to_hex(),
                    self.address
                ),
            ));
        }
        Ok(ImageMeasurement::to_hex(&measurement))
    }
}
