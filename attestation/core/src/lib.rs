//! # chrysalis-attestation
//!
//! The attestation core of Chrysalis: typed wire formats for Intel TDX quotes
//! and AMD SEV-SNP attestation reports, their verification against a root of
//! trust (Intel SGX Root CA, AMD ARKs, or a simulated root for development),
//! and a policy that judges verified evidence.
//!
//! Data flows one way:
//!
//! ```text
//! bytes ──parse──▶ Evidence ──verify(collateral, anchors, time)──▶ VerifiedEvidence ──Policy::check──▶ Decision
//! ```
//!
//! [`VerifiedEvidence`] can only be built by the verifiers of this crate, so
//! unverified bytes can never reach [`Policy::check`].
#![deny(unsafe_code)] // only provider::ioctl opts out: ioctls are FFI by nature
#![warn(missing_docs)]

pub mod cache;
pub mod error;
pub mod evidence;
pub mod fetch;
pub mod fsutil;
pub mod policy;
pub mod provider;
mod reader;
pub mod sim;
pub mod snp;
pub mod tdx;
pub mod timefmt;
pub mod ttl_cache;
pub mod verified;
pub mod verifier;

pub use error::{Error, ErrorCategory, ParseError, Result};
pub use evidence::{DecodedEvidence, Evidence};
pub use policy::{CheckContext, Decision, Policy};
pub use verified::{Identity, TcbStatus, Tee, TrustAnchor, VerifiedEvidence};
