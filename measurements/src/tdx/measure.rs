//! From a set of boot artifacts and a VM configuration to the expected TDX
//! registers, with the model and inputs recorded next to the values.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::digest::{sha384, Digest384};
use super::event::{replay_events, MeasuredEvent};
use super::files::{read_file, sha256_file, sha384_file};
use super::kernel::{KernelLoad, QEMU_ACPI_DATA_SIZE};
use super::rtmr::{self, AcpiDigests, BootVariables, Rtmr0Inputs, SecureBootVariables};
use super::tdvf::{PageAddOrder, Tdvf};
use crate::error::{Error, Result};

/// The virtual machine monitor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vmm {
    /// Name; only `"qemu"` is modelled.
    pub name: String,
    /// Version, `MAJOR.MINOR[.PATCH]` (e.g. `"8.2.2"`).
    pub version: String,
}

/// The VM configuration the measurements are computed for; recorded in the
/// output because RTMR0 (ACPI tables, TD HOB), RTMR1 (kernel patch) and MRTD
/// (QEMU version) depend on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmConfig {
    /// Number of vCPUs (enters through the ACPI tables).
    pub vcpus: u32,
    /// Guest RAM in bytes (TD HOB, initrd placement in the kernel header).
    pub memory_bytes: u64,
    /// Number of passed-through GPUs (enters through the ACPI tables).
    pub gpus: u32,
    /// The VMM and its version.
    pub vmm: Vmm,
}

/// The modelling choices behind a set of measurements.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeasurementModel {
    /// VMM model, e.g. `"QEMU 8.2.2 (q35, TDX, direct kernel boot)"`.
    pub vmm: String,
    /// Page-add order used for MRTD.
    pub page_add_order: PageAddOrder,
    /// Why that order: the QEMU version's default or an override.
    pub page_add_order_source: String,
    /// Firmware event model.
    pub firmware: String,
    /// Kernel loading model.
    pub kernel_loader: String,
    /// `acpi_data_size` used for initrd placement (bytes).
    pub acpi_data_size: u32,
    /// How RTMR0 was obtained, or why it was not.
    pub rtmr0: String,
    /// Secure Boot variables assumed.
    pub secure_boot: String,
    /// The RTMR3 rule, or why RTMR3 was not computed.
    pub rtmr3: String,
}

/// SHA-256 of one input file, for the record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactDigest {
    /// What the file is ("firmware", "kernel", …).
    pub role: String,
    /// Its path.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of its content.
    #[serde(with = "super::digest::hex32")]
    pub sha256: [u8; 32],
}

/// Expected TDX measurements and how they were obtained.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TdxMeasurements {
    /// Expected MRTD.
    #[serde(with = "super::digest::hex48")]
    pub mrtd: Digest384,
    /// Expected RTMR0..=RTMR3; `null` for a register that could not be
    /// computed from the inputs given (RTMR0 without ACPI tables, RTMR3
    /// without a configuration).
    #[serde(with = "rtmr_array")]
    pub rtmr: [Option<Digest384>; 4],
    /// The model used.
    pub model: MeasurementModel,
    /// The VM configuration used.
    pub vm: VmConfig,
    /// The command line as measured (with ` initrd=initrd` when applicable).
    pub measured_cmdline: String,
    /// Input files and their SHA-256.
    pub artifacts: Vec<ArtifactDigest>,
    /// The predicted events of every computed register, for diffs against
    /// an event log ([`super::eventlog::compare`]).
    pub events: Vec<MeasuredEvent>,
}

/// Inputs to [`measure`].
#[derive(Debug, Clone)]
pub struct TdxInputs {
    /// TDVF firmware (`-bios`), e.g. `OVMF.fd`.
    pub firmware: PathBuf,
    /// Kernel (`-kernel`), a bzImage with an EFI stub (PE).
    pub kernel: PathBuf,
    /// Initrd (`-initrd`), if any.
    pub initrd: Option<PathBuf>,
    /// Kernel command line as given to QEMU (`-append`).
    pub cmdline: String,
    /// QEMU's ACPI tables ([`AcpiDigests::load`]); RTMR0 is computed only
    /// when given.
    pub acpi_tables: Option<PathBuf>,
    /// The configuration bytes the Chrysalis agent measures into RTMR3
    /// (canonical JSON, [`rtmr::canonical_json`]); RTMR3 only when given.
    pub config: Option<PathBuf>,
    /// The VM.
    pub vm: VmConfig,
    /// Overrides the page-add order the QEMU version implies.
    pub page_add_order: Option<PageAddOrder>,
    /// Bytes QEMU reserves for ACPI below 4 GiB (default 0x28000).
    pub acpi_data_size: u32,
    /// Secure Boot variables (default: off, nothing enrolled).
    pub secure_boot: SecureBootVariables,
    /// Boot variables (default: OVMF's UiApp only).
    pub boot: BootVariables,
}

impl TdxInputs {
    /// Inputs with defaults for everything optional.
    pub fn new(firmware: PathBuf, kernel: PathBuf, cmdline: String, vm: VmConfig) -> Self {
        TdxInputs {
            firmware,
            kernel,
            initrd: None,
            cmdline,
            acpi_tables: None,
            config: None,
            vm,
            page_add_order: None,
            acpi_data_size: QEMU_ACPI_DATA_SIZE,
            secure_boot: SecureBootVariables::default(),
            boot: BootVariables::default(),
        }
    }
}

/// Computes the expected measurements for `inputs`. Errors name the file and
/// what is wrong with it.
pub fn measure(inputs: &TdxInputs) -> Result<TdxMeasurements> {
    let vm = &inputs.vm;
    if !vm.vmm.name.eq_ignore_ascii_case("qemu") {
        return Err(Error::BadInput(format!(
            "VMM {:?} is not modelled; only QEMU is",
            vm.vmm.name
        )));
    }
    let (order, order_source) = match inputs.page_add_order {
        Some(o) => (o, "override".to_string()),
        None => (
            PageAddOrder::for_qemu_version(&vm.vmm.version)?,
            format!("default for QEMU {}", vm.vmm.version),
        ),
    };
    if vm.vcpus == 0 {
        return Err(Error::BadInput("vcpus must be at least 1".into()));
    }
    for (what, p) in [("firmware", &inputs.firmware), ("kernel", &inputs.kernel)]
        .into_iter()
        .chain(inputs.initrd.iter().map(|p| ("initrd", p)))
        .chain(inputs.acpi_tables.iter().map(|p| ("ACPI tables", p)))
        .chain(inputs.config.iter().map(|p| ("configuration", p)))
    {
        if !p.exists() {
            return Err(Error::MissingFile {
                what: what.into(),
                path: p.clone(),
            });
        }
    }
    let initrd_size = match &inputs.initrd {
        Some(p) => Some(
            std::fs::metadata(p)
                .map_err(|source| Error::Io {
                    path: p.clone(),
                    source,
                })?
                .len(),
        ),
        None => None,
    };

    let mut roles: Vec<(&str, &Path)> =
        vec![("firmware", &inputs.firmware), ("kernel", &inputs.kernel)];
    if let Some(p) = &inputs.initrd {
        roles.push(("initrd", p));
    }
    if let Some(p) = &inputs.config {
        roles.push(("configuration", p));
    }

    // The independent pieces run in parallel: firmware (MRTD, CFV, HOB),
    // kernel (patch + Authenticode), initrd SHA-384, artifact SHA-256s.
    let ((fw, kernel), (initrd, artifacts)) = rayon::join(
        || {
            rayon::join(
                || firmware_part(&inputs.firmware, order, vm.memory_bytes),
                || kernel_part(inputs, initrd_size),
            )
        },
        || {
            rayon::join(
                || inputs.initrd.as_deref().map(sha384_file).transpose(),
                || artifact_digests(&roles),
            )
        },
    );
    let (mrtd, cfv, td_hob) = fw?;
    let kernel_digest = kernel?;
    let initrd_digest = initrd?.map(|(d, _)| d);
    let artifacts = artifacts?;

    let measured_cmdline = rtmr::measured_cmdline(&inputs.cmdline, inputs.initrd.is_some());
    let mut events = Vec::new();
    let rtmr0_note = match &inputs.acpi_tables {
        Some(p) => {
            let acpi = AcpiDigests::load(p)?;
            events.extend(rtmr::rtmr0_events(&Rtmr0Inputs {
                td_hob_sha384: td_hob,
                cfv_sha384: cfv,
                secure_boot: inputs.secure_boot.clone(),
                acpi,
                boot: inputs.boot.clone(),
            }));
            format!("computed with the ACPI tables from {}", p.display())
        }
        None => "not computed: QEMU's ACPI tables were not supplied (they depend on the QEMU \
                 version and the device layout)"
            .to_string(),
    };
    events.extend(rtmr::rtmr1_events(&kernel_digest));
    events.extend(rtmr::rtmr2_events(
        &rtmr::cmdline_sha384(&measured_cmdline),
        initrd_digest.as_ref(),
    ));
    let rtmr3_note = match &inputs.config {
        Some(p) => {
            let cfg = read_file(p, "configuration")?;
            events.extend(rtmr::rtmr3_events(&cfg));
            "chrysalis v1: SHA-384(\"chrysalis:config:\" ‖ SHA-384(config)), then \
             SHA-384(\"chrysalis:boot-done:\")"
                .to_string()
        }
        None => "not computed: no configuration supplied".to_string(),
    };

    let regs = replay_events(&events);
    let has = |i: usize| events.iter().any(|e| e.register.rtmr_index() == Some(i));
    let rtmr = [0, 1, 2, 3].map(|i| has(i).then_some(regs[i]));
    Ok(TdxMeasurements {
        mrtd,
        rtmr,
        model: MeasurementModel {
            vmm: format!(
                "QEMU {} (q35, TDX, TDVF, direct kernel boot)",
                vm.vmm.version
            ),
            page_add_order: order,
            page_add_order_source: order_source,
            firmware: "TDVF/OVMF before 2025.05: TD HOB, CFV, Secure Boot variables, separator, \
                       QEMU ACPI blobs, BootOrder + Boot#### (data digests)"
                .into(),
            kernel_loader: "QEMU x86_load_linux: setup header patched before measurement".into(),
            acpi_data_size: inputs.acpi_data_size,
            rtmr0: rtmr0_note,
            secure_boot: if inputs.secure_boot == SecureBootVariables::default() {
                "off, no keys enrolled".into()
            } else {
                "custom variables".into()
            },
            rtmr3: rtmr3_note,
        },
        vm: vm.clone(),
        measured_cmdline,
        artifacts,
        events,
    })
}

fn firmware_part(
    path: &Path,
    order: PageAddOrder,
    memory: u64,
) -> Result<(Digest384, Digest384, Digest384)> {
    let fw = Tdvf::load(path)?;
    let hob = fw.td_hob(memory)?;
    Ok((fw.mrtd(order), fw.cfv_digest()?, sha384(&hob)))
}

fn kernel_part(inputs: &TdxInputs, initrd_size: Option<u64>) -> Result<Digest384> {
    let kernel = read_file(&inputs.kernel, "kernel")?;
    let load = KernelLoad {
        memory_bytes: inputs.vm.memory_bytes,
        initrd_size,
        cmdline: inputs.cmdline.clone(),
        acpi_data_size: inputs.acpi_data_size,
    };
    rtmr::kernel_authenticode(&kernel, &load).map_err(|what| Error::BadArtifact {
        file: inputs.kernel.display().to_string(),
        what,
    })
}

/// SHA-256 of each (role, path), computed in parallel, in input order.
pub fn artifact_digests(files: &[(&str, &Path)]) -> Result<Vec<ArtifactDigest>> {
    use rayon::prelude::*;
    files
        .par_iter()
        .map(|(role, path)| {
            let (sha256, size) = sha256_file(path)?;
            Ok(ArtifactDigest {
                role: role.to_string(),
                path: path.display().to_string(),
                size,
                sha256,
            })
        })
        .collect()
}

/// Serde for `[Option<[u8; 48]>; 4]` as an array of hex strings / nulls.
mod rtmr_array {
    use serde::de::Error;
    use serde::ser::SerializeSeq;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[Option<[u8; 48]>; 4], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(4))?;
        for r in v {
            seq.serialize_element(&r.map(hex::encode))?;
        }
        seq.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[Option<[u8; 48]>; 4], D::Error> {
        let v = Vec::<Option<String>>::deserialize(d)?;
        if v.len() != 4 {
            return Err(D::Error::custom(format!(
                "expected 4 RTMRs, got {}",
                v.len()
            )));
        }
        let mut out = [None; 4];
        for (o, s) in out.iter_mut().zip(v) {
            *o = s
                .map(|s| crate::tdx::digest::parse_hex48(&s))
                .transpose()
                .map_err(D::Error::custom)?;
        }
        Ok(out)
    }
}
