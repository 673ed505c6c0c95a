//! TDX rules of a policy: accepted register sets, the host-chosen
//! identities that must be zero unless pinned, TD attributes, XFAM.

use serde::{Deserialize, Serialize};

use super::values::{decode_exact, push_closest};
use crate::error::Result;
use crate::tdx::quote::td_attributes;
use crate::verified::TdxIdentity;

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

/// Checks every hex value of `rules` has the right length.
pub(super) fn validate(rules: &TdxRules) -> Result<()> {
    if let Some(s) = &rules.min_tee_tcb_svn {
        decode_exact::<16>(s, "tdx.min_tee_tcb_svn")?;
    }
    for (i, m) in rules.measurements.iter().enumerate() {
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
    Ok(())
}

/// Judges TDX identity `id` by `rules`; `snp_sets` is whether the policy
/// lists SNP measurement sets. Returns the name of the first set that
/// matches (`None` when none does or the policy lists none).
pub(super) fn check(
    rules: &TdxRules,
    snp_sets: bool,
    id: &TdxIdentity,
    reasons: &mut Vec<String>,
) -> Option<String> {
    if snp_sets && rules.measurements.is_empty() {
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
    if let Some(min) = rules
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
    if rules.measurements.is_empty() {
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
        return None;
    }
    let mismatches: Vec<Vec<String>> = rules
        .measurements
        .iter()
        .map(|set| tdx_set_mismatches(set, id, &actual))
        .collect();
    push_closest(mismatches, "TDX", reasons)
        .map(|i| super::set_label(rules.measurements[i].name.as_deref(), i))
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
