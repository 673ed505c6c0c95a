//! `measurements.json`: the published expected measurements of an image.
//!
//! Written by `chrysalis measure image DIR`, read by
//! `chrysalis policy from-measurements` (and by the TON registry tools).
//! Schema version 1, documented in the README:
//!
//! ```json
//! {
//!   "schema": 1,
//!   "tool": "chrysalis 0.1.0",
//!   "image": "chrysalis-0.1.0",
//!   "artifacts": { "firmware-tdx.fd": "<sha256 hex>", "vmlinuz": "…", "initrd": "…", "rootfs.img": "…" },
//!   "verity_root_hash": "<hex>",
//!   "cmdline": "…",
//!   "configurations": [
//!     { "name": "tdx-8cpu-64g-1gpu",
//!       "vm": { "vcpus": 8, "memory_mib": 65536, "gpus": 1, "vmm": "qemu", "vmm_version": "11.1.3",
//!               "model_volume": true },
//!       "tdx": { "mrtd": "…", "rtmr0": "…" | null, "rtmr1": "…", "rtmr2": "…", "rtmr3": "…", "model": "…" } },
//!     { "name": "snp-8cpu-epyc-genoa",
//!       "vm": { … },
//!       "snp": { "measurement": "…", "vcpu_type": "EPYC-Genoa", "guest_features": "0x1",
//!                "host_data": "…" } }
//!   ]
//! }
//! ```
//!
//! All digests are lowercase hex. A register that could not be computed from
//! the given inputs (e.g. RTMR0 without the VMM's ACPI tables) is `null`,
//! never a guess; policies generated from it leave that register unchecked.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Current schema version.
pub const SCHEMA_VERSION: u32 = 1;

/// The whole `measurements.json` document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeasurementsManifest {
    /// Schema version ([`SCHEMA_VERSION`]).
    pub schema: u32,
    /// Tool and version that computed it.
    pub tool: String,
    /// Image release name.
    #[serde(default)]
    pub image: Option<String>,
    /// SHA-256 of each artifact, by file name.
    #[serde(default)]
    pub artifacts: BTreeMap<String, String>,
    /// dm-verity root hash of the rootfs, when known.
    #[serde(default)]
    pub verity_root_hash: Option<String>,
    /// Kernel command line measured.
    #[serde(default)]
    pub cmdline: Option<String>,
    /// Expected values per VM configuration.
    pub configurations: Vec<Configuration>,
    /// The RTMR3 event rules of the image (TDX): what the agent extends and
    /// how a client judges the log it serves. Absent in older manifests
    /// (the rules are then the default ones, [`Rtmr3Events::default_for`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtmr3_events: Option<Rtmr3Events>,
}

/// The RTMR3 runtime events an image's agent extends, in order, and what
/// each may carry (see `chrysalis_attestation::runtime_events`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rtmr3Events {
    /// Event names in extension order, e.g. `["config", "boot-done"]` or
    /// `["config", "gpu", "boot-done"]`; nothing after `boot-done`.
    pub order: Vec<String>,
    /// SHA-384 (hex) of the canonical runtime configuration the `config`
    /// event must carry: the default host configuration `{}`.
    pub config_sha384: String,
    /// What the `gpu` event carries, in words (when the image has one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<String>,
    /// The NVIDIA driver version in the image (e.g. `550.163.01`): the
    /// `driver` of the `gpu` event's state
    /// (`chrysalis_attestation::runtime_events::GpuEventState::expected`
    /// with the configuration's GPU count), from which each gpu
    /// configuration's RTMR3 is predicted. Absent from cpu images and from
    /// older gpu manifests (whose RTMR3 is then left to the event log).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_driver: Option<String>,
}

impl Rtmr3Events {
    /// The rules of a Chrysalis image: `config` (the default host
    /// configuration `{}`), `gpu` for a gpu image (whose NVIDIA driver is
    /// `gpu_driver`), `boot-done`.
    pub fn default_for(gpu_driver: Option<&str>) -> Rtmr3Events {
        use sha2::Digest;
        let mut order = vec!["config".to_owned()];
        if gpu_driver.is_some() {
            order.push("gpu".to_owned());
        }
        order.push("boot-done".to_owned());
        Rtmr3Events {
            order,
            config_sha384: hex::encode(sha2::Sha384::digest(b"{}")),
            gpu: gpu_driver.map(|_| {
                "SHA-384 of the canonical JSON {\"cc\":true,\"devtools\":false,\"driver\":GPU_DRIVER,\"gpus\":N} (N = the configuration's GPU count; chrysalis_attestation::runtime_events::GpuEventState): the state the boot gate verified, never card-specific; a client also requires it to equal the state of the GPU evidence it verifies itself".to_owned()
            }),
            gpu_driver: gpu_driver.map(str::to_owned),
        }
    }
}

/// The VM configuration a measurement assumes (it changes RTMR0/RTMR1 and
/// the SNP VMSA pages, so it is written down with the values).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmConfig {
    /// Number of vCPUs.
    pub vcpus: u32,
    /// Guest memory in MiB.
    pub memory_mib: u64,
    /// Number of passed-through GPUs.
    #[serde(default)]
    pub gpus: u32,
    /// VMM name (`qemu`, `ec2`).
    pub vmm: String,
    /// VMM version, when it matters for the values. `chrysalis launch`
    /// refuses a QEMU of another version for this configuration.
    #[serde(default)]
    pub vmm_version: Option<String>,
    /// Whether the VM has the model volume's two disks attached (they are
    /// PCI devices, so they enter the ACPI tables and RTMR0). Absent: no.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub model_volume: bool,
}

/// Expected TDX registers (lowercase hex, 48 bytes each).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TdxExpected {
    /// MRTD.
    pub mrtd: String,
    /// RTMR0, `null` when not computable from the inputs.
    pub rtmr0: Option<String>,
    /// RTMR1.
    pub rtmr1: Option<String>,
    /// RTMR2.
    pub rtmr2: Option<String>,
    /// RTMR3 (the agent's runtime register).
    pub rtmr3: Option<String>,
    /// The model the values assume (e.g. page-add ordering).
    #[serde(default)]
    pub model: Option<String>,
    /// TD attributes the launch produces (8 bytes, report byte order), when
    /// known. Absent from files that do not record it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub td_attributes: Option<String>,
    /// XFAM the launch produces (8 bytes, report byte order), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xfam: Option<String>,
}

/// Expected SNP launch measurement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnpExpected {
    /// Launch digest (lowercase hex, 48 bytes).
    pub measurement: String,
    /// vCPU type it was computed for.
    pub vcpu_type: String,
    /// Guest features (hex, `0x…`).
    pub guest_features: String,
    /// `HOST_DATA` the guest must be launched with (lowercase hex, 32
    /// bytes): SHA-256 of the canonical runtime configuration; for a
    /// published configuration, the default configuration `{}`. Absent from
    /// files that do not pin it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_data: Option<String>,
}

/// One VM configuration and its expected values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Configuration {
    /// A label, e.g. `tdx-8cpu-64g-1gpu`.
    pub name: String,
    /// The VM configuration.
    pub vm: VmConfig,
    /// TDX values, for TDX configurations.
    #[serde(default)]
    pub tdx: Option<TdxExpected>,
    /// SNP values, for SNP configurations.
    #[serde(default)]
    pub snp: Option<SnpExpected>,
}

/// Written under a TDX set whose `measurements.json` does not record the
/// TD attributes or XFAM: why they stay unpinned, and what still guards them.
pub(crate) const TDX_ATTRIBUTES_UNPINNED: &str = "\
# td_attributes / xfam: not recorded in measurements.json, so not pinned.
# Chrysalis launches TDs with QEMU's tdx-guest defaults: SEPT_VE_DISABLE set
# (td_attributes \"0000001000000000\"), plus PKS/PERFMON and an XFAM that
# follow the host CPU under `-cpu host`, so no single value fits every host.
# The verifier still refuses any TD-under-debug bit, a clear SEPT_VE_DISABLE,
# MIGRATABLE and reserved bits; MRCONFIGID, MROWNER and MROWNERCONFIG must be
# all-zero because this set does not pin them. To pin them for one host, add
# td_attributes = \"<16 hex>\" and xfam = \"<16 hex>\" (report byte order,
# as `chrysalis attest show` prints them).
";

impl MeasurementsManifest {
    /// Parses and checks a `measurements.json`.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let m: MeasurementsManifest = serde_json::from_str(text).map_err(|e| {
            format!(
                "not a measurements.json (line {}, column {}): {e}",
                e.line(),
                e.column()
            )
        })?;
        if m.schema != SCHEMA_VERSION {
            return Err(format!(
                "measurements.json schema {} is not supported (this tool reads schema {SCHEMA_VERSION})",
                m.schema
            ));
        }
        for c in &m.configurations {
            let hexes = c
                .tdx
                .iter()
                .flat_map(|t| {
                    [
                        Some(&t.mrtd),
                        t.rtmr0.as_ref(),
                        t.rtmr1.as_ref(),
                        t.rtmr2.as_ref(),
                        t.rtmr3.as_ref(),
                    ]
                })
                .flatten()
                .map(|h| (h, 48))
                .chain(c.snp.iter().map(|s| (&s.measurement, 48)))
                .chain(
                    c.snp
                        .iter()
                        .filter_map(|s| s.host_data.as_ref())
                        .map(|h| (h, 32)),
                );
            let attrs = c
                .tdx
                .iter()
                .flat_map(|t| [t.td_attributes.as_ref(), t.xfam.as_ref()])
                .flatten()
                .map(|h| (h, 8));
            for (h, len) in hexes.chain(attrs) {
                match hex::decode(h) {
                    Ok(b) if b.len() == len => {}
                    _ => {
                        return Err(format!(
                            "configuration {:?}: {h:?} is not {len} bytes of hex",
                            c.name
                        ))
                    }
                }
            }
        }
        Ok(m)
    }

    /// Serialises with stable key order and a trailing newline.
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
    }
}
