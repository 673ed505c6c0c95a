//! A rejection in words a user can act on: who the node is, then its
//! registers beside those of the closest accepted configuration.

use chrysalis_attestation::policy::{set_label, SnpMeasurementSet, TdxMeasurementSet};
use chrysalis_attestation::{Identity, Policy};
use serde::Serialize;

/// One register of a rejected node beside the closest configuration's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RegisterRow {
    /// Register name as in measurements.json (`mrtd`, `rtmr0`, …).
    pub register: &'static str,
    /// The node's value (hex, report byte order).
    pub got: String,
    /// The configuration's value; `None` when it does not pin this register.
    pub want: Option<String>,
}

impl RegisterRow {
    /// True when the register matches (or is not pinned).
    pub fn matches(&self) -> bool {
        self.want
            .as_deref()
            .is_none_or(|w| w.eq_ignore_ascii_case(&self.got))
    }
}

/// The accepted set closest to `identity` (fewest differing registers),
/// with every register row. `None` when the policy has no set for this TEE.
pub fn closest(policy: &Policy, identity: &Identity) -> Option<(String, Vec<RegisterRow>)> {
    let candidates: Vec<(String, Vec<RegisterRow>)> = match identity {
        Identity::Tdx(id) => policy
            .tdx
            .measurements
            .iter()
            .enumerate()
            .map(|(i, set)| (set_label(set.name.as_deref(), i), tdx_rows(set, id)))
            .collect(),
        Identity::Snp(id) => policy
            .snp
            .measurements
            .iter()
            .enumerate()
            .map(|(i, set)| (set_label(set.name.as_deref(), i), snp_rows(set, id)))
            .collect(),
    };
    candidates
        .into_iter()
        .min_by_key(|(_, rows)| rows.iter().filter(|r| !r.matches()).count())
}

fn row(register: &'static str, got: &[u8], want: Option<&String>) -> RegisterRow {
    RegisterRow {
        register,
        got: hex::encode(got),
        want: want.map(|w| w.trim().trim_start_matches("0x").to_ascii_lowercase()),
    }
}

fn tdx_rows(
    set: &TdxMeasurementSet,
    id: &chrysalis_attestation::verified::TdxIdentity,
) -> Vec<RegisterRow> {
    let zero = hex::encode([0u8; 48]);
    let zero_unless = |v: &Option<String>| Some(v.clone().unwrap_or_else(|| zero.clone()));
    vec![
        row("mrtd", &id.mrtd, set.mrtd.as_ref()),
        row("rtmr0", &id.rtmr[0], set.rtmr0.as_ref()),
        row("rtmr1", &id.rtmr[1], set.rtmr1.as_ref()),
        row("rtmr2", &id.rtmr[2], set.rtmr2.as_ref()),
        row("rtmr3", &id.rtmr[3], set.rtmr3.as_ref()),
        row(
            "mrconfigid",
            &id.mrconfigid,
            zero_unless(&set.mrconfigid).as_ref(),
        ),
        row("mrowner", &id.mrowner, zero_unless(&set.mrowner).as_ref()),
        row(
            "mrownerconfig",
            &id.mrownerconfig,
            zero_unless(&set.mrownerconfig).as_ref(),
        ),
        row(
            "td_attributes",
            &id.td_attributes,
            set.td_attributes.as_ref(),
        ),
        row("xfam", &id.xfam, set.xfam.as_ref()),
    ]
}

fn snp_rows(
    set: &SnpMeasurementSet,
    id: &chrysalis_attestation::verified::SnpIdentity,
) -> Vec<RegisterRow> {
    vec![
        row("measurement", &id.measurement, set.measurement.as_ref()),
        row("host_data", &id.host_data, set.host_data.as_ref()),
        row("family_id", &id.family_id, set.family_id.as_ref()),
        row("image_id", &id.image_id, set.image_id.as_ref()),
        row(
            "id_key_digest",
            &id.id_key_digest,
            set.id_key_digest.as_ref(),
        ),
        row(
            "author_key_digest",
            &id.author_key_digest,
            set.author_key_digest.as_ref(),
        ),
    ]
}

/// The rows as aligned text, one register per line, mismatches marked:
///
/// ```text
///   rtmr0          got  44c0…
///               ✗  want 91eb…
/// ```
pub fn render(rows: &[RegisterRow]) -> String {
    let width = rows.iter().map(|r| r.register.len()).max().unwrap_or(0);
    let mut out = String::new();
    for r in rows {
        match (&r.want, r.matches()) {
            (None, _) => out.push_str(&format!(
                "  {:width$}  got  {}  (not pinned)\n",
                r.register, r.got
            )),
            (Some(_), true) => out.push_str(&format!("  {:width$}  ok   {}\n", r.register, r.got)),
            (Some(w), false) => {
                out.push_str(&format!("  {:width$}  got  {}\n", r.register, r.got));
                out.push_str(&format!("  {:width$}  want {}   <- differs\n", "", w));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_align_and_mark_mismatches() {
        let rows = vec![
            RegisterRow {
                register: "mrtd",
                got: "aa".into(),
                want: Some("aa".into()),
            },
            RegisterRow {
                register: "rtmr0",
                got: "bb".into(),
                want: Some("cc".into()),
            },
            RegisterRow {
                register: "xfam",
                got: "dd".into(),
                want: None,
            },
        ];
        assert!(rows[0].matches() && !rows[1].matches() && rows[2].matches());
        let text = render(&rows);
        assert_eq!(
            text,
            "  mrtd   ok   aa\n  rtmr0  got  bb\n         want cc   <- differs\n  xfam   got  dd  (not pinned)\n"
        );
    }
}
