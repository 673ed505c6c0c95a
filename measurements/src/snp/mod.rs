//! The expected AMD SEV-SNP launch digest (`MEASUREMENT` in the attestation
//! report) of a guest started by QEMU (or EC2, GCE) from an OVMF firmware,
//! optionally with a kernel, initrd and command line for measured direct boot.
//!
//! The hypervisor measures, in this order: the firmware pages (normal pages
//! ending at 4 GiB), the firmware's SEV metadata sections (zero, secrets, CPUID
//! and kernel-hashes pages), then one VMSA page per vCPU. This module recomputes
//! that chain ([`gctx`]) from the artifacts. It follows the model of
//! `sev-snp-measure` and of the `sev` crate's calculator, and is tested against
//! both; it is written here rather than calling `sev::measurement::snp` because
//! that calculator panics on malformed firmware (unchecked slicing in its
//! footer-table parser), trims the command line (QEMU hashes it as given, so a
//! leading or trailing space changes the digest), reads only from paths, models
//! only the pre-2026 EC2 VMSA, and hashes firmware pages on one core.

pub mod gctx;
pub mod hashes;
pub mod ovmf;
pub mod vcpu;
pub mod vmsa;

use std::borrow::Cow;
use std::fmt;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::Error;
use gctx::{Gctx, PageType};
pub use hashes::KernelHashes;
pub use ovmf::{MetadataSection, Ovmf, SectionKind};
pub use vcpu::{cpu_signature, VcpuType};

/// Most vCPUs accepted (KVM's `KVM_MAX_VCPUS` on x86).
pub const MAX_VCPUS: u32 = 4096;

/// Bytes read from the end of a firmware file when only its layout is needed.
const FIRMWARE_TAIL: u64 = 64 * 1024;

/// Default guest features (`SEV_FEATURES` in the VMSA): bit 0, SNPActive.
pub const DEFAULT_GUEST_FEATURES: u64 = 0x1;

/// An input file, named for error messages: read from a path, or given as bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Artifact {
    /// Read (streamed for kernel and initrd) from this path.
    File(PathBuf),
    /// These bytes; `name` appears in error messages.
    Bytes {
        /// Name used in error messages.
        name: String,
        /// Contents.
        data: Vec<u8>,
    },
}

impl Artifact {
    /// The path, or the given name.
    pub fn name(&self) -> String {
        match self {
            Artifact::File(p) => p.display().to_string(),
            Artifact::Bytes { name, .. } => name.clone(),
        }
    }

    fn sha256(&self) -> Result<[u8; 32], Error> {
        match self {
            Artifact::Bytes { data, .. } => Ok(Sha256::digest(data).into()),
            Artifact::File(path) => {
                let io = |source| Error::Io {
                    path: path.clone(),
                    source,
                };
                let mut f = File::open(path).map_err(io)?;
                let mut h = Sha256::new();
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let n = match f.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(io(e)),
                    };
                    h.update(&buf[..n]);
                }
                Ok(h.finalize().into())
            }
        }
    }

    /// The whole firmware image.
    fn read_firmware(&self) -> Result<Cow<'_, [u8]>, Error> {
        match self {
            Artifact::Bytes { data, .. } => Ok(Cow::Borrowed(data)),
            Artifact::File(path) => {
                let (mut f, len) = self.open_firmware(path)?;
                let mut data = Vec::with_capacity(len as usize);
                f.read_to_end(&mut data).map_err(|source| Error::Io {
                    path: path.clone(),
                    source,
                })?;
                Ok(Cow::Owned(data))
            }
        }
    }

    /// The last `FIRMWARE_TAIL` bytes of the firmware (all of it if smaller)
    /// and its full length: enough for its layout, which is found from the end.
    fn read_firmware_tail(&self) -> Result<(Cow<'_, [u8]>, u64), Error> {
        match self {
            Artifact::Bytes { data, .. } => Ok((Cow::Borrowed(data), data.len() as u64)),
            Artifact::File(path) => {
                let io = |source| Error::Io {
                    path: path.clone(),
                    source,
                };
                let (mut f, len) = self.open_firmware(path)?;
                let n = len.min(FIRMWARE_TAIL);
                f.seek(SeekFrom::Start(len - n)).map_err(io)?;
                let mut tail = vec![0u8; n as usize];
                f.read_exact(&mut tail).map_err(io)?;
                Ok((Cow::Owned(tail), len))
            }
        }
    }

    fn open_firmware(&self, path: &Path) -> Result<(File, u64), Error> {
        let io = |source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        let f = File::open(path).map_err(io)?;
        let len = f.metadata().map_err(io)?.len();
        // Checked before reading so that a wrong path to a huge file fails fast.
        if len > 1 << 32 {
            return Err(Error::BadArtifact {
                file: self.name(),
                what: format!("size {len} bytes does not fit below 4 GiB (not a firmware image?)"),
            });
        }
        Ok((f, len))
    }
}

/// The hypervisor that launches the guest: they differ in a few initial VMSA
/// registers and in the order of the CPUID page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Vmm {
    /// QEMU/KVM (`qemu`).
    Qemu,
    /// AWS EC2 as of 2026 (`ec2`): `RDX` = 0x600 in the VMSA, CPUID page measured
    /// last. Matches `sev-snp-measure --vmm-type ec2` 0.0.13.
    Ec2,
    /// AWS EC2 before its 2026 VMSA change (`ec2-legacy`): `RDX` = 0. Matches the
    /// `sev` crate 8.0 and its test vectors; for instances launched before then.
    Ec2Legacy,
    /// Google Compute Engine (`gce`): SNP_SEC_MEM pages unmeasured, other PAT.
    /// Matches `sev-snp-measure --vmm-type gce`.
    Gce,
}

impl Vmm {
    /// The name [`FromStr`] accepts.
    pub fn name(&self) -> &'static str {
        match self {
            Vmm::Qemu => "qemu",
            Vmm::Ec2 => "ec2",
            Vmm::Ec2Legacy => "ec2-legacy",
            Vmm::Gce => "gce",
        }
    }
}

impl fmt::Display for Vmm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Vmm {
    type Err = Error;

    /// `qemu`, `ec2`, `ec2-legacy` or `gce`, case-insensitively.
    fn from_str(s: &str) -> Result<Self, Error> {
        [Vmm::Qemu, Vmm::Ec2, Vmm::Ec2Legacy, Vmm::Gce]
            .into_iter()
            .find(|v| v.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                Error::BadInput(format!(
                    "unknown VMM {s:?}; known: qemu, ec2, ec2-legacy, gce"
                ))
            })
    }
}

/// Everything the SNP launch digest depends on.
///
/// Guest memory size does not enter the SNP launch digest (unlike TDX).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnpMeasureInput {
    /// The OVMF firmware image (an AmdSev build for measured direct boot).
    pub firmware: Artifact,
    /// Kernel for measured direct boot; `None` measures the firmware only
    /// (and then `initrd` and `cmdline` must be `None` too).
    pub kernel: Option<Artifact>,
    /// Initrd; with a kernel and no initrd, the hash of zero bytes is measured.
    pub initrd: Option<Artifact>,
    /// Kernel command line exactly as passed to QEMU `-append` (not trimmed);
    /// with a kernel and no command line, the empty string is measured.
    pub cmdline: Option<String>,
    /// Number of vCPUs, 1..=[`MAX_VCPUS`].
    pub vcpus: u32,
    /// The vCPU model (its CPUID signature is in each VMSA under QEMU).
    pub vcpu_type: VcpuType,
    /// `SEV_FEATURES` of the VMSA; QEMU's default for SNP is 0x1
    /// ([`DEFAULT_GUEST_FEATURES`]), Linux ≥ 6.x hosts may add e.g. DebugSwap (0x20).
    pub guest_features: u64,
    /// The hypervisor.
    pub vmm: Vmm,
    /// The launch digest after the firmware pages only (see [`snp_ovmf_hash`]),
    /// to skip hashing the firmware; the firmware is still parsed for its metadata.
    pub ovmf_hash: Option<[u8; 48]>,
}

impl SnpMeasureInput {
    /// Firmware only, 1 vCPU of type `EPYC-v4`, guest features 0x1, QEMU.
    pub fn new(firmware: Artifact) -> Self {
        SnpMeasureInput {
            firmware,
            kernel: None,
            initrd: None,
            cmdline: None,
            vcpus: 1,
            vcpu_type: VcpuType::EpycV4,
            guest_features: DEFAULT_GUEST_FEATURES,
            vmm: Vmm::Qemu,
            ovmf_hash: None,
        }
    }
}

/// Facts about the firmware that entered the digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FirmwareInfo {
    /// Image size, bytes.
    pub size: u64,
    /// Guest physical address of its first byte.
    pub gpa: u64,
    /// SEV metadata sections, in measurement order.
    pub sections: Vec<MetadataSection>,
    /// Initial EIP of application processors.
    pub sev_es_reset_eip: u32,
    /// Whether it has a kernel hashes page (measured direct boot possible).
    pub has_kernel_hashes: bool,
}

/// The result of [`snp_measure`]. Digests serialize as lowercase hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SnpMeasurement {
    /// The expected SNP launch digest (report `MEASUREMENT`), 48 bytes.
    #[serde(with = "hex::serde")]
    pub launch_digest: [u8; 48],
    /// The digest after the firmware pages only (given or computed), reusable as
    /// [`SnpMeasureInput::ovmf_hash`] and `sev-snp-measure --snp-ovmf-hash`.
    #[serde(with = "hex::serde")]
    pub ovmf_hash: [u8; 48],
    /// The hashes written into the kernel hashes page, when a kernel was given.
    pub kernel_hashes: Option<KernelHashes>,
    /// The firmware's layout.
    pub firmware: FirmwareInfo,
    /// Number of vCPUs measured.
    pub vcpus: u32,
    /// vCPU model name.
    pub vcpu_type: String,
    /// CPUID signature used for `RDX` (QEMU only).
    pub vcpu_signature: u32,
    /// Guest features.
    pub guest_features: u64,
    /// The hypervisor model.
    pub vmm: Vmm,
}

/// The expected SNP launch digest for `input` (48 bytes, as in the report).
pub fn snp_launch_digest(input: &SnpMeasureInput) -> Result<[u8; 48], Error> {
    snp_measure(input).map(|m| m.launch_digest)
}

/// The launch digest after the firmware pages only (`sev-snp-measure --mode
/// snp:ovmf-hash`): depends on the firmware bytes alone, so it can be computed
/// once per firmware build and passed as [`SnpMeasureInput::ovmf_hash`].
pub fn snp_ovmf_hash(firmware: &Artifact) -> Result<[u8; 48], Error> {
    let data = firmware.read_firmware()?;
    let ovmf = Ovmf::parse(&firmware.name(), &data)?;
    let mut g = Gctx::new(None);
    g.update_normal_pages(ovmf.gpa(), &data);
    Ok(g.ld())
}

/// The launch digest with the facts that went into it (for `--json` output).
pub fn snp_measure(input: &SnpMeasureInput) -> Result<SnpMeasurement, Error> {
    if input.vcpus == 0 || input.vcpus > MAX_VCPUS {
        return Err(Error::BadInput(format!(
            "vCPU count {} is outside 1..={MAX_VCPUS}",
            input.vcpus
        )));
    }
    if input.kernel.is_none() && (input.initrd.is_some() || input.cmdline.is_some()) {
        return Err(Error::BadInput(
            "an initrd or command line is only measured with a kernel (QEMU ignores them for firmware-only boot); give a kernel too".into(),
        ));
    }
    if let Some(c) = &input.cmdline {
        if c.contains('\0') {
            return Err(Error::BadInput(
                "kernel command line contains a NUL byte (QEMU passes it as a C string)".into(),
            ));
        }
    }
    let fw_name = input.firmware.name();
    let bad_fw = |what: String| Error::BadArtifact {
        file: fw_name.clone(),
        what,
    };
    // With the firmware-only digest given, the pages are not hashed and only
    // the layout at the end of the image is read.
    let full;
    let tail;
    let ovmf = match input.ovmf_hash {
        None => {
            full = input.firmware.read_firmware()?;
            Ovmf::parse(&fw_name, &full)?
        }
        Some(_) => {
            tail = input.firmware.read_firmware_tail()?;
            match Ovmf::parse_tail(&fw_name, &tail.0, tail.1)? {
                Some(o) => o,
                None => {
                    full = input.firmware.read_firmware()?;
                    Ovmf::parse(&fw_name, &full)?
                }
            }
        }
    };
    let reset_eip = ovmf.sev_es_reset_eip.ok_or_else(|| {
        bad_fw("no SEV-ES reset block in the footer table (not an SEV-capable OVMF build?)".into())
    })?;
    if reset_eip == 0 && input.vcpus > 1 {
        return Err(bad_fw(format!(
            "SEV-ES reset block EIP is 0, so application processors cannot start; {} vCPUs asked",
            input.vcpus
        )));
    }
    if input.kernel.is_some() && !ovmf.has_kernel_hashes() {
        return Err(bad_fw(
            "kernel provided but firmware has no SNP_KERNEL_HASHES section (measured direct boot needs an AmdSev OVMF build)".into(),
        ));
    }

    // Firmware pages and kernel/initrd hashes are independent: with a kernel,
    // hash them at once (without one, skip waking the thread pool).
    let firmware_gctx = || match (input.ovmf_hash, ovmf.data()) {
        (Some(h), _) => Ok(Gctx::new(Some(h))),
        (None, Some(pages)) => {
            let mut g = Gctx::new(None);
            g.update_normal_pages(ovmf.gpa(), pages);
            Ok(g)
        }
        // Cannot happen: without a given digest the whole image was read above.
        (None, None) => Err(bad_fw("internal: firmware pages were not read".into())),
    };
    let (ovmf_gctx, kernel_hashes) = match &input.kernel {
        None => (firmware_gctx(), Ok(None)),
        Some(kernel) => rayon::join(firmware_gctx, || {
            kernel_hashes(kernel, input.initrd.as_ref(), input.cmdline.as_deref()).map(Some)
        }),
    };
    let kernel_hashes = kernel_hashes?;
    let ovmf_gctx = ovmf_gctx?;
    let ovmf_hash = ovmf_gctx.ld();
    let mut g = ovmf_gctx;

    for s in &ovmf.sections {
        match s.kind {
            SectionKind::SnpSecMem if input.vmm == Vmm::Gce => {
                g.update_blank_pages(PageType::Unmeasured, s.gpa, s.size)
            }
            SectionKind::SnpSecMem | SectionKind::SvsmCaa => {
                g.update_blank_pages(PageType::Zero, s.gpa, s.size)
            }
            SectionKind::SnpSecrets => g.update_special_page(PageType::Secrets, s.gpa),
            SectionKind::Cpuid => {
                // EC2 adds the CPUID page after every other section.
                if !matches!(input.vmm, Vmm::Ec2 | Vmm::Ec2Legacy) {
                    g.update_special_page(PageType::Cpuid, s.gpa)
                }
            }
            SectionKind::SnpKernelHashes => match &kernel_hashes {
                None => g.update_blank_pages(PageType::Zero, s.gpa, s.size),
                Some(h) => {
                    if s.size != ovmf::PAGE_SIZE as u64 {
                        return Err(bad_fw(format!(
                            "SNP_KERNEL_HASHES section at GPA {:#x} is {:#x} bytes; QEMU fills exactly one page",
                            s.gpa, s.size
                        )));
                    }
                    let table_gpa = ovmf.sev_hash_table_gpa.ok_or_else(|| {
                        bad_fw("SNP_KERNEL_HASHES section present but no SEV hash table entry (GUID 7255371f-…) in the footer table".into())
                    })?;
                    let offset = (table_gpa & 0xfff) as usize;
                    let page = h.page(offset).ok_or_else(|| {
                        bad_fw(format!(
                            "SEV hash table at GPA {table_gpa:#x} does not fit in its page ({} bytes from offset {offset:#x})",
                            hashes::PADDED_TABLE_LEN
                        ))
                    })?;
                    g.update_normal_pages(s.gpa, &page);
                }
            },
        }
    }
    if matches!(input.vmm, Vmm::Ec2 | Vmm::Ec2Legacy) {
        for s in ovmf
            .sections
            .iter()
            .filter(|s| s.kind == SectionKind::Cpuid)
        {
            g.update_special_page(PageType::Cpuid, s.gpa);
        }
    }

    let sig = input.vcpu_type.signature();
    let bsp = vmsa::vmsa_page(vmsa::BSP_EIP, sig, input.guest_features, input.vmm);
    g.update_vmsa_page(&bsp);
    if input.vcpus > 1 {
        let ap = vmsa::vmsa_page(reset_eip, sig, input.guest_features, input.vmm);
        g.update_vmsa_pages(&ap, input.vcpus - 1);
    }

    Ok(SnpMeasurement {
        launch_digest: g.ld(),
        ovmf_hash,
        kernel_hashes,
        firmware: FirmwareInfo {
            size: ovmf.len(),
            gpa: ovmf.gpa(),
            has_kernel_hashes: ovmf.has_kernel_hashes(),
            sections: ovmf.sections.clone(),
            sev_es_reset_eip: reset_eip,
        },
        vcpus: input.vcpus,
        vcpu_type: input.vcpu_type.name(),
        vcpu_signature: sig,
        guest_features: input.guest_features,
        vmm: input.vmm,
    })
}

/// SHA-256 of kernel and initrd (in parallel) and of the command line with its
/// NUL terminator, as QEMU computes them.
fn kernel_hashes(
    kernel: &Artifact,
    initrd: Option<&Artifact>,
    cmdline: Option<&str>,
) -> Result<KernelHashes, Error> {
    let (k, i) = rayon::join(
        || kernel.sha256(),
        || match initrd {
            Some(a) => a.sha256(),
            None => Ok(Sha256::digest([]).into()),
        },
    );
    let mut c = cmdline.unwrap_or_default().as_bytes().to_vec();
    c.push(0);
    Ok(KernelHashes {
        kernel: k?,
        initrd: i?,
        cmdline: Sha256::digest(&c).into(),
    })
}

/// Parses a 48-byte digest given as hex (with or without `0x`), e.g. an
/// `--snp-ovmf-hash` value.
pub fn parse_digest48(s: &str) -> Result<[u8; 48], Error> {
    let t = s.trim();
    let t = t.strip_prefix("0x").unwrap_or(t);
    let mut out = [0u8; 48];
    hex::decode_to_slice(t, &mut out).map_err(|e| {
        Error::BadInput(format!(
            "expected 96 hex digits (48 bytes), got {} characters: {e}",
            t.len()
        ))
    })?;
    Ok(out)
}
