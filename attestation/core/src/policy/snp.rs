//! SNP rules of a policy: accepted launch identities (with ID-block keys),
//! minimum TCB on top of the shipped floor, VMPL and guest policy bits.

use serde::{Deserialize, Serialize};

use super::values::{decode_exact, push_closest};
use crate::error::{Error, Result};
use crate::snp::report::GuestPolicy;
use crate::verified::SnpIdentity;

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

/// Checks every hex value of `rules` has the right length.
pub(super) fn validate(rules: &SnpRules) -> Result<()> {
    for (i, m) in rules.measurements.iter().enumerate() {
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
    if let Some(v) = &rules.min_abi {
        parse_abi(v)?;
    }
    Ok(())
}

/// Judges SNP identity `id` by `rules`; `tdx_sets` is whether the policy
/// lists TDX measurement sets. Returns the name of the first set that
/// matches (`None` when none does or the policy lists none).
pub(super) fn check(
    rules: &SnpRules,
    tdx_sets: bool,
    id: &SnpIdentity,
    reasons: &mut Vec<String>,
) -> Option<String> {
    if tdx_sets && rules.measurements.is_empty() {
        reasons.push("policy lists only TDX measurements but the evidence is SNP".into());
    }
    if let Some(max) = rules.max_vmpl {
        if id.vmpl > max {
            reasons.push(format!(
                "report requested at VMPL {}, policy allows at most {max} (snp.max_vmpl)",
                id.vmpl
            ));
        }
    }
    let guest = GuestPolicy(id.policy);
    if guest.migrate_ma() && !rules.allow_migrate_ma {
        reasons.push(format!(
            "guest policy {:#x} sets MIGRATE_MA (bit 18): a migration agent may export the guest's memory (snp.allow_migrate_ma)",
            id.policy
        ));
    }
    if guest.smt() && !rules.allow_smt {
        reasons.push(format!(
            "guest policy {:#x} allows SMT (bit 16) but the policy requires SMT off (snp.allow_smt = false)",
            id.policy
        ));
    }
    if let Some((major, minor)) = rules.min_abi.as_deref().and_then(|v| parse_abi(v).ok()) {
        if (guest.abi_major(), guest.abi_minor()) < (major, minor) {
            reasons.push(format!(
                "guest policy requires firmware ABI {}.{}, policy requires at least {major}.{minor} (snp.min_abi)",
                guest.abi_major(),
                guest.abi_minor()
            ));
        }
    }
    if let Some(min) = rules.min_tcb {
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
    if rules.measurements.is_empty() {
        return None;
    }
    let mismatches: Vec<Vec<String>> = rules
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
    push_closest(mismatches, "SNP", reasons)
        .map(|i| super::set_label(rules.measurements[i].name.as_deref(), i))
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
