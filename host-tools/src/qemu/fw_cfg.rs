//! QEMU's fw_cfg device on x86, read through its DMA interface the way
//! firmware reads it (docs/specs/fw_cfg.rst in QEMU's sources).
//!
//! * The file directory is item `0x19`: a big-endian `u32` count, then one
//!   64-byte entry per file: `u32` size (BE), `u16` selector (BE), `u16`
//!   reserved, a 56-byte NUL-padded name.
//! * A DMA transfer is described by a 16-byte `FWCfgDmaAccess` in guest
//!   memory: `u32` control (BE: selector << 16 | flags), `u32` length (BE),
//!   `u64` buffer address (BE). Its guest-physical address is written
//!   big-endian to I/O ports 0x514 (high half) and 0x518 (low half, which
//!   starts the transfer); QEMU clears the control word when done, or leaves
//!   the error bit set.

use super::qtest::{GuestIo, MAX_ACCESS};
use super::QemuError;

/// fw_cfg item of the file directory.
pub const FILE_DIR: u16 = 0x19;
/// I/O port of the DMA address register (high 32 bits; low at +4).
pub const DMA_PORT: u16 = 0x514;
/// Size of one directory entry in bytes.
pub const DIR_ENTRY_LEN: usize = 64;
/// Length of the name field of a directory entry.
pub const NAME_LEN: usize = 56;
/// Largest file read (the ACPI tables blob is 128 KiB).
pub const MAX_FILE: u32 = 16 << 20;
/// Most directory entries accepted.
pub const MAX_FILES: u32 = 4096;

const CTL_READ: u32 = 0x02;
const CTL_SELECT: u32 = 0x08;

/// Where the DMA descriptor and the data buffer live in guest RAM (below
/// 640 KiB, always RAM on q35; nothing runs in the guest to disturb them).
const DESCRIPTOR_ADDR: u64 = 0x1000;
const BUFFER_ADDR: u64 = 0x10_0000;

/// One entry of the fw_cfg file directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FwCfgFile {
    /// File name (e.g. `etc/acpi/tables`).
    pub name: String,
    /// Selector to read it with.
    pub select: u16,
    /// Size in bytes.
    pub size: u32,
}

/// Parses the directory item: exactly `4 + 64 * count` bytes.
pub fn parse_directory(bytes: &[u8]) -> Result<Vec<FwCfgFile>, QemuError> {
    let bad = |what: String| QemuError::Malformed(format!("fw_cfg directory: {what}"));
    let count = bytes
        .get(..4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| bad(format!("{} bytes, shorter than its count", bytes.len())))?;
    if count > MAX_FILES {
        return Err(bad(format!("{count} files (at most {MAX_FILES})")));
    }
    let want = 4 + DIR_ENTRY_LEN * count as usize;
    if bytes.len() != want {
        return Err(bad(format!(
            "{} bytes for {count} entries (expected {want})",
            bytes.len()
        )));
    }
    bytes[4..]
        .chunks_exact(DIR_ENTRY_LEN)
        .map(|e| {
            let size = u32::from_be_bytes([e[0], e[1], e[2], e[3]]);
            let select = u16::from_be_bytes([e[4], e[5]]);
            let raw = &e[8..8 + NAME_LEN];
            let end = raw
                .iter()
                .position(|&b| b == 0)
                .ok_or_else(|| bad("a name without its NUL terminator".into()))?;
            if raw[end..].iter().any(|&b| b != 0) {
                return Err(bad("bytes after a name's NUL terminator".into()));
            }
            let name = std::str::from_utf8(&raw[..end])
                .ok()
                .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_graphic()))
                .ok_or_else(|| bad(format!("name {:?} is not printable ASCII", &raw[..end])))?;
            Ok(FwCfgFile {
                name: name.to_string(),
                select,
                size,
            })
        })
        .collect()
}

/// Reads `len` bytes of item `select` from its start, by DMA.
pub fn read_item(io: &mut impl GuestIo, select: u16, len: u32) -> Result<Vec<u8>, QemuError> {
    if len > MAX_FILE {
        return Err(QemuError::Malformed(format!(
            "fw_cfg item {select:#x}: {len} bytes (at most {MAX_FILE})"
        )));
    }
    if len == 0 {
        return Ok(Vec::new());
    }
    let control = (u32::from(select) << 16) | CTL_SELECT | CTL_READ;
    let mut desc = Vec::with_capacity(16);
    desc.extend_from_slice(&control.to_be_bytes());
    desc.extend_from_slice(&len.to_be_bytes());
    desc.extend_from_slice(&BUFFER_ADDR.to_be_bytes());
    io.write_mem(DESCRIPTOR_ADDR, &desc)?;
    // The register is big-endian; `outl` writes in CPU (little-endian) order.
    io.outl(DMA_PORT, ((DESCRIPTOR_ADDR >> 32) as u32).swap_bytes())?;
    io.outl(DMA_PORT + 4, (DESCRIPTOR_ADDR as u32).swap_bytes())?;
    let status = io.read_mem(DESCRIPTOR_ADDR, 4)?;
    let status = u32::from_be_bytes([status[0], status[1], status[2], status[3]]);
    if status != 0 {
        return Err(QemuError::Malformed(format!(
            "fw_cfg DMA read of item {select:#x} ended with control {status:#010x}"
        )));
    }
    let mut out = Vec::with_capacity(len as usize);
    let mut addr = BUFFER_ADDR;
    while out.len() < len as usize {
        let n = (len as usize - out.len()).min(MAX_ACCESS);
        out.extend_from_slice(&io.read_mem(addr, n)?);
        addr += n as u64;
    }
    Ok(out)
}

/// Reads the file directory.
pub fn directory(io: &mut impl GuestIo) -> Result<Vec<FwCfgFile>, QemuError> {
    let head = read_item(io, FILE_DIR, 4)?;
    let count = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    if count > MAX_FILES {
        return Err(QemuError::Malformed(format!(
            "fw_cfg directory: {count} files (at most {MAX_FILES})"
        )));
    }
    let all = read_item(io, FILE_DIR, 4 + DIR_ENTRY_LEN as u32 * count)?;
    parse_directory(&all)
}

/// Reads the whole file `name` (its size from the directory).
pub fn read_file(
    io: &mut impl GuestIo,
    dir: &[FwCfgFile],
    name: &str,
) -> Result<Vec<u8>, QemuError> {
    let f = dir
        .iter()
        .find(|f| f.name == name)
        .ok_or_else(|| QemuError::Malformed(format!("fw_cfg has no file {name:?}")))?;
    read_item(io, f.select, f.size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// A fake machine: guest RAM as a map and an fw_cfg with some items.
    struct Fake {
        mem: BTreeMap<u64, u8>,
        items: BTreeMap<u16, Vec<u8>>,
        high: u32,
    }

    impl GuestIo for Fake {
        fn outl(&mut self, port: u16, value: u32) -> Result<(), QemuError> {
            match port {
                DMA_PORT => self.high = value.swap_bytes(),
                p if p == DMA_PORT + 4 => {
                    let addr = (u64::from(self.high) << 32) | u64::from(value.swap_bytes());
                    let d = self.read_mem(addr, 16)?;
                    let ctl = u32::from_be_bytes(d[0..4].try_into().unwrap());
                    let len = u32::from_be_bytes(d[4..8].try_into().unwrap()) as usize;
                    let buf = u64::from_be_bytes(d[8..16].try_into().unwrap());
                    let item = self.items.get(&((ctl >> 16) as u16)).cloned();
                    let status = match item {
                        Some(data) if ctl & 0xffff == CTL_SELECT | CTL_READ => {
                            for i in 0..len {
                                self.mem.insert(buf + i as u64, *data.get(i).unwrap_or(&0));
                            }
                            0u32
                        }
                        _ => 0x01, // error bit
                    };
                    self.write_mem(addr, &status.to_be_bytes())?;
                }
                _ => {}
            }
            Ok(())
        }
        fn inl(&mut self, _: u16) -> Result<u32, QemuError> {
            Ok(0)
        }
        fn write_mem(&mut self, addr: u64, data: &[u8]) -> Result<(), QemuError> {
            for (i, b) in data.iter().enumerate() {
                self.mem.insert(addr + i as u64, *b);
            }
            Ok(())
        }
        fn read_mem(&mut self, addr: u64, len: usize) -> Result<Vec<u8>, QemuError> {
            assert!(len <= MAX_ACCESS);
            Ok((0..len)
                .map(|i| *self.mem.get(&(addr + i as u64)).unwrap_or(&0))
                .collect())
        }
    }

    fn entry(name: &str, select: u16, size: u32) -> Vec<u8> {
        let mut e = size.to_be_bytes().to_vec();
        e.extend_from_slice(&select.to_be_bytes());
        e.extend_from_slice(&[0, 0]);
        let mut n = name.as_bytes().to_vec();
        n.resize(NAME_LEN, 0);
        e.extend_from_slice(&n);
        e
    }

    #[test]
    fn reads_files_by_dma_in_chunks() {
        let big: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let mut dir = 2u32.to_be_bytes().to_vec();
        dir.extend(entry("etc/acpi/tables", 0x23, big.len() as u32));
        dir.extend(entry("etc/acpi/rsdp", 0x22, 3));
        let mut fake = Fake {
            mem: BTreeMap::new(),
            items: BTreeMap::from([(FILE_DIR, dir), (0x23, big.clone()), (0x22, vec![1, 2, 3])]),
            high: 0,
        };
        let d = directory(&mut fake).unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!(read_file(&mut fake, &d, "etc/acpi/tables").unwrap(), big);
        assert_eq!(
            read_file(&mut fake, &d, "etc/acpi/rsdp").unwrap(),
            [1, 2, 3]
        );
        assert!(read_file(&mut fake, &d, "etc/none").is_err());
        // An unknown selector ends with the error bit.
        assert!(read_item(&mut fake, 0x99, 4).is_err());
    }

    #[test]
    fn directory_rejects_short_trailing_and_odd_names() {
        let mut ok = 1u32.to_be_bytes().to_vec();
        ok.extend(entry("a", 1, 2));
        assert_eq!(parse_directory(&ok).unwrap()[0].name, "a");
        assert!(parse_directory(&ok[..ok.len() - 1]).is_err());
        let mut trailing = ok.clone();
        trailing.push(0);
        assert!(parse_directory(&trailing).is_err());
        assert!(parse_directory(&[0, 0]).is_err());
        let mut nonul = 1u32.to_be_bytes().to_vec();
        nonul.extend(entry(&"x".repeat(NAME_LEN), 1, 2));
        assert!(parse_directory(&nonul).is_err());
        let mut junk = ok.clone();
        junk[4 + 8 + 3] = b'z'; // after "a\0"
        assert!(parse_directory(&junk).is_err());
    }

    proptest::proptest! {
        #[test]
        fn directory_parser_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
            let _ = parse_directory(&bytes);
        }
    }
}
