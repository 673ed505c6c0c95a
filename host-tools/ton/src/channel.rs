//! The payment channel contract's messages, state and exit codes (TL-B in
//! `host-tools/ton/README.md`, "Payment channel"; the contract is
//! `contract/channel.tolk`). Vouchers themselves are in `chrysalis-payments`.

use std::sync::Arc;

use chrysalis_payments::voucher::SignedVoucher;
use num_bigint::BigUint;
use tonlib_core::cell::{Cell, CellBuilder};
use tonlib_core::TonAddress;

use crate::registry::MachineId;
use crate::{Error, Result};

/// Opcodes of the channel's messages.
pub mod op {
    /// Client -> channel (with the StateInit and the deposit): open.
    pub const OPEN: u32 = 0xc4a5_0030;
    /// Operator -> channel: claim with a voucher.
    pub const CLAIM: u32 = 0xc4a5_0031;
    /// Client -> channel: start the close (the delay starts).
    pub const START_CLOSE: u32 = 0xc4a5_0032;
    /// Client -> channel: finish the close after the delay (the rest comes back).
    pub const FINISH_CLOSE: u32 = 0xc4a5_0033;
    /// Channel -> registry: ask for the machine's terms.
    pub const QUERY_MACHINE: u32 = 0xc4a5_0015;
    /// Registry -> channel: the machine's terms (or none).
    pub const MACHINE_INFO: u32 = 0xc4a5_0022;
    /// Channel -> operator: paid.
    pub const PAID: u32 = 0xc4a5_0040;
    /// Channel -> client: everything left.
    pub const REFUND: u32 = 0xc4a5_0041;
}

/// Nanotons the channel keeps from the open message for gas (the rest is the deposit).
pub const OPEN_FEE: u64 = 100_000_000;
/// Nanotons to attach to a claim or a close message (kept for gas; the rest returns).
pub const MESSAGE_FEE: u64 = 10_000_000;
/// Seconds between start_close and finish_close.
pub const CLOSE_DELAY_S: u32 = 86_400;

/// Exit codes the channel throws.
pub const EXIT_CODES: &[(i32, &str, &str)] = &[
    (
        220,
        "not_client",
        "open or close from an address that is not the channel's client",
    ),
    (
        221,
        "not_registry",
        "machine terms from an address that is not the registry",
    ),
    (
        222,
        "bad_state",
        "message not allowed in the channel's state (not open, already closing, closed)",
    ),
    (
        223,
        "insufficient_value",
        "attached value below the message's fee",
    ),
    (
        224,
        "not_operator",
        "claim by an address that is not the machine's operator",
    ),
    (
        225,
        "bad_signature",
        "voucher not signed by the channel's client key",
    ),
    (226, "wrong_channel", "voucher for another channel"),
    (227, "above_deposit", "voucher amount above the deposit"),
    (
        228,
        "old_voucher",
        "voucher amount below what was already claimed",
    ),
    (
        229,
        "replayed",
        "voucher amount equal to what was already claimed (replayed claim)",
    ),
    (
        230,
        "delay_not_over",
        "finish_close before the close delay has passed",
    ),
    (231, "unknown_op", "unknown opcode or malformed body"),
    (
        232,
        "wrong_machine",
        "registry answer about another machine",
    ),
];

/// Name and meaning of a channel exit code, if it is one.
pub fn describe_exit_code(code: i64) -> Option<(&'static str, &'static str)> {
    EXIT_CODES
        .iter()
        .find(|(c, _, _)| i64::from(*c) == code)
        .map(|(_, n, m)| (*n, *m))
}

/// What fixes a channel's address: its parties, the client's voucher key,
/// the machine and a nonce (a fresh one per channel, so that vouchers of a
/// closed channel never apply to a new one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelParams {
    /// The registry whose terms the channel trusts.
    pub registry: TonAddress,
    /// The client's wallet (opens and closes, receives the rest).
    pub client: TonAddress,
    /// Random per channel.
    pub nonce: u64,
    /// The client's Ed25519 voucher key.
    pub client_key: [u8; 32],
    /// The machine paid.
    pub machine: MachineId,
}

impl ChannelParams {
    /// Initial data: `storage$_ parties:^[registry:MsgAddressInt
    /// client:MsgAddressInt nonce:uint64] client_key:bits256
    /// machine_id:bits256 state:uint8 deposit:Coins claimed:Coins
    /// closing_since:uint32 terms:(Maybe ^MachineTerms) = ChannelStorage`.
    pub fn initial_data(&self) -> Result<Cell> {
        let parties = CellBuilder::new()
            .store_address(&self.registry)?
            .store_address(&self.client)?
            .store_u64(64, self.nonce)?
            .build()?;
        Ok(CellBuilder::new()
            .store_reference(&Arc::new(parties))?
            .store_slice(&self.client_key)?
            .store_slice(&self.machine.0)?
            .store_u8(8, 0)?
            .store_coins(&BigUint::from(0u32))?
            .store_coins(&BigUint::from(0u32))?
            .store_u32(32, 0)?
            .store_bit(false)?
            .build()?)
    }

    /// The channel's address for `code` (basechain).
    pub fn address(&self, code: &Cell) -> Result<TonAddress> {
        Ok(TonAddress::derive(
            0,
            Arc::new(code.clone()),
            Arc::new(self.initial_data()?),
        )?)
    }
}

/// A message to the channel.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ChannelMessage {
    /// `open#c4a50030 query_id:uint64` (with the StateInit; value = deposit + [`OPEN_FEE`]).
    Open {
        /// Query id.
        query_id: u64,
    },
    /// `claim#c4a50031 query_id:uint64 voucher:^Voucher signature:bits512`.
    Claim {
        /// Query id.
        query_id: u64,
        /// The client's latest voucher.
        voucher: SignedVoucher,
    },
    /// `start_close#c4a50032 query_id:uint64`.
    StartClose {
        /// Query id.
        query_id: u64,
    },
    /// `finish_close#c4a50033 query_id:uint64`.
    FinishClose {
        /// Query id.
        query_id: u64,
    },
}

impl ChannelMessage {
    /// The body cell.
    pub fn to_cell(&self) -> Result<Cell> {
        let mut b = CellBuilder::new();
        match self {
            ChannelMessage::Open { query_id } => {
                b.store_u32(32, op::OPEN)?.store_u64(64, *query_id)?;
            }
            ChannelMessage::Claim { query_id, voucher } => {
                let v = voucher
                    .voucher
                    .to_cell()
                    .map_err(|e| Error::Message(format!("voucher: {e}")))?;
                b.store_u32(32, op::CLAIM)?
                    .store_u64(64, *query_id)?
                    .store_reference(&Arc::new(v))?
                    .store_slice(voucher.signature())?;
            }
            ChannelMessage::StartClose { query_id } => {
                b.store_u32(32, op::START_CLOSE)?.store_u64(64, *query_id)?;
            }
            ChannelMessage::FinishClose { query_id } => {
                b.store_u32(32, op::FINISH_CLOSE)?
                    .store_u64(64, *query_id)?;
            }
        }
        Ok(b.build()?)
    }
}

/// The channel's lifecycle state (`state:uint8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ChannelStatus {
    /// Deployed, no deposit yet.
    New,
    /// Deposit received, waiting for the registry's answer.
    Pending,
    /// Open: the operator can claim.
    Open,
    /// The client started the close; the operator can still claim.
    Closing,
    /// Paid out; takes nothing more.
    Closed,
}

impl ChannelStatus {
    /// From the contract's `state` field.
    pub fn from_code(c: i64) -> Result<Self> {
        Ok(match c {
            0 => ChannelStatus::New,
            1 => ChannelStatus::Pending,
            2 => ChannelStatus::Open,
            3 => ChannelStatus::Closing,
            4 => ChannelStatus::Closed,
            other => {
                return Err(Error::Invalid {
                    field: "channel state",
                    detail: format!("{other} is not 0..=4"),
                })
            }
        })
    }
}

/// What `get_channel()` returns.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ChannelState {
    /// Lifecycle state.
    pub status: ChannelStatus,
    /// Nanotons deposited.
    pub deposit: u64,
    /// Nanotons claimed by the operator so far (cumulative).
    pub claimed: u64,
    /// When the close started (unix seconds), 0 if not.
    pub closing_since: u32,
    /// The close delay (seconds).
    pub close_delay: u32,
}

/// `machine_terms$_ operator:MsgAddressInt price_per_million:Coins
/// key_hash:bits256 = MachineTerms` — what the registry answered at open.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MachineTerms {
    /// The machine's operator (the only address that can claim).
    #[serde(serialize_with = "ser_addr")]
    pub operator: TonAddress,
    /// Nanotons per million tokens, fixed for the channel's life.
    pub price_per_million: u64,
    /// SHA-256 of the machine's RA-TLS SubjectPublicKeyInfo at open.
    #[serde(with = "hex::serde")]
    pub key_hash: [u8; 32],
}

fn ser_addr<S: serde::Serializer>(a: &TonAddress, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&a.to_base64_url())
}

impl MachineTerms {
    /// Parses the cell `get_terms()` returns (no trailing data).
    pub fn from_cell(cell: &Cell) -> Result<Self> {
        let mut p = cell.parser();
        let operator = p.load_address()?;
        let price = p.load_coins()?;
        let mut key_hash = [0u8; 32];
        p.load_slice(&mut key_hash)?;
        p.ensure_empty()?;
        if !cell.references().is_empty() {
            return Err(Error::Invalid {
                field: "machine terms",
                detail: "unexpected references".into(),
            });
        }
        let price_per_million = u64::try_from(&price).map_err(|_| Error::Invalid {
            field: "price_per_million",
            detail: format!("{price} does not fit 64 bits"),
        })?;
        Ok(MachineTerms {
            operator,
            price_per_million,
            key_hash,
        })
    }
}
