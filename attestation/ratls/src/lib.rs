//! # chrysalis-ratls
//!
//! RA-TLS for Chrysalis: TLS 1.3 whose self-signed certificate carries TEE
//! evidence (a TDX quote or an SNP report) bound to the certificate's key,
//! so that a client trusts the *machine and the code it runs* rather than a
//! name a CA vouched for.
//!
//! * [`RaTlsIdentity::generate`]: a key pair generated in this process,
//!   evidence whose report_data is SHA-512 of DER claims naming the key,
//!   and the certificate (format in `SPEC.md` and [`oid`], [`claims`]).
//! * [`RaTlsServerVerifier`] / [`RaTlsClientVerifier`]: rustls verifiers
//!   that parse, bind, verify (with [`chrysalis_attestation::verifier`])
//!   and apply the [`chrysalis_attestation::Policy`]; [`client_config`] and
//!   [`server_config`] build TLS 1.3-only configurations without session
//!   resumption. Telegram Cocoon certificates are detected and verified by
//!   the same code ([`cocoon`]).
//! * [`verify_certificate_der`]: the same verification, offline.
//! * [`fresh_evidence`] / [`verify_fresh`]: evidence on demand for a nonce,
//!   bound to the connection's certificate key.
//!
//! A client, in three lines (the verifier keeps the peer it accepted):
//!
//! ```
//! # fn main() -> Result<(), chrysalis_ratls::Error> {
//! use std::sync::Arc;
//! use chrysalis_ratls::{client_config, RaTlsServerVerifier, VerifierConfig};
//! let config = Arc::new(VerifierConfig::new(chrysalis_attestation::Policy::default()));
//! let verifier = Arc::new(RaTlsServerVerifier::new(config));
//! let tls = client_config(verifier.clone())?; // → tokio_rustls::TlsConnector::from(Arc::new(tls)); then verifier.peer()
//! # let _ = tls; Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod batch;
pub mod cache;
pub mod cert;
pub mod claims;
pub mod cocoon;
pub mod collateral;
mod crypto;
pub mod error;
pub mod fresh;
pub mod identity;
pub mod oid;
pub mod peer;
pub mod tls;
pub mod verify;
pub mod x509;

pub use cache::{CacheStats, PeerCache};
pub use cert::{CertFormat, RaTlsCertificate};
pub use claims::{Claims, ClaimsPurpose, ImageId};
pub use collateral::EmbeddedCollateral;
pub use error::{Error, ErrorCategory, RejectedNode, Result};
pub use fresh::{
    fresh_evidence, fresh_evidence_at, parse_nonce_query, verify_fresh, FreshEvidence,
};
pub use identity::{IdentityOptions, RaTlsIdentity, ReloadableResolver};
pub use peer::{CertificateInfo, CollateralSource, PeerFormat, VerifiedPeer};
pub use tls::{
    client_config, client_config_with, server_config, server_config_with, ClientOptions,
    RaTlsClientVerifier, RaTlsServerVerifier,
};
pub use verify::{verify_certificate_der, VerifierConfig};
pub use x509::{CertKey, KeyType, SanEntry};
