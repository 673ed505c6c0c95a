//! NVIDIA H100 confidential-computing evidence for Chrysalis.
//!
//! Data flows one way, as in `chrysalis-attestation`:
//! `bytes → AttestationReport / CertChain / Rim (parse once) →
//! VerifiedGpu (verify with pinned roots, RIMs, OCSP, nonce, time) →
//! check_policy → Readiness`.
//!
//! | module | what |
//! |---|---|
//! | [`evidence`] | the SPDM 1.1 `GET_MEASUREMENTS` request + signed response (nonce, measurement blocks, opaque data: driver/VBIOS version, signature) |
//! | [`certs`] | device chain to the pinned NVIDIA Device Identity CA; RIM signer chain to the pinned CoRIM root |
//! | [`rim`] | reference integrity manifests (SWID tags) and their XML-DSig signature (C14N 1.1, ECDSA P-384) |
//! | [`rim_service`] | RIM ids derived from a report, fetched from NVIDIA's RIM service (untrusted: checked like a file RIM), cached on disk, usable offline |
//! | [`ocsp`] | OCSP requests/responses (RFC 6960), signature-checked, cached on disk, usable offline |
//! | [`policy`] | the `[gpu]` policy section |
//! | [`bundle`] | the JSON evidence bundle a node serves, and its SHA-384 |
//! | [`verify`] | [`verify_gpu`], [`check_policy`], [`verify_bundle`] → [`VerifiedGpu`] / [`VerifiedGpuSet`] (no public constructors) |
//! | [`source`] | [`GpuEvidenceSource`] and the recorded-evidence implementation |
//! | [`nvml`] | the NVML implementation (driver loaded at run time) |
//! | [`gate`] | [`gate()`]: source + policy + collateral + nonce → [`Readiness`] |
//!
//! # Agent integration
//!
//! At boot the agent picks a fresh nonce, runs the gate, and only on
//! `Ready` extends RTMR3 with the bundle digest, puts the same digest in the
//! RA-TLS claims (`gpuEvidenceDigest`, SHA-384, 48 bytes) and serves the
//! bundle bytes at `GET /attestation`; on `NotReady` it logs the text and
//! returns it from `/readyz`.
//!
//! ```no_run
//! use chrysalis_gpu::{gate, Collateral, GpuPolicy, Readiness, Rim};
//! use chrysalis_gpu::nvml::NvmlSource;
//! use chrysalis_gpu::ocsp::OcspClient;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let policy = GpuPolicy::from_toml_str(&std::fs::read_to_string("/etc/chrysalis/policy.toml")?)?;
//! let rims = vec![
//!     Rim::parse("driver.swidtag", &std::fs::read("/etc/chrysalis/rims/driver.swidtag")?)?,
//!     Rim::parse("vbios.swidtag", &std::fs::read("/etc/chrysalis/rims/vbios.swidtag")?)?,
//! ];
//! let collateral = Collateral::new(rims)
//!     .with_ocsp(OcspClient::new(Some("/var/cache/chrysalis/ocsp".into()), false));
//! let nonce: [u8; 32] = [0x42; 32]; // use a fresh random nonce
//! let mut source = NvmlSource::open()?; // Err(Nvml("no NVIDIA driver ...")) without a driver
//! match gate(&mut source, &policy, &collateral, &nonce, time::OffsetDateTime::now_utc()) {
//!     Readiness::Ready { verified, bundle } => {
//!         let digest: &[u8; 48] = verified.bundle_digest(); // RTMR3 + RA-TLS claim
//!         let _ = (digest, bundle); // serve `bundle` at GET /attestation
//!     }
//!     Readiness::NotReady(why) => eprintln!("not ready: {why}"),
//! }
//! # Ok(()) }
//! ```
//!
//! Tests and offline checks use [`RecordedSource`] behind the same trait.
//!
//! # RIMs from NVIDIA's RIM service
//!
//! A node cannot ship every card's VBIOS RIM. With
//! [`Collateral::with_rim_service`] verification fetches the RIMs the given
//! ones lack, by the ids the signed report names ([`RimIds::for_report`]:
//! `NV_GPU_DRIVER_GH100_550.90.07`, `NV_GPU_VBIOS_1010_0200_882_96009F0001`),
//! from `{base}/v1/rim/{id}` ([`rim_service::NVIDIA_RIM_SERVICE`] is
//! NVIDIA's), caching them on disk. The service is untrusted: a fetched RIM
//! must be the version its id names and goes through the same signature,
//! chain, chip, measurement and OCSP checks as a RIM file.
//!
//! ```no_run
//! use chrysalis_gpu::{Collateral, RimServiceClient};
//! use chrysalis_gpu::rim_service::NVIDIA_RIM_SERVICE;
//! # fn main() -> Result<(), chrysalis_gpu::Error> {
//! let rims = RimServiceClient::new(NVIDIA_RIM_SERVICE, Some("/var/cache/chrysalis/rims".into()), false)?;
//! let collateral = Collateral::new(vec![]).with_rim_service(rims);
//! # let _ = collateral; Ok(()) }
//! ```
//!
//! A client that fetched the bundle from `GET /attestation` and verified
//! the node's RA-TLS certificate calls [`verify_bound_bundle`] with the
//! claims' `gpuEvidenceDigest`: the bundle must hash to it, then it is
//! verified like any other (its own nonce; freshness comes from the TEE
//! evidence binding the digest).
//!
//! Nothing in this crate has been run against a real GPU here: the
//! evidence, chain and RIM code is tested on NVIDIA's public sample
//! vectors; the NVML code path is exercised only as "no NVIDIA driver"
//! (see `ci/gpu-real.sh` for the real-hardware check).
#![forbid(unsafe_code)]

pub mod bundle;
pub mod certs;
pub mod error;
pub mod evidence;
pub mod gate;
pub mod nvml;
pub mod ocsp;
pub mod policy;
pub mod rim;
pub mod rim_service;
pub mod source;
pub mod verify;

pub use bundle::{evidence_digest, CcState, GpuEvidence, GpuEvidenceBundle};
pub use error::{Error, ErrorCategory, Result};
pub use evidence::AttestationReport;
pub use gate::{gate, Readiness};
pub use policy::{GpuPolicy, OcspRequirement};
pub use rim::Rim;
pub use rim_service::{RimId, RimIds, RimServiceClient};
pub use source::{GpuEvidenceSource, RecordedSource};
pub use verify::{
    check_policy, verify_bound_bundle, verify_bundle, verify_gpu, Collateral, VerifiedGpu,
    VerifiedGpuSet,
};
