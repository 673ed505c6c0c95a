//! The published Chrysalis releases, compiled in: what a client accepts by
//! default, and which release and configuration a verified node runs.
//!
//! Every `measurements/releases/<name>/measurements.json` of the checkout
//! this crate was built from is embedded at build time ([`Catalogue::builtin`]),
//! so `chrysalis verify`, `chrysalis chat` and the Python client pin the
//! published images with no checkout, path or policy file. Withdrawn
//! releases (`measurements/retired/<name>/`) are never embedded: no client
//! accepts them by default.
//!
//! Rooms:
//!
//! * [`manifest`]: the `measurements.json` wire format (written by
//!   `chrysalis measure image`, read here and by the TON tools);
//! * [`catalogue`]: the releases, looked up by name;
//! * [`expect`]: the complete identity a configuration predicts, turned into
//!   the policy's measurement sets — every register, or the configuration is
//!   *not verifiable* and a default client refuses it, saying why;
//! * [`error`]: this crate's one error type.
//!
//! Data flows one way: `measurements.json → Catalogue → Policy` (the
//! verifier in `chrysalis-attestation` judges evidence with it and names the
//! set that matched, which [`Catalogue::find`] turns back into a release and
//! configuration).

#![forbid(unsafe_code)]

pub mod catalogue;
pub mod error;
pub mod expect;
pub mod manifest;

pub use catalogue::{Catalogue, ConfigurationRef, Release};
pub use error::{Error, Result};
pub use expect::{NotVerifiable, DEFAULT_HOST_CONFIGURATION};
