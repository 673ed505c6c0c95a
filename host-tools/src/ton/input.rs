//! Reading command-line values: TON amounts, addresses, key files.

use chrysalis_attestation::ErrorCategory;
use std::path::Path;

use anyhow::anyhow;
use chrysalis_ton::wallet::{KeyFile, OperatorWallet};
use chrysalis_ton::{Coins, TonAddress};

use super::outcome::{fail, tf};
use crate::client::Failure;

/// `--FIELD` as decimal TON ("1.5"); exit 2 when it is not one.
pub(super) fn parse_coins(field: &str, s: &str) -> Result<Coins, Failure> {
    s.parse::<Coins>().map_err(|_| {
        fail(
            ErrorCategory::Malformed,
            anyhow!("--{field} {s:?}: expected TON like 10 or 0.5"),
        )
    })
}

/// A TON address in any form `tonlib-core` reads; exit 2 otherwise.
pub(super) fn parse_addr(s: &str) -> Result<TonAddress, Failure> {
    s.parse::<TonAddress>()
        .map_err(|e| fail(ErrorCategory::Malformed, anyhow!("address {s:?}: {e}")))
}

/// The operator wallet of a key file.
pub(super) fn load_wallet(path: &Path) -> Result<OperatorWallet, Failure> {
    KeyFile::load(path).and_then(|k| k.wallet()).map_err(tf)
}

/// An address as printed: base64url (user-friendly form).
pub(super) fn addr_text(a: &TonAddress) -> String {
    a.to_base64_url()
}
