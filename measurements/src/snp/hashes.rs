//! QEMU's SEV kernel hashes table (`target/i386/sev.c`, `SevHashTable`): the
//! SHA-256 of the command line, initrd and kernel that QEMU writes into the
//! firmware's SNP_KERNEL_HASHES page for measured direct boot.
//!
//! Layout (packed, little-endian), padded with zeros to a multiple of 16 bytes:
//! `guid[16] len:u16` then three entries `guid[16] len:u16 sha256[32]` for
//! cmdline, initrd, kernel — 168 bytes, 176 padded.

use super::ovmf::PAGE_SIZE;
use crate::guid::Guid;

/// `9438d606-4f22-4cc9-b479-a793d411fd21`: the table header.
const TABLE_GUID: Guid = Guid::from_fields(
    0x9438_d606,
    0x4f22,
    0x4cc9,
    [0xb4, 0x79, 0xa7, 0x93, 0xd4, 0x11, 0xfd, 0x21],
);
/// `97d02dd8-bd20-4c94-aa78-e7714d36ab2a`: the command-line entry.
const CMDLINE_GUID: Guid = Guid::from_fields(
    0x97d0_2dd8,
    0xbd20,
    0x4c94,
    [0xaa, 0x78, 0xe7, 0x71, 0x4d, 0x36, 0xab, 0x2a],
);
/// `44baf731-3a2f-4bd7-9af1-41e29169781d`: the initrd entry.
const INITRD_GUID: Guid = Guid::from_fields(
    0x44ba_f731,
    0x3a2f,
    0x4bd7,
    [0x9a, 0xf1, 0x41, 0xe2, 0x91, 0x69, 0x78, 0x1d],
);
/// `4de79437-abd2-427f-b835-d5b172d2045b`: the kernel entry.
const KERNEL_GUID: Guid = Guid::from_fields(
    0x4de7_9437,
    0xabd2,
    0x427f,
    [0xb8, 0x35, 0xd5, 0xb1, 0x72, 0xd2, 0x04, 0x5b],
);

const ENTRY_LEN: usize = 16 + 2 + 32;
const TABLE_LEN: usize = 16 + 2 + 3 * ENTRY_LEN;
/// Table length padded to 16 bytes, as QEMU writes it.
pub const PADDED_TABLE_LEN: usize = (TABLE_LEN + 15) & !15;

/// The three SHA-256 digests QEMU measures for direct boot.
/// Serializes as lowercase hex.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct KernelHashes {
    /// SHA-256 of the kernel file.
    #[serde(with = "hex::serde")]
    pub kernel: [u8; 32],
    /// SHA-256 of the initrd file (of zero bytes when there is none).
    #[serde(with = "hex::serde")]
    pub initrd: [u8; 32],
    /// SHA-256 of the command line followed by one NUL byte.
    #[serde(with = "hex::serde")]
    pub cmdline: [u8; 32],
}

impl KernelHashes {
    /// The padded table.
    pub fn table(&self) -> [u8; PADDED_TABLE_LEN] {
        let mut t = [0u8; PADDED_TABLE_LEN];
        t[..16].copy_from_slice(TABLE_GUID.bytes());
        t[16..18].copy_from_slice(&(TABLE_LEN as u16).to_le_bytes());
        for (i, (guid, hash)) in [
            (CMDLINE_GUID, self.cmdline),
            (INITRD_GUID, self.initrd),
            (KERNEL_GUID, self.kernel),
        ]
        .iter()
        .enumerate()
        {
            let at = 18 + i * ENTRY_LEN;
            t[at..at + 16].copy_from_slice(guid.bytes());
            t[at + 16..at + 18].copy_from_slice(&(ENTRY_LEN as u16).to_le_bytes());
            t[at + 18..at + 50].copy_from_slice(hash);
        }
        t
    }

    /// The page QEMU measures: the table at `offset` (the table GPA's offset in
    /// its page), zeros elsewhere. `None` if the table would cross the page end.
    pub fn page(&self, offset: usize) -> Option<[u8; PAGE_SIZE]> {
        let end = offset.checked_add(PADDED_TABLE_LEN)?;
        if end > PAGE_SIZE {
            return None;
        }
        let mut p = [0u8; PAGE_SIZE];
        p[offset..end].copy_from_slice(&self.table());
        Some(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_176_bytes_and_page_bounds_are_checked() {
        assert_eq!(TABLE_LEN, 168);
        assert_eq!(PADDED_TABLE_LEN, 176);
        let h = KernelHashes {
            kernel: [1; 32],
            initrd: [2; 32],
            cmdline: [3; 32],
        };
        assert!(h.page(PAGE_SIZE - PADDED_TABLE_LEN).is_some());
        assert!(h.page(PAGE_SIZE - PADDED_TABLE_LEN + 1).is_none());
        assert!(h.page(usize::MAX).is_none());
        let p = h.page(0xc00).unwrap();
        assert_eq!(&p[0xc00 + 18 + 18..0xc00 + 18 + 50], &[3; 32]);
        assert_eq!(
            &p[0xc00 + 18 + 2 * 50 + 18..0xc00 + 18 + 2 * 50 + 50],
            &[1; 32]
        );
    }
}
