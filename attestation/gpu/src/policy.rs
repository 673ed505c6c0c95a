//! What GPU evidence is accepted: the `[gpu]` section of the node policy
//! (TOML). Every key has a secure default, so an empty section is the
//! strict policy.
//!
//! ```toml
//! [gpu]
//! require_gpu = true                  # at least one GPU must be attested
//! require_cc_mode = true              # every GPU in CC mode "on"
//! require_devtools_off = true         # CC dev-tools mode must be off
//! min_driver_version = "550.54.14"    # optional; compared numerically per dot-separated part
//! ocsp = "required"                   # "required" | "if-available" | "off"
//! max_measurement_mismatches = 0      # RIM mismatches tolerated (none by default)
//! require_rim_version_match = false   # RIM colloquialVersion must equal the report's version
//! require_rims = true                 # driver and VBIOS RIMs must be supplied and compared
//! ```

use serde::Deserialize;

use crate::error::{Error, Result};

/// How OCSP status of the device and RIM signer certificates is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OcspRequirement {
    /// Every certificate (except the pinned roots) needs a verified, current
    /// `good` response, from the cache or the network.
    Required,
    /// Check where a response is available; a `revoked` or `unknown` answer
    /// still fails, a missing one is reported as "not checked".
    IfAvailable,
    /// Do not consult OCSP (reported as "not checked" in the result).
    Off,
}

/// The `[gpu]` policy section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct GpuPolicy {
    /// At least one GPU must be present and attested.
    pub require_gpu: bool,
    /// Every GPU must report CC mode on (driver-reported state).
    pub require_cc_mode: bool,
    /// The system's CC dev-tools mode must be off.
    pub require_devtools_off: bool,
    /// Minimum driver version (from the signed report), e.g. `550.54.14`.
    pub min_driver_version: Option<String>,
    /// OCSP treatment.
    pub ocsp: OcspRequirement,
    /// How many measurement indexes may differ from the RIMs (default 0).
    pub max_measurement_mismatches: u32,
    /// The RIMs' versions must equal the report's driver / VBIOS versions.
    pub require_rim_version_match: bool,
    /// Driver and VBIOS RIMs must be supplied and compared (default true).
    pub require_rims: bool,
}

impl Default for GpuPolicy {
    fn default() -> Self {
        GpuPolicy {
            require_gpu: true,
            require_cc_mode: true,
            require_devtools_off: true,
            min_driver_version: None,
            ocsp: OcspRequirement::Required,
            max_measurement_mismatches: 0,
            require_rim_version_match: false,
            require_rims: true,
        }
    }
}

struct PolicyFile {
    gpu: Option<toml::Value>,
}

impl GpuPolicy {
    /// Read a policy file and parse its `[gpu]` section
    /// ([`GpuPolicy::from_toml_str`]); every error names the file.
    pub fn from_file(path: &std::path::Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            path: path.display().to_string(),
            source,
        })?;
        let text = String::from_utf8(bytes).map_err(|_| Error::Malformed {
            what: "GPU policy",
            reason: format!("{}: not UTF-8", path.display()),
        })?;
        Self::from_toml_str(&text).map_err(|e| match e {
            Error::Malformed { what, reason } => Error::Malformed {
                what,
                reason: format!("{}: {reason}", path.display()),
            },
            other => other,
        })
    }

    /// Parse the `[gpu]` section of a policy file. A file without the
    /// section gives the default (strict) policy; unknown keys are errors.
    pub fn from_toml_str(text: &str) -> Result<Self> {
        let bad = |e: String| Error::Malformed {
            what: "GPU policy",
            reason: e,
        };
        let table: toml::Table = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
        let file = PolicyFile {
            gpu: table.get("gpu").cloned(),
        };
        let policy = match file.gpu {
            None => GpuPolicy::default(),
            Some(v) => v
                .try_into()
                .map_err(|e: toml::de::Error| bad(e.to_string()))?,
        };
        if let Some(v) = &policy.min_driver_version {
            parse_version(v)
                .ok_or_else(|| bad(format!("min_driver_version {v:?} is not dotted numbers")))?;
        }
        Ok(policy)
    }

    /// The policy `chrysalis gpu verify` applies without `--policy`:
    /// authenticity only. The SDK's recorded formats carry no CC state, so
    /// CC mode and dev-tools are not required (the output says so); OCSP is
    /// used if available.
    pub fn authenticity_only() -> Self {
        GpuPolicy {
            require_gpu: true,
            require_cc_mode: false,
            require_devtools_off: false,
            min_driver_version: None,
            ocsp: OcspRequirement::IfAvailable,
            max_measurement_mismatches: 0,
            require_rim_version_match: false,
            require_rims: false,
        }
    }
}

/// Dotted version string to numbers (`550.90.07` → `[550, 90, 7]`).
pub fn parse_version(v: &str) -> Option<Vec<u64>> {
    v.split('.').map(|p| p.trim().parse::<u64>().ok()).collect()
}

/// Whether `actual` ≥ `minimum`, comparing dotted numbers part by part
/// (missing parts count as 0). `None` if either does not parse.
pub fn version_at_least(actual: &str, minimum: &str) -> Option<bool> {
    let (mut a, mut m) = (parse_version(actual)?, parse_version(minimum)?);
    let n = a.len().max(m.len());
    a.resize(n, 0);
    m.resize(n, 0);
    Some(a >= m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_is_strict_default() {
        let p = GpuPolicy::from_toml_str("").unwrap();
        assert_eq!(p, GpuPolicy::default());
        assert!(p.require_cc_mode && p.require_devtools_off);
        assert_eq!(p.ocsp, OcspRequirement::Required);
        assert_eq!(p.max_measurement_mismatches, 0);
    }

    #[test]
    fn section_parses_and_unknown_keys_fail() {
        let p = GpuPolicy::from_toml_str(
            "[gpu]\nocsp = \"off\"\nmin_driver_version = \"550.54\"\n[other]\nx = 1\n",
        )
        .unwrap();
        assert_eq!(p.ocsp, OcspRequirement::Off);
        assert!(p.require_cc_mode);
        let e = GpuPolicy::from_toml_str("[gpu]\nrequire_cc = true\n").unwrap_err();
        assert!(e.to_string().contains("require_cc"), "{e}");
        assert!(GpuPolicy::from_toml_str("[gpu]\nmin_driver_version = \"5x\"\n").is_err());
    }

    #[test]
    fn versions_compare_numerically() {
        assert_eq!(version_at_least("550.90.07", "550.54.14"), Some(true));
        assert_eq!(version_at_least("550.9", "550.54"), Some(false));
        assert_eq!(version_at_least("550", "550.0.0"), Some(true));
        assert_eq!(version_at_least("abc", "1"), None);
    }

    #[test]
    fn from_file_names_the_file_in_every_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.toml");
        let e = GpuPolicy::from_file(&missing).unwrap_err();
        assert_eq!(e.category(), crate::ErrorCategory::Io);
        assert!(e.to_string().contains("missing.toml"), "{e}");
        for (name, bytes) in [
            ("latin1.toml", &b"[gpu]\nx = \"\xff\"\n"[..]),
            ("typo.toml", b"[gpu]\ncc_mod = \"on\"\n"),
        ] {
            let p = dir.path().join(name);
            std::fs::write(&p, bytes).unwrap();
            let e = GpuPolicy::from_file(&p).unwrap_err();
            assert_eq!(e.category(), crate::ErrorCategory::Malformed, "{name}: {e}");
            assert!(e.to_string().contains(name), "{e}");
        }
        let p = dir.path().join("ok.toml");
        std::fs::write(&p, "[gpu]\n").unwrap();
        assert_eq!(GpuPolicy::from_file(&p).unwrap(), GpuPolicy::default());
    }
}
