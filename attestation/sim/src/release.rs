//! `--sim-release NAME --sim-configuration NAME`: the simulator plays a
//! node of a published configuration.
//!
//! The registers come from the configuration in
//! [`chrysalis_releases::Catalogue::builtin`] (every
//! `measurements/releases/*/measurements.json` compiled in):
//!
//! * **TDX**: MRTD and RTMR0–2 (and TD attributes / XFAM where the
//!   configuration records them). A register the configuration leaves
//!   `null` keeps the simulator's recognisable value
//!   ([`crate::sim_measurement`]), and [`SimRelease::warnings`] says that
//!   no default client can verify this configuration. RTMR3 is *not* taken
//!   from the configuration: it is what the agent really extends at boot
//!   (the image measures the default host configuration
//!   [`DEFAULT_HOST_CONFIGURATION`] when the host passes none).
//! * **SNP**: MEASUREMENT. `HOST_DATA` is what the host launched the guest
//!   with ([`crate::SimProvider::with_host_data`]); the image requires it to
//!   be the SHA-256 of the canonical runtime configuration, so an emulated
//!   node without one is launched with SHA-256 of `{}`
//!   ([`SimRelease::default_host_data`]).
//!
//! `--sim-set` overrides then apply on top (see [`crate::overrides`]).

use chrysalis_attestation::Tee;
use chrysalis_releases::{Catalogue, ConfigurationRef};
use sha2::{Digest, Sha256};

pub use chrysalis_releases::DEFAULT_HOST_CONFIGURATION;

use crate::error::{Error, Result};
use crate::overrides::{SimField, SimOverride, SimOverrides};

/// A published configuration the simulator emulates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimRelease {
    label: String,
    tee: Tee,
    registers: SimOverrides,
    warnings: Vec<String>,
}

impl SimRelease {
    /// `configuration` of `release` from the releases compiled into this
    /// build. `tee` chooses when a configuration has values for both TEEs
    /// (published ones have one); when given it must be one the
    /// configuration has.
    pub fn builtin(release: &str, configuration: &str, tee: Option<Tee>) -> Result<SimRelease> {
        Self::from_catalogue(Catalogue::builtin(), release, configuration, tee)
    }

    /// Like [`SimRelease::builtin`], from `catalogue`.
    pub fn from_catalogue(
        catalogue: &Catalogue,
        release: &str,
        configuration: &str,
        tee: Option<Tee>,
    ) -> Result<SimRelease> {
        let c = catalogue.release(release)?.configuration(configuration)?;
        Self::from_configuration(&c, tee)
    }

    /// The node `c` describes.
    pub fn from_configuration(c: &ConfigurationRef<'_>, tee: Option<Tee>) -> Result<SimRelease> {
        let label = c.label();
        let has = |t: Tee| match t {
            Tee::Tdx => c.configuration.tdx.is_some(),
            Tee::Snp => c.configuration.snp.is_some(),
        };
        let tee = match tee {
            Some(t) if has(t) => t,
            Some(t) => {
                return Err(Error::Configuration {
                    label,
                    message: format!(
                        "has no {t} values (it is a {} configuration)",
                        if has(Tee::Tdx) { "TDX" } else { "SNP" }
                    ),
                })
            }
            None => match (has(Tee::Tdx), has(Tee::Snp)) {
                (true, false) => Tee::Tdx,
                (false, true) => Tee::Snp,
                (true, true) => {
                    return Err(Error::Configuration {
                        label,
                        message: "has TDX and SNP values: choose one with --sim-tee".into(),
                    })
                }
                (false, false) => {
                    return Err(Error::Configuration {
                        label,
                        message: "has neither TDX nor SNP values".into(),
                    })
                }
            },
        };
        let mut registers = SimOverrides::new();
        let mut warnings = Vec::new();
        let bad = |register: &'static str, len: usize| Error::BadPublishedValue {
            label: label.clone(),
            register,
            len,
        };
        // Published registers are written as --sim-set writes byte fields.
        let bytes = |field: SimField, text: &str| {
            SimOverride::parse_value(field, text).map_err(|_| bad(field.name(), 48))
        };
        match tee {
            Tee::Tdx => {
                let t = c.configuration.tdx.as_ref().ok_or_else(|| bad("tdx", 0))?;
                registers.push(bytes(SimField::Mrtd, &t.mrtd)?);
                for (field, v) in [
                    (SimField::Rtmr0, &t.rtmr0),
                    (SimField::Rtmr1, &t.rtmr1),
                    (SimField::Rtmr2, &t.rtmr2),
                ] {
                    match v {
                        Some(v) => registers.push(bytes(field, v)?),
                        None => warnings.push(format!(
                            "{label} does not predict {} (null in its measurements.json): the simulator keeps its own value SHA-384(\"CHRYSALIS-SIM {}\"), and this configuration cannot be verified by default",
                            field.name().to_uppercase(),
                            field.name().to_uppercase()
                        )),
                    }
                }
                for (field, v) in [
                    (SimField::TdAttributes, &t.td_attributes),
                    (SimField::Xfam, &t.xfam),
                ] {
                    if let Some(v) = v {
                        let b: [u8; 8] = hex::decode(v.trim())
                            .ok()
                            .and_then(|b| b.try_into().ok())
                            .ok_or_else(|| bad(field.name(), 8))?;
                        registers.push(
                            SimOverride::int(field, u64::from_le_bytes(b))
                                .map_err(|_| bad(field.name(), 8))?,
                        );
                    }
                }
                if let Some(Err(why)) = c.tdx_set() {
                    let why = why.to_string();
                    if !warnings.iter().any(|w| w.contains("cannot be verified")) {
                        warnings.push(format!("{label} cannot be verified by default: {why}"));
                    }
                }
            }
            Tee::Snp => {
                let s = c.configuration.snp.as_ref().ok_or_else(|| bad("snp", 0))?;
                registers.push(bytes(SimField::Measurement, &s.measurement)?);
                if let Some(Err(why)) = c.snp_set() {
                    warnings.push(format!("{label} cannot be verified by default: {why}"));
                }
            }
        }
        Ok(SimRelease {
            label,
            tee,
            registers,
            warnings,
        })
    }

    /// `release / configuration`.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The TEE of the configuration.
    pub fn tee(&self) -> Tee {
        self.tee
    }

    /// The registers taken from the configuration, as overrides of the
    /// simulator's defaults.
    pub fn registers(&self) -> &SimOverrides {
        &self.registers
    }

    /// What a client should know (registers the configuration does not
    /// predict, so that it cannot be verified by default).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The SNP `HOST_DATA` the image requires when the host passes no
    /// runtime configuration: SHA-256 of [`DEFAULT_HOST_CONFIGURATION`].
    pub fn default_host_data() -> [u8; 32] {
        Self::host_data(DEFAULT_HOST_CONFIGURATION)
    }

    /// The SNP `HOST_DATA` the image requires for a runtime configuration
    /// with these canonical JSON bytes: their SHA-256.
    pub fn host_data(canonical: &[u8]) -> [u8; 32] {
        Sha256::digest(canonical).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CPU: &str = "chrysalis-0.2.0-cpu";

    #[test]
    fn snp_configuration_takes_the_published_measurement() {
        let r = SimRelease::builtin(CPU, "snp-2cpu-EPYC-v4", None).unwrap();
        assert_eq!(r.tee(), Tee::Snp);
        assert_eq!(r.label(), "chrysalis-0.2.0-cpu / snp-2cpu-EPYC-v4");
        let c = Catalogue::builtin()
            .release(CPU)
            .unwrap()
            .configuration("snp-2cpu-EPYC-v4")
            .unwrap();
        let want = hex::decode(&c.configuration.snp.as_ref().unwrap().measurement).unwrap();
        assert_eq!(r.registers().bytes(SimField::Measurement), Some(&want[..]));
        assert!(r.warnings().is_empty(), "{:?}", r.warnings());
        assert_eq!(
            hex::encode(SimRelease::default_host_data()),
            "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
    }

    #[test]
    fn tdx_configuration_of_the_published_release_takes_every_register() {
        let r = SimRelease::builtin(CPU, "tdx-2cpu-2048m-0gpu", None).unwrap();
        assert_eq!(r.tee(), Tee::Tdx);
        let c = Catalogue::builtin()
            .release(CPU)
            .unwrap()
            .configuration("tdx-2cpu-2048m-0gpu")
            .unwrap();
        let t = c.configuration.tdx.as_ref().unwrap();
        for (field, want) in [
            (SimField::Mrtd, Some(&t.mrtd)),
            (SimField::Rtmr0, t.rtmr0.as_ref()),
            (SimField::Rtmr1, t.rtmr1.as_ref()),
            (SimField::Rtmr2, t.rtmr2.as_ref()),
        ] {
            let want = hex::decode(want.expect("published")).unwrap();
            assert_eq!(r.registers().bytes(field), Some(&want[..]), "{field:?}");
        }
        assert!(
            r.registers().bytes(SimField::Rtmr3).is_none(),
            "RTMR3 comes from extends"
        );
        assert!(r.warnings().is_empty(), "{:?}", r.warnings());
    }

    #[test]
    fn tdx_configuration_with_a_null_register_warns_it_cannot_be_verified() {
        use chrysalis_releases::Release;
        let text = format!(
            r#"{{"schema":1,"tool":"t","image":"r-cpu","configurations":[
            {{"name":"tdx-a","vm":{{"vcpus":2,"memory_mib":2048,"gpus":0,"vmm":"qemu"}},
              "tdx":{{"mrtd":"{r}","rtmr0":null,"rtmr1":"{r}","rtmr2":"{r}","rtmr3":null}}}}]}}"#,
            r = "11".repeat(48)
        );
        let cat = Catalogue::from_releases(vec![Release::parse("r-cpu", &text).unwrap()]);
        let r = SimRelease::from_catalogue(&cat, "r-cpu", "tdx-a", None).unwrap();
        assert_eq!(r.tee(), Tee::Tdx);
        assert!(r.registers().bytes(SimField::Mrtd).is_some());
        assert!(r.registers().bytes(SimField::Rtmr1).is_some());
        assert!(
            r.registers().bytes(SimField::Rtmr0).is_none(),
            "null stays the sim's"
        );
        assert!(
            r.registers().bytes(SimField::Rtmr3).is_none(),
            "RTMR3 comes from extends"
        );
        assert_eq!(r.warnings().len(), 1, "{:?}", r.warnings());
        assert!(
            r.warnings()[0].contains("RTMR0")
                && r.warnings()[0].contains("cannot be verified by default"),
            "{:?}",
            r.warnings()
        );
    }

    #[test]
    fn recorded_td_attributes_and_xfam_are_played_in_report_byte_order() {
        use chrysalis_releases::Release;
        // (A malformed register never gets here: Release::parse refuses it.)
        let text = |mrtd: &str| {
            format!(
                r#"{{"schema":1,"tool":"t","image":"r-cpu","configurations":[
                {{"name":"tdx-a","vm":{{"vcpus":2,"memory_mib":2048,"gpus":0,"vmm":"qemu"}},
                  "tdx":{{"mrtd":"{mrtd}","rtmr0":"{r}","rtmr1":"{r}","rtmr2":"{r}","rtmr3":null,
                          "td_attributes":"0000001000000040","xfam":"e718060000000000"}}}}]}}"#,
                r = "11".repeat(48)
            )
        };
        let good = Catalogue::from_releases(vec![
            Release::parse("r-cpu", &text(&"22".repeat(48))).unwrap()
        ]);
        let r = SimRelease::from_catalogue(&good, "r-cpu", "tdx-a", None).unwrap();
        assert!(r.warnings().is_empty(), "{:?}", r.warnings());
        assert_eq!(
            r.registers().int(SimField::TdAttributes),
            Some(0x4000_0000_1000_0000)
        );
        assert_eq!(r.registers().int(SimField::Xfam), Some(0x06_18e7));
        assert_eq!(
            r.registers().bytes(SimField::Rtmr0),
            Some(&[0x11u8; 48][..])
        );
    }

    #[test]
    fn wrong_names_and_tees_are_refused_by_name() {
        let e = SimRelease::builtin("chrysalis-9.9.9-cpu", "x", None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("chrysalis-9.9.9-cpu") && e.contains(CPU), "{e}");
        let e = SimRelease::builtin(CPU, "snp-1cpu", None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("snp-1cpu") && e.contains("snp-2cpu-EPYC-v4"),
            "{e}"
        );
        let e = SimRelease::builtin(CPU, "snp-2cpu-EPYC-v4", Some(Tee::Tdx))
            .unwrap_err()
            .to_string();
        assert!(e.contains("has no tdx values"), "{e}");
    }
}
