//! Chrysalis on TON: the machine registry's messages and TL-B types, operator
//! wallet key files, wallet v4r2/v5r1 external messages, a blocking client
//! for the TON HTTP API (toncenter-style v2 and v3), and [`Coins`], amounts
//! of TON in nanotons.
//!
//! All cells, BOCs, addresses, wallet messages and signatures come from
//! `tonlib-core`; this crate only lays out the registry's own TL-B on top.
#![forbid(unsafe_code)]

pub mod api;
pub mod channel;
pub mod coins;
mod error;
pub mod registry;
pub mod wallet;

pub use coins::{Coins, ParseCoinsError};
pub use error::{Error, Result};
pub use tonlib_core::{TonAddress, TonHash};
