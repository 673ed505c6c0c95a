//! QEMU's patch of the Linux setup header before direct kernel boot.
//!
//! With `-kernel`, QEMU (`x86_load_linux`) rewrites fields of the bzImage
//! setup header and hands the patched image to the firmware through
//! `fw_cfg`; TDVF measures *that* image into RTMR1. The patch depends on the
//! kernel's boot protocol version, the guest's memory size (through where
//! the initrd is placed), the initrd size and the command line. This module
//! reproduces it (Linux boot protocol, Documentation/arch/x86/boot.rst):
//!
//! * protocol = `u16` at 0x206 if the magic `"HdrS"` is at 0x202, else 0;
//! * "high and recent" kernels (protocol ≥ 0x202 with `LOADED_HIGH`) get
//!   real-mode code at 0x10000 and the command line at 0x20000; older ones
//!   0x90000 and `0x9a000 − align16(len(cmdline) + 1)`;
//! * `cmd_line_ptr` (0x228) = command-line address (protocol ≥ 0x202), else
//!   the old 0xA33F magic and offset at 0x20 / 0x22;
//! * `vid_mode` (0x1fa) from a `vga=` parameter, if any;
//! * `type_of_loader` (0x210) = 0xB0 (protocol ≥ 0x200);
//! * `loadflags` (0x211) |= `CAN_USE_HEAP`, `heap_end_ptr` (`u16` at 0x224)
//!   = command line − real-mode address − 0x200 (protocol ≥ 0x201);
//! * with an initrd: the highest address is `u32::MAX` if the kernel sets
//!   `XLF_CAN_BE_LOADED_ABOVE_4G` (protocol ≥ 0x20c), else
//!   `initrd_addr_max` (0x22c, protocol ≥ 0x203), else 0x37ffffff — capped
//!   at `below_4g_memory − acpi_data_size − 1`; the initrd goes at
//!   `(max − size) & !4095`, written to `ramdisk_image` (0x218) and
//!   `ramdisk_size` (0x21c).
//!
//! `below_4g_memory` follows q35's split ([`super::hob::q35_ram_split`]), so
//! RTMR1 changes with the memory size below 2.75 GiB and is stable above.
//! QEMU's q35/pc machines reserve `acpi_data_size` = 0x28000 bytes
//! ([`QEMU_ACPI_DATA_SIZE`]) at the top of low memory for ACPI.
//!
//! Differences from dstack-mr's model (checked against QEMU's code):
//! dstack-mr tests bit 6 of `xloadflags` (`XLF_5LEVEL_ENABLED`) where QEMU
//! tests bit 1 (`XLF_CAN_BE_LOADED_ABOVE_4G`) — kernels built with 5-level
//! paging set both, others differ; and it writes `heap_end_ptr` as 32 bits
//! (QEMU: 16). It does not model `vga=` or the command-line-dependent
//! address of old kernels.

use serde::{Deserialize, Serialize};

use super::hob::q35_ram_split;

/// `acpi_data_size` of QEMU's modern pc/q35 machine types (bytes).
pub const QEMU_ACPI_DATA_SIZE: u32 = 0x28000;
/// `XLF_CAN_BE_LOADED_ABOVE_4G` in `xloadflags`.
pub const XLF_CAN_BE_LOADED_ABOVE_4G: u16 = 1 << 1;

/// What QEMU's setup-header patch depends on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelLoad {
    /// Guest RAM in bytes (`-m`).
    pub memory_bytes: u64,
    /// Size of the initrd in bytes, if one is given (`-initrd`).
    pub initrd_size: Option<u64>,
    /// The command line as given to QEMU (`-append`), without the
    /// ` initrd=initrd` the firmware adds.
    pub cmdline: String,
    /// Bytes QEMU reserves for ACPI below 4 GiB ([`QEMU_ACPI_DATA_SIZE`]).
    pub acpi_data_size: u32,
}

/// Returns the kernel image as QEMU patches it; the error names what is
/// wrong (not a bzImage, initrd too large, …).
pub fn qemu_patch(kernel: &[u8], load: &KernelLoad) -> Result<Vec<u8>, String> {
    if kernel.len() < 0x240 {
        return Err(format!(
            "not a Linux bzImage: {} bytes is shorter than the setup header",
            kernel.len()
        ));
    }
    if &kernel[0x202..0x206] != b"HdrS" {
        // QEMU would try multiboot or PVH ELF here; neither boots a TD.
        return Err("not a Linux bzImage: no \"HdrS\" setup header magic at 0x202".into());
    }
    let mut k = kernel.to_vec();
    let protocol = u16::from_le_bytes([k[0x206], k[0x207]]);
    let loaded_high = k[0x211] & 0x01 != 0;
    let cmdline_size = u32::try_from(load.cmdline.len())
        .unwrap_or(u32::MAX)
        .saturating_add(16)
        & !15;
    // Low kernels and high-but-ancient ones (protocol < 0x202) share the
    // real-mode and command-line addresses; only their protected-mode load
    // address differs, which is not part of the header.
    let (real_addr, cmdline_addr): (u32, u32) = if protocol < 0x202 || !loaded_high {
        (0x90000, 0x9a000u32.wrapping_sub(cmdline_size))
    } else {
        (0x10000, 0x20000)
    };

    let mut initrd_max: u32 = if protocol >= 0x20c
        && u16::from_le_bytes([k[0x236], k[0x237]]) & XLF_CAN_BE_LOADED_ABOVE_4G != 0
    {
        u32::MAX
    } else if protocol >= 0x203 {
        u32::from_le_bytes([k[0x22c], k[0x22d], k[0x22e], k[0x22f]])
    } else {
        0x37ff_ffff
    };
    let (below_4g, _) = q35_ram_split(load.memory_bytes);
    // below_4g ≤ 0xB000_0000, so it fits u32.
    let below_4g = below_4g as u32;
    let usable = below_4g
        .checked_sub(load.acpi_data_size)
        .filter(|&u| u > 0)
        .ok_or_else(|| {
            format!(
                "memory below 4 GiB ({below_4g:#x}) leaves no room after {:#x} bytes of ACPI data",
                load.acpi_data_size
            )
        })?;
    if initrd_max >= usable {
        initrd_max = usable - 1;
    }

    if protocol >= 0x202 {
        k[0x228..0x22c].copy_from_slice(&cmdline_addr.to_le_bytes());
    } else {
        k[0x20..0x22].copy_from_slice(&0xA33Fu16.to_le_bytes());
        let off = cmdline_addr.wrapping_sub(real_addr) as u16;
        k[0x22..0x24].copy_from_slice(&off.to_le_bytes());
    }

    if let Some(mode) = vga_mode(&load.cmdline)? {
        k[0x1fa..0x1fc].copy_from_slice(&mode.to_le_bytes());
    }

    if protocol >= 0x200 {
        k[0x210] = 0xB0;
    }
    if protocol >= 0x201 {
        k[0x211] |= 0x80;
        let heap_end = cmdline_addr.wrapping_sub(real_addr).wrapping_sub(0x200) as u16;
        k[0x224..0x226].copy_from_slice(&heap_end.to_le_bytes());
    }

    if let Some(size) = load.initrd_size {
        if protocol < 0x200 {
            return Err("kernel boot protocol is too old to load an initrd".into());
        }
        if size >= u64::from(initrd_max) {
            return Err(format!(
                "initrd of {size} bytes is too large (QEMU's limit here is {initrd_max})"
            ));
        }
        let size = size as u32;
        let addr = (initrd_max - size) & !4095;
        k[0x218..0x21c].copy_from_slice(&addr.to_le_bytes());
        k[0x21c..0x220].copy_from_slice(&size.to_le_bytes());
    }

    let setup_sects = match k[0x1f1] {
        0 => 4,
        n => n as usize,
    };
    if (setup_sects + 1) * 512 > k.len() {
        return Err(format!(
            "invalid kernel header: {} setup sectors exceed the {}-byte image",
            setup_sects,
            k.len()
        ));
    }
    Ok(k)
}

/// The `vid_mode` a `vga=` parameter sets, as QEMU reads it (the first
/// `vga=` occurrence anywhere in the command line).
fn vga_mode(cmdline: &str) -> Result<Option<u16>, String> {
    let Some(at) = cmdline.find("vga=") else {
        return Ok(None);
    };
    let v = &cmdline[at + 4..];
    if v.starts_with("normal") {
        return Ok(Some(0xffff));
    }
    if v.starts_with("ext") {
        return Ok(Some(0xfffe));
    }
    if v.starts_with("ask") {
        return Ok(Some(0xfffd));
    }
    let word = v.split(' ').next().unwrap_or("");
    // qemu_strtoui with base 0: 0x… hex, 0… octal, else decimal; the value
    // is stored as 16 bits.
    let parsed = if let Some(h) = word.strip_prefix("0x").or_else(|| word.strip_prefix("0X")) {
        u32::from_str_radix(h, 16)
    } else if word.len() > 1 && word.starts_with('0') {
        u32::from_str_radix(&word[1..], 8)
    } else {
        word.parse::<u32>()
    };
    match parsed {
        Ok(n) if word.bytes().all(|b| b.is_ascii_alphanumeric()) => Ok(Some(n as u16)),
        _ => Err(format!(
            "invalid 'vga=' kernel parameter {word:?} (QEMU refuses it)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bzimage(protocol: u16, xlf: u16) -> Vec<u8> {
        let mut k = vec![0u8; 0x2000];
        k[0x1f1] = 4;
        k[0x202..0x206].copy_from_slice(b"HdrS");
        k[0x206..0x208].copy_from_slice(&protocol.to_le_bytes());
        k[0x211] = 0x01;
        k[0x22c..0x230].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
        k[0x236..0x238].copy_from_slice(&xlf.to_le_bytes());
        k
    }

    fn load(mem: u64, initrd: Option<u64>) -> KernelLoad {
        KernelLoad {
            memory_bytes: mem,
            initrd_size: initrd,
            cmdline: "console=ttyS0".into(),
            acpi_data_size: QEMU_ACPI_DATA_SIZE,
        }
    }

    fn ramdisk(k: &[u8]) -> (u32, u32) {
        (
            u32::from_le_bytes(k[0x218..0x21c].try_into().unwrap()),
            u32::from_le_bytes(k[0x21c..0x220].try_into().unwrap()),
        )
    }

    #[test]
    fn modern_kernel_fields() {
        let k = qemu_patch(&bzimage(0x20f, 0x2), &load(2 << 30, Some(0x100000))).unwrap();
        assert_eq!(k[0x210], 0xB0);
        assert_eq!(k[0x211], 0x81);
        assert_eq!(&k[0x224..0x226], &0xFE00u16.to_le_bytes());
        assert_eq!(&k[0x228..0x22c], &0x20000u32.to_le_bytes());
        // initrd_max = 2 GiB - 0x28000 - 1; addr = (max - size) & !4095
        let max = 0x8000_0000u32 - 0x28000 - 1;
        assert_eq!(ramdisk(&k), ((max - 0x100000) & !4095, 0x100000));
    }

    #[test]
    fn initrd_address_depends_on_memory_only_below_the_split() {
        let addr = |mem, xlf| {
            ramdisk(&qemu_patch(&bzimage(0x20f, xlf), &load(mem, Some(4096))).unwrap()).0
        };
        assert_ne!(addr(1 << 30, 0x2), addr(2 << 30, 0x2));
        assert_eq!(addr(0xB000_0000, 0x2), addr(64 << 30, 0x2));
        assert_eq!(addr(2 << 30, 0x2), addr(64 << 30, 0x2));
        // Without XLF_CAN_BE_LOADED_ABOVE_4G the header's initrd_addr_max
        // (0x7fffffff) applies before the memory cap.
        assert_eq!(addr(0xB000_0000, 0x0), addr(4 << 30, 0x0));
    }

    #[test]
    fn old_and_broken_kernels() {
        assert!(qemu_patch(&[0u8; 0x1000], &load(1 << 30, None))
            .unwrap_err()
            .contains("HdrS"));
        assert!(qemu_patch(&[0u8; 16], &load(1 << 30, None)).is_err());
        let k = qemu_patch(&bzimage(0x201, 0), &load(1 << 30, None)).unwrap();
        // cmdline_size = (13 + 16) & !15 = 16; cmd at 0x9a000 - 16.
        assert_eq!(&k[0x20..0x22], &0xA33Fu16.to_le_bytes());
        assert_eq!(
            &k[0x22..0x24],
            &((0x9a000u32 - 16 - 0x90000) as u16).to_le_bytes()
        );
        assert!(
            qemu_patch(&bzimage(0x20f, 2), &load(1 << 30, Some(2 << 30)))
                .unwrap_err()
                .contains("too large")
        );
        let mut big_setup = bzimage(0x20f, 2);
        big_setup[0x1f1] = 200;
        assert!(qemu_patch(&big_setup, &load(1 << 30, None)).is_err());
    }

    #[test]
    fn vga_parameter() {
        assert_eq!(vga_mode("a vga=normal").unwrap(), Some(0xffff));
        assert_eq!(vga_mode("vga=0x317 quiet").unwrap(), Some(0x317));
        assert_eq!(vga_mode("vga=791").unwrap(), Some(791));
        assert_eq!(vga_mode("vga=010").unwrap(), Some(8));
        assert_eq!(vga_mode("quiet").unwrap(), None);
        assert!(vga_mode("vga=bogus").is_err());
    }
}
