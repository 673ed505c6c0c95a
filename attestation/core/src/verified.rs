//! Evidence that passed cryptographic verification.
//!
//! [`VerifiedEvidence`] has no public constructor: only the verifiers in this
//! crate ([`crate::tdx::verify()`], [`crate::snp::verify()`]) build one, after
//! every signature, chain, CRL and collateral check passed. [`crate::Policy::check`]
//! takes nothing else, so a skipped verification step does not compile.

use serde::Serialize;
use time::OffsetDateTime;

/// Which trusted execution environment produced the evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tee {
    /// Intel Trust Domain Extensions.
    Tdx,
    /// AMD Secure Encrypted Virtualization with Secure Nested Paging.
    Snp,
}

impl std::fmt::Display for Tee {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Tee::Tdx => "tdx",
            Tee::Snp => "snp",
        })
    }
}

/// Which root of trust the evidence chained to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TrustAnchor {
    /// A vendor production root pinned in this crate (Intel SGX Root CA, AMD ARK).
    Production,
    /// A root generated at run time by the `sim` provider. Evidence that
    /// chains to it proves nothing about real hardware.
    Simulated,
    /// A root supplied by the caller (tests, private deployments).
    Custom,
}

/// Platform TCB status, as Intel names it. For TDX it is Intel's verdict
/// (TCB info). AMD publishes no such verdict, so for SNP the verifier
/// judges the reported TCB (the one the VCEK certifies) against the
/// per-product floor shipped in [`crate::snp::floor`]: [`TcbStatus::UpToDate`]
/// when every component meets it, [`TcbStatus::OutOfDate`] otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
pub enum TcbStatus {
    /// The platform is patched to the latest TCB.
    UpToDate,
    /// Patched, but software hardening is needed to mitigate advisories.
    SWHardeningNeeded,
    /// Patched, but platform configuration is needed.
    ConfigurationNeeded,
    /// Both of the above.
    ConfigurationAndSWHardeningNeeded,
    /// The TCB is behind the latest level.
    OutOfDate,
    /// Behind, and configuration is needed too.
    OutOfDateConfigurationNeeded,
    /// The TCB level is revoked.
    Revoked,
}

impl TcbStatus {
    /// All statuses, in the order Intel documents them.
    pub const ALL: [TcbStatus; 7] = [
        TcbStatus::UpToDate,
        TcbStatus::SWHardeningNeeded,
        TcbStatus::ConfigurationNeeded,
        TcbStatus::ConfigurationAndSWHardeningNeeded,
        TcbStatus::OutOfDate,
        TcbStatus::OutOfDateConfigurationNeeded,
        TcbStatus::Revoked,
    ];

    /// The name Intel uses in TCB info JSON.
    pub fn as_str(&self) -> &'static str {
        match self {
            TcbStatus::UpToDate => "UpToDate",
            TcbStatus::SWHardeningNeeded => "SWHardeningNeeded",
            TcbStatus::ConfigurationNeeded => "ConfigurationNeeded",
            TcbStatus::ConfigurationAndSWHardeningNeeded => "ConfigurationAndSWHardeningNeeded",
            TcbStatus::OutOfDate => "OutOfDate",
            TcbStatus::OutOfDateConfigurationNeeded => "OutOfDateConfigurationNeeded",
            TcbStatus::Revoked => "Revoked",
        }
    }
}

impl std::fmt::Display for TcbStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for TcbStatus {
    type Err = crate::Error;
    fn from_str(s: &str) -> crate::Result<Self> {
        TcbStatus::ALL
            .into_iter()
            .find(|st| st.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                crate::Error::Encoding(format!(
                    "unknown TCB status {s:?}; expected one of {}",
                    TcbStatus::ALL.map(|s| s.as_str()).join(", ")
                ))
            })
    }
}

/// TDX measurement registers and identity, copied from the verified TD report.
/// All registers are SHA-384 values in the byte order the TDX module writes them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TdxIdentity {
    /// Build-time measurement of the TD (firmware).
    #[serde(with = "hex::serde")]
    pub mrtd: [u8; 48],
    /// Runtime measurement registers 0..=3.
    #[serde(serialize_with = "serialize_rtmrs")]
    pub rtmr: [[u8; 48]; 4],
    /// Measurement of the TDX module.
    #[serde(with = "hex::serde")]
    pub mrseam: [u8; 48],
    /// Software-defined ID of the TD's configuration (set by the host).
    #[serde(with = "hex::serde")]
    pub mrconfigid: [u8; 48],
    /// Software-defined ID of the TD's owner.
    #[serde(with = "hex::serde")]
    pub mrowner: [u8; 48],
    /// Software-defined ID of the owner's configuration.
    #[serde(with = "hex::serde")]
    pub mrownerconfig: [u8; 48],
    /// TD attributes, 8 bytes little-endian as in the report; bit 0 is DEBUG.
    #[serde(with = "hex::serde")]
    pub td_attributes: [u8; 8],
    /// Extended features frame mask, little-endian.
    #[serde(with = "hex::serde")]
    pub xfam: [u8; 8],
    /// TEE TCB SVN (16 bytes; byte 0 is the TDX module SVN).
    #[serde(with = "hex::serde")]
    pub tee_tcb_svn: [u8; 16],
    /// Intel FMSPC of the platform (from the PCK certificate), when known.
    #[serde(with = "hex::serde")]
    pub fmspc: [u8; 6],
}

fn serialize_rtmrs<S: serde::Serializer>(v: &[[u8; 48]; 4], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let mut seq = s.serialize_seq(Some(4))?;
    for r in v {
        seq.serialize_element(&hex::encode(r))?;
    }
    seq.end()
}

/// SNP launch identity, copied from the verified attestation report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SnpIdentity {
    /// Launch digest (SHA-384) computed by the AMD secure processor.
    #[serde(with = "hex::serde")]
    pub measurement: [u8; 48],
    /// 32 bytes the host supplied at launch.
    #[serde(with = "hex::serde")]
    pub host_data: [u8; 32],
    /// Family id from the ID block.
    #[serde(with = "hex::serde")]
    pub family_id: [u8; 16],
    /// Image id from the ID block.
    #[serde(with = "hex::serde")]
    pub image_id: [u8; 16],
    /// Guest policy (64-bit, see the SNP ABI specification).
    pub policy: u64,
    /// Guest security version number.
    pub guest_svn: u32,
    /// Virtual machine privilege level that requested the report.
    pub vmpl: u32,
    /// Chip id (64 bytes; zero when masked or VLEK-signed).
    #[serde(with = "hex::serde")]
    pub chip_id: [u8; 64],
    /// Reported TCB, decoded.
    pub reported_tcb: crate::snp::TcbVersion,
    /// Product generation whose ARK the chain ended at.
    pub product: crate::snp::Product,
    /// Whether the report was signed by a VLEK (else VCEK).
    pub vlek: bool,
    /// SHA-384 of the key that signed the ID block (zero without one).
    #[serde(with = "hex::serde")]
    pub id_key_digest: [u8; 48],
    /// SHA-384 of the key that signed the ID key (zero without one).
    #[serde(with = "hex::serde")]
    pub author_key_digest: [u8; 48],
    /// Whether the ID block carried an author key (`AUTHOR_KEY_EN`).
    pub author_key_en: bool,
}

/// TEE-specific identity of verified evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "tee", rename_all = "lowercase")]
// Created once per piece of evidence and never stored in bulk: boxing the
// larger variant would only add an allocation and awkward matching.
#[allow(clippy::large_enum_variant)]
pub enum Identity {
    /// TDX.
    Tdx(TdxIdentity),
    /// SEV-SNP.
    Snp(SnpIdentity),
}

/// Evidence whose signatures, certificate chain, revocation and collateral
/// all verified against a trust anchor at a given time. Only this crate's
/// verifiers construct it.
#[derive(Debug, Clone, Serialize)]
pub struct VerifiedEvidence {
    identity: Identity,
    anchor: TrustAnchor,
    tcb_status: TcbStatus,
    advisory_ids: Vec<String>,
    tcb_notes: Vec<String>,
    #[serde(with = "hex::serde")]
    report_data: [u8; 64],
    debug: bool,
    #[serde(with = "time::serde::rfc3339")]
    verified_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    collateral_expires: Option<OffsetDateTime>,
}

/// The fields a verifier fills in; kept separate so adding one does not
/// ripple through every verifier.
pub(crate) struct VerifiedParts {
    pub identity: Identity,
    pub anchor: TrustAnchor,
    pub tcb_status: TcbStatus,
    pub advisory_ids: Vec<String>,
    pub tcb_notes: Vec<String>,
    pub report_data: [u8; 64],
    pub debug: bool,
    pub verified_at: OffsetDateTime,
    pub collateral_expires: Option<OffsetDateTime>,
}

impl VerifiedEvidence {
    /// Only verifiers call this, after every check passed.
    pub(crate) fn from_verified_parts(p: VerifiedParts) -> Self {
        Self {
            identity: p.identity,
            anchor: p.anchor,
            tcb_status: p.tcb_status,
            advisory_ids: p.advisory_ids,
            tcb_notes: p.tcb_notes,
            report_data: p.report_data,
            debug: p.debug,
            verified_at: p.verified_at,
            collateral_expires: p.collateral_expires,
        }
    }

    /// Which TEE produced the evidence.
    pub fn tee(&self) -> Tee {
        match self.identity {
            Identity::Tdx(_) => Tee::Tdx,
            Identity::Snp(_) => Tee::Snp,
        }
    }
    /// Measurements and identity fields.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }
    /// The root of trust the evidence chained to.
    pub fn anchor(&self) -> TrustAnchor {
        self.anchor
    }
    /// True when the evidence chained to a simulated root: it proves nothing.
    pub fn is_simulated(&self) -> bool {
        self.anchor == TrustAnchor::Simulated
    }
    /// Platform TCB status.
    pub fn tcb_status(&self) -> TcbStatus {
        self.tcb_status
    }
    /// Security advisories (e.g. `INTEL-SA-00837`) that apply at this TCB level.
    pub fn advisory_ids(&self) -> &[String] {
        &self.advisory_ids
    }
    /// Human-readable notes on which TCB components are behind.
    pub fn tcb_notes(&self) -> &[String] {
        &self.tcb_notes
    }
    /// The 64 bytes the guest bound into the evidence.
    pub fn report_data(&self) -> &[u8; 64] {
        &self.report_data
    }
    /// Whether the TD / guest runs with debugging enabled (then its memory is
    /// readable by the host): for TDX any TD-under-debug bit (TD attributes
    /// bits 7:0, not only DEBUG), for SNP the guest policy's DEBUG bit.
    pub fn debug(&self) -> bool {
        self.debug
    }
    /// The time the verification was performed for.
    pub fn verified_at(&self) -> OffsetDateTime {
        self.verified_at
    }
    /// When the earliest collateral used stops being valid, if any.
    pub fn collateral_expires(&self) -> Option<OffsetDateTime> {
        self.collateral_expires
    }
}
