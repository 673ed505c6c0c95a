//! Intel TDX: quotes, collateral and verification.

pub mod quote;

pub use quote::{
    CertificationData, EnclaveReport, QeReportCertificationData, QuoteHeader, QuoteSignatureData,
    TdReport10, TdReport15, TdReportBody, TdxQuote,
};

pub mod collateral;
pub mod diagnose;
pub mod pem;
pub use collateral::TdxCollateral;

pub mod verify;
pub use verify::{intel_sgx_root_ca, verify, TdxRoots};
