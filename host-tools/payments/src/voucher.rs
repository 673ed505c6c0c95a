//! Channel vouchers: `voucher#c4a5f0c1 channel:MsgAddressInt amount:Coins
//! = Voucher`, signed with Ed25519 over the cell's representation hash
//! (what the channel contract checks with `CHKSIGNU`).
//!
//! On the wire (the `X-Chrysalis-Voucher` request header) a voucher travels
//! as the standard base64 of the BOC of
//! `voucher_header$_ client_key:bits256 signature:bits512 voucher:^Voucher`.

use std::sync::Arc;

use base64::Engine;
use num_bigint::BigUint;
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use tonlib_core::cell::{BagOfCells, Cell, CellBuilder, CellParser};
use tonlib_core::tlb_types::tlb::TLB;
use tonlib_core::TonAddress;

use crate::error::{malformed, Error, Result};
use crate::price::MAX_SAFE_INTEGER;

/// Opcode (TL-B tag) of a voucher cell.
pub const VOUCHER_TAG: u32 = 0xc4a5_f0c1;
/// Largest encoded header accepted (bytes of base64).
pub const MAX_HEADER_LEN: usize = 1024;

/// A cumulative voucher: the client owes the channel's operator `amount`
/// nanotons in total.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Voucher {
    /// The channel contract's address.
    pub channel: TonAddress,
    /// Cumulative nanotons (at most 2^53 − 1).
    pub amount: u64,
}

impl Voucher {
    /// The voucher cell (built with `tonlib-core`).
    pub fn to_cell(&self) -> Result<Cell> {
        Ok(CellBuilder::new()
            .store_u32(32, VOUCHER_TAG)?
            .store_address(&self.channel)?
            .store_coins(&BigUint::from(self.amount))?
            .build()?)
    }

    /// Parses a voucher cell, rejecting another tag, refs or trailing bits.
    pub fn from_cell(cell: &Cell) -> Result<Self> {
        let mut p: CellParser = cell.parser();
        let tag = p.load_u32(32)?;
        if tag != VOUCHER_TAG {
            return Err(malformed(
                "voucher",
                format!("tag {tag:#010x}, expected {VOUCHER_TAG:#010x}"),
            ));
        }
        let channel = p.load_address()?;
        let amount = p.load_coins()?;
        p.ensure_empty()
            .map_err(|_| malformed("voucher", "trailing data after the amount"))?;
        if !cell.references().is_empty() {
            return Err(malformed("voucher", "unexpected references"));
        }
        let amount = u64::try_from(&amount)
            .ok()
            .filter(|a| *a <= MAX_SAFE_INTEGER)
            .ok_or_else(|| malformed("voucher", format!("amount {amount} above 2^53-1")))?;
        Ok(Voucher { channel, amount })
    }

    /// The representation hash the client signs (32 bytes).
    pub fn hash(&self) -> Result<[u8; 32]> {
        Ok(self.to_cell()?.cell_hash().into())
    }
}

/// The client's Ed25519 key for one channel's vouchers (a fresh key per
/// channel, stored in the channel file).
pub struct VoucherKey {
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for VoucherKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VoucherKey")
            .field("public_key", &hex::encode(self.public_key()))
            .finish_non_exhaustive()
    }
}

impl VoucherKey {
    /// The key for a 32-byte Ed25519 seed.
    pub fn from_seed(seed: &[u8; 32]) -> Result<Self> {
        let pair = Ed25519KeyPair::from_seed_unchecked(seed)
            .map_err(|e| Error::Signing(format!("Ed25519 seed: {e}")))?;
        Ok(VoucherKey { pair })
    }

    /// The public key (32 bytes), as the channel stores it (`uint256`, big endian).
    pub fn public_key(&self) -> [u8; 32] {
        let mut k = [0u8; 32];
        k.copy_from_slice(self.pair.public_key().as_ref());
        k
    }

    /// Signs `voucher` (Ed25519 over its cell hash).
    pub fn sign(&self, voucher: &Voucher) -> Result<SignedVoucher> {
        let sig = self.pair.sign(&voucher.hash()?);
        let mut signature = [0u8; 64];
        signature.copy_from_slice(sig.as_ref());
        Ok(SignedVoucher {
            client_key: self.public_key(),
            voucher: voucher.clone(),
            signature,
        })
    }
}

/// A voucher with its signature and the key it claims to be signed by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedVoucher {
    /// The client's Ed25519 public key (the channel's `client_key`).
    pub client_key: [u8; 32],
    /// The voucher.
    pub voucher: Voucher,
    /// Ed25519 signature over the voucher cell's hash.
    pub signature: [u8; 64],
}

impl SignedVoucher {
    /// Checks the signature under `client_key`.
    pub fn verify(&self) -> Result<()> {
        UnparsedPublicKey::new(&ED25519, &self.client_key)
            .verify(&self.voucher.hash()?, &self.signature)
            .map_err(|_| Error::BadSignature {
                what: "voucher",
                key: hex::encode(self.client_key),
            })
    }

    /// The header cell: `client_key:bits256 signature:bits512 voucher:^Voucher`.
    pub fn to_cell(&self) -> Result<Cell> {
        Ok(CellBuilder::new()
            .store_slice(&self.client_key)?
            .store_slice(&self.signature)?
            .store_reference(&Arc::new(self.voucher.to_cell()?))?
            .build()?)
    }

    /// The `X-Chrysalis-Voucher` header value (standard base64 BOC).
    pub fn encode(&self) -> Result<String> {
        Ok(self.to_cell()?.to_boc_b64(false)?)
    }

    /// Parses a header value (not verified: call [`SignedVoucher::verify`]).
    pub fn parse(header: &str) -> Result<Self> {
        if header.len() > MAX_HEADER_LEN {
            return Err(malformed(
                "voucher header",
                format!("{} bytes, at most {MAX_HEADER_LEN}", header.len()),
            ));
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(header.trim())
            .map_err(|e| malformed("voucher header", format!("base64: {e}")))?;
        let boc = BagOfCells::parse(&bytes)?;
        let root = boc.single_root()?;
        let mut p = root.parser();
        let mut client_key = [0u8; 32];
        p.load_slice(&mut client_key)?;
        let mut signature = [0u8; 64];
        p.load_slice(&mut signature)?;
        p.ensure_empty()
            .map_err(|_| malformed("voucher header", "trailing data after the signature"))?;
        if root.references().len() != 1 {
            return Err(malformed(
                "voucher header",
                format!("{} references, expected 1", root.references().len()),
            ));
        }
        let voucher = Voucher::from_cell(&root.references()[0])?;
        Ok(SignedVoucher {
            client_key,
            voucher,
            signature,
        })
    }

    /// The claim's `signature:bits512`.
    pub fn signature(&self) -> &[u8; 64] {
        &self.signature
    }
}
