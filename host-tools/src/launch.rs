//! `chrysalis launch --tee tdx|snp|none --vcpus N --memory M [--gpu PCI_ADDR]
//! [--forward HOST_PORT] [--print] IMAGE_DIR`: QEMU with exactly the VM
//! configuration the release's measurements were computed for.
//!
//! The VM: q35, direct boot of `vmlinuz` + `initrd` with `cmdline`
//! (measured: RTMR1/RTMR2 on TDX, the kernel hashes table on SNP), the
//! firmware of the TEE as `-bios`, `rootfs.img` and `rootfs.verity` as the
//! first and second virtio disks (read-only; the command line names them
//! /dev/vda and /dev/vdb), one virtio NIC on QEMU user networking with the
//! agent's port 8443 forwarded to 127.0.0.1:HOST_PORT, the serial console to
//! a log file, and the host's runtime configuration (--config) as the fw_cfg
//! entry `opt/org.chrysalis/config`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use chrysalis_measurements::manifest::MeasurementsManifest;
use clap::{Args, ValueEnum};

use crate::exit;
use crate::image::{ROOT_DATA_DEVICE, ROOT_HASH_DEVICE};

/// The agent's HTTPS port inside the guest.
pub const AGENT_PORT: u16 = 8443;
/// Debian's stock OVMF (package `ovmf`), used for `--tee none`.
pub const STOCK_OVMF: &str = "/usr/share/ovmf/OVMF.fd";
/// Stands for the command line in `--print` output when IMAGE_DIR has none.
const CMDLINE_PLACEHOLDER: &str = "\u{0}cmdline";
/// fw_cfg name of the host-supplied runtime configuration.
pub const CONFIG_FW_CFG: &str = "opt/org.chrysalis/config";

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Tee {
    /// Intel TDX (firmware-tdx.fd, KVM required).
    Tdx,
    /// AMD SEV-SNP (firmware-snp.fd, KVM required).
    Snp,
    /// No TEE: Debian's stock OVMF, the agent uses SIMULATED evidence.
    /// Tests only.
    None,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Accel {
    /// KVM if a short probe boots, else TCG (TEEs require KVM).
    Auto,
    /// KVM.
    Kvm,
    /// TCG (software emulation; no TEE).
    Tcg,
}

#[derive(Args)]
pub struct LaunchArgs {
    /// The TEE to launch under.
    #[arg(long, value_enum)]
    tee: Tee,
    /// vCPUs (must match a measured configuration for tdx/snp).
    #[arg(long)]
    vcpus: u32,
    /// Memory: MiB, or with a K/M/G/T suffix (must match a measured configuration for tdx/snp).
    #[arg(long)]
    memory: String,
    /// Pass this GPU through with VFIO (PCI address, e.g. 0000:41:00.0; bound to vfio-pci).
    #[arg(long = "gpu", value_name = "PCI_ADDR")]
    gpus: Vec<String>,
    /// Forward the agent's HTTPS port to this port on 127.0.0.1.
    #[arg(long, value_name = "HOST_PORT")]
    forward: Option<u16>,
    /// Print the QEMU command instead of running it (works without the artifacts).
    #[arg(long)]
    print: bool,
    /// Host-supplied runtime configuration, delivered as fw_cfg
    /// opt/org.chrysalis/config; the agent measures it before serving.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Attach this model volume (a directory from `chrysalis image model`)
    /// as two read-only virtio disks. The guest mounts it at /models only
    /// if --config names its root hash ("model_volume"), which is measured.
    #[arg(long, value_name = "DIR")]
    model: Option<PathBuf>,
    /// Serial console log.
    #[arg(long, value_name = "FILE", default_value = "chrysalis-console.log")]
    console_log: PathBuf,
    /// Accelerator (tdx/snp always use KVM).
    #[arg(long, value_enum, default_value = "auto")]
    accel: Accel,
    /// Firmware override [default: IMAGE_DIR/firmware-tdx.fd, firmware-snp.fd, or Debian's OVMF for none].
    #[arg(long, value_name = "FILE")]
    firmware: Option<PathBuf>,
    /// QEMU binary.
    #[arg(long, default_value = "qemu-system-x86_64")]
    qemu: String,
    /// SNP vCPU model [default: the one measurements.json names, else EPYC-v4].
    #[arg(long)]
    vcpu_type: Option<String>,
    /// Launch a VM shape (vCPUs, memory, GPUs, model volume) or a QEMU
    /// version that measurements.json does not publish. Clients that check
    /// the published measurements will REJECT this VM.
    #[arg(long)]
    unpublished: bool,
    /// The release directory (from `chrysalis image build`).
    image_dir: PathBuf,
}

/// The VM to start: everything that enters the command line.
#[derive(Debug, Clone, PartialEq)]
pub struct Vm {
    pub tee: Tee,
    pub kvm: bool,
    pub vcpus: u32,
    pub memory_mib: u64,
    pub gpus: Vec<String>,
    pub forward: Option<u16>,
    pub config: Option<PathBuf>,
    /// Model volume directory (model.erofs + model.verity).
    pub model: Option<PathBuf>,
    pub console_log: PathBuf,
    pub firmware: PathBuf,
    pub image_dir: PathBuf,
    pub cmdline: String,
    pub vcpu_type: String,
    /// SNP HOST_DATA: base64 of SHA-256(--config file), bound into every
    /// attestation report of the guest.
    pub host_data: Option<String>,
}

impl Vm {
    /// QEMU's arguments (without the binary).
    pub fn qemu_args(&self) -> Vec<String> {
        let d = |n: &str| self.image_dir.join(n).display().to_string();
        let mut a: Vec<String> = Vec::new();
        let mut push = |xs: &[&str]| a.extend(xs.iter().map(|s| s.to_string()));
        let machine = match self.tee {
            Tee::Tdx => {
                "q35,kernel-irqchip=split,confidential-guest-support=tdx0,hpet=off".to_string()
            }
            Tee::Snp => "q35,confidential-guest-support=sev0,memory-backend=ram1".to_string(),
            Tee::None => "q35".to_string(),
        };
        push(&["-machine", &machine]);
        push(&["-accel", if self.kvm { "kvm" } else { "tcg" }]);
        let cpu = match (self.tee, self.kvm) {
            (Tee::Snp, _) => self.vcpu_type.clone(),
            (_, true) => "host".into(),
            (_, false) => "max".into(),
        };
        push(&["-cpu", &cpu]);
        push(&["-smp", &self.vcpus.to_string()]);
        push(&["-m", &format!("{}M", self.memory_mib)]);
        match self.tee {
            Tee::Tdx => push(&["-object", "tdx-guest,id=tdx0"]),
            Tee::Snp => {
                push(&[
                    "-object",
                    &format!(
                        "memory-backend-memfd,id=ram1,size={}M,share=true,prealloc=false",
                        self.memory_mib
                    ),
                ]);
                let mut snp =
                    "sev-snp-guest,id=sev0,cbitpos=51,reduced-phys-bits=1,kernel-hashes=on"
                        .to_string();
                if let Some(h) = &self.host_data {
                    snp.push_str(&format!(",host-data={h}"));
                }
                push(&["-object", &snp]);
            }
            Tee::None => {}
        }
        push(&["-bios", &self.firmware.display().to_string()]);
        push(&["-kernel", &d("vmlinuz"), "-initrd", &d("initrd")]);
        push(&["-append", &self.cmdline]);
        // Confidential guests only accept virtio devices that use the DMA API.
        let virtio_opts = if self.tee == Tee::None {
            ""
        } else {
            ",disable-legacy=on,iommu_platform=on"
        };
        for (id, file) in [("rootfs", "rootfs.img"), ("verity", "rootfs.verity")] {
            push(&[
                "-drive",
                &format!("file={},if=none,id={id},format=raw,readonly=on", d(file)),
            ]);
            push(&[
                "-device",
                &format!("virtio-blk-pci,drive={id}{virtio_opts}"),
            ]);
        }
        if let Some(m) = &self.model {
            // After the root's disks (/dev/vda, /dev/vdb); the guest finds
            // them by serial.
            use crate::image::model::{DATA_FILE, DATA_SERIAL, HASH_FILE, HASH_SERIAL};
            for (id, file, serial) in [
                ("model", DATA_FILE, DATA_SERIAL),
                ("modelverity", HASH_FILE, HASH_SERIAL),
            ] {
                push(&[
                    "-drive",
                    &format!(
                        "file={},if=none,id={id},format=raw,readonly=on",
                        m.join(file).display()
                    ),
                ]);
                push(&[
                    "-device",
                    &format!("virtio-blk-pci,drive={id},serial={serial}{virtio_opts}"),
                ]);
            }
        }
        let mut netdev = "user,id=net0".to_string();
        if let Some(p) = self.forward {
            netdev.push_str(&format!(",hostfwd=tcp:127.0.0.1:{p}-:{AGENT_PORT}"));
        }
        push(&["-netdev", &netdev]);
        push(&[
            "-device",
            &format!("virtio-net-pci,netdev=net0{virtio_opts}"),
        ]);
        for (i, g) in self.gpus.iter().enumerate() {
            push(&[
                "-device",
                &format!("pcie-root-port,id=rp{i},bus=pcie.0,chassis={}", i + 1),
            ]);
            push(&["-device", &format!("vfio-pci,host={g},bus=rp{i}")]);
        }
        if !self.gpus.is_empty() || self.tee == Tee::Tdx {
            // Room for the GPUs' 64-bit BARs (H100: 128 GiB class). On TDX
            // always: with a fixed aperture size the TDVF places the 64-bit
            // window right above RAM (naturally aligned), independent of the
            // host's physical address width — and its start is in the DSDT.
            push(&[
                "-fw_cfg",
                &format!(
                    "name=opt/ovmf/X-PciMmio64Mb,string={}",
                    pci_hole64_bytes(self.gpus.len()) >> 20
                ),
            ]);
        }
        if self.tee == Tee::Tdx {
            // The 64-bit PCI window is in the DSDT (RTMR0): pinned, never
            // left to QEMU's default.
            push(&[
                "-global",
                &format!(
                    "q35-pcihost.pci-hole64-size={:#x}",
                    pci_hole64_bytes(self.gpus.len())
                ),
            ]);
        }
        if let Some(c) = &self.config {
            push(&[
                "-fw_cfg",
                &format!("name={CONFIG_FW_CFG},file={}", c.display()),
            ]);
        }
        push(&[
            "-nodefaults",
            "-display",
            "none",
            "-vga",
            "none",
            "-no-reboot",
        ]);
        push(&["-serial", &format!("file:{}", self.console_log.display())]);
        push(&["-monitor", "none"]);
        a
    }
}

/// Size of the 64-bit PCI window (bytes) pinned for `gpus` GPUs: QEMU's
/// q35 default (32 GiB) without GPUs, 256 GiB per GPU with them (an H100's
/// BAR1 is 128 GiB and naturally aligned).
pub fn pci_hole64_bytes(gpus: usize) -> u64 {
    if gpus == 0 {
        32 << 30
    } else {
        (gpus as u64) * (256 << 30)
    }
}

/// What a published configuration fixes about the VM: everything that
/// reaches the measurements through QEMU's device model and memory map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmShape {
    /// vCPUs.
    pub vcpus: u32,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// Passed-through GPUs (each on its own PCIe root port).
    pub gpus: u32,
    /// Whether the model volume's two disks are attached.
    pub model_volume: bool,
}

impl VmShape {
    /// The shape a manifest configuration publishes.
    pub fn of(vm: &chrysalis_measurements::manifest::VmConfig) -> VmShape {
        VmShape {
            vcpus: vm.vcpus,
            memory_mib: vm.memory_mib,
            gpus: vm.gpus,
            model_volume: vm.model_volume,
        }
    }
}

impl std::fmt::Display for VmShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} vCPUs, {} MiB, {} GPUs, {}",
            self.vcpus,
            self.memory_mib,
            self.gpus,
            if self.model_volume {
                "model volume"
            } else {
                "no model volume"
            }
        )
    }
}

/// QEMU's arguments for a TDX launch of `shape` — the same function
/// `launch` runs ([`Vm::qemu_args`]), with placeholder paths and GPU
/// addresses, no runtime configuration and no port forward (neither enters
/// the ACPI tables). `chrysalis measure` generates RTMR0's ACPI tables from
/// exactly this.
pub fn tdx_shape_argv(shape: &VmShape) -> Vec<String> {
    Vm {
        tee: Tee::Tdx,
        kvm: true,
        vcpus: shape.vcpus,
        memory_mib: shape.memory_mib,
        gpus: (0..shape.gpus)
            .map(|i| format!("0000:{:02x}:00.0", (i + 1) % 256))
            .collect(),
        forward: None,
        config: None,
        model: shape.model_volume.then(|| PathBuf::from("model")),
        console_log: "console.log".into(),
        firmware: "firmware-tdx.fd".into(),
        image_dir: "image".into(),
        cmdline: String::new(),
        vcpu_type: String::new(),
        host_data: None,
    }
    .qemu_args()
}

/// Shell-quotes one argument for printing.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=,@+%".contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

fn valid_pci(addr: &str) -> bool {
    // DDDD:BB:DD.F
    let b = addr.as_bytes();
    b.len() == 12
        && b[4] == b':'
        && b[7] == b':'
        && b[10] == b'.'
        && b.iter()
            .enumerate()
            .all(|(i, c)| [4, 7, 10].contains(&i) || c.is_ascii_hexdigit())
}

/// Is KVM usable? A short probe: does the firmware print anything on the
/// serial port within a few seconds under KVM (it hung silently on some hosts).
pub fn kvm_works(qemu: &str, firmware: &Path) -> bool {
    if std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_err()
    {
        return false;
    }
    let child = Command::new(qemu)
        .args([
            "-machine", "q35", "-accel", "kvm", "-cpu", "host", "-m", "256M",
        ])
        .args([
            "-nodefaults",
            "-display",
            "none",
            "-no-reboot",
            "-serial",
            "stdio",
        ])
        .arg("-bios")
        .arg(firmware)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = child else { return false };
    let Some(mut out) = child.stdout.take() else {
        let _ = child.kill();
        return false;
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut b = [0u8; 1];
        let _ = tx.send(matches!(out.read(&mut b), Ok(1)));
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let ok = loop {
        if let Ok(v) = rx.recv_timeout(Duration::from_millis(200)) {
            break v;
        }
        if Instant::now() > deadline || matches!(child.try_wait(), Ok(Some(_))) {
            break false;
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    ok
}

fn vm_from_args(a: &LaunchArgs) -> Result<Vm> {
    let memory_mib = crate::memsize::parse_memory(&a.memory).map_err(|f| f.error)? >> 20;
    if a.vcpus == 0 || memory_mib == 0 {
        bail!("--vcpus and --memory must be positive");
    }
    for g in &a.gpus {
        if !valid_pci(g) {
            bail!("--gpu {g:?}: expected a full PCI address like 0000:41:00.0");
        }
    }
    if a.tee == Tee::None && !a.gpus.is_empty() {
        eprintln!("warning: --gpu without a TEE: the GPU's confidential-computing mode protects nothing here");
    }
    let image_dir = a.image_dir.clone();
    let firmware = a.firmware.clone().unwrap_or_else(|| match a.tee {
        Tee::Tdx => image_dir.join("firmware-tdx.fd"),
        Tee::Snp => image_dir.join("firmware-snp.fd"),
        Tee::None => PathBuf::from(STOCK_OVMF),
    });
    let manifest = std::fs::read_to_string(image_dir.join("measurements.json"))
        .ok()
        .and_then(|t| MeasurementsManifest::from_json(&t).ok());
    let cmdline = match std::fs::read_to_string(image_dir.join("cmdline")) {
        Ok(c) => c.trim_end_matches('\n').to_string(),
        Err(_) if a.print => CMDLINE_PLACEHOLDER.to_string(),
        Err(e) => bail!(
            "{}: {e} (not a release directory?)",
            image_dir.join("cmdline").display()
        ),
    };
    let names_devices = cmdline.contains(&format!("systemd.verity_root_data={ROOT_DATA_DEVICE}"))
        && cmdline.contains(&format!("systemd.verity_root_hash={ROOT_HASH_DEVICE}"));
    if !a.print && !names_devices {
        bail!(
            "{}: the command line does not name {ROOT_DATA_DEVICE} / {ROOT_HASH_DEVICE} as the verity devices this launcher attaches",
            image_dir.join("cmdline").display()
        );
    }
    let vcpu_type = a.vcpu_type.clone().unwrap_or_else(|| {
        manifest
            .as_ref()
            .and_then(|m| m.configurations.iter().find_map(|c| c.snp.as_ref()))
            .map(|s| s.vcpu_type.clone())
            .unwrap_or_else(|| "EPYC-v4".into())
    });
    let shape = VmShape {
        vcpus: a.vcpus,
        memory_mib,
        gpus: a.gpus.len() as u32,
        model_volume: a.model.is_some(),
    };
    let published = match a.tee {
        Tee::None => None,
        tee => Some(published_configuration(
            manifest.as_ref(),
            tee,
            &shape,
            a.unpublished || a.print,
            &image_dir,
        )?),
    };
    if a.tee != Tee::None && !a.print {
        let wanted = published.flatten().and_then(|c| c.vm.vmm_version.clone());
        check_qemu_version(&a.qemu, wanted.as_deref(), a.unpublished)?;
    }
    let host_data = match (&a.config, a.tee) {
        (Some(c), Tee::Snp) if !a.print || c.is_file() => Some(snp_host_data(c)?),
        (None, Tee::Snp) => Some(default_snp_host_data(published.flatten())?),
        _ => None,
    };
    Ok(Vm {
        host_data,
        tee: a.tee,
        kvm: a.tee != Tee::None || a.accel == Accel::Kvm,
        vcpus: a.vcpus,
        memory_mib,
        gpus: a.gpus.clone(),
        forward: a.forward,
        config: a.config.clone(),
        model: a.model.clone(),
        console_log: a.console_log.clone(),
        firmware,
        image_dir,
        cmdline,
        vcpu_type,
    })
}

/// The published configuration for `tee` and `shape` in `manifest`.
/// Without one: an error naming `--unpublished`, or (with `allow`) a loud
/// warning and `None`.
fn published_configuration<'m>(
    manifest: Option<&'m MeasurementsManifest>,
    tee: Tee,
    shape: &VmShape,
    allow: bool,
    image_dir: &Path,
) -> Result<Option<&'m chrysalis_measurements::manifest::Configuration>> {
    let key = if tee == Tee::Tdx { "tdx" } else { "snp" };
    let Some(m) = manifest else {
        if allow {
            eprintln!(
                "WARNING: no readable measurements.json in {}: this VM matches no published configuration, and clients will reject it",
                image_dir.display()
            );
            return Ok(None);
        }
        bail!(
            "no readable measurements.json in {}: nothing says this VM is a published configuration (--unpublished launches it anyway; clients will reject it)",
            image_dir.display()
        );
    };
    let of_tee = |c: &&chrysalis_measurements::manifest::Configuration| {
        if tee == Tee::Tdx {
            c.tdx.is_some()
        } else {
            c.snp.is_some()
        }
    };
    if let Some(c) = m
        .configurations
        .iter()
        .filter(of_tee)
        .find(|c| VmShape::of(&c.vm) == *shape)
    {
        return Ok(Some(c));
    }
    let list: Vec<String> = m
        .configurations
        .iter()
        .filter(of_tee)
        .map(|c| format!("  {}: {}", c.name, VmShape::of(&c.vm)))
        .collect();
    let msg = format!(
        "measurements.json publishes no {key} configuration with {shape}; published:\n{}",
        if list.is_empty() {
            "  (none)".to_string()
        } else {
            list.join("\n")
        }
    );
    if allow {
        eprintln!("WARNING: {msg}\nWARNING: --unpublished: clients that check the published measurements will REJECT this VM");
        return Ok(None);
    }
    bail!("{msg}\n(--unpublished launches it anyway; clients will reject it)")
}

/// Refuses a QEMU whose version is not the one the configuration was
/// measured for (RTMR0 covers QEMU's ACPI tables, which change between
/// versions; MRTD and the SNP launch digest depend on it too).
fn check_qemu_version(qemu: &str, wanted: Option<&str>, unpublished: bool) -> Result<()> {
    let Some(wanted) = wanted else {
        if !unpublished {
            bail!("the published configuration records no QEMU version: nothing to check this QEMU against (--unpublished launches it anyway)");
        }
        return Ok(());
    };
    let found = crate::qemu::version::probe(Path::new(qemu))?;
    if found.version != wanted {
        let msg = format!(
            "{qemu} is QEMU {} ({}), but this release was measured for QEMU {wanted}: its measurements (RTMR0's ACPI tables above all) would not match",
            found.version, found.line
        );
        if !unpublished {
            bail!("{msg} (install QEMU {wanted}, or --unpublished; clients will reject the VM)");
        }
        eprintln!("WARNING: {msg}; --unpublished: clients will REJECT this VM");
    }
    Ok(())
}

/// SNP HOST_DATA when no `--config` is given: the guest then measures the
/// default configuration `{}`, so HOST_DATA must be its digest — the value
/// the published configuration pins, checked against the digest computed
/// here.
fn default_snp_host_data(
    published: Option<&chrysalis_measurements::manifest::Configuration>,
) -> Result<String> {
    use base64::Engine as _;
    let digest = config_sha256(&serde_json::json!({}));
    if let Some(pinned) = published
        .and_then(|c| c.snp.as_ref())
        .and_then(|s| s.host_data.as_deref())
    {
        if pinned != hex::encode(digest) {
            bail!(
                "measurements.json pins HOST_DATA {pinned}, not the default configuration's {}: pass the configuration it was made for with --config",
                hex::encode(digest)
            );
        }
    }
    Ok(base64::engine::general_purpose::STANDARD.encode(digest))
}

/// SHA-256 of a runtime configuration's canonical JSON (what the agent
/// compares with HOST_DATA).
pub fn config_sha256(value: &serde_json::Value) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(chrysalis_measurements::tdx::rtmr::canonical_json(value)).into()
}

/// SNP HOST_DATA for a runtime configuration: base64 of SHA-256 of its
/// canonical JSON (keys sorted, no whitespace), which the agent recomputes
/// from the file it receives and compares with its own report.
pub fn snp_host_data(config: &Path) -> Result<String> {
    use base64::Engine as _;
    let text = std::fs::read(config).with_context(|| format!("--config {}", config.display()))?;
    let value: serde_json::Value = serde_json::from_slice(&text)
        .with_context(|| format!("--config {}: not JSON", config.display()))?;
    if !value.is_object() {
        bail!("--config {}: must be a JSON object", config.display());
    }
    Ok(base64::engine::general_purpose::STANDARD.encode(config_sha256(&value)))
}

/// Refuses a model volume the guest would not mount: missing images, or a
/// runtime configuration that does not name its root hash (the guest takes
/// the hash only from the measured configuration).
fn check_model_volume(dir: &Path, config: Option<&Path>) -> Result<()> {
    use crate::image::model::{recorded_root_hash, DATA_FILE, HASH_FILE};
    for f in [DATA_FILE, HASH_FILE] {
        let p = dir.join(f);
        if !p.is_file() {
            bail!(
                "--model {}: {f} missing (build the volume with `chrysalis image model`)",
                dir.display()
            );
        }
    }
    let want = recorded_root_hash(dir)?;
    let named = config
        .map(|c| -> Result<Option<String>> {
            let text = std::fs::read(c).with_context(|| format!("--config {}", c.display()))?;
            let v: serde_json::Value = serde_json::from_slice(&text)
                .with_context(|| format!("--config {}: not JSON", c.display()))?;
            Ok(v.pointer("/model_volume/verity_root_hash")
                .and_then(|h| h.as_str())
                .map(str::to_ascii_lowercase))
        })
        .transpose()?
        .flatten();
    match named {
        Some(h) if h == want => Ok(()),
        Some(h) => bail!(
            "--config names model volume root hash {h}, but {} holds {want}: the guest would refuse to mount it",
            dir.display()
        ),
        None => bail!(
            "--model {} needs --config with {{\"model_volume\": {{\"verity_root_hash\": \"{want}\"}}}}: the guest takes the root hash only from the measured configuration",
            dir.display()
        ),
    }
}

pub fn run(a: LaunchArgs) -> i32 {
    let r = (|| -> Result<i32> {
        let mut vm = vm_from_args(&a)?;
        if a.print {
            let args = vm.qemu_args();
            let line: Vec<String> = std::iter::once(a.qemu.clone())
                .chain(args)
                .map(|s| {
                    if s == CMDLINE_PLACEHOLDER {
                        format!(
                            "\"$(cat {})\"",
                            shell_quote(&vm.image_dir.join("cmdline").display().to_string())
                        )
                    } else {
                        shell_quote(&s)
                    }
                })
                .collect();
            println!("{}", line.join(" "));
            return Ok(exit::OK);
        }
        if let Some(m) = &vm.model {
            check_model_volume(m, vm.config.as_deref())?;
        }
        for f in ["vmlinuz", "initrd", "rootfs.img", "rootfs.verity"] {
            let p = vm.image_dir.join(f);
            if !p.is_file() {
                bail!(
                    "{}: missing (not a release directory from `chrysalis image build`?)",
                    p.display()
                );
            }
        }
        if !vm.firmware.is_file() {
            bail!(
                "{}: firmware missing ({})",
                vm.firmware.display(),
                match a.tee {
                    Tee::None => "install Debian's ovmf package",
                    _ => "build it with image/firmware/build.sh and rebuild the image",
                }
            );
        }
        if let Some(c) = &vm.config {
            let len = std::fs::metadata(c)
                .with_context(|| c.display().to_string())?
                .len();
            if len > 65536 {
                bail!(
                    "--config {}: {len} bytes; the guest accepts at most 65536",
                    c.display()
                );
            }
        }
        if a.tee == Tee::None && a.accel == Accel::Auto {
            vm.kvm = kvm_works(&a.qemu, &vm.firmware);
            eprintln!(
                "accelerator: {}",
                if vm.kvm {
                    "KVM"
                } else {
                    "TCG (KVM absent or did not boot the firmware within 10 s)"
                }
            );
        }
        if a.tee == Tee::None {
            eprintln!(
                "NOTE: --tee none: no TEE, the agent serves SIMULATED evidence that proves nothing"
            );
        }
        eprintln!(
            "starting QEMU: console → {}{}",
            vm.console_log.display(),
            vm.forward
                .map(|p| format!(", agent → https://127.0.0.1:{p}"))
                .unwrap_or_default()
        );
        // Become QEMU (same pid): signals from a supervisor reach the VM, and
        // stopping the launcher stops the VM.
        use std::os::unix::process::CommandExt as _;
        let err = Command::new(&a.qemu)
            .args(vm.qemu_args())
            .stdin(Stdio::null())
            .exec();
        Err(anyhow::Error::new(err).context(format!("starting {}", a.qemu)))
    })();
    r.unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        exit::IO
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vm(tee: Tee) -> Vm {
        Vm {
            tee,
            kvm: tee != Tee::None,
            vcpus: 2,
            memory_mib: 2048,
            gpus: vec![],
            forward: Some(18443),
            config: None,
            model: None,
            console_log: "c.log".into(),
            firmware: "fw.fd".into(),
            image_dir: "img".into(),
            cmdline: "console=ttyS0 roothash=ab".into(),
            vcpu_type: "EPYC-v4".into(),
            host_data: None,
        }
    }

    fn has(args: &[String], pair: [&str; 2]) -> bool {
        args.windows(2).any(|w| w[0] == pair[0] && w[1] == pair[1])
    }

    #[test]
    fn disks_are_in_the_order_the_cmdline_names_them() {
        let a = vm(Tee::None).qemu_args();
        let root = a.iter().position(|s| s.contains("img/rootfs.img")).unwrap();
        let hash = a
            .iter()
            .position(|s| s.contains("img/rootfs.verity"))
            .unwrap();
        assert!(
            root < hash,
            "{ROOT_DATA_DEVICE} must be the data, {ROOT_HASH_DEVICE} the hash tree"
        );
        assert!(a[root].contains("readonly=on") && a[hash].contains("readonly=on"));
    }

    #[test]
    fn tee_specific_options() {
        let t = vm(Tee::Tdx).qemu_args();
        assert!(has(&t, ["-object", "tdx-guest,id=tdx0"]));
        assert!(has(&t, ["-accel", "kvm"]));
        assert!(t.iter().any(|s| s.contains("iommu_platform=on")));
        let s = vm(Tee::Snp).qemu_args();
        assert!(has(&s, ["-cpu", "EPYC-v4"]));
        assert!(s
            .iter()
            .any(|x| x.starts_with("sev-snp-guest") && x.contains("kernel-hashes=on")));
        let n = vm(Tee::None).qemu_args();
        assert!(has(&n, ["-accel", "tcg"]) && has(&n, ["-cpu", "max"]));
        assert!(has(&n, ["-append", "console=ttyS0 roothash=ab"]));
        assert!(has(
            &n,
            ["-netdev", "user,id=net0,hostfwd=tcp:127.0.0.1:18443-:8443"]
        ));
    }

    #[test]
    fn gpu_and_config() {
        let mut v = vm(Tee::Tdx);
        v.gpus = vec!["0000:41:00.0".into()];
        v.config = Some("host.json".into());
        let a = v.qemu_args();
        assert!(has(&a, ["-device", "vfio-pci,host=0000:41:00.0,bus=rp0"]));
        assert!(has(
            &a,
            ["-fw_cfg", "name=opt/org.chrysalis/config,file=host.json"]
        ));
        assert!(valid_pci("0000:41:00.0"));
        assert!(!valid_pci("41:00.0"));
        assert!(!valid_pci("0000:41:00.0,x=y"));
    }

    #[test]
    fn snp_host_data_binds_the_config() {
        let d = tempfile::tempdir().unwrap();
        let cfg = d.path().join("host.json");
        std::fs::write(&cfg, b"{ }").unwrap();
        let args = LaunchArgs {
            tee: Tee::Snp,
            vcpus: 2,
            memory: "2G".into(),
            gpus: vec![],
            forward: None,
            print: true,
            config: Some(cfg),
            model: None,
            console_log: "c.log".into(),
            accel: Accel::Auto,
            firmware: None,
            qemu: "qemu-system-x86_64".into(),
            vcpu_type: None,
            unpublished: false,
            image_dir: d.path().into(),
        };
        let v = vm_from_args(&args).unwrap();
        // SHA-256 of the canonical form "{}" in base64.
        assert_eq!(
            v.host_data.as_deref(),
            Some("RBNvo1WzZ4oRRq0W9+hknpT7T8If536DEMBg9hyq/4o=")
        );
        assert!(v
            .qemu_args()
            .iter()
            .any(|a| a.ends_with(",host-data=RBNvo1WzZ4oRRq0W9+hknpT7T8If536DEMBg9hyq/4o=")));
    }

    #[test]
    fn tdx_pins_the_64bit_pci_window() {
        let a = vm(Tee::Tdx).qemu_args();
        assert!(has(
            &a,
            ["-global", "q35-pcihost.pci-hole64-size=0x800000000"]
        ));
        let mut g = vm(Tee::Tdx);
        g.gpus = vec!["0000:41:00.0".into(), "0000:42:00.0".into()];
        let a = g.qemu_args();
        assert!(has(
            &a,
            ["-global", "q35-pcihost.pci-hole64-size=0x8000000000"]
        ));
        assert!(has(
            &a,
            ["-fw_cfg", "name=opt/ovmf/X-PciMmio64Mb,string=524288"]
        ));
        assert!(!vm(Tee::Snp)
            .qemu_args()
            .iter()
            .any(|x| x.contains("pci-hole64")));
    }

    #[test]
    fn the_acpi_generator_takes_every_tdx_argv_launch_makes() {
        for gpus in 0..3 {
            for model_volume in [false, true] {
                let shape = VmShape {
                    vcpus: 4,
                    memory_mib: 4096,
                    gpus,
                    model_volume,
                };
                let argv = tdx_shape_argv(&shape);
                let plan = crate::qemu::acpi::qtest_plan(&argv, Path::new("/tmp/x")).unwrap();
                let q = plan.argv;
                let stand_ins = q.iter().filter(|a| a.starts_with("pci-testdev,")).count();
                assert_eq!(stand_ins, gpus as usize);
                let disks = q
                    .iter()
                    .filter(|a| a.starts_with("virtio-blk-pci,"))
                    .count();
                assert_eq!(disks, if model_volume { 4 } else { 2 });
            }
        }
        // A launch with a runtime configuration and a port forward too.
        let mut v = vm(Tee::Tdx);
        v.config = Some("host.json".into());
        assert!(crate::qemu::acpi::qtest_plan(&v.qemu_args(), Path::new("/tmp/x")).is_ok());
    }

    fn manifest() -> MeasurementsManifest {
        let t = "{\"schema\":1,\"tool\":\"t\",\"configurations\":[
          {\"name\":\"tdx\",\"vm\":{\"vcpus\":8,\"memory_mib\":65536,\"gpus\":1,\"vmm\":\"qemu\",\"vmm_version\":\"11.1.3\",\"model_volume\":true},
           \"tdx\":{\"mrtd\":\"{h}\",\"rtmr0\":\"{h}\",\"rtmr1\":\"{h}\",\"rtmr2\":\"{h}\",\"rtmr3\":null}},
          {\"name\":\"snp\",\"vm\":{\"vcpus\":2,\"memory_mib\":2048,\"vmm\":\"qemu\",\"vmm_version\":\"11.1.3\"},
           \"snp\":{\"measurement\":\"{h}\",\"vcpu_type\":\"EPYC-v4\",\"guest_features\":\"0x1\",
                    \"host_data\":\"44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a\"}}]}"
            .replace("{h}", &"ab".repeat(48));
        MeasurementsManifest::from_json(&t).unwrap()
    }

    #[test]
    fn only_published_shapes_launch_unless_unpublished() {
        let m = manifest();
        let dir = Path::new("img");
        let tdx = VmShape {
            vcpus: 8,
            memory_mib: 65536,
            gpus: 1,
            model_volume: true,
        };
        let c = published_configuration(Some(&m), Tee::Tdx, &tdx, false, dir).unwrap();
        assert_eq!(c.unwrap().name, "tdx");
        // Without the model volume's disks it is another shape (other ACPI tables).
        let other = VmShape {
            model_volume: false,
            ..tdx
        };
        let e = published_configuration(Some(&m), Tee::Tdx, &other, false, dir).unwrap_err();
        let e = format!("{e:#}");
        assert!(
            e.contains("--unpublished") && e.contains("tdx: 8 vCPUs"),
            "{e}"
        );
        assert!(
            published_configuration(Some(&m), Tee::Tdx, &other, true, dir)
                .unwrap()
                .is_none()
        );
        // The TDX shape is not an SNP configuration.
        assert!(published_configuration(Some(&m), Tee::Snp, &tdx, false, dir).is_err());
        assert!(published_configuration(None, Tee::Tdx, &tdx, false, dir).is_err());
    }

    #[test]
    fn snp_without_config_passes_the_default_configurations_host_data() {
        let m = manifest();
        let snp = m.configurations.iter().find(|c| c.name == "snp");
        // SHA-256 of the canonical default configuration "{}".
        assert_eq!(
            default_snp_host_data(snp).unwrap(),
            "RBNvo1WzZ4oRRq0W9+hknpT7T8If536DEMBg9hyq/4o="
        );
        assert_eq!(
            default_snp_host_data(None).unwrap(),
            "RBNvo1WzZ4oRRq0W9+hknpT7T8If536DEMBg9hyq/4o="
        );
        let mut other = snp.unwrap().clone();
        other.snp.as_mut().unwrap().host_data = Some("00".repeat(32));
        let e = format!("{:#}", default_snp_host_data(Some(&other)).unwrap_err());
        assert!(e.contains("--config"), "{e}");
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("a=b,c"), "a=b,c");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
    }
}
