//! Policy: what a relying party accepts, and the decision for one piece of
//! verified evidence.
//!
//! Every value a decision relies on is compared with an expectation written
//! in the policy (or given by the caller), never with another field of the
//! same evidence. [`Policy::check`] only takes [`VerifiedEvidence`], so
//! unverified bytes cannot be judged, and it lists *every* reason a piece of
//! evidence fails, not only the first.
//!
//! See the README ("Policy file") for the TOML format; an example:
//!
//! ```toml
//! accepted_tcb_status = ["UpToDate", "SWHardeningNeeded"]
//! allow_debug = false
//! allow_simulated = false
//! max_evidence_age = "24h"
//! report_data = "0102030405"          # hex, zero-padded to 64 bytes
//!
//! [[tdx.measurements]]
//! name = "chrysalis-0.1.0"
//! mrtd = "91eb2b44…"
//! rtmr0 = "44c0197b…"
//!
//! [snp]
//! min_tcb = { bootloader = 3, tee = 0, snp = 8, microcode = 115 }
//! [[snp.measurements]]
//! measurement = "7a1e5c26…"
//! ```

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::{Error, Result};
use crate::snp::report::GuestPolicy;
use crate::tdx::quote::td_attributes;
use crate::timefmt::human_duration;
use crate::verified::{Identity, SnpIdentity, TcbStatus, TdxIdentity, VerifiedEvidence};

/// A relying party's acceptance policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// TCB statuses that are accepted. Default: only `UpToDate`.
    #[serde(default = "default_statuses")]
    pub accepted_tcb_status: Vec<TcbStatus>,
    /// Advisory ids that are rejected even when the status is accepted.
    #[serde(default)]
    pub rejected_advisories: Vec<String>,
    /// Accept debug TDs / SNP guests with the DEBUG policy bit. Default false;
    /// a debug guest's memory is readable by the host.
    #[serde(default)]
    pub allow_debug: bool,
    /// Accept evidence that chains to a simulated root. Default false.
    #[serde(default)]
    pub allow_simulated: bool,
    /// Maximum age of the evidence, e.g. `"24h"`, `"15m"`, `"90s"`; needs the
    /// evidence creation time (RA-TLS claims carry it).
    #[serde(default, with = "opt_duration")]
    pub max_evidence_age: Option<Duration>,
    /// Expected report_data, hex, zero-padded to 64 bytes.
    #[serde(default)]
    pub report_data: Option<String>,
    /// TDX rules.
    #[serde(default)]
    pub tdx: TdxRules,
    /// SNP rules.
    #[serde(default)]
    pub snp: SnpRules,
}

fn default_statuses() -> Vec<TcbStatus> {
    vec![TcbStatus::UpToDate]
}

/// TDX-specific rules.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TdxRules {
    /// Accepted measurement sets; the evidence must match one of them.
    /// Empty means measurements are not checked.
    #[serde(default)]
    pub measurements: Vec<TdxMeasurementSet>,
    /// Minimum TEE TCB SVN, hex (16 bytes), compared component by component.
    #[serde(default)]
    pub min_tee_tcb_svn: Option<String>,
}

/// One accepted combination of TDX registers (hex, in report byte order).
///
/// An absent register is not checked, except the three host- or
/// owner-chosen identities `mrconfigid`, `mrowner` and `mrownerconfig`:
/// those must be all-zero unless the set pins them (a Chrysalis TD never
/// sets them, and an unchecked non-zero value would let the host tag a TD
/// with anything). `td_attributes` and `xfam` (8 bytes each, report byte
/// order, i.e. little-endian: SEPT_VE_DISABLE alone is
/// `"0000001000000000"`) are compared exactly when given.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TdxMeasurementSet {
    /// Label, e.g. the image release.
    #[serde(default)]
    pub name: Option<String>,
    /// Expected MRTD.
    pub mrtd: Option<String>,
    /// Expected RTMR0.
    pub rtmr0: Option<String>,
    /// Expected RTMR1.
    pub rtmr1: Option<String>,
    /// Expected RTMR2.
    pub rtmr2: Option<String>,
    /// Expected RTMR3.
    pub rtmr3: Option<String>,
    /// Expected MRCONFIGID; absent: must be all-zero.
    pub mrconfigid: Option<String>,
    /// Expected MROWNER; absent: must be all-zero.
    #[serde(default)]
    pub mrowner: Option<String>,
    /// Expected MROWNERCONFIG; absent: must be all-zero.
    #[serde(default)]
    pub mrownerconfig: Option<String>,
    /// Expected TD attributes (8 bytes, report byte order); absent: not
    /// pinned (the verifier still refuses debug/TUD bits and a clear
    /// SEPT_VE_DISABLE).
    #[serde(default)]
    pub td_attributes: Option<String>,
    /// Expected XFAM (8 bytes, report byte order); absent: not pinned.
    #[serde(default)]
    pub xfam: Option<String>,
}

/// SNP-specific rules. The guest policy, VMPL and ID-block fields are chosen
/// by whoever launches the guest (the host), so each has a strict default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnpRules {
    /// Accepted launch identities; the evidence must match one of them.
    #[serde(default)]
    pub measurements: Vec<SnpMeasurementSet>,
    /// Minimum reported TCB per component, on top of the per-product floor
    /// the verifier ships ([`crate::snp::floor`]), which sets the TCB
    /// status.
    #[serde(default)]
    pub min_tcb: Option<SnpMinTcb>,
    /// Highest VMPL accepted (0 is the most privileged). Default 0: a report
    /// requested from a less privileged VMPL comes from software below an
    /// SVSM/paravisor the policy has not vetted. Set 3 to accept any.
    #[serde(default = "default_max_vmpl")]
    pub max_vmpl: Option<u32>,
    /// Accept a guest policy with MIGRATE_MA (bit 18) set, i.e. a guest that
    /// may be associated with a migration agent that can export its
    /// memory. Default false.
    #[serde(default)]
    pub allow_migrate_ma: bool,
    /// Accept a guest policy with SMT (bit 16) set, i.e. a guest that may
    /// run on a host with simultaneous multithreading enabled (sibling-thread
    /// side channels, AMD-SB-3027). Default true (most hosts enable SMT);
    /// false requires the guest to have been launched with SMT forbidden.
    #[serde(default = "default_true")]
    pub allow_smt: bool,
    /// Minimum firmware ABI version the guest policy must require
    /// (`"major.minor"`, compared with guest policy bits 15:0). Default:
    /// not checked.
    #[serde(default)]
    pub min_abi: Option<String>,
}

fn default_max_vmpl() -> Option<u32> {
    Some(0)
}

fn default_true() -> bool {
    true
}

impl Default for SnpRules {
    fn default() -> Self {
        Self {
            measurements: Vec::new(),
            min_tcb: None,
            max_vmpl: default_max_vmpl(),
            allow_migrate_ma: false,
            allow_smt: true,
            min_abi: None,
        }
    }
}

/// One accepted SNP launch identity (hex); absent fields are not checked.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnpMeasurementSet {
    /// Label, e.g. the image release.
    #[serde(default)]
    pub name: Option<String>,
    /// Expected launch measurement (48 bytes).
    pub measurement: Option<String>,
    /// Expected host data (32 bytes).
    pub host_data: Option<String>,
    /// Expected family id (16 bytes).
    pub family_id: Option<String>,
    /// Expected image id (16 bytes).
    pub image_id: Option<String>,
    /// Expected ID_KEY_DIGEST (48 bytes): SHA-384 of the key that signed
    /// the ID block. Family and image ids mean something only when pinned
    /// with this: anyone can sign an ID block with their own key.
    #[serde(default)]
    pub id_key_digest: Option<String>,
    /// Expected AUTHOR_KEY_DIGEST (48 bytes); requires the report to have
    /// an author key (AUTHOR_KEY_EN).
    #[serde(default)]
    pub author_key_digest: Option<String>,
}

/// Minimum SNP TCB component versions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnpMinTcb {
    /// Minimum bootloader SPL.
    #[serde(default)]
    pub bootloader: u8,
    /// Minimum PSP OS (TEE) SPL.
    #[serde(default)]
    pub tee: u8,
    /// Minimum SNP firmware SPL.
    #[serde(default)]
    pub snp: u8,
    /// Minimum microcode SPL.
    #[serde(default)]
    pub microcode: u8,
    /// Minimum FMC SPL (Turin only).
    #[serde(default)]
    pub fmc: Option<u8>,
}

/// Facts about the evidence that come from outside it.
#[derive(Debug, Clone, Default)]
pub struct CheckContext {
    /// When the evidence was created (RA-TLS claims carry this).
    pub created_at: Option<OffsetDateTime>,
    /// The report_data the caller computed independently (e.g. the hash of
    /// RA-TLS claims); overrides the policy's `report_data`.
    pub expected_report_data: Option<[u8; 64]>,
    /// The time of the decision.
    pub now: Option<OffsetDateTime>,
}

/// The outcome of [`Policy::check`].
#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    /// True when every rule passed.
    pub accepted: bool,
    /// Every rule that failed, in a stable order.
    pub reasons: Vec<String>,
    /// Things the relying party should know even when accepted (simulated
    /// evidence accepted by flag, advisories).
    pub warnings: Vec<String>,
    /// True when the evidence chained to a simulated root.
    pub simulated: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            accepted_tcb_status: default_statuses(),
            rejected_advisories: Vec::new(),
            allow_debug: false,
            allow_simulated: false,
            max_evidence_age: None,
            report_data: None,
            tdx: TdxRules::default(),
            snp: SnpRules::default(),
        }
    }
}

/// The loud banner every output carries for simulated evidence.
pub const SIMULATED_WARNING: &str =
    "SIMULATED EVIDENCE: signed by a root generated at run time, not by Intel or AMD hardware; it proves nothing about the machine";

impl Policy {
    /// Reads and validates a TOML policy file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_toml(&text).map_err(|e| Error::InvalidPolicy(format!("{}: {e}", path.display())))
    }

    /// Parses and validates TOML policy text.
    pub fn from_toml(text: &str) -> Result<Self> {
        let p: Policy = toml::from_str(text).map_err(|e| Error::InvalidPolicy(e.to_string()))?;
        p.validate()?;
        Ok(p)
    }

    /// Checks that every hex value has the right length, so that a typo in a
    /// policy is an error rather than a silent "never matches".
    pub fn validate(&self) -> Result<()> {
        if let Some(rd) = &self.report_data {
            decode_padded::<64>(rd, "report_data")?;
        }
        if let Some(s) = &self.tdx.min_tee_tcb_svn {
            decode_exact::<16>(s, "tdx.min_tee_tcb_svn")?;
        }
        for (i, m) in self.tdx.measurements.iter().enumerate() {
            for (field, v) in tdx_fields(m) {
                if let Some(v) = v {
                    decode_exact::<48>(v, &format!("tdx.measurements[{i}].{field}"))?;
                }
            }
            for (field, v) in [("td_attributes", &m.td_attributes), ("xfam", &m.xfam)] {
                if let Some(v) = v {
                    decode_exact::<8>(v, &format!("tdx.measurements[{i}].{field}"))?;
                }
            }
        }
        for (i, m) in self.snp.measurements.iter().enumerate() {
            let ctx = |f: &str| format!("snp.measurements[{i}].{f}");
            if let Some(v) = &m.measurement {
                decode_exact::<48>(v, &ctx("measurement"))?;
            }
            if let Some(v) = &m.host_data {
                decode_exact::<32>(v, &ctx("host_data"))?;
            }
            if let Some(v) = &m.family_id {
                decode_exact::<16>(v, &ctx("family_id"))?;
            }
            if let Some(v) = &m.image_id {
                decode_exact::<16>(v, &ctx("image_id"))?;
            }
            if let Some(v) = &m.id_key_digest {
                decode_exact::<48>(v, &ctx("id_key_digest"))?;
            }
            if let Some(v) = &m.author_key_digest {
                decode_exact::<48>(v, &ctx("author_key_digest"))?;
            }
        }
        if let Some(v) = &self.snp.min_abi {
            parse_abi(v)?;
        }
        if self.accepted_tcb_status.is_empty() {
            return Err(Error::InvalidPolicy(
                "accepted_tcb_status is empty: nothing could ever be accepted".into(),
            ));
        }
        Ok(())
    }

    /// Also accept these TCB statuses (the CLI's `--accept-tcb`).
    pub fn accept_tcb(mut self, statuses: impl IntoIterator<Item = TcbStatus>) -> Self {
        for s in statuses {
            if !self.accepted_tcb_status.contains(&s) {
                self.accepted_tcb_status.push(s);
            }
        }
        self
    }

    /// Accept simulated evidence (the CLI's `--allow-sim`).
    pub fn allow_simulated(mut self, allow: bool) -> Self {
        self.allow_simulated = allow;
        self
    }

    /// Judges verified evidence; lists every failed rule.
    pub fn check(&self, ev: &VerifiedEvidence, ctx: &CheckContext) -> Decision {
        let mut reasons = Vec::new();
        let mut warnings = Vec::new();
        let simulated = ev.is_simulated();

        if simulated {
            if self.allow_simulated {
                warnings.push(format!("{SIMULATED_WARNING} (accepted because simulated evidence was explicitly allowed)"));
            } else {
                reasons.push(
                    "evidence is SIMULATED (chains to a run-time test root); pass --allow-sim / allow_simulated = true to accept it for development".into(),
                );
            }
        }
        if ev.debug() && !self.allow_debug {
            reasons.push(match ev.identity() {
                Identity::Tdx(id) => format!(
                    "TD is a debug TD: TD attributes TUD byte {:#04x} is non-zero (bits 7:0; bit 0 is DEBUG, the others are debug-class TD-under-debug bits): the host can inspect the TD",
                    id.td_attributes[0]
                ),
                Identity::Snp(_) => "guest policy allows debugging (SNP policy DEBUG bit 19 set): the host can read its memory".into(),
            });
        }
        if !self.accepted_tcb_status.contains(&ev.tcb_status()) {
            let mut r = format!(
                "TCB status {} is not accepted (accepted: {})",
                ev.tcb_status(),
                self.accepted_tcb_status
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            if !ev.advisory_ids().is_empty() {
                r.push_str(&format!("; advisories: {}", ev.advisory_ids().join(", ")));
            }
            for note in ev.tcb_notes() {
                r.push_str(&format!("; {note}"));
            }
            reasons.push(r);
        } else if !ev.advisory_ids().is_empty() {
            warnings.push(format!(
                "TCB status {} with advisories {}",
                ev.tcb_status(),
                ev.advisory_ids().join(", ")
            ));
        }
        let rejected: BTreeSet<_> = ev
            .advisory_ids()
            .iter()
            .filter(|a| {
                self.rejected_advisories
                    .iter()
                    .any(|r| r.eq_ignore_ascii_case(a))
            })
            .collect();
        if !rejected.is_empty() {
            reasons.push(format!(
                "advisories rejected by policy apply: {}",
                rejected.into_iter().cloned().collect::<Vec<_>>().join(", ")
            ));
        }

        if ctx.expected_report_data.is_some() && self.report_data.is_some() {
            reasons.push(
                "the policy sets report_data, but this caller binds report_data itself (RA-TLS: SHA-512 of the certificate's claims); remove report_data from the policy".into(),
            );
        }
        let expected_rd = ctx.expected_report_data.or_else(|| {
            self.report_data
                .as_deref()
                .and_then(|h| decode_padded::<64>(h, "report_data").ok())
        });
        if let Some(expected) = expected_rd {
            if &expected != ev.report_data() {
                reasons.push(format!(
                    "report_data {} does not match the expected binding {}",
                    hex::encode(ev.report_data()),
                    hex::encode(expected)
                ));
            }
        }

        if let Some(max) = self.max_evidence_age {
            let now = ctx.now.unwrap_or_else(|| ev.verified_at());
            match ctx.created_at {
                None => reasons.push(
                    "max_evidence_age is set but the evidence's creation time is unknown".into(),
                ),
                Some(created) => {
                    let age = now - created;
                    if age > time::Duration::try_from(max).unwrap_or(time::Duration::MAX) {
                        reasons.push(format!(
                            "evidence is {} old; policy allows {}",
                            human_duration(age),
                            human_duration(
                                time::Duration::try_from(max).unwrap_or(time::Duration::MAX)
                            )
                        ));
                    } else if age < -time::Duration::minutes(5) {
                        reasons.push(format!(
                            "evidence claims to be created {} in the future",
                            human_duration(-age)
                        ));
                    }
                }
            }
        }

        match ev.identity() {
            Identity::Tdx(id) => self.check_tdx(id, &mut reasons),
            Identity::Snp(id) => self.check_snp(id, &mut reasons),
        }

        Decision {
            accepted: reasons.is_empty(),
            reasons,
            warnings,
            simulated,
        }
    }

    fn check_tdx(&self, id: &TdxIdentity, reasons: &mut Vec<String>) {
        if !self.snp.measurements.is_empty() && self.tdx.measurements.is_empty() {
            reasons.push("policy lists only SNP measurements but the evidence is TDX".into());
        }
        // dcap-qvl refuses such quotes too; checked here again so that the
        // rule does not depend on another crate's defaults.
        if !td_attributes::sept_ve_disable(&id.td_attributes) {
            reasons.push(format!(
                "TD attributes {}: SEPT_VE_DISABLE (bit 28) is clear, so the host can inject #VE on pending private pages",
                hex::encode(id.td_attributes)
            ));
        }
        if let Some(min) = self
            .tdx
            .min_tee_tcb_svn
            .as_deref()
            .and_then(|s| decode_exact::<16>(s, "").ok())
        {
            for (i, (have, need)) in id.tee_tcb_svn.iter().zip(min.iter()).enumerate() {
                if have < need {
                    reasons.push(format!(
                        "TEE TCB SVN component {i} is {have}, policy requires at least {need}"
                    ));
                }
            }
        }
        let actual = tdx_registers(id);
        if self.tdx.measurements.is_empty() {
            // No set pins them, so the host-chosen identities must be zero.
            for (field, have) in actual
                .iter()
                .filter(|(f, _)| ZERO_UNLESS_PINNED.contains(f))
            {
                if **have != [0u8; 48] {
                    reasons.push(format!(
                        "{} is {}: it must be all-zero unless the policy pins it (a Chrysalis TD never sets it; the host or TD owner chose this value)",
                        field.to_uppercase(),
                        hex::encode(have)
                    ));
                }
            }
            return;
        }
        let mismatches: Vec<Vec<String>> = self
            .tdx
            .measurements
            .iter()
            .map(|set| tdx_set_mismatches(set, id, &actual))
            .collect();
        push_closest(mismatches, "TDX", reasons);
    }

    fn check_snp(&self, id: &SnpIdentity, reasons: &mut Vec<String>) {
        if !self.tdx.measurements.is_empty() && self.snp.measurements.is_empty() {
            reasons.push("policy lists only TDX measurements but the evidence is SNP".into());
        }
        if let Some(max) = self.snp.max_vmpl {
            if id.vmpl > max {
                reasons.push(format!(
                    "report requested at VMPL {}, policy allows at most {max} (snp.max_vmpl)",
                    id.vmpl
                ));
            }
        }
        let guest = GuestPolicy(id.policy);
        if guest.migrate_ma() && !self.snp.allow_migrate_ma {
            reasons.push(format!(
                "guest policy {:#x} sets MIGRATE_MA (bit 18): a migration agent may export the guest's memory (snp.allow_migrate_ma)",
                id.policy
            ));
        }
        if guest.smt() && !self.snp.allow_smt {
            reasons.push(format!(
                "guest policy {:#x} allows SMT (bit 16) but the policy requires SMT off (snp.allow_smt = false)",
                id.policy
            ));
        }
        if let Some((major, minor)) = self.snp.min_abi.as_deref().and_then(|v| parse_abi(v).ok()) {
            if (guest.abi_major(), guest.abi_minor()) < (major, minor) {
                reasons.push(format!(
                    "guest policy requires firmware ABI {}.{}, policy requires at least {major}.{minor} (snp.min_abi)",
                    guest.abi_major(),
                    guest.abi_minor()
                ));
            }
        }
        if let Some(min) = self.snp.min_tcb {
            let tcb = &id.reported_tcb;
            let mut comps = vec![
                ("bootloader", tcb.bootloader(), min.bootloader),
                ("tee", tcb.tee(), min.tee),
                ("snp", tcb.snp(), min.snp),
                ("microcode", tcb.microcode(), min.microcode),
            ];
            if let Some(fmc) = min.fmc {
                comps.push(("fmc", tcb.fmc().unwrap_or(0), fmc));
            }
            for (name, have, need) in comps {
                if have < need {
                    reasons.push(format!(
                        "reported TCB {name} SPL is {have}, policy requires at least {need} (platform is behind; update firmware)"
                    ));
                }
            }
        }
        if self.snp.measurements.is_empty() {
            return;
        }
        let mismatches: Vec<Vec<String>> = self
            .snp
            .measurements
            .iter()
            .map(|set| {
                let label = set.name.as_deref().unwrap_or("the policy");
                let mut m = Vec::new();
                let mut cmp = |field: &str, want: &Option<String>, have: &[u8]| {
                    if let Some(want) = want {
                        if let Ok(want) = hex::decode(want.trim()) {
                            if want != have {
                                m.push(format!(
                                    "{field} is {} but {label} expects {}",
                                    hex::encode(have),
                                    hex::encode(want)
                                ));
                            }
                        }
                    }
                };
                cmp("MEASUREMENT", &set.measurement, &id.measurement);
                cmp("HOST_DATA", &set.host_data, &id.host_data);
                cmp("FAMILY_ID", &set.family_id, &id.family_id);
                cmp("IMAGE_ID", &set.image_id, &id.image_id);
                cmp("ID_KEY_DIGEST", &set.id_key_digest, &id.id_key_digest);
                cmp(
                    "AUTHOR_KEY_DIGEST",
                    &set.author_key_digest,
                    &id.author_key_digest,
                );
                if set.author_key_digest.is_some() && !id.author_key_en {
                    m.push(format!(
                        "the report has no author key (AUTHOR_KEY_EN clear) but {label} pins one"
                    ));
                }
                m
            })
            .collect();
        push_closest(mismatches, "SNP", reasons);
    }
}

/// The 48-byte registers a TDX set can pin, in report order.
fn tdx_fields(m: &TdxMeasurementSet) -> [(&'static str, &Option<String>); 8] {
    [
        ("mrtd", &m.mrtd),
        ("rtmr0", &m.rtmr0),
        ("rtmr1", &m.rtmr1),
        ("rtmr2", &m.rtmr2),
        ("rtmr3", &m.rtmr3),
        ("mrconfigid", &m.mrconfigid),
        ("mrowner", &m.mrowner),
        ("mrownerconfig", &m.mrownerconfig),
    ]
}

/// The evidence's values of [`tdx_fields`], same order.
fn tdx_registers(id: &TdxIdentity) -> [(&'static str, &[u8; 48]); 8] {
    [
        ("mrtd", &id.mrtd),
        ("rtmr0", &id.rtmr[0]),
        ("rtmr1", &id.rtmr[1]),
        ("rtmr2", &id.rtmr[2]),
        ("rtmr3", &id.rtmr[3]),
        ("mrconfigid", &id.mrconfigid),
        ("mrowner", &id.mrowner),
        ("mrownerconfig", &id.mrownerconfig),
    ]
}

/// Registers that must be all-zero unless a policy pins them.
const ZERO_UNLESS_PINNED: [&str; 3] = ["mrconfigid", "mrowner", "mrownerconfig"];

/// Every way `id` differs from `set`.
fn tdx_set_mismatches(
    set: &TdxMeasurementSet,
    id: &TdxIdentity,
    actual: &[(&'static str, &[u8; 48]); 8],
) -> Vec<String> {
    let label = set.name.as_deref().unwrap_or("the policy");
    let mut out: Vec<String> = tdx_fields(set)
        .into_iter()
        .zip(actual.iter())
        .filter_map(|((field, want), (_, have))| {
            let (want, how) = match want.as_deref() {
                Some(w) => (decode_exact::<48>(w, field).ok()?, "expects"),
                None if ZERO_UNLESS_PINNED.contains(&field) => {
                    ([0u8; 48], "pins none, so it must be all-zero; want")
                }
                None => return None,
            };
            (want != **have).then(|| {
                format!(
                    "{} is {} but {label} {how} {}",
                    field.to_uppercase(),
                    hex::encode(have),
                    hex::encode(want)
                )
            })
        })
        .collect();
    for (field, want, have) in [
        ("TD_ATTRIBUTES", &set.td_attributes, &id.td_attributes),
        ("XFAM", &set.xfam, &id.xfam),
    ] {
        let Some(want) = want
            .as_deref()
            .and_then(|w| decode_exact::<8>(w, field).ok())
        else {
            continue;
        };
        if want != *have {
            out.push(format!(
                "{field} is {} but {label} expects {}",
                hex::encode(have),
                hex::encode(want)
            ));
        }
    }
    out
}

/// Parses `"major.minor"` (e.g. `"1.51"`).
fn parse_abi(v: &str) -> Result<(u8, u8)> {
    let bad = || {
        Error::InvalidPolicy(format!(
            "snp.min_abi {v:?}: expected \"major.minor\", e.g. \"1.51\""
        ))
    };
    let (major, minor) = v.trim().split_once('.').ok_or_else(bad)?;
    Ok((
        major.parse().map_err(|_| bad())?,
        minor.parse().map_err(|_| bad())?,
    ))
}

/// If no set matches, report the mismatches of the closest set.
fn push_closest(mismatches: Vec<Vec<String>>, tee: &str, reasons: &mut Vec<String>) {
    if mismatches.iter().any(|m| m.is_empty()) {
        return;
    }
    let n = mismatches.len();
    if let Some(best) = mismatches.into_iter().min_by_key(|m| m.len()) {
        if n > 1 {
            reasons.push(format!(
                "{tee} measurements match none of the {n} accepted sets; closest:"
            ));
        }
        reasons.extend(best);
    }
}

fn decode_exact<const N: usize>(s: &str, field: &str) -> Result<[u8; N]> {
    let s = s.trim();
    let s = s.strip_prefix("0x").unwrap_or(s);
    let v = hex::decode(s).map_err(|e| Error::InvalidPolicy(format!("{field}: not hex: {e}")))?;
    v.try_into().map_err(|v: Vec<u8>| {
        Error::InvalidPolicy(format!("{field}: {} bytes, expected {N}", v.len()))
    })
}

fn decode_padded<const N: usize>(s: &str, field: &str) -> Result<[u8; N]> {
    let s = s.trim();
    let s = s.strip_prefix("0x").unwrap_or(s);
    let v = hex::decode(s).map_err(|e| Error::InvalidPolicy(format!("{field}: not hex: {e}")))?;
    if v.len() > N {
        return Err(Error::InvalidPolicy(format!(
            "{field}: {} bytes, at most {N}",
            v.len()
        )));
    }
    let mut out = [0u8; N];
    out[..v.len()].copy_from_slice(&v);
    Ok(out)
}

/// Parses `"90s"`, `"15m"`, `"24h"`, `"7d"`.
pub fn parse_duration(s: &str) -> Result<Duration> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().map_err(|_| {
        Error::InvalidPolicy(format!("duration {s:?}: expected e.g. 90s, 15m, 24h, 7d"))
    })?;
    let mult = match unit {
        "s" | "" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(Error::InvalidPolicy(format!(
                "duration {s:?}: unknown unit {unit:?} (s, m, h, d)"
            )))
        }
    };
    Ok(Duration::from_secs(n.saturating_mul(mult)))
}

mod opt_duration {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&format!("{}s", d.as_secs())),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let s = Option::<String>::deserialize(d)?;
        s.map(|s| super::parse_duration(&s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_policy_is_strict() {
        let p = Policy::default();
        assert_eq!(p.accepted_tcb_status, vec![TcbStatus::UpToDate]);
        assert!(!p.allow_debug && !p.allow_simulated);
    }

    #[test]
    fn bad_policies_are_named() {
        let e = Policy::from_toml("[[tdx.measurements]]\nmrtd = \"abcd\"\n").unwrap_err();
        assert!(
            e.to_string()
                .contains("tdx.measurements[0].mrtd: 2 bytes, expected 48"),
            "{e}"
        );
        let e = Policy::from_toml("allow_debugg = true").unwrap_err();
        assert!(e.to_string().contains("allow_debugg"), "{e}");
        let e = Policy::from_toml("accepted_tcb_status = [\"Fine\"]").unwrap_err();
        assert!(e.to_string().contains("accepted_tcb_status"), "{e}");
        let e = Policy::from_toml("max_evidence_age = \"3 weeks\"").unwrap_err();
        assert!(e.to_string().contains("duration"), "{e}");
    }

    #[test]
    fn full_policy_parses() {
        let p = Policy::from_toml(
            r#"
accepted_tcb_status = ["UpToDate", "SWHardeningNeeded"]
max_evidence_age = "24h"
report_data = "0102030405"
[[tdx.measurements]]
name = "x"
mrtd = "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
[snp]
min_tcb = { bootloader = 3, tee = 0, snp = 8, microcode = 115 }
max_vmpl = 0
"#,
        )
        .unwrap();
        assert_eq!(p.max_evidence_age, Some(Duration::from_secs(86_400)));
        assert_eq!(p.snp.min_tcb.unwrap().snp, 8);
        assert_eq!(
            decode_padded::<64>(p.report_data.as_deref().unwrap(), "").unwrap()[..6],
            [1, 2, 3, 4, 5, 0]
        );
    }
}
