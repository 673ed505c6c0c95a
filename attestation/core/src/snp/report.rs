//! The SEV-SNP `ATTESTATION_REPORT` wire format (AMD SEV-SNP firmware ABI
//! specification, table "ATTESTATION_REPORT Structure").
//!
//! A report is exactly [`REPORT_LEN`] (0x4A0 = 1184) bytes. All integers are
//! little-endian. Bytes `0..0x2A0` are signed; the signature follows at
//! [`SIGNATURE_OFFSET`]. Three layouts exist:
//!
//! | version | layout | adds |
//! |---|---|---|
//! | 2 | [`ReportLayout::V2`] | — |
//! | 3, 4 | [`ReportLayout::V3`] | CPUID family/model/stepping at 0x188 |
//! | ≥ 5 | [`ReportLayout::V5`] | launch/current mitigation vectors at 0x1F8 |
//!
//! Versions 0 and 1 predate the SNP ABI this crate understands and are
//! rejected. Versions above 5 are read with the version 5 layout; every
//! byte, including reserved ones, is kept so [`SnpReport::to_bytes`] gives
//! back exactly the bytes that were parsed.

use serde::Serialize;

use super::tcb::{Product, TcbLayout, TcbVersion};
use crate::error::ParseError;
use crate::reader::Reader;

/// Length of an attestation report in bytes (0x4A0).
pub const REPORT_LEN: usize = 0x4A0;

/// Offset of the signature; bytes `0..SIGNATURE_OFFSET` are what is signed.
pub const SIGNATURE_OFFSET: usize = 0x2A0;

/// `SIGNATURE_ALGO` value for ECDSA P-384 with SHA-384, the only algorithm
/// the SNP firmware uses.
pub const SIG_ALGO_ECDSA_P384_SHA384: u32 = 1;

const STRUCTURE: &str = "SnpReport";

/// Which fields a report version has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum ReportLayout {
    /// Version 2: no CPUID or mitigation-vector fields.
    V2,
    /// Versions 3 and 4: CPUID family/model/stepping at 0x188..0x18B.
    V3,
    /// Version 5 and later: also the mitigation vectors at 0x1F8..0x208.
    V5,
}

impl ReportLayout {
    /// The layout for a `VERSION` field value; `None` for versions 0 and 1.
    pub fn for_version(version: u32) -> Option<ReportLayout> {
        match version {
            0 | 1 => None,
            2 => Some(ReportLayout::V2),
            3 | 4 => Some(ReportLayout::V3),
            _ => Some(ReportLayout::V5),
        }
    }
}

/// The guest policy (`POLICY`, 64 bits) the guest owner set at launch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct GuestPolicy(pub u64);

impl GuestPolicy {
    fn bit(self, n: u32) -> bool {
        (self.0 >> n) & 1 == 1
    }
    /// The raw 64-bit value.
    pub fn raw(self) -> u64 {
        self.0
    }
    /// Minimum ABI minor version required (bits 7:0).
    pub fn abi_minor(self) -> u8 {
        self.0 as u8
    }
    /// Minimum ABI major version required (bits 15:8).
    pub fn abi_major(self) -> u8 {
        (self.0 >> 8) as u8
    }
    /// Bit 16: the host may use SMT.
    pub fn smt(self) -> bool {
        self.bit(16)
    }
    /// Bit 17: reserved, must be one in a valid policy.
    pub fn reserved_one(self) -> bool {
        self.bit(17)
    }
    /// Bit 18: association with a migration agent is allowed.
    pub fn migrate_ma(self) -> bool {
        self.bit(18)
    }
    /// Bit 19: debugging is allowed, i.e. the host can read and write guest
    /// memory through the firmware's debug commands. Such a guest is not
    /// confidential.
    pub fn debug(self) -> bool {
        self.bit(19)
    }
    /// Bit 20: the guest may only be activated on one socket.
    pub fn single_socket(self) -> bool {
        self.bit(20)
    }
    /// Bit 21: CXL may be populated with devices or memory.
    pub fn cxl_allow(self) -> bool {
        self.bit(21)
    }
    /// Bit 22: AES-256-XTS memory encryption is required.
    pub fn mem_aes_256_xts(self) -> bool {
        self.bit(22)
    }
    /// Bit 23: Running Average Power Limit must be disabled.
    pub fn rapl_dis(self) -> bool {
        self.bit(23)
    }
    /// Bit 24: ciphertext hiding must be enabled.
    pub fn ciphertext_hiding(self) -> bool {
        self.bit(24)
    }
    /// Bit 25: the page move / swap commands are disabled for this guest.
    pub fn page_swap_disable(self) -> bool {
        self.bit(25)
    }
}

/// Platform state (`PLATFORM_INFO`, 64 bits) at the time of the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct PlatformInfo(pub u64);

impl PlatformInfo {
    fn bit(self, n: u32) -> bool {
        (self.0 >> n) & 1 == 1
    }
    /// The raw 64-bit value.
    pub fn raw(self) -> u64 {
        self.0
    }
    /// Bit 0: SMT is enabled on the platform.
    pub fn smt_en(self) -> bool {
        self.bit(0)
    }
    /// Bit 1: transparent SME is enabled.
    pub fn tsme_en(self) -> bool {
        self.bit(1)
    }
    /// Bit 2: the platform uses ECC memory.
    pub fn ecc_en(self) -> bool {
        self.bit(2)
    }
    /// Bit 3: RAPL is disabled.
    pub fn rapl_dis(self) -> bool {
        self.bit(3)
    }
    /// Bit 4: ciphertext hiding is enabled.
    pub fn ciphertext_hiding_en(self) -> bool {
        self.bit(4)
    }
    /// Bit 5: alias detection completed since the last reset and found no
    /// aliasing addresses.
    pub fn alias_check_complete(self) -> bool {
        self.bit(5)
    }
    /// Bit 7: SEV-TIO is enabled.
    pub fn tio_en(self) -> bool {
        self.bit(7)
    }
}

/// Which key signed the report (`SIGNING_KEY`, bits 4:2 of the key info).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum SigningKey {
    /// 0: the Versioned Chip Endorsement Key.
    Vcek,
    /// 1: the Versioned Loaded Endorsement Key.
    Vlek,
    /// 7: the report is not signed.
    None,
    /// 2–6: reserved values.
    Reserved(u8),
}

/// Key information (the 32-bit word at 0x48).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct KeyInfo(pub u32);

impl KeyInfo {
    /// The raw 32-bit value.
    pub fn raw(self) -> u32 {
        self.0
    }
    /// Bit 0: `AUTHOR_KEY_DIGEST` holds the digest of an author key.
    pub fn author_key_en(self) -> bool {
        self.0 & 1 == 1
    }
    /// Bit 1: `MaskChipKey`; when set the firmware zeroes the signature
    /// instead of signing.
    pub fn mask_chip_key(self) -> bool {
        (self.0 >> 1) & 1 == 1
    }
    /// Bits 4:2: the key that signed the report.
    pub fn signing_key(self) -> SigningKey {
        match (self.0 >> 2) & 0x7 {
            0 => SigningKey::Vcek,
            1 => SigningKey::Vlek,
            7 => SigningKey::None,
            n => SigningKey::Reserved(n as u8),
        }
    }
}

/// CPUID identification of the platform (version 3+ reports).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct CpuId {
    /// Combined extended family and family (e.g. 0x19 for Zen 3/4).
    pub family: u8,
    /// Combined extended model and model.
    pub model: u8,
    /// Stepping.
    pub stepping: u8,
}

/// A firmware version as the report stores it: build, minor, major bytes in
/// that wire order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct FirmwareVersion {
    /// Major version.
    pub major: u8,
    /// Minor version.
    pub minor: u8,
    /// Build number.
    pub build: u8,
}

impl std::fmt::Display for FirmwareVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{} (build {})", self.major, self.minor, self.build)
    }
}

/// The 512-byte signature area: ECDSA P-384 `r` and `s`, each as 72 bytes
/// **little-endian** (zero-extended from 48), then 368 reserved bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct EcdsaSignature {
    /// `r`, little-endian, 72 bytes.
    #[serde(serialize_with = "hex::serde::serialize")]
    pub r: [u8; 72],
    /// `s`, little-endian, 72 bytes.
    #[serde(serialize_with = "hex::serde::serialize")]
    pub s: [u8; 72],
    /// Reserved bytes after `s`, kept verbatim.
    #[serde(skip)]
    pub reserved: [u8; 368],
}

impl EcdsaSignature {
    /// Builds the wire form from big-endian 48-byte P-384 scalars.
    pub fn from_p384_be(r: &[u8; 48], s: &[u8; 48]) -> Self {
        let mut out = EcdsaSignature {
            r: [0; 72],
            s: [0; 72],
            reserved: [0; 368],
        };
        for (dst, src) in out.r.iter_mut().zip(r.iter().rev()) {
            *dst = *src;
        }
        for (dst, src) in out.s.iter_mut().zip(s.iter().rev()) {
            *dst = *src;
        }
        out
    }

    /// `r` and `s` as big-endian 48-byte scalars, or `None` if either has a
    /// non-zero byte above the 48 a P-384 scalar can use.
    pub fn p384_be(&self) -> Option<([u8; 48], [u8; 48])> {
        fn one(le: &[u8; 72]) -> Option<[u8; 48]> {
            if le[48..].iter().any(|&b| b != 0) {
                return None;
            }
            let mut be = [0u8; 48];
            for (dst, src) in be.iter_mut().zip(le[..48].iter().rev()) {
                *dst = *src;
            }
            Some(be)
        }
        Some((one(&self.r)?, one(&self.s)?))
    }
}

/// An SEV-SNP attestation report, every field typed. Offsets are from the
/// start of the report; integers are little-endian on the wire.
///
/// Fields that only exist in some versions are `Option`s; when they are
/// `None` the bytes at their place are reserved and kept in the matching
/// `reserved_*` field, so that [`SnpReport::to_bytes`] is the exact inverse
/// of [`SnpReport::parse`].
///
/// The TCB fields are decoded with a layout guessed from the report alone
/// ([`SnpReport::tcb_layout_hint`]); the verifier re-decodes them for the
/// product its certificate chain proves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SnpReport {
    /// 0x000: report format version (2, 3, 5, ...).
    pub version: u32,
    /// 0x004: guest security version number from the ID block.
    pub guest_svn: u32,
    /// 0x008: guest policy.
    pub policy: GuestPolicy,
    /// 0x010: family id from the ID block.
    #[serde(serialize_with = "hex::serde::serialize")]
    pub family_id: [u8; 16],
    /// 0x020: image id from the ID block.
    #[serde(serialize_with = "hex::serde::serialize")]
    pub image_id: [u8; 16],
    /// 0x030: VMPL of the guest that requested the report.
    pub vmpl: u32,
    /// 0x034: signature algorithm; 1 = ECDSA P-384 with SHA-384.
    pub sig_algo: u32,
    /// 0x038: current TCB version of the platform.
    pub current_tcb: TcbVersion,
    /// 0x040: platform information.
    pub platform_info: PlatformInfo,
    /// 0x048: author key enable, mask chip key, signing key.
    pub key_info: KeyInfo,
    /// 0x04C: reserved, 4 bytes.
    #[serde(skip)]
    pub reserved_04c: [u8; 4],
    /// 0x050: 64 bytes the guest supplied with its request.
    #[serde(serialize_with = "hex::serde::serialize")]
    pub report_data: [u8; 64],
    /// 0x090: launch digest (SHA-384) of the guest.
    #[serde(serialize_with = "hex::serde::serialize")]
    pub measurement: [u8; 48],
    /// 0x0C0: data the host supplied at launch.
    #[serde(serialize_with = "hex::serde::serialize")]
    pub host_data: [u8; 32],
    /// 0x0E0: SHA-384 of the ID key that signed the ID block.
    #[serde(serialize_with = "hex::serde::serialize")]
    pub id_key_digest: [u8; 48],
    /// 0x110: SHA-384 of the author key that certified the ID key.
    #[serde(serialize_with = "hex::serde::serialize")]
    pub author_key_digest: [u8; 48],
    /// 0x140: report id of this guest.
    #[serde(serialize_with = "hex::serde::serialize")]
    pub report_id: [u8; 32],
    /// 0x160: report id of the guest's migration agent.
    #[serde(serialize_with = "hex::serde::serialize")]
    pub report_id_ma: [u8; 32],
    /// 0x180: the TCB version the signing key (VCEK) was derived from.
    pub reported_tcb: TcbVersion,
    /// 0x188: CPUID family, model, stepping (version 3+; `None` on v2).
    pub cpuid: Option<CpuId>,
    /// 0x188: the three bytes `cpuid` occupies on v3+, kept here on v2.
    #[serde(skip)]
    pub reserved_188: [u8; 3],
    /// 0x18B: reserved, 21 bytes.
    #[serde(skip)]
    pub reserved_18b: [u8; 21],
    /// 0x1A0: chip id (zero when `MASK_CHIP_ID` is set; Turin uses 8 bytes).
    #[serde(serialize_with = "hex::serde::serialize")]
    pub chip_id: [u8; 64],
    /// 0x1E0: committed TCB version.
    pub committed_tcb: TcbVersion,
    /// 0x1E8: current firmware version (build, minor, major bytes).
    pub current_version: FirmwareVersion,
    /// 0x1EB: reserved.
    #[serde(skip)]
    pub reserved_1eb: u8,
    /// 0x1EC: committed firmware version (build, minor, major bytes).
    pub committed_version: FirmwareVersion,
    /// 0x1EF: reserved.
    #[serde(skip)]
    pub reserved_1ef: u8,
    /// 0x1F0: the current TCB when the guest was launched or imported.
    pub launch_tcb: TcbVersion,
    /// 0x1F8: verified mitigation vector at launch (version 5+).
    pub launch_mit_vector: Option<u64>,
    /// 0x200: current verified mitigation vector (version 5+).
    pub current_mit_vector: Option<u64>,
    /// 0x1F8: the 16 bytes the mitigation vectors occupy on v5+, kept here
    /// (per half) when the matching vector is `None`.
    #[serde(skip)]
    pub reserved_1f8: [u8; 16],
    /// 0x208: reserved, 152 bytes up to the signature.
    #[serde(skip)]
    pub reserved_208: [u8; 152],
    /// 0x2A0: the signature over bytes `0..0x2A0`.
    pub signature: EcdsaSignature,
}

impl SnpReport {
    /// Parses exactly [`REPORT_LEN`] bytes. Any other length, or a version
    /// below 2, is an error naming the field and offset. Never panics.
    pub fn parse(bytes: &[u8]) -> Result<SnpReport, ParseError> {
        let mut r = Reader::new(STRUCTURE, bytes);
        let version = r.u32_le("version")?;
        let layout = ReportLayout::for_version(version).ok_or_else(|| {
            r.error_at(
                "version",
                0,
                format!(
                    "unsupported report version {version}: SEV-SNP reports start at version 2 \
                     (versions 2, 3 and 5 are understood; later ones are read as version 5)"
                ),
            )
        })?;
        let guest_svn = r.u32_le("guest_svn")?;
        let policy = GuestPolicy(r.u64_le("policy")?);
        let family_id = r.array("family_id")?;
        let image_id = r.array("image_id")?;
        let vmpl = r.u32_le("vmpl")?;
        let sig_algo = r.u32_le("sig_algo")?;
        let current_tcb = r.u64_le("current_tcb")?;
        let platform_info = PlatformInfo(r.u64_le("platform_info")?);
        let key_info = KeyInfo(r.u32_le("key_info")?);
        let reserved_04c = r.array("reserved (0x04C)")?;
        let report_data = r.array("report_data")?;
        let measurement = r.array("measurement")?;
        let host_data = r.array("host_data")?;
        let id_key_digest = r.array("id_key_digest")?;
        let author_key_digest = r.array("author_key_digest")?;
        let report_id = r.array("report_id")?;
        let report_id_ma = r.array("report_id_ma")?;
        let reported_tcb = r.u64_le("reported_tcb")?;
        let cpuid_bytes: [u8; 3] = r.array(if layout == ReportLayout::V2 {
            "reserved (0x188)"
        } else {
            "cpuid_fam_id/cpuid_mod_id/cpuid_step"
        })?;
        let (cpuid, reserved_188) = if layout == ReportLayout::V2 {
            (None, cpuid_bytes)
        } else {
            let [family, model, stepping] = cpuid_bytes;
            (
                Some(CpuId {
                    family,
                    model,
                    stepping,
                }),
                [0; 3],
            )
        };
        let reserved_18b = r.array("reserved (0x18B)")?;
        let chip_id = r.array("chip_id")?;
        let committed_tcb = r.u64_le("committed_tcb")?;
        let [build, minor, major] = r.array("current_build/minor/major")?;
        let current_version = FirmwareVersion {
            major,
            minor,
            build,
        };
        let reserved_1eb = r.u8("reserved (0x1EB)")?;
        let [build, minor, major] = r.array("committed_build/minor/major")?;
        let committed_version = FirmwareVersion {
            major,
            minor,
            build,
        };
        let reserved_1ef = r.u8("reserved (0x1EF)")?;
        let launch_tcb = r.u64_le("launch_tcb")?;
        let (launch_mit_vector, current_mit_vector, reserved_1f8) = if layout == ReportLayout::V5 {
            let launch = r.u64_le("launch_mit_vector")?;
            let current = r.u64_le("current_mit_vector")?;
            (Some(launch), Some(current), [0; 16])
        } else {
            (None, None, r.array("reserved (0x1F8)")?)
        };
        let reserved_208 = r.array("reserved (0x208)")?;
        let signature = EcdsaSignature {
            r: r.array("signature.r")?,
            s: r.array("signature.s")?,
            reserved: r.array("signature.reserved")?,
        };
        r.finish()?;

        let tcb_layout = tcb_layout_hint(cpuid, &chip_id);
        Ok(SnpReport {
            version,
            guest_svn,
            policy,
            family_id,
            image_id,
            vmpl,
            sig_algo,
            current_tcb: TcbVersion::from_raw(current_tcb, tcb_layout),
            platform_info,
            key_info,
            reserved_04c,
            report_data,
            measurement,
            host_data,
            id_key_digest,
            author_key_digest,
            report_id,
            report_id_ma,
            reported_tcb: TcbVersion::from_raw(reported_tcb, tcb_layout),
            cpuid,
            reserved_188,
            reserved_18b,
            chip_id,
            committed_tcb: TcbVersion::from_raw(committed_tcb, tcb_layout),
            current_version,
            reserved_1eb,
            committed_version,
            reserved_1ef,
            launch_tcb: TcbVersion::from_raw(launch_tcb, tcb_layout),
            launch_mit_vector,
            current_mit_vector,
            reserved_1f8,
            reserved_208,
            signature,
        })
    }

    /// Serialises the report. For a parsed report this returns exactly the
    /// input bytes; the result is always [`REPORT_LEN`] bytes long.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(REPORT_LEN);
        self.write_signed_part(&mut out);
        out.extend_from_slice(&self.signature.r);
        out.extend_from_slice(&self.signature.s);
        out.extend_from_slice(&self.signature.reserved);
        debug_assert_eq!(out.len(), REPORT_LEN);
        out
    }

    /// The signed bytes `0..0x2A0` of the serialised report.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(SIGNATURE_OFFSET);
        self.write_signed_part(&mut out);
        out
    }

    fn write_signed_part(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&self.guest_svn.to_le_bytes());
        out.extend_from_slice(&self.policy.0.to_le_bytes());
        out.extend_from_slice(&self.family_id);
        out.extend_from_slice(&self.image_id);
        out.extend_from_slice(&self.vmpl.to_le_bytes());
        out.extend_from_slice(&self.sig_algo.to_le_bytes());
        out.extend_from_slice(&self.current_tcb.raw().to_le_bytes());
        out.extend_from_slice(&self.platform_info.0.to_le_bytes());
        out.extend_from_slice(&self.key_info.0.to_le_bytes());
        out.extend_from_slice(&self.reserved_04c);
        out.extend_from_slice(&self.report_data);
        out.extend_from_slice(&self.measurement);
        out.extend_from_slice(&self.host_data);
        out.extend_from_slice(&self.id_key_digest);
        out.extend_from_slice(&self.author_key_digest);
        out.extend_from_slice(&self.report_id);
        out.extend_from_slice(&self.report_id_ma);
        out.extend_from_slice(&self.reported_tcb.raw().to_le_bytes());
        match self.cpuid {
            Some(c) => out.extend_from_slice(&[c.family, c.model, c.stepping]),
            None => out.extend_from_slice(&self.reserved_188),
        }
        out.extend_from_slice(&self.reserved_18b);
        out.extend_from_slice(&self.chip_id);
        out.extend_from_slice(&self.committed_tcb.raw().to_le_bytes());
        let v = self.current_version;
        out.extend_from_slice(&[v.build, v.minor, v.major, self.reserved_1eb]);
        let v = self.committed_version;
        out.extend_from_slice(&[v.build, v.minor, v.major, self.reserved_1ef]);
        out.extend_from_slice(&self.launch_tcb.raw().to_le_bytes());
        let (res_launch, res_current) = self.reserved_1f8.split_at(8);
        match self.launch_mit_vector {
            Some(v) => out.extend_from_slice(&v.to_le_bytes()),
            None => out.extend_from_slice(res_launch),
        }
        match self.current_mit_vector {
            Some(v) => out.extend_from_slice(&v.to_le_bytes()),
            None => out.extend_from_slice(res_current),
        }
        out.extend_from_slice(&self.reserved_208);
        debug_assert_eq!(out.len(), SIGNATURE_OFFSET);
    }

    /// The field layout of this report's version.
    pub fn layout(&self) -> ReportLayout {
        // parse() rejects versions below 2; a hand-built report with such a
        // version is treated as the oldest layout.
        ReportLayout::for_version(self.version).unwrap_or(ReportLayout::V2)
    }

    /// The product named by the report's CPUID fields (version 3+ only).
    pub fn product_hint(&self) -> Option<Product> {
        self.cpuid
            .and_then(|c| Product::from_cpuid(c.family, c.model))
    }

    /// The TCB layout guessed from the report alone; see
    /// [`SnpReport`]'s note on TCB fields.
    pub fn tcb_layout_hint(&self) -> TcbLayout {
        tcb_layout_hint(self.cpuid, &self.chip_id)
    }

    /// The key the firmware says signed the report.
    pub fn signing_key(&self) -> SigningKey {
        self.key_info.signing_key()
    }

    /// Re-decodes the four TCB fields with `layout` (the verifier does this
    /// once the certificate chain proved the product).
    pub fn set_tcb_layout(&mut self, layout: TcbLayout) {
        self.current_tcb = self.current_tcb.with_layout(layout);
        self.reported_tcb = self.reported_tcb.with_layout(layout);
        self.committed_tcb = self.committed_tcb.with_layout(layout);
        self.launch_tcb = self.launch_tcb.with_layout(layout);
    }
}

/// v3+: family 0x1A is Turin-shaped. v2 has no CPUID, so use the chip id:
/// Turin chip ids are 8 bytes followed by zeros (the heuristic the `sev`
/// crate uses too); a masked (all-zero) chip id says nothing and defaults to
/// the Milan/Genoa layout.
fn tcb_layout_hint(cpuid: Option<CpuId>, chip_id: &[u8; 64]) -> TcbLayout {
    match cpuid {
        Some(c) if c.family == 0x1A => TcbLayout::Turin,
        Some(_) => TcbLayout::MilanGenoa,
        None => {
            let head_set = chip_id[..8].iter().any(|&b| b != 0);
            let tail_zero = chip_id[8..].iter().all(|&b| b == 0);
            if head_set && tail_zero {
                TcbLayout::Turin
            } else {
                TcbLayout::MilanGenoa
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample(version: u32) -> Vec<u8> {
        let mut b: Vec<u8> = (0..REPORT_LEN).map(|i| (i * 7 + 3) as u8).collect();
        b[..4].copy_from_slice(&version.to_le_bytes());
        b
    }

    #[test]
    fn field_offsets_follow_the_abi_table() {
        let b = sample(3);
        let r = SnpReport::parse(&b).unwrap();
        assert_eq!(r.report_data[..], b[0x50..0x90]);
        assert_eq!(r.measurement[..], b[0x90..0xC0]);
        assert_eq!(r.host_data[..], b[0xC0..0xE0]);
        assert_eq!(r.report_id[..], b[0x140..0x160]);
        assert_eq!(r.reported_tcb.raw().to_le_bytes()[..], b[0x180..0x188]);
        assert_eq!(r.cpuid.unwrap().family, b[0x188]);
        assert_eq!(r.chip_id[..], b[0x1A0..0x1E0]);
        assert_eq!(r.current_version.build, b[0x1E8]);
        assert_eq!(r.committed_version.major, b[0x1EE]);
        assert_eq!(r.launch_tcb.raw().to_le_bytes()[..], b[0x1F0..0x1F8]);
        assert_eq!(r.launch_mit_vector, None);
        assert_eq!(r.signature.r[..], b[0x2A0..0x2E8]);
        assert_eq!(r.signature.s[..], b[0x2E8..0x330]);
        assert_eq!(r.signed_bytes()[..], b[..SIGNATURE_OFFSET]);

        let r5 = SnpReport::parse(&sample(5)).unwrap();
        let b5 = sample(5);
        assert_eq!(
            r5.current_mit_vector.unwrap().to_le_bytes()[..],
            b5[0x200..0x208]
        );
        let r2 = SnpReport::parse(&sample(2)).unwrap();
        assert_eq!(r2.cpuid, None);
        assert_eq!(r2.layout(), ReportLayout::V2);
    }

    #[test]
    fn old_versions_are_rejected_clearly() {
        for v in [0, 1] {
            let e = SnpReport::parse(&sample(v)).unwrap_err();
            assert_eq!((e.field, e.offset), ("version", 0));
            assert!(e.reason.contains("unsupported report version"), "{e}");
        }
        // Unknown newer versions keep every byte.
        let b = sample(9);
        let r = SnpReport::parse(&b).unwrap();
        assert_eq!(r.layout(), ReportLayout::V5);
        assert_eq!(r.to_bytes(), b);
    }

    #[test]
    fn trailing_and_short_inputs_name_a_field() {
        let mut b = sample(2);
        b.push(0);
        let e = SnpReport::parse(&b).unwrap_err();
        assert_eq!(e.offset, REPORT_LEN);
        assert!(e.reason.contains("1 trailing"));
        let e = SnpReport::parse(&b[..0x2A0]).unwrap_err();
        assert_eq!((e.field, e.offset), ("signature.r", 0x2A0));
    }

    #[test]
    fn policy_and_platform_bits() {
        // go-sev-guest's sample report: SMT, reserved bit 17, DEBUG.
        let p = GuestPolicy(0x0b_0000 | 0x0100 | 0x1f);
        assert!(p.debug() && p.smt() && p.reserved_one() && !p.migrate_ma());
        assert_eq!((p.abi_major(), p.abi_minor()), (1, 0x1f));
        assert!(!GuestPolicy(0x30000).debug());
        let i = PlatformInfo(0b10_0101);
        assert!(i.smt_en() && i.ecc_en() && i.alias_check_complete());
        assert!(!i.tsme_en() && !i.rapl_dis() && !i.ciphertext_hiding_en());
        assert_eq!(KeyInfo(0).signing_key(), SigningKey::Vcek);
        assert_eq!(KeyInfo(1 << 2).signing_key(), SigningKey::Vlek);
        assert_eq!(KeyInfo(7 << 2).signing_key(), SigningKey::None);
        assert_eq!(KeyInfo(3 << 2 | 3).signing_key(), SigningKey::Reserved(3));
        assert!(KeyInfo(3).author_key_en() && KeyInfo(3).mask_chip_key());
    }

    #[test]
    fn signature_scalars_round_trip() {
        let r: [u8; 48] = core::array::from_fn(|i| i as u8 + 1);
        let s: [u8; 48] = core::array::from_fn(|i| 200 - i as u8);
        let sig = EcdsaSignature::from_p384_be(&r, &s);
        assert_eq!(sig.r[0], 48); // little-endian: last BE byte first
        assert_eq!(sig.p384_be(), Some((r, s)));
        let mut high = sig.clone();
        high.s[60] = 1;
        assert_eq!(high.p384_be(), None);
    }

    fn valid_report() -> impl Strategy<Value = Vec<u8>> {
        (
            proptest::collection::vec(any::<u8>(), REPORT_LEN),
            prop_oneof![Just(2u32), Just(3), Just(4), Just(5), 6u32..1000],
        )
            .prop_map(|(mut b, v)| {
                b[..4].copy_from_slice(&v.to_le_bytes());
                b
            })
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..1400)) {
            let _ = SnpReport::parse(&b);
        }

        #[test]
        fn round_trip_is_identity(b in valid_report()) {
            let r = SnpReport::parse(&b).unwrap();
            prop_assert_eq!(r.to_bytes(), b.clone());
            prop_assert_eq!(r.signed_bytes(), b[..SIGNATURE_OFFSET].to_vec());
        }

        #[test]
        fn every_truncation_names_a_field(b in valid_report(), cut in 0usize..REPORT_LEN) {
            let e = SnpReport::parse(&b[..cut]).unwrap_err();
            prop_assert_eq!(e.structure, "SnpReport");
            prop_assert!(!e.field.is_empty());
            prop_assert!(e.offset <= cut, "offset {} beyond cut {}", e.offset, cut);
            prop_assert!(e.reason.contains("needs"), "{}", e);
        }

        #[test]
        fn bit_flips_parse_or_error_without_panic(b in valid_report(), bit in 0usize..REPORT_LEN * 8) {
            let mut m = b.clone();
            m[bit / 8] ^= 1 << (bit % 8);
            match SnpReport::parse(&m) {
                Ok(r) => prop_assert_eq!(r.to_bytes(), m),
                Err(e) => prop_assert_eq!(e.field, "version"),
            }
        }
    }
}
