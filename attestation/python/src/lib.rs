//! # chrysalis-py
//!
//! The Rust side of the Python package `chrysalis` (built with maturin:
//! `attestation/python/pyproject.toml`). Python gets Chrysalis's RA-TLS
//! verification from [`chrysalis_ratls`] itself, not from a second
//! implementation: the TLS 1.3 handshake, the certificate's evidence, its
//! binding to the handshake key and the policy all run here, in Rust.
//!
//! * [`Client`]: a policy and the production trust anchors, built once;
//!   [`Client::connect`] opens a verified [`RaTlsStream`] over a blocking
//!   socket (the sync httpx transport, `chrysalis.verify`), and
//!   [`Client::session`] a sans-I/O [`TlsSession`] an event loop drives
//!   (the async transport).
//! * [`IdentityView`]: what the peer proved (TEE, measurements, TCB
//!   status, GPU evidence status, certificate validity, pinned key).
//! * [`Error`] with [`ErrorKind`]: which Python exception to raise.
//!
//! The PyO3 bindings (`chrysalis._native`) are behind the `python`
//! feature, which only maturin turns on, so the workspace builds and tests
//! this crate without linking libpython.
#![cfg_attr(not(feature = "python"), forbid(unsafe_code))]
// PyO3's macros expand to `unsafe` FFI glue; this crate writes none itself.
#![cfg_attr(feature = "python", deny(unsafe_code))]
#![warn(missing_docs)]

pub mod client;
pub mod error;
pub mod identity;
pub mod session;
pub mod target;

#[cfg(feature = "python")]
mod py;
#[cfg(feature = "python")]
mod py_pay;

pub use client::{policy_from_file, policy_from_toml, Client, RaTlsStream};
pub use error::{Error, ErrorKind, Result};
pub use identity::{CertificateView, GpuEvidenceStatus, IdentityView};
pub use session::{Plaintext, TlsSession};
pub use target::Target;
