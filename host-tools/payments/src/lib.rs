//! Chrysalis payments: the two wire formats of pay-per-token inference.
//!
//! - [`receipt`]: a usage receipt the agent signs with its attested TLS key
//!   for every completed response (JCS-canonical JSON, compact
//!   `base64url(json).base64url(signature)` encoding).
//! - [`voucher`]: a cumulative payment voucher the client signs with the
//!   channel's Ed25519 key; a TON cell built with `tonlib-core`, signed
//!   over its representation hash exactly as the channel contract checks it
//!   (`CHKSIGNU`).
//! - [`client`]: the paying client's side: the channel file, the voucher
//!   for each request, and every check of a receipt before it is paid.
//! - [`tokens`]: counting a stream's tokens when the engine reports no usage.
//! - [`price`]: the amount due for a number of tokens at a price per
//!   million tokens (rounded up).
//!
//! The layouts and test vectors are in `host-tools/payments/README.md`.
#![forbid(unsafe_code)]

pub mod client;
mod error;
pub mod price;
pub mod receipt;
pub mod tokens;
pub mod voucher;

pub use error::{Error, Result};
pub use tonlib_core::TonAddress;
