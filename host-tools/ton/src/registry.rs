//! The registry contract's messages, records and exit codes (TL-B in
//! `host-tools/ton/README.md`; the contract is `contract/registry.tolk`).
//!
//! Every text field is one cell of raw bytes (no snake tails), so a value
//! that does not fit is refused here, before anything is signed.

use std::sync::Arc;

use num_bigint::BigUint;
use sha2::{Digest, Sha256};
use tonlib_core::cell::{ArcCell, Cell, CellBuilder, CellParser};
use tonlib_core::TonAddress;

use crate::{Error, Result};

/// Opcodes (first 32 bits of a message body, big-endian).
pub mod op {
    /// Admin: add (or replace) an allowed image measurement.
    pub const ADD_MEASUREMENT: u32 = 0xc4a5_0001;
    /// Admin: remove an allowed image measurement.
    pub const REMOVE_MEASUREMENT: u32 = 0xc4a5_0002;
    /// Admin: hand the admin role to another address.
    pub const CHANGE_ADMIN: u32 = 0xc4a5_0003;
    /// Operator: register a machine with a stake.
    pub const REGISTER: u32 = 0xc4a5_0010;
    /// Operator: update a machine (new attested key/measurement, endpoint, model, price).
    pub const UPDATE: u32 = 0xc4a5_0011;
    /// Operator: heartbeat.
    pub const HEARTBEAT: u32 = 0xc4a5_0012;
    /// Operator: leave the market (starts the unstake delay).
    pub const UNREGISTER: u32 = 0xc4a5_0013;
    /// Operator: take the stake back after the delay.
    pub const WITHDRAW_STAKE: u32 = 0xc4a5_0014;
    /// Registry -> sender: value beyond stake and fees returned.
    pub const EXCESS: u32 = 0xc4a5_0020;
    /// Registry -> operator: stake returned.
    pub const STAKE_RETURNED: u32 = 0xc4a5_0021;
}

/// Exit codes the registry throws, with what each means.
pub const EXIT_CODES: &[(i32, &str, &str)] = &[
    (
        201,
        "not_admin",
        "admin-only message from an address that is not the admin",
    ),
    (
        202,
        "measurement_not_allowed",
        "the image measurement is not in the allowed set",
    ),
    (
        203,
        "stake_too_low",
        "the declared stake is below the registry's minimum",
    ),
    (204, "bad_endpoint", "the endpoint is not host:port"),
    (
        205,
        "bad_model",
        "model id or release name empty, too long or not printable ASCII",
    ),
    (
        206,
        "bad_public_key",
        "public key shorter than 32 or longer than 127 bytes",
    ),
    (
        207,
        "already_registered",
        "a machine with this public key is already registered",
    ),
    (208, "unknown_machine", "no machine with this id"),
    (
        209,
        "not_operator",
        "message about a machine from an address that is not its operator",
    ),
    (210, "not_leaving", "withdraw before unregister"),
    (
        211,
        "delay_not_over",
        "withdraw before the unstake delay has passed",
    ),
    (
        212,
        "insufficient_value",
        "attached value does not cover the stake plus fees",
    ),
    (213, "bad_tee", "TEE type is not 1 (TDX) or 2 (SNP)"),
    (214, "already_leaving", "the machine is unregistering"),
    (215, "unknown_op", "unknown opcode or malformed body"),
];

/// Name and meaning of a registry exit code, if it is one.
pub fn describe_exit_code(code: i64) -> Option<(&'static str, &'static str)> {
    EXIT_CODES
        .iter()
        .find(|(c, _, _)| i64::from(*c) == code)
        .map(|(_, n, m)| (*n, *m))
}

/// Value the registry keeps from a `Register` for gas (nanotons); attach
/// at least `stake + FEE_RESERVE`.
pub const FEE_RESERVE: u64 = 50_000_000;
/// Value to attach to every other operator/admin message (nanotons); the
/// registry returns what it does not use.
pub const MESSAGE_VALUE: u64 = 50_000_000;
/// Longest text field (bytes): one cell.
pub const MAX_TEXT_BYTES: usize = 127;

/// TEE type as stored on chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TeeType {
    /// Intel TDX (1).
    Tdx,
    /// AMD SEV-SNP (2).
    Snp,
}

impl TeeType {
    /// The on-chain `uint8`.
    pub fn code(self) -> u8 {
        match self {
            TeeType::Tdx => 1,
            TeeType::Snp => 2,
        }
    }
    /// From the on-chain `uint8`.
    pub fn from_code(c: u8) -> Result<Self> {
        match c {
            1 => Ok(TeeType::Tdx),
            2 => Ok(TeeType::Snp),
            other => Err(Error::Invalid {
                field: "tee",
                detail: format!("{other} is neither 1 (TDX) nor 2 (SNP)"),
            }),
        }
    }
}

/// The 256-bit image measurement the registry keys allowed images by.
///
/// TDX: `SHA-256("chrysalis/image-measurement/v1/tdx" || MRTD || RTMR1 || RTMR2)`
/// (48 bytes each; RTMR0 depends on the VMM's ACPI tables and RTMR3 on
/// run time, so neither identifies the image). SNP:
/// `SHA-256("chrysalis/image-measurement/v1/snp" || MEASUREMENT)` (48 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ImageMeasurement(pub [u8; 32]);

impl ImageMeasurement {
    /// The complete identity of a TDX configuration: SHA-256 of
    /// `"chrysalis/image-measurement/v2/tdx"` ‖ MRTD ‖ RTMR0 ‖ RTMR1 ‖
    /// RTMR2 ‖ RTMR3 ‖ MRCONFIGID ‖ MROWNER ‖ MROWNERCONFIG (48 bytes each,
    /// report byte order). Every register a published configuration pins,
    /// never a subset: a machine with other ACPI tables (RTMR0) or another
    /// runtime configuration (RTMR3) has another identity.
    pub fn tdx(registers: &TdxRegisters) -> Self {
        let mut h = Sha256::new();
        h.update(b"chrysalis/image-measurement/v2/tdx");
        h.update(registers.mrtd);
        for r in &registers.rtmr {
            h.update(r);
        }
        h.update(registers.mrconfigid);
        h.update(registers.mrowner);
        h.update(registers.mrownerconfig);
        ImageMeasurement(h.finalize().into())
    }
    /// The complete identity of an SNP configuration: SHA-256 of
    /// `"chrysalis/image-measurement/v2/snp"` ‖ MEASUREMENT (48 bytes) ‖
    /// HOST_DATA (32 bytes: the runtime configuration's digest).
    pub fn snp(measurement: &[u8; 48], host_data: &[u8; 32]) -> Self {
        let mut h = Sha256::new();
        h.update(b"chrysalis/image-measurement/v2/snp");
        h.update(measurement);
        h.update(host_data);
        ImageMeasurement(h.finalize().into())
    }
    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
    /// From 64 hex digits.
    pub fn from_hex(s: &str) -> Result<Self> {
        Ok(ImageMeasurement(hex32("measurement", s)?))
    }
}

/// The TDX registers an [`ImageMeasurement`] covers (48 bytes each, report
/// byte order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TdxRegisters {
    /// MRTD.
    pub mrtd: [u8; 48],
    /// RTMR0..RTMR3.
    pub rtmr: [[u8; 48]; 4],
    /// MRCONFIGID (all-zero for a Chrysalis TD).
    pub mrconfigid: [u8; 48],
    /// MROWNER (all-zero for a Chrysalis TD).
    pub mrowner: [u8; 48],
    /// MROWNERCONFIG (all-zero for a Chrysalis TD).
    pub mrownerconfig: [u8; 48],
}

/// A machine id: SHA-256 of its RA-TLS SubjectPublicKeyInfo DER at
/// registration (the contract computes it the same way).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MachineId(pub [u8; 32]);

impl MachineId {
    /// The id a key registers under.
    pub fn of_key(spki_der: &[u8]) -> Self {
        MachineId(Sha256::digest(spki_der).into())
    }
    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
    /// From 64 hex digits.
    pub fn from_hex(s: &str) -> Result<Self> {
        Ok(MachineId(hex32("machine id", s)?))
    }
}

fn hex32(field: &'static str, s: &str) -> Result<[u8; 32]> {
    let v = hex::decode(s.trim()).map_err(|e| Error::Invalid {
        field,
        detail: format!("not hex: {e}"),
    })?;
    v.try_into().map_err(|v: Vec<u8>| Error::Invalid {
        field,
        detail: format!("{} bytes, expected 32", v.len()),
    })
}

/// A `host:port` endpoint, checked with the contract's rules: host of
/// `[A-Za-z0-9.-]`, one `:`, port 1..=65535 without leading zeros, at most
/// 127 bytes. IPv6 literals are not accepted on chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint(String);

impl Endpoint {
    /// Checks `s`.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = |detail: String| Error::Invalid {
            field: "endpoint",
            detail: format!("{s:?}: {detail} (expected host:port, e.g. node1.example.com:8443)"),
        };
        if s.is_empty() || s.len() > MAX_TEXT_BYTES {
            return Err(bad(format!(
                "length {} not in 1..={MAX_TEXT_BYTES}",
                s.len()
            )));
        }
        let (host, port) = s.split_once(':').ok_or_else(|| bad("no ':'".into()))?;
        if host.is_empty() {
            return Err(bad("empty host".into()));
        }
        if let Some(c) = host
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '.' || *c == '-'))
        {
            return Err(bad(format!("host has {c:?}")));
        }
        if port.is_empty()
            || port.len() > 5
            || !port.bytes().all(|b| b.is_ascii_digit())
            || port.starts_with('0')
        {
            return Err(bad(format!("port {port:?} is not 1..=65535")));
        }
        let p: u32 = port.parse().map_err(|_| bad(format!("port {port:?}")))?;
        if !(1..=65535).contains(&p) {
            return Err(bad(format!("port {p} is not 1..=65535")));
        }
        Ok(Endpoint(s.to_string()))
    }
    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Printable ASCII (0x21..=0x7e), 1..=127 bytes: model ids and release names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label(String);

impl Label {
    /// Checks `s` for `field`.
    pub fn parse(field: &'static str, s: &str) -> Result<Self> {
        if s.is_empty() || s.len() > MAX_TEXT_BYTES {
            return Err(Error::Invalid {
                field,
                detail: format!("length {} not in 1..={MAX_TEXT_BYTES}", s.len()),
            });
        }
        if let Some(c) = s.bytes().find(|b| !(0x21..=0x7e).contains(b)) {
            return Err(Error::Invalid {
                field,
                detail: format!("{s:?} has byte 0x{c:02x}; only printable ASCII without spaces"),
            });
        }
        Ok(Label(s.to_string()))
    }
    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn bytes_cell(field: &'static str, b: &[u8]) -> Result<ArcCell> {
    if b.is_empty() || b.len() > MAX_TEXT_BYTES {
        return Err(Error::Invalid {
            field,
            detail: format!("{} bytes, not in 1..={MAX_TEXT_BYTES}", b.len()),
        });
    }
    Ok(Arc::new(CellBuilder::new().store_slice(b)?.build()?))
}

fn coins(v: u64) -> BigUint {
    BigUint::from(v)
}

/// Register: `register#c4a50010 query_id:uint64 measurement:bits256
/// public_key:^Bytes endpoint:^Bytes model:^Bytes price_per_million:Coins
/// stake:Coins = InMsgBody`.
#[derive(Debug, Clone)]
pub struct Register {
    /// Caller's query id (echoed in `Excess`).
    pub query_id: u64,
    /// The attested image measurement.
    pub measurement: ImageMeasurement,
    /// The attested RA-TLS SubjectPublicKeyInfo DER.
    pub public_key: Vec<u8>,
    /// Where clients reach the machine.
    pub endpoint: Endpoint,
    /// Model identifier.
    pub model: Label,
    /// Nanotons per million tokens.
    pub price_per_million: u64,
    /// Declared stake (nanotons).
    pub stake: u64,
}

/// Update: `update#c4a50011 query_id:uint64 id:bits256 measurement:bits256
/// public_key:^Bytes endpoint:^Bytes model:^Bytes price_per_million:Coins = InMsgBody`.
#[derive(Debug, Clone)]
pub struct Update {
    /// Query id.
    pub query_id: u64,
    /// The machine.
    pub id: MachineId,
    /// New attested measurement.
    pub measurement: ImageMeasurement,
    /// New attested key.
    pub public_key: Vec<u8>,
    /// New endpoint.
    pub endpoint: Endpoint,
    /// New model.
    pub model: Label,
    /// New price.
    pub price_per_million: u64,
}

/// A message to the registry.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum RegistryMessage {
    /// `add_measurement#c4a50001 query_id:uint64 measurement:bits256 tee:uint8 release:^Bytes`
    AddMeasurement {
        /// Query id.
        query_id: u64,
        /// The measurement.
        measurement: ImageMeasurement,
        /// Its TEE.
        tee: TeeType,
        /// Release name.
        release: Label,
    },
    /// `remove_measurement#c4a50002 query_id:uint64 measurement:bits256`
    RemoveMeasurement {
        /// Query id.
        query_id: u64,
        /// The measurement.
        measurement: ImageMeasurement,
    },
    /// `change_admin#c4a50003 query_id:uint64 new_admin:MsgAddressInt`
    ChangeAdmin {
        /// Query id.
        query_id: u64,
        /// New admin.
        new_admin: TonAddress,
    },
    /// See [`Register`].
    Register(Register),
    /// See [`Update`].
    Update(Update),
    /// `heartbeat#c4a50012 query_id:uint64 id:bits256`
    Heartbeat {
        /// Query id.
        query_id: u64,
        /// The machine.
        id: MachineId,
    },
    /// `unregister#c4a50013 query_id:uint64 id:bits256`
    Unregister {
        /// Query id.
        query_id: u64,
        /// The machine.
        id: MachineId,
    },
    /// `withdraw_stake#c4a50014 query_id:uint64 id:bits256`
    WithdrawStake {
        /// Query id.
        query_id: u64,
        /// The machine.
        id: MachineId,
    },
}

impl RegistryMessage {
    /// The body cell.
    pub fn to_cell(&self) -> Result<Cell> {
        let mut b = CellBuilder::new();
        match self {
            RegistryMessage::AddMeasurement {
                query_id,
                measurement,
                tee,
                release,
            } => {
                b.store_u32(32, op::ADD_MEASUREMENT)?
                    .store_u64(64, *query_id)?
                    .store_slice(&measurement.0)?
                    .store_u8(8, tee.code())?
                    .store_reference(&bytes_cell("release", release.as_str().as_bytes())?)?;
            }
            RegistryMessage::RemoveMeasurement {
                query_id,
                measurement,
            } => {
                b.store_u32(32, op::REMOVE_MEASUREMENT)?
                    .store_u64(64, *query_id)?
                    .store_slice(&measurement.0)?;
            }
            RegistryMessage::ChangeAdmin {
                query_id,
                new_admin,
            } => {
                b.store_u32(32, op::CHANGE_ADMIN)?
                    .store_u64(64, *query_id)?
                    .store_address(new_admin)?;
            }
            RegistryMessage::Register(r) => {
                b.store_u32(32, op::REGISTER)?
                    .store_u64(64, r.query_id)?
                    .store_slice(&r.measurement.0)?
                    .store_reference(&bytes_cell("public key", &r.public_key)?)?
                    .store_reference(&bytes_cell("endpoint", r.endpoint.as_str().as_bytes())?)?
                    .store_reference(&bytes_cell("model", r.model.as_str().as_bytes())?)?
                    .store_coins(&coins(r.price_per_million))?
                    .store_coins(&coins(r.stake))?;
            }
            RegistryMessage::Update(u) => {
                b.store_u32(32, op::UPDATE)?
                    .store_u64(64, u.query_id)?
                    .store_slice(&u.id.0)?
                    .store_slice(&u.measurement.0)?
                    .store_reference(&bytes_cell("public key", &u.public_key)?)?
                    .store_reference(&bytes_cell("endpoint", u.endpoint.as_str().as_bytes())?)?
                    .store_reference(&bytes_cell("model", u.model.as_str().as_bytes())?)?
                    .store_coins(&coins(u.price_per_million))?;
            }
            RegistryMessage::Heartbeat { query_id, id } => {
                b.store_u32(32, op::HEARTBEAT)?
                    .store_u64(64, *query_id)?
                    .store_slice(&id.0)?;
            }
            RegistryMessage::Unregister { query_id, id } => {
                b.store_u32(32, op::UNREGISTER)?
                    .store_u64(64, *query_id)?
                    .store_slice(&id.0)?;
            }
            RegistryMessage::WithdrawStake { query_id, id } => {
                b.store_u32(32, op::WITHDRAW_STAKE)?
                    .store_u64(64, *query_id)?
                    .store_slice(&id.0)?;
            }
        }
        Ok(b.build()?)
    }
}

/// A registered machine as stored on chain:
/// `machine$_ operator:MsgAddressInt tee:uint8 measurement:bits256
/// public_key:^Bytes endpoint:^Bytes model:^Bytes price_per_million:Coins
/// stake:Coins registered_at:uint32 last_heartbeat:uint32
/// leaving_since:uint32 = Machine`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Machine {
    /// Machine id (hex in JSON).
    #[serde(serialize_with = "ser_id")]
    pub id: MachineId,
    /// Operator address, user-friendly (bounceable).
    #[serde(serialize_with = "ser_addr")]
    pub operator: TonAddress,
    /// TEE type.
    pub tee: TeeType,
    /// Image measurement (hex in JSON).
    #[serde(serialize_with = "ser_meas")]
    pub measurement: ImageMeasurement,
    /// RA-TLS SubjectPublicKeyInfo DER (hex in JSON).
    #[serde(with = "hex::serde")]
    pub public_key: Vec<u8>,
    /// `host:port`.
    pub endpoint: String,
    /// Model identifier.
    pub model: String,
    /// Nanotons per million tokens.
    pub price_per_million: u64,
    /// Stake (nanotons).
    pub stake: u64,
    /// Unix seconds.
    pub registered_at: u32,
    /// Unix seconds.
    pub last_heartbeat: u32,
    /// Unix seconds; 0 while active.
    pub leaving_since: u32,
}

fn ser_id<S: serde::Serializer>(v: &MachineId, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&v.to_hex())
}
fn ser_meas<S: serde::Serializer>(
    v: &ImageMeasurement,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&v.to_hex())
}
fn ser_addr<S: serde::Serializer>(v: &TonAddress, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&v.to_base64_url())
}

fn ref_bytes(p: &mut CellParser, field: &'static str) -> Result<Vec<u8>> {
    let c = p.next_reference()?;
    let mut q = c.parser();
    if q.remaining_refs() != 0 || q.remaining_bits() % 8 != 0 {
        return Err(Error::Invalid {
            field,
            detail: "not a one-cell byte string".into(),
        });
    }
    let n = q.remaining_bytes();
    Ok(q.load_bytes(n)?)
}

fn load_u64_coins(p: &mut CellParser, field: &'static str) -> Result<u64> {
    let v = p.load_coins()?;
    u64::try_from(&v).map_err(|_| Error::Invalid {
        field,
        detail: format!("{v} does not fit 64 bits"),
    })
}

impl Machine {
    /// Parses a `Machine` cell stored under `id`; trailing data is an error.
    pub fn from_cell(id: MachineId, cell: &Cell) -> Result<Self> {
        let mut p = cell.parser();
        let operator = p.load_address()?;
        let tee = TeeType::from_code(p.load_u8(8)?)?;
        let mut m = [0u8; 32];
        p.load_slice(&mut m)?;
        let public_key = ref_bytes(&mut p, "public key")?;
        let endpoint = String::from_utf8_lossy(&ref_bytes(&mut p, "endpoint")?).into_owned();
        let model = String::from_utf8_lossy(&ref_bytes(&mut p, "model")?).into_owned();
        let price_per_million = load_u64_coins(&mut p, "price")?;
        let stake = load_u64_coins(&mut p, "stake")?;
        let registered_at = p.load_u32(32)?;
        let last_heartbeat = p.load_u32(32)?;
        let leaving_since = p.load_u32(32)?;
        p.ensure_empty()?;
        Ok(Machine {
            id,
            operator,
            tee,
            measurement: ImageMeasurement(m),
            public_key,
            endpoint,
            model,
            price_per_million,
            stake,
            registered_at,
            last_heartbeat,
            leaving_since,
        })
    }

    /// Parses the `get_machines` dictionary (`HashmapE 256 ^Machine`, given
    /// as its root cell; `None` when empty), sorted by id.
    pub fn list_from_dict(root: Option<&Cell>) -> Result<Vec<Machine>> {
        let Some(root) = root else {
            return Ok(Vec::new());
        };
        let raw = root.parser().load_dict_data(
            256,
            tonlib_core::cell::dict::predefined_readers::key_reader_256bit,
            tonlib_core::cell::dict::predefined_readers::val_reader_ref_cell,
        )?;
        let mut out = raw
            .into_iter()
            .map(|(k, v)| Machine::from_cell(MachineId(<[u8; 32]>::from(k)), &v))
            .collect::<Result<Vec<_>>>()?;
        out.sort_by_key(|m| m.id);
        Ok(out)
    }
}

/// Initial registry data: `storage$_ admin:MsgAddressInt min_stake:Coins
/// unstake_delay:uint32 machine_count:uint32
/// measurements:(HashmapE 256 AllowedMeasurement)
/// machines:(HashmapE 256 ^Machine) = Storage`.
pub fn initial_data(admin: &TonAddress, min_stake: u64, unstake_delay_s: u32) -> Result<Cell> {
    Ok(CellBuilder::new()
        .store_address(admin)?
        .store_coins(&coins(min_stake))?
        .store_u32(32, unstake_delay_s)?
        .store_u32(32, 0)?
        .store_bit(false)?
        .store_bit(false)?
        .build()?)
}

/// The registry's address for `code` and initial `data` (basechain).
pub fn registry_address(code: &Cell, data: &Cell) -> Result<TonAddress> {
    Ok(TonAddress::derive(
        0,
        Arc::new(code.clone()),
        Arc::new(data.clone()),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_rules() {
        for ok in ["a:1", "node1.example.com:8443", "10.0.0.1:65535"] {
            Endpoint::parse(ok).unwrap();
        }
        for bad in [
            "",
            "host",
            ":80",
            "host:",
            "host:0",
            "host:080",
            "host:65536",
            "ho st:80",
            "[::1]:80",
            "a:b:1",
            "host:123456",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(Endpoint::parse(&format!("{}:1", "a".repeat(126))).is_err());
    }

    #[test]
    fn labels() {
        Label::parse("model", "llama-3.1-8b").unwrap();
        assert!(Label::parse("model", "").is_err());
        assert!(Label::parse("model", "with space").is_err());
        assert!(Label::parse("model", &"x".repeat(128)).is_err());
    }

    #[test]
    fn exit_codes_unique() {
        let mut c: Vec<_> = EXIT_CODES.iter().map(|e| e.0).collect();
        c.dedup();
        assert_eq!(c.len(), EXIT_CODES.len());
        assert_eq!(
            describe_exit_code(202).unwrap().0,
            "measurement_not_allowed"
        );
    }

    proptest::proptest! {
        #[test]
        fn endpoint_parse_never_panics(s in ".{0,200}") {
            let _ = Endpoint::parse(&s);
        }

        #[test]
        fn machine_parse_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..128)) {
            if let Ok(c) = CellBuilder::new().store_slice(&bytes).and_then(|b| b.build()) {
                let _ = Machine::from_cell(MachineId([0; 32]), &c);
            }
        }
    }
}
