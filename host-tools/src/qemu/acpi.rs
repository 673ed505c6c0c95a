//! QEMU's ACPI blobs (`etc/acpi/tables`, `etc/acpi/rsdp`,
//! `etc/table-loader`) for the exact argv `chrysalis launch` uses, from the
//! pinned QEMU under `-accel qtest`: no KVM, no TDX, no guest boot (~0.3 s).
//!
//! Stock QEMU refuses a `tdx-guest` without KVM, so the launch argv is
//! rewritten ([`qtest_argv`]) into the closest machine QEMU will start
//! without one, changing only what does not enter the tables or what TDX
//! itself forces:
//!
//! * `-machine`: `kernel-irqchip=split` and `confidential-guest-support`
//!   dropped (no effect on the tables), `pic=off,smm=off` added (what
//!   QEMU's TDX code forces: MADT PCAT_COMPAT 0; FADT SMI_CMD and
//!   ACPI_ENABLE/DISABLE 0);
//! * `-accel kvm` → `-accel qtest`; `-cpu host` → `-cpu qemu64` (the CPU
//!   model does not enter the tables); `-object tdx-guest` dropped;
//! * `-bios`, `-kernel`, `-initrd`, `-append`, the runtime configuration's
//!   `-fw_cfg` and the NIC's port forward are dropped: they add fw_cfg
//!   files, option ROMs or host-side plumbing, never ACPI (checked:
//!   identical blobs with and without them); the serial port stays (COM1 is
//!   in the DSDT) with a null backend instead of the log file;
//! * guest RAM comes from a `memory-backend-ram` with `reserve=off` (the
//!   same tables; without it a 64 GiB VM cannot be set up on a smaller
//!   host that does not overcommit);
//! * disk images become one empty scratch file (the disk's content and size
//!   are not in the tables, the device is);
//! * each GPU (`vfio-pci`, which needs the device) becomes a `pci-testdev`
//!   stand-in on the same root port.
//!
//! Any other option is carried over verbatim only if it is known here;
//! an unknown one is an error, so a change to `launch` cannot silently
//! escape the measurement.
//!
//! Before reading, the chipset is programmed as the TDVF does: PCIEXBAR
//! (base 0xe0000000, 256 buses, enabled; without it QEMU emits no MCFG and
//! another DSDT) and the ACPI PM base (0x600, ACPI_EN; the GPE0 block in the
//! DSDT and the FADT's PM blocks follow it). The tables are then read
//! through fw_cfg DMA, which is also when QEMU builds them. The DSDT's
//! 64-bit window starts at the lowest 64-bit BAR the firmware assigned:
//! one BAR is placed where the TDVF's aperture starts
//! ([`tdvf_pci64_base`]). With these steps the tables equal, byte for byte
//! (checksums and loader-patched pointers aside), what the TDVF installed
//! when booted under TCG with the same argv; see the README for what a TD
//! could still do differently.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrysalis_measurements::tdx::rtmr::AcpiTables;

use super::fw_cfg;
use super::qtest::{GuestIo, Qtest};
use super::QemuError;

/// PCI configuration address of the Q35 MCH's PCIEXBAR register (bus 0,
/// device 0, function 0, offset 0x60).
const PCIEXBAR_CONFIG_ADDR: u32 = 0x8000_0060;
/// PCIEXBAR value the TDVF Chrysalis builds programs (edk2 2025.02
/// `PcdPciExpressBaseAddress` on q35): base 0xe0000000, 256 buses,
/// enabled. Checked by booting that firmware under TCG: MCFG and the DSDT's
/// 32-bit window follow it. (Debian bookworm's OVMF 2022.11 used
/// 0xb0000000; the value belongs to the firmware, not to QEMU.)
const PCIEXBAR_VALUE: u32 = 0xe000_0001;
/// PCI configuration address of the ICH9 LPC's PMBASE register (bus 0,
/// device 0x1f, function 0, offset 0x40).
const PMBASE_CONFIG_ADDR: u32 = 0x8000_f840;
/// PCI configuration address of the ICH9 LPC's ACPI_CNTL register (0x44).
const ACPI_CNTL_CONFIG_ADDR: u32 = 0x8000_f844;
/// The ACPI PM I/O base OVMF programs on q35 (`ICH9_PMBASE_VALUE`).
const PMBASE_VALUE: u32 = 0x600;
/// ACPI_CNTL's ACPI_EN bit.
const ACPI_EN: u32 = 0x80;
/// The GPU stand-in device (conventional PCI endpoint, not VGA class).
pub const GPU_STAND_IN: &str = "pci-testdev";
/// Per-answer deadline of the qtest session.
pub const QTEST_TIMEOUT: Duration = Duration::from_secs(20);

/// Id of the RAM backend added for qtest.
const RAM_BACKEND: &str = "chrysalis-acpi-ram";
/// Options carried over unchanged, with their argument.
const KEEP: &[&str] = &["-smp", "-global", "-display", "-vga", "-monitor"];
/// Options without an argument carried over unchanged.
const KEEP_FLAGS: &[&str] = &["-nodefaults", "-no-reboot"];
/// Options dropped with their argument (they never enter ACPI).
const DROP: &[&str] = &["-bios", "-kernel", "-initrd", "-append"];

/// The qtest argv for a launch, and what the firmware would do that the
/// tables depend on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QtestPlan {
    /// QEMU's arguments under qtest.
    pub argv: Vec<String>,
    /// Where the TDVF starts its 64-bit PCI aperture, so where its lowest
    /// 64-bit BAR lands ([`tdvf_pci64_base`]); the DSDT's 64-bit window
    /// starts there.
    pub pci64_base: u64,
}

/// Where the TDVF (edk2 2025.02 `PlatformInitLib`, the firmware Chrysalis
/// builds) puts the 64-bit PCI aperture when the host fixes its size with
/// `opt/ovmf/X-PciMmio64Mb` (which `launch` always does on TDX): right
/// above guest RAM (QEMU's q35 split: RAM below 4 GiB stops at 2 GiB once
/// there are 2.75 GiB or more, the rest starts at 4 GiB), rounded up to
/// 1 GiB, then to the aperture size rounded down to a power of two. The
/// firmware allocates 64-bit BARs bottom-up from there. Checked by booting
/// the TDVF under TCG (non-TD mode, same code path): 2 GiB + 32 GiB
/// aperture → 32 GiB, 8 GiB + 8 GiB aperture → 16 GiB.
pub fn tdvf_pci64_base(memory_bytes: u64, aperture_bytes: u64) -> u64 {
    const GIB: u64 = 1 << 30;
    let align = |v: u64, a: u64| v.div_ceil(a) * a;
    let below_4g = if memory_bytes >= 0xb000_0000 {
        0x8000_0000
    } else {
        0xb000_0000
    };
    let first_non_address = (4 * GIB) + memory_bytes.saturating_sub(below_4g);
    let size = align(aperture_bytes, GIB);
    let pow2 = if size == 0 {
        GIB
    } else {
        1u64 << (63 - size.leading_zeros())
    };
    align(align(first_non_address, GIB), pow2)
}

/// Parses QEMU's `-m` as `launch` writes it (`NNNNM`) into bytes.
fn memory_bytes(arg: &str) -> Option<u64> {
    arg.strip_suffix('M')?
        .parse::<u64>()
        .ok()?
        .checked_mul(1 << 20)
}

/// Rewrites a TDX launch argv (QEMU's arguments without the binary) into
/// the qtest argv that yields the same ACPI tables, and what the firmware
/// would do. `scratch_disk` is an existing file standing in for every disk
/// image.
pub fn qtest_plan(launch: &[String], scratch_disk: &Path) -> Result<QtestPlan, QemuError> {
    let err = |m: String| QemuError::Argv(m);
    let mut aperture = None;
    let mut it = launch.iter();
    while let Some(o) = it.next() {
        if o == "-fw_cfg" {
            if let Some(mb) = it
                .next()
                .and_then(|a| a.strip_prefix("name=opt/ovmf/X-PciMmio64Mb,string="))
            {
                let mb: u64 = mb
                    .parse()
                    .map_err(|_| err(format!("X-PciMmio64Mb {mb:?} is not a number")))?;
                aperture = Some(mb << 20);
            }
        }
    }
    let aperture = aperture.ok_or_else(|| {
        err("no opt/ovmf/X-PciMmio64Mb: the firmware's 64-bit window would follow the host's address width".into())
    })?;
    let argv = qtest_argv(launch, scratch_disk)?;
    let memory = argv
        .windows(2)
        .find(|w| w[0] == "-m")
        .and_then(|w| memory_bytes(&w[1]))
        .ok_or_else(|| err("-m is not NNNNM".into()))?;
    Ok(QtestPlan {
        argv,
        pci64_base: tdvf_pci64_base(memory, aperture),
    })
}

/// Rewrites a TDX launch argv (QEMU's arguments without the binary) into
/// the qtest argv that yields the same ACPI tables. `scratch_disk` is an
/// existing file standing in for every disk image.
pub fn qtest_argv(launch: &[String], scratch_disk: &Path) -> Result<Vec<String>, QemuError> {
    let err = |m: String| QemuError::Argv(m);
    let mut out: Vec<String> = Vec::new();
    let mut saw_tdx_object = false;
    let mut machine_at = None;
    let mut memory = None;
    let mut it = launch.iter();
    while let Some(opt) = it.next() {
        let o = opt.as_str();
        if KEEP_FLAGS.contains(&o) {
            out.push(opt.clone());
            continue;
        }
        let arg = it
            .next()
            .ok_or_else(|| err(format!("{o} without an argument")))?;
        match o {
            "-machine" => {
                let parts: Vec<&str> = arg.split(',').collect();
                if parts.first() != Some(&"q35")
                    || !parts.contains(&"confidential-guest-support=tdx0")
                {
                    return Err(err(format!("-machine {arg:?} is not a TDX q35 machine")));
                }
                let mut kept: Vec<&str> = parts
                    .into_iter()
                    .filter(|p| {
                        !p.starts_with("confidential-guest-support=")
                            && !p.starts_with("kernel-irqchip=")
                    })
                    .collect();
                if kept
                    .iter()
                    .any(|p| p.starts_with("pic=") || p.starts_with("smm="))
                {
                    return Err(err(format!("-machine {arg:?} sets pic/smm itself")));
                }
                kept.extend(["pic=off", "smm=off"]);
                machine_at = Some(out.len() + 1);
                out.extend(["-machine".into(), kept.join(",")]);
            }
            "-m" => {
                if arg.is_empty() || !arg.bytes().all(|b| b.is_ascii_alphanumeric()) {
                    return Err(err(format!("-m {arg:?}: expected a plain size like 2048M")));
                }
                memory = Some(arg.clone());
                out.extend([opt.clone(), arg.clone()]);
            }
            "-accel" => {
                if arg != "kvm" {
                    return Err(err(format!("-accel {arg} (a TDX launch uses kvm)")));
                }
                out.extend(["-accel".into(), "qtest".into()]);
            }
            "-cpu" => out.extend(["-cpu".into(), "qemu64".into()]),
            "-object" if arg.starts_with("tdx-guest,") => saw_tdx_object = true,
            "-drive" => {
                let rest: Vec<&str> = arg.split(',').filter(|p| !p.starts_with("file=")).collect();
                if rest.len() + 1 != arg.split(',').count() {
                    return Err(err(format!("-drive {arg:?} without exactly one file=")));
                }
                out.extend([
                    "-drive".into(),
                    format!("file={},{}", scratch_disk.display(), rest.join(",")),
                ]);
            }
            "-device" if arg.starts_with("vfio-pci,") => {
                let bus = arg
                    .split(',')
                    .find(|p| p.starts_with("bus="))
                    .ok_or_else(|| err(format!("-device {arg:?} without bus=")))?;
                out.extend(["-device".into(), format!("{GPU_STAND_IN},{bus}")]);
            }
            "-device"
                if arg.starts_with("virtio-blk-pci,")
                    || arg.starts_with("virtio-net-pci,")
                    || arg.starts_with("pcie-root-port,") =>
            {
                out.extend(["-device".into(), arg.clone()])
            }
            "-netdev" => {
                let id = arg
                    .split(',')
                    .find(|p| p.starts_with("id="))
                    .ok_or_else(|| err(format!("-netdev {arg:?} without id=")))?;
                if !arg.starts_with("user,") {
                    return Err(err(format!("-netdev {arg:?} is not user networking")));
                }
                out.extend(["-netdev".into(), format!("user,{id}")]);
            }
            "-fw_cfg" if arg.starts_with("name=opt/org.chrysalis/") => {}
            "-fw_cfg" if arg.starts_with("name=opt/ovmf/") => {
                out.extend(["-fw_cfg".into(), arg.clone()])
            }
            // The serial port is a device in the DSDT (COM1): keep it, on
            // a null backend.
            "-serial" => out.extend(["-serial".into(), "null".into()]),
            _ if DROP.contains(&o) => {}
            _ if KEEP.contains(&o) => out.extend([opt.clone(), arg.clone()]),
            _ => {
                return Err(err(format!(
                    "{o} {arg:?}: not known to the ACPI generator (does it change the tables?)"
                )))
            }
        }
    }
    let (Some(machine_at), true) = (machine_at, saw_tdx_object) else {
        return Err(err(
            "not a TDX launch (no q35 machine with a tdx-guest object)".into(),
        ));
    };
    let memory = memory.ok_or_else(|| err("no -m".into()))?;
    out[machine_at].push_str(&format!(",memory-backend={RAM_BACKEND}"));
    out.extend([
        "-object".into(),
        format!("memory-backend-ram,id={RAM_BACKEND},size={memory},reserve=off"),
    ]);
    Ok(out)
}

fn config_write(io: &mut impl GuestIo, addr: u32, value: u32) -> Result<(), QemuError> {
    io.outl(0xcf8, addr)?;
    io.outl(0xcfc, value)
}

fn config_read(io: &mut impl GuestIo, addr: u32) -> Result<u32, QemuError> {
    io.outl(0xcf8, addr)?;
    io.inl(0xcfc)
}

/// Places the first 64-bit memory BAR on bus 0 at `base` and enables the
/// device's memory decoding, as the firmware's bottom-up allocation does
/// for the lowest 64-bit BAR (QEMU starts the DSDT's 64-bit window at the
/// lowest 64-bit BAR it finds assigned).
fn place_lowest_bar64(io: &mut impl GuestIo, base: u64) -> Result<(), QemuError> {
    for dev in 0..32u32 {
        let at = 0x8000_0000 | (dev << 11);
        if config_read(io, at)? & 0xffff == 0xffff {
            continue;
        }
        // Type-0 headers only (bridges have other registers after BAR1).
        if (config_read(io, at | 0x0c)? >> 16) & 0x7f != 0 {
            continue;
        }
        let mut bar = 0u32;
        while bar < 6 {
            let off = 0x10 + 4 * bar;
            let v = config_read(io, at | off)?;
            let mem64 = v & 0x1 == 0 && v & 0x6 == 0x4;
            if mem64 && bar < 5 {
                config_write(io, at | off, (base as u32 & 0xffff_fff0) | (v & 0xf))?;
                config_write(io, at | (off + 4), (base >> 32) as u32)?;
                let cmd = config_read(io, at | 0x04)?;
                config_write(io, at | 0x04, (cmd & 0xffff) | 0x2)?;
                return Ok(());
            }
            bar += if mem64 { 2 } else { 1 };
        }
    }
    Err(QemuError::Malformed(
        "no 64-bit memory BAR on PCI bus 0 to place the 64-bit window with".into(),
    ))
}

/// Programs the chipset as OVMF's platform code does before the tables are
/// read — PCIEXBAR (MMCONFIG: MCFG and the DSDT's 32-bit window follow it),
/// PMBASE and ACPI_EN (the FADT's PM blocks and the DSDT's GPE0 resources
/// follow them), the lowest 64-bit BAR at `pci64_base` (the DSDT's 64-bit
/// window) — then reads the three ACPI blobs.
pub fn read_tables(io: &mut impl GuestIo, pci64_base: u64) -> Result<AcpiTables, QemuError> {
    config_write(io, PCIEXBAR_CONFIG_ADDR, PCIEXBAR_VALUE)?;
    let back = config_read(io, PCIEXBAR_CONFIG_ADDR)?;
    if back != PCIEXBAR_VALUE {
        return Err(QemuError::Malformed(format!(
            "PCIEXBAR reads back {back:#010x} after writing {PCIEXBAR_VALUE:#010x}: not a q35 MCH?"
        )));
    }
    config_write(io, PMBASE_CONFIG_ADDR, PMBASE_VALUE)?;
    let cntl = config_read(io, ACPI_CNTL_CONFIG_ADDR)?;
    config_write(io, ACPI_CNTL_CONFIG_ADDR, cntl | ACPI_EN)?;
    let pmbase = config_read(io, PMBASE_CONFIG_ADDR)? & 0xff80;
    if pmbase != PMBASE_VALUE || config_read(io, ACPI_CNTL_CONFIG_ADDR)? & ACPI_EN == 0 {
        return Err(QemuError::Malformed(format!(
            "ICH9 PMBASE reads back {pmbase:#x} (wanted {PMBASE_VALUE:#x} with ACPI_EN): not an ICH9 LPC?"
        )));
    }
    place_lowest_bar64(io, pci64_base)?;
    let dir = fw_cfg::directory(io)?;
    Ok(AcpiTables {
        table_loader: fw_cfg::read_file(io, &dir, "etc/table-loader")?,
        rsdp: fw_cfg::read_file(io, &dir, "etc/acpi/rsdp")?,
        tables: fw_cfg::read_file(io, &dir, "etc/acpi/tables")?,
    })
}

/// A scratch file removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Runs `qemu` under qtest with [`qtest_plan`]`(launch)` and returns the
/// ACPI blobs it would hand the TD.
pub fn generate(qemu: &Path, launch: &[String]) -> Result<AcpiTables, QemuError> {
    let scratch = Scratch::new()?;
    let plan = qtest_plan(launch, &scratch.0)?;
    run_plan(qemu, &plan)
}

/// Runs one [`QtestPlan`] (its disks must exist).
pub fn run_plan(qemu: &Path, plan: &QtestPlan) -> Result<AcpiTables, QemuError> {
    let mut q = Qtest::spawn(qemu, &plan.argv, QTEST_TIMEOUT)?;
    let tables = read_tables(&mut q, plan.pci64_base);
    q.close();
    tables
}

impl Scratch {
    /// An empty file in the temporary directory.
    fn new() -> Result<Scratch, QemuError> {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "chrysalis-acpi-{}-{}.img",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, b"").map_err(|source| QemuError::Io {
            path: path.clone(),
            source,
        })?;
        Ok(Scratch(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    fn launch() -> Vec<String> {
        s(&[
            "-machine",
            "q35,kernel-irqchip=split,confidential-guest-support=tdx0,hpet=off",
            "-accel",
            "kvm",
            "-cpu",
            "host",
            "-smp",
            "8",
            "-m",
            "65536M",
            "-object",
            "tdx-guest,id=tdx0",
            "-bios",
            "fw.fd",
            "-kernel",
            "k",
            "-append",
            "x y",
            "-drive",
            "file=img/rootfs.img,if=none,id=rootfs,format=raw,readonly=on",
            "-device",
            "virtio-blk-pci,drive=rootfs,disable-legacy=on,iommu_platform=on",
            "-netdev",
            "user,id=net0,hostfwd=tcp:127.0.0.1:1-:8443",
            "-device",
            "pcie-root-port,id=rp0,bus=pcie.0,chassis=1",
            "-device",
            "vfio-pci,host=0000:41:00.0,bus=rp0",
            "-fw_cfg",
            "name=opt/org.chrysalis/config,file=c.json",
            "-global",
            "q35-pcihost.pci-hole64-size=0x4000000000",
            "-nodefaults",
            "-serial",
            "file:c.log",
        ])
    }

    #[test]
    fn rewrites_only_what_does_not_enter_acpi() {
        let a = qtest_argv(&launch(), Path::new("/tmp/x.img")).unwrap();
        assert_eq!(
            a,
            s(&[
                "-machine",
                "q35,hpet=off,pic=off,smm=off,memory-backend=chrysalis-acpi-ram",
                "-accel",
                "qtest",
                "-cpu",
                "qemu64",
                "-smp",
                "8",
                "-m",
                "65536M",
                "-drive",
                "file=/tmp/x.img,if=none,id=rootfs,format=raw,readonly=on",
                "-device",
                "virtio-blk-pci,drive=rootfs,disable-legacy=on,iommu_platform=on",
                "-netdev",
                "user,id=net0",
                "-device",
                "pcie-root-port,id=rp0,bus=pcie.0,chassis=1",
                "-device",
                "pci-testdev,bus=rp0",
                "-global",
                "q35-pcihost.pci-hole64-size=0x4000000000",
                "-nodefaults",
                "-serial",
                "null",
                "-object",
                "memory-backend-ram,id=chrysalis-acpi-ram,size=65536M,reserve=off",
            ])
        );
    }

    #[test]
    fn tdvf_aperture_base() {
        const G: u64 = 1 << 30;
        // Checked against the TDVF booted under TCG.
        assert_eq!(tdvf_pci64_base(2 * G, 32 * G), 32 * G);
        assert_eq!(tdvf_pci64_base(8 * G, 8 * G), 16 * G);
        // 64 GiB: RAM to 66 GiB; a 256 GiB aperture aligns to 256 GiB.
        assert_eq!(tdvf_pci64_base(64 * G, 256 * G), 256 * G);
        // 2.5 GiB stays below 4 GiB; 3 GiB puts 1 GiB above.
        assert_eq!(tdvf_pci64_base(5 * G / 2, 4 * G), 4 * G);
        assert_eq!(tdvf_pci64_base(3 * G, G), 5 * G);
        let mut l = launch();
        l.extend(s(&["-fw_cfg", "name=opt/ovmf/X-PciMmio64Mb,string=262144"]));
        let p = qtest_plan(&l, Path::new("/tmp/x.img")).unwrap();
        assert_eq!(p.pci64_base, 256 * G);
        // Without a pinned aperture the window would follow the host.
        assert!(qtest_plan(&launch(), Path::new("/tmp/x.img")).is_err());
    }

    /// With the pinned QEMU (CHRYSALIS_QEMU): the tables do not depend on
    /// which non-VGA endpoint sits on a GPU's root port — the stand-in, a
    /// PCIe NIC, a device with a 64-bit BAR all give the same blob (QEMU
    /// special-cases only VGA-class devices; an H100 is a 3D controller) —
    /// so `pci-testdev` stands in for the GPU faithfully.
    #[test]
    fn any_non_vga_endpoint_gives_the_gpu_stand_ins_tables() {
        let Some(qemu) = std::env::var_os("CHRYSALIS_QEMU") else {
            assert_ne!(
                std::env::var("CHRYSALIS_REQUIRE_QEMU").as_deref(),
                Ok("1"),
                "CHRYSALIS_REQUIRE_QEMU=1 but CHRYSALIS_QEMU is not set (bash ci/qemu-pinned.sh)"
            );
            eprintln!("skipping: CHRYSALIS_QEMU not set (bash ci/qemu-pinned.sh)");
            return;
        };
        let qemu = Path::new(&qemu);
        let shape = crate::launch::VmShape {
            vcpus: 2,
            memory_mib: 2048,
            gpus: 1,
            model_volume: false,
        };
        let scratch = Scratch::new().unwrap();
        let plan = qtest_plan(&crate::launch::tdx_shape_argv(&shape), &scratch.0).unwrap();
        let with = |device: &str, extra: &[&str]| {
            let mut p = plan.clone();
            for a in &mut p.argv {
                if a.starts_with(GPU_STAND_IN) {
                    *a = a.replacen(GPU_STAND_IN, device, 1);
                }
            }
            p.argv.extend(s(extra));
            run_plan(qemu, &p).unwrap().digests()
        };
        let stand_in = with(GPU_STAND_IN, &[]);
        assert_eq!(with("e1000e", &[]), stand_in);
        assert_eq!(with("virtio-rng-pci", &[]), stand_in);
        assert_eq!(
            with(
                "ivshmem-plain,memdev=m0",
                &["-object", "memory-backend-ram,id=m0,size=1M"]
            ),
            stand_in
        );
        // The test can tell: a VGA-class device on the port changes them.
        assert_ne!(with("VGA", &[]), stand_in);
    }

    #[test]
    fn refuses_what_it_does_not_know() {
        let mut a = launch();
        a.extend(s(&["-device", "virtio-rng-pci"]));
        assert!(qtest_argv(&a, Path::new("x")).is_err());
        let mut b = launch();
        b.extend(s(&["-numa", "node"]));
        assert!(qtest_argv(&b, Path::new("x")).is_err());
        let snp = s(&[
            "-machine",
            "q35,confidential-guest-support=sev0",
            "-accel",
            "kvm",
        ]);
        assert!(qtest_argv(&snp, Path::new("x")).is_err());
        let no_object: Vec<String> = launch()
            .into_iter()
            .filter(|x| !x.starts_with("tdx-guest") && x != "-object")
            .collect();
        assert!(qtest_argv(&no_object, Path::new("x")).is_err());
    }
}
