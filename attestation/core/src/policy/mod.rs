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
use crate::timefmt::human_duration;
use crate::verified::{Identity, TcbStatus, VerifiedEvidence};

mod snp;
mod tdx;
mod values;

pub use snp::{SnpMeasurementSet, SnpMinTcb, SnpRules};
pub use tdx::{TdxMeasurementSet, TdxRules};
use values::decode_padded;

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
    /// Refuse evidence whose TEE has no accepted measurement set, instead of
    /// accepting any image with a loud warning. Default false in a policy
    /// file (the file decides what it pins); true in the default client
    /// policy built from the published releases, so a release that cannot
    /// be verified for a TEE is never "verified" without its image.
    #[serde(default)]
    pub require_image: bool,
}

fn default_statuses() -> Vec<TcbStatus> {
    vec![TcbStatus::UpToDate]
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
    /// The name of the accepted measurement set the evidence matched
    /// (e.g. `chrysalis-0.2.0-cpu / snp-2cpu-EPYC-v4`); `None` when no set
    /// matched or the policy pins no image for this TEE.
    pub matched: Option<String>,
    /// True when the policy pins an image (lists measurement sets) for the
    /// evidence's TEE. False means any image passes: every output must say
    /// so ([`NO_IMAGE_PINNED_WARNING`]).
    pub image_pinned: bool,
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
            require_image: false,
        }
    }
}

/// The label of accepted set `index` (0-based): its name, or its position
/// (`accepted set #1`). [`Decision::matched`] carries it.
pub fn set_label(name: Option<&str>, index: usize) -> String {
    name.map(str::to_owned)
        .unwrap_or_else(|| format!("accepted set #{}", index + 1))
}

/// The loud warning every output carries when no image is pinned.
pub const NO_IMAGE_PINNED_WARNING: &str =
    "NO IMAGE PINNED: the policy lists no measurements for this TEE, so ANY image passes (only authenticity, TCB and debug were checked)";

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
        tdx::validate(&self.tdx)?;
        snp::validate(&self.snp)?;
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

        let (matched, image_pinned) = match ev.identity() {
            Identity::Tdx(id) => (
                tdx::check(
                    &self.tdx,
                    !self.snp.measurements.is_empty(),
                    id,
                    &mut reasons,
                ),
                !self.tdx.measurements.is_empty(),
            ),
            Identity::Snp(id) => (
                snp::check(
                    &self.snp,
                    !self.tdx.measurements.is_empty(),
                    id,
                    &mut reasons,
                ),
                !self.snp.measurements.is_empty(),
            ),
        };
        let other_tee_pinned = match ev.identity() {
            Identity::Tdx(_) => !self.snp.measurements.is_empty(),
            Identity::Snp(_) => !self.tdx.measurements.is_empty(),
        };
        if !image_pinned {
            // With sets for the other TEE only, the TEE check already said
            // "policy lists only … measurements".
            if self.require_image && !other_tee_pinned {
                reasons.push(format!(
                    "no accepted {} configuration: the policy requires a pinned image but lists no {} measurement set",
                    ev.tee(),
                    ev.tee()
                ));
            } else {
                warnings.push(NO_IMAGE_PINNED_WARNING.into());
            }
        }

        Decision {
            accepted: reasons.is_empty(),
            reasons,
            warnings,
            simulated,
            matched,
            image_pinned,
        }
    }
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
