//! The complete identity a published configuration predicts, as the
//! policy's measurement sets.
//!
//! A default client pins *every* register: a configuration whose
//! `measurements.json` leaves one `null` (e.g. RTMR0 before the VMM's ACPI
//! tables were modelled) is [`NotVerifiable`] and left out of the default
//! policy, with the reason shown to the user — never turned into "any value
//! passes".
//!
//! Registers not written in `measurements.json` but fixed by the image are
//! derived here, by the same rules the image follows:
//!
//! * **TDX RTMR3** of a cpu release: the agent's boot events for the default
//!   host configuration ([`DEFAULT_HOST_CONFIGURATION`], what the image
//!   measures when the host passes none): `config` then `boot-done`
//!   ([`rtmr3_expected`]). A gpu release's RTMR3 also holds the `gpu` event
//!   (the GPU count, the image's driver, CC on, dev tools off:
//!   `GpuEventState`), which `measure image` predicts and writes; a gpu
//!   manifest that leaves it `null` (older tools) has its RTMR3 judged by the
//!   **event log** instead ([`ConfigurationRef::rtmr3_by_event_log`]): the
//!   client must replay the log the node serves against the verified RTMR3
//!   and judge each event (`config` = the default host configuration, `gpu`
//!   = the state of the GPU evidence it verified itself, `boot-done` last).
//! * **SNP HOST_DATA**: SHA-256 of the default host configuration's
//!   canonical bytes (the agent refuses to start unless the host launched it
//!   with exactly that).
//! * **MRCONFIGID, MROWNER, MROWNERCONFIG**: all-zero (the policy enforces
//!   this for any set that does not pin them).

use chrysalis_attestation::policy::{SnpMeasurementSet, TdxMeasurementSet};
use chrysalis_attestation::runtime_events::rtmr3_expected;
use chrysalis_attestation::Policy;
use sha2::{Digest, Sha256};

use crate::catalogue::{Catalogue, ConfigurationRef};

/// The runtime configuration the image measures when the host passes
/// none (canonical JSON bytes: the empty object).
pub const DEFAULT_HOST_CONFIGURATION: &[u8] = b"{}";

/// Why a published configuration cannot be verified by default.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NotVerifiable {
    /// `measurements.json` does not predict this register (`null`).
    MissingRegister(&'static str),
}

impl std::fmt::Display for NotVerifiable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotVerifiable::MissingRegister(r) => write!(
                f,
                "its measurements.json does not predict {} (null), so no client can pin it",
                r.to_uppercase()
            ),
        }
    }
}

impl ConfigurationRef<'_> {
    /// True when a node of this configuration must present verified GPU
    /// evidence: a gpu release's configuration with at least one GPU.
    pub fn requires_gpu(&self) -> bool {
        self.release.is_gpu() && self.configuration.vm.gpus > 0
    }

    /// True when this TDX configuration's RTMR3 is judged by replaying the
    /// node's event log rather than pinned (a gpu release whose manifest
    /// does not pin RTMR3). A client must then require the log.
    pub fn rtmr3_by_event_log(&self) -> bool {
        self.configuration
            .tdx
            .as_ref()
            .is_some_and(|t| t.rtmr3.is_none() && self.release.is_gpu())
    }

    /// The TDX set pinning every register, if this is a TDX configuration.
    pub fn tdx_set(&self) -> Option<Result<TdxMeasurementSet, NotVerifiable>> {
        self.tdx_set_unpinned(&[])
    }

    /// Like [`Self::tdx_set`], but the registers named in `unpinned`
    /// (`mrtd`, `rtmr0` … `rtmr3`) are left unchecked whatever the manifest
    /// says (`chrysalis policy from-measurements --unpinned`, loud).
    pub fn tdx_set_unpinned(
        &self,
        unpinned: &[&str],
    ) -> Option<Result<TdxMeasurementSet, NotVerifiable>> {
        let t = self.configuration.tdx.as_ref()?;
        let need = |v: &Option<String>, r: &'static str| -> Result<Option<String>, NotVerifiable> {
            if unpinned.contains(&r) {
                return Ok(None);
            }
            v.clone().map(Some).ok_or(NotVerifiable::MissingRegister(r))
        };
        Some((|| {
            let rtmr3 = match (&t.rtmr3, self.release.is_gpu()) {
                _ if unpinned.contains(&"rtmr3") => None,
                (Some(v), _) => Some(v.clone()),
                (None, false) => Some(hex::encode(rtmr3_expected(DEFAULT_HOST_CONFIGURATION))),
                // Judged by the event log (see rtmr3_by_event_log).
                (None, true) => None,
            };
            Ok(TdxMeasurementSet {
                name: Some(self.label()),
                mrtd: need(&Some(t.mrtd.clone()), "mrtd")?,
                rtmr0: need(&t.rtmr0, "rtmr0")?,
                rtmr1: need(&t.rtmr1, "rtmr1")?,
                rtmr2: need(&t.rtmr2, "rtmr2")?,
                rtmr3,
                td_attributes: t.td_attributes.clone(),
                xfam: t.xfam.clone(),
                ..Default::default()
            })
        })())
    }

    /// The SNP set pinning the launch measurement and HOST_DATA, if this is
    /// an SNP configuration.
    pub fn snp_set(&self) -> Option<Result<SnpMeasurementSet, NotVerifiable>> {
        self.snp_set_unpinned(&[])
    }

    /// Like [`Self::snp_set`], leaving `measurement` and/or `host_data`
    /// unchecked when named in `unpinned`.
    pub fn snp_set_unpinned(
        &self,
        unpinned: &[&str],
    ) -> Option<Result<SnpMeasurementSet, NotVerifiable>> {
        let s = self.configuration.snp.as_ref()?;
        Some(Ok(SnpMeasurementSet {
            name: Some(self.label()),
            measurement: (!unpinned.contains(&"measurement")).then(|| s.measurement.clone()),
            // The manifest's pin when it has one, else the default host
            // configuration's digest (what the image requires without one).
            host_data: (!unpinned.contains(&"host_data")).then(|| {
                s.host_data
                    .clone()
                    .unwrap_or_else(|| hex::encode(Sha256::digest(DEFAULT_HOST_CONFIGURATION)))
            }),
            ..Default::default()
        }))
    }
}

/// The default client policy of a catalogue, and what it had to leave out.
#[derive(Debug, Clone)]
pub struct ReleasePolicy {
    /// Strict defaults (UpToDate TCB, no debug, no simulated evidence,
    /// `require_image`) plus one set per verifiable configuration, labelled
    /// `release / configuration`.
    pub policy: Policy,
    /// Configurations left out, with the reason (shown on rejection).
    pub not_verifiable: Vec<(String, NotVerifiable)>,
}

impl Catalogue {
    /// The policy that accepts exactly the verifiable configurations of
    /// these releases.
    pub fn policy(&self) -> ReleasePolicy {
        let mut policy = Policy {
            require_image: true,
            ..Policy::default()
        };
        let mut not_verifiable = Vec::new();
        for c in self.configurations() {
            match c.tdx_set() {
                Some(Ok(set)) => policy.tdx.measurements.push(set),
                Some(Err(why)) => not_verifiable.push((c.label(), why)),
                None => {}
            }
            match c.snp_set() {
                Some(Ok(set)) => policy.snp.measurements.push(set),
                Some(Err(why)) => not_verifiable.push((c.label(), why)),
                None => {}
            }
        }
        ReleasePolicy {
            policy,
            not_verifiable,
        }
    }
}

/// Registers `--unpinned` may name.
pub const UNPINNABLE: [&str; 7] = [
    "mrtd",
    "rtmr0",
    "rtmr1",
    "rtmr2",
    "rtmr3",
    "measurement",
    "host_data",
];

impl crate::catalogue::Release {
    /// The policy file (TOML) that accepts exactly this release's
    /// configurations — the same sets a default client uses — with the
    /// registers in `unpinned` left unchecked and marked so in the file.
    /// A register the manifest does not predict and `unpinned` does not
    /// name is an error (never silently unchecked).
    pub fn policy_toml(&self, unpinned: &[&str]) -> std::result::Result<String, String> {
        if let Some(bad) = unpinned.iter().find(|r| !UNPINNABLE.contains(r)) {
            return Err(format!(
                "--unpinned {bad}: not a register (one of {})",
                UNPINNABLE.join(", ")
            ));
        }
        let mut out = format!(
            "# Generated by `chrysalis policy from-measurements` from {} ({}).\n\
             # The same measurement sets a default client derives from this release.\n",
            self.name(),
            self.manifest().tool
        );
        if !unpinned.is_empty() {
            out.push_str(&format!(
                "# !!! UNPINNED (--unpinned): {} — ANY value of these registers is accepted.\n",
                unpinned.join(", ")
            ));
        }
        out.push_str(
            "accepted_tcb_status = [\"UpToDate\"]\nallow_debug = false\nallow_simulated = false\nrequire_image = true\n",
        );
        let q = |v: &Option<String>| v.as_ref().map(|v| format!("{v:?}"));
        for c in self.configurations() {
            if let Some(set) = c.tdx_set_unpinned(unpinned) {
                let set = set.map_err(|why| {
                    format!(
                        "configuration {}: {why}; pass --unpinned {} to accept any value (loudly)",
                        c.configuration.name,
                        match why {
                            NotVerifiable::MissingRegister(r) => r,
                        }
                    )
                })?;
                out.push_str(&format!("\n[[tdx.measurements]]\nname = {:?}\n", c.label()));
                for (k, v) in [
                    ("mrtd", &set.mrtd),
                    ("rtmr0", &set.rtmr0),
                    ("rtmr1", &set.rtmr1),
                    ("rtmr2", &set.rtmr2),
                    ("rtmr3", &set.rtmr3),
                    ("td_attributes", &set.td_attributes),
                    ("xfam", &set.xfam),
                ] {
                    match q(v) {
                        Some(v) => out.push_str(&format!("{k} = {v}\n")),
                        None if unpinned.contains(&k) => {
                            out.push_str(&format!("# {k}: UNPINNED (--unpinned {k})\n"))
                        }
                        None if k == "rtmr3" => out.push_str(
                            "# rtmr3: judged by the node's RTMR3 event log (gpu release)\n",
                        ),
                        None => {}
                    }
                }
                if set.td_attributes.is_none() || set.xfam.is_none() {
                    out.push_str(crate::manifest::TDX_ATTRIBUTES_UNPINNED);
                }
            }
            if let Some(set) = c.snp_set_unpinned(unpinned) {
                let set =
                    set.map_err(|why| format!("configuration {}: {why}", c.configuration.name))?;
                out.push_str(&format!("\n[[snp.measurements]]\nname = {:?}\n", c.label()));
                for (k, v) in [
                    ("measurement", &set.measurement),
                    ("host_data", &set.host_data),
                ] {
                    match q(v) {
                        Some(v) => out.push_str(&format!("{k} = {v}\n")),
                        None => out.push_str(&format!("# {k}: UNPINNED (--unpinned {k})\n")),
                    }
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::Release;

    fn release(name: &str, rtmr0: Option<&str>, rtmr3: Option<&str>) -> Release {
        let h = |b: u8| format!("\"{}\"", hex::encode([b; 48]));
        let opt = |v: Option<&str>| v.map_or("null".to_owned(), |v| format!("\"{v}\""));
        let text = format!(
            r#"{{"schema":1,"tool":"t","image":"{name}","configurations":[
            {{"name":"tdx-a","vm":{{"vcpus":2,"memory_mib":2048,"gpus":1,"vmm":"qemu"}},
              "tdx":{{"mrtd":{},"rtmr0":{},"rtmr1":{},"rtmr2":{},"rtmr3":{}}}}},
            {{"name":"snp-a","vm":{{"vcpus":2,"memory_mib":2048,"gpus":1,"vmm":"qemu"}},
              "snp":{{"measurement":{},"vcpu_type":"EPYC-v4","guest_features":"0x1"}}}}]}}"#,
            h(1),
            opt(rtmr0),
            h(2),
            h(3),
            opt(rtmr3),
            h(4)
        );
        Release::parse(name, &text).unwrap()
    }

    #[test]
    fn a_null_register_makes_the_configuration_unverifiable_not_unpinned() {
        let c = Catalogue::from_releases(vec![release("r-cpu", None, None)]);
        let p = c.policy();
        assert!(p.policy.require_image);
        assert!(p.policy.tdx.measurements.is_empty());
        assert_eq!(
            p.not_verifiable,
            vec![(
                "r-cpu / tdx-a".to_owned(),
                NotVerifiable::MissingRegister("rtmr0")
            )]
        );
        assert_eq!(p.policy.snp.measurements.len(), 1);
        assert_eq!(
            p.policy.snp.measurements[0].host_data.as_deref(),
            Some("44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"),
            "SHA-256 of {{}}"
        );
    }

    #[test]
    fn cpu_release_rtmr3_is_the_default_configuration_replay() {
        let r0 = hex::encode([9u8; 48]);
        let c = Catalogue::from_releases(vec![release("r-cpu", Some(&r0), None)]);
        let p = c.policy();
        let set = &p.policy.tdx.measurements[0];
        assert_eq!(set.name.as_deref(), Some("r-cpu / tdx-a"));
        assert_eq!(
            set.rtmr3.as_deref(),
            Some(hex::encode(rtmr3_expected(b"{}")).as_str())
        );
        assert!(set.mrconfigid.is_none() && set.mrowner.is_none());
        assert!(p.policy.validate().is_ok());
        // A gpu release cannot derive it (the gpu event is the machine's
        // GPU state): RTMR3 is left to the event log, which clients must
        // then require.
        let c = Catalogue::from_releases(vec![release("r-gpu", Some(&r0), None)]);
        let p = c.policy();
        assert!(p.not_verifiable.is_empty());
        assert_eq!(p.policy.tdx.measurements[0].rtmr3, None);
        let tdx = c.releases()[0].configuration("tdx-a").unwrap();
        assert!(tdx.rtmr3_by_event_log() && tdx.requires_gpu());
        assert!(c.releases()[0].configurations().all(|c| c.requires_gpu()));
    }
}
