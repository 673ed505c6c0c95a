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
//!
//! The rooms: [`tdx`] and [`snp`] (one per TEE: wire format, collateral,
//! verification), [`evidence`] and [`verifier`] (the TEE-neutral front
//! door), [`policy`], [`verified`], [`error`] (one error type, one
//! [`ErrorCategory`] for the whole workspace), [`runtime_events`] (the RTMR3
//! runtime-event vocabulary the agent extends, `chrysalis-measurements`
//! predicts and clients replay), [`provider`] (the guest evidence *trait*),
//! [`simulated`] (how simulated roots are recognised).
//!
//! What this crate deliberately does not contain, so that a verifier links
//! no guest or network code: the guest providers (crate
//! `chrysalis-provider`), the simulated TEE (`chrysalis-sim`) and collateral
//! fetching over HTTP (`chrysalis-fetch`).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod cache;
pub mod error;
pub mod evidence;
pub mod fsutil;
pub mod policy;
pub mod provider;
mod reader;
pub mod runtime_events;
pub mod simulated;
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
