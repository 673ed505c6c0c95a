//! AMD SEV-SNP: attestation reports, certificates and verification.
//!
//! * [`report`]: the 1184-byte `ATTESTATION_REPORT` of the SEV-SNP firmware
//!   ABI (versions 2, 3 and 5), parsed into typed fields and serialised back
//!   byte for byte.
//! * [`tcb`]: the 64-bit `TCB_VERSION` and the [`Product`] generations whose
//!   layouts differ (Milan/Genoa vs Turin).
//! * [`certs`]: VCEK/VLEK certificates with their AMD extensions, the ASK /
//!   ASVK / ARK certificates, and the pinned AMD roots ([`SnpRoots`]).
//! * [`kds`]: URLs of the AMD Key Distribution Service (pure functions; the
//!   fetching happens elsewhere).
//! * [`crl`]: AMD's per-product CRL, checked when one is given.
//! * [`floor`]: the per-product minimum TCB (from AMD's security bulletins)
//!   that decides the SNP TCB status.
//! * [`verify()`]: ARK → ASK → VEK → report, yielding
//!   [`crate::VerifiedEvidence`].
//!
//! The same [`verify()`] checks real and simulated evidence
//! (crate `chrysalis-sim`); only the [`SnpRoots`] differ, and the trust anchor
//! it reports is decided by which root the chain ended at, never by what the
//! certificates say about themselves.

pub mod certs;
pub mod crl;
pub mod floor;
pub mod kds;
pub mod report;
pub mod tcb;
pub mod verify;

pub use certs::{CertRole, SnpCertificates, SnpRoot, SnpRoots, VekCertificate, VekKind, VekTcb};
pub use kds::{kds_cert_chain_url, kds_crl_url, kds_vcek_url, kds_vlek_chain_url};
pub use report::{
    CpuId, EcdsaSignature, FirmwareVersion, GuestPolicy, KeyInfo, PlatformInfo, ReportLayout,
    SigningKey, SnpReport, REPORT_LEN, SIGNATURE_OFFSET,
};
pub use tcb::{Product, TcbLayout, TcbVersion};
pub use verify::{verify, verify_bytes, verify_chain, VerifiedChain};
