//! The TD HOB (hand-off block list) QEMU writes into the TDVF `TD_HOB`
//! section, which TDVF measures into RTMR0 (`EV_EFI_HANDOFF_TABLES2`,
//! "TdxTable").
//!
//! QEMU's model (q35, the only machine type with TDX):
//! * RAM is split at the q35 boundary: with `memory ≥ 0xB000_0000` bytes,
//!   2 GiB are below 4 GiB and the rest starts at 4 GiB; otherwise all RAM
//!   is below 4 GiB.
//! * The `TD_HOB` and `TEMP_MEM` sections are accepted at build time; they
//!   split the RAM ranges, each accepted section staying its own range.
//! * The list is a PHIT HOB (type 1, 56 bytes: version 9, boot mode 0, all
//!   memory fields 0 except `EfiEndOfHobList`), then one resource descriptor
//!   HOB (type 3, 48 bytes, owner GUID zero, attributes 7 = present |
//!   initialized | tested) per range in address order: type 0 (system
//!   memory) for accepted ranges, type 7 (unaccepted) for the rest; then an
//!   8-byte end-of-list HOB. `EfiEndOfHobList` is the address just past the
//!   end-of-list HOB; TDVF measures the list *without* that last HOB.
//!
//! Checked against two real dstack event logs (2 GiB and 64 GiB guests).

use super::metadata::{SectionType, TdvfSection};

/// Resource type of accepted RAM.
pub const EFI_RESOURCE_SYSTEM_MEMORY: u8 = 0;
/// Resource type of RAM the guest must accept before use.
pub const EFI_RESOURCE_MEMORY_UNACCEPTED: u8 = 7;
/// `EFI_RESOURCE_ATTRIBUTE_PRESENT | INITIALIZED | TESTED`.
pub const RESOURCE_ATTRIBUTES: u32 = 0x7;
/// q35 puts RAM above 4 GiB when the guest has at least this much.
pub const Q35_SPLIT_THRESHOLD: u64 = 0xB000_0000;
/// Below-4 GiB RAM when the q35 split applies.
pub const Q35_LOWMEM_SPLIT: u64 = 0x8000_0000;
const FOUR_GIB: u64 = 1 << 32;

/// q35's RAM split: (bytes below 4 GiB, bytes above 4 GiB).
pub fn q35_ram_split(memory_bytes: u64) -> (u64, u64) {
    let lowmem = if memory_bytes >= Q35_SPLIT_THRESHOLD {
        Q35_LOWMEM_SPLIT
    } else {
        Q35_SPLIT_THRESHOLD
    };
    if memory_bytes >= lowmem {
        (lowmem, memory_bytes - lowmem)
    } else {
        (memory_bytes, 0)
    }
}

/// One RAM range as QEMU describes it to TDVF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RamRange {
    /// Guest-physical start.
    pub start: u64,
    /// Length in bytes.
    pub length: u64,
    /// Accepted at build time (a `TD_HOB` or `TEMP_MEM` section).
    pub accepted: bool,
}

/// The RAM ranges QEMU reports for `memory_bytes` of RAM and these sections.
pub fn qemu_ram_ranges(
    sections: &[TdvfSection],
    memory_bytes: u64,
) -> Result<Vec<RamRange>, String> {
    if memory_bytes == 0 || !memory_bytes.is_multiple_of(4096) {
        return Err(format!(
            "memory size {memory_bytes} bytes is not a non-zero multiple of 4 KiB"
        ));
    }
    let (below, above) = q35_ram_split(memory_bytes);
    let mut ram = vec![(0u64, below)];
    if above > 0 {
        ram.push((
            FOUR_GIB,
            FOUR_GIB.checked_add(above).ok_or("memory size overflows")?,
        ));
    }
    let mut accepted: Vec<(u64, u64)> = sections
        .iter()
        .filter(|s| matches!(s.section_type, SectionType::TdHob | SectionType::TempMem))
        .map(|s| {
            (
                s.memory_address,
                s.memory_address.saturating_add(s.memory_data_size),
            )
        })
        .collect();
    accepted.sort_unstable();
    for w in accepted.windows(2) {
        if w[1].0 < w[0].1 {
            return Err(format!("TD_HOB/TEMP_MEM sections overlap at {:#x}", w[1].0));
        }
    }
    for &(a, b) in &accepted {
        if !ram.iter().any(|&(rs, re)| rs <= a && b <= re) {
            return Err(format!(
                "section {a:#x}..{b:#x} is not inside guest RAM ({memory_bytes} bytes)"
            ));
        }
    }
    let mut out = Vec::new();
    for &(rs, re) in &ram {
        let mut cur = rs;
        for &(a, b) in accepted.iter().filter(|&&(a, _)| rs <= a && a < re) {
            if a > cur {
                out.push(RamRange {
                    start: cur,
                    length: a - cur,
                    accepted: false,
                });
            }
            out.push(RamRange {
                start: a,
                length: b - a,
                accepted: true,
            });
            cur = b;
        }
        if cur < re {
            out.push(RamRange {
                start: cur,
                length: re - cur,
                accepted: false,
            });
        }
    }
    Ok(out)
}

/// The TD HOB bytes TDVF measures, for these sections and `memory_bytes` of
/// RAM (see the module documentation). Fails when there is not exactly one
/// `TD_HOB` section, when sections lie outside RAM, or when the list would
/// not fit in the `TD_HOB` section.
pub fn qemu_td_hob(sections: &[TdvfSection], memory_bytes: u64) -> Result<Vec<u8>, String> {
    let mut hobs = sections
        .iter()
        .filter(|s| s.section_type == SectionType::TdHob);
    let hob_section = hobs.next().ok_or("TDVF metadata has no TD_HOB section")?;
    if hobs.next().is_some() {
        return Err("TDVF metadata has more than one TD_HOB section".into());
    }
    let ranges = qemu_ram_ranges(sections, memory_bytes)?;
    let mut out = Vec::with_capacity(56 + 48 * ranges.len());
    // PHIT HOB header: type 1 (EFI_HOB_TYPE_HANDOFF), length 56, reserved.
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&56u16.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&9u32.to_le_bytes()); // Version
    out.extend_from_slice(&0u32.to_le_bytes()); // BootMode
    out.extend_from_slice(&[0u8; 32]); // Memory top/bottom, free top/bottom
    out.extend_from_slice(&[0u8; 8]); // EfiEndOfHobList, filled below
    for r in &ranges {
        out.extend_from_slice(&3u16.to_le_bytes()); // EFI_HOB_TYPE_RESOURCE_DESCRIPTOR
        out.extend_from_slice(&48u16.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&[0u8; 16]); // Owner GUID
        let ty = if r.accepted {
            EFI_RESOURCE_SYSTEM_MEMORY
        } else {
            EFI_RESOURCE_MEMORY_UNACCEPTED
        };
        out.extend_from_slice(&u32::from(ty).to_le_bytes());
        out.extend_from_slice(&RESOURCE_ATTRIBUTES.to_le_bytes());
        out.extend_from_slice(&r.start.to_le_bytes());
        out.extend_from_slice(&r.length.to_le_bytes());
    }
    // The end-of-list HOB (8 bytes) follows in memory; not measured.
    let total = out.len() as u64 + 8;
    if total > hob_section.memory_data_size {
        return Err(format!(
            "TD HOB of {total} bytes does not fit the {}-byte TD_HOB section",
            hob_section.memory_data_size
        ));
    }
    let end = hob_section
        .memory_address
        .checked_add(total)
        .ok_or("TD_HOB section address overflows")?;
    out[48..56].copy_from_slice(&end.to_le_bytes());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sec(ty: SectionType, addr: u64, size: u64) -> TdvfSection {
        TdvfSection {
            data_offset: 0,
            raw_data_size: 0,
            memory_address: addr,
            memory_data_size: size,
            section_type: ty,
            attributes: 0,
        }
    }

    #[test]
    fn q35_split() {
        assert_eq!(q35_ram_split(2 << 30), (2 << 30, 0));
        assert_eq!(q35_ram_split(0xAFFF_F000), (0xAFFF_F000, 0));
        assert_eq!(q35_ram_split(0xB000_0000), (0x8000_0000, 0x3000_0000));
        assert_eq!(
            q35_ram_split(64 << 30),
            (0x8000_0000, (64 << 30) - 0x8000_0000)
        );
    }

    #[test]
    fn ranges_split_around_accepted_sections() {
        let s = [
            sec(SectionType::TempMem, 0x800000, 0x6000),
            sec(SectionType::TdHob, 0x809000, 0x2000),
            sec(SectionType::Bfv, 0xffc00000, 0x1000),
        ];
        let r = qemu_ram_ranges(&s, 4 << 30).unwrap();
        let v: Vec<_> = r.iter().map(|r| (r.start, r.length, r.accepted)).collect();
        assert_eq!(
            v,
            vec![
                (0, 0x800000, false),
                (0x800000, 0x6000, true),
                (0x806000, 0x3000, false),
                (0x809000, 0x2000, true),
                (0x80b000, 0x8000_0000 - 0x80b000, false),
                (1 << 32, (4 << 30) - 0x8000_0000, false),
            ]
        );
        let hob = qemu_td_hob(&s, 4 << 30).unwrap();
        assert_eq!(hob.len(), 56 + 6 * 48);
        let end = u64::from_le_bytes(hob[48..56].try_into().unwrap());
        assert_eq!(end, 0x809000 + hob.len() as u64 + 8);
    }

    #[test]
    fn bad_layouts_are_rejected() {
        let hob = sec(SectionType::TdHob, 0x809000, 0x2000);
        assert!(qemu_td_hob(&[], 1 << 30).is_err());
        assert!(qemu_td_hob(&[hob.clone(), hob.clone()], 1 << 30).is_err());
        assert!(qemu_td_hob(std::slice::from_ref(&hob), 0x1000).is_err());
        assert!(qemu_td_hob(std::slice::from_ref(&hob), 0).is_err());
        let overlapping = sec(SectionType::TempMem, 0x80a000, 0x2000);
        assert!(qemu_td_hob(&[hob, overlapping], 1 << 30).is_err());
        let tiny = sec(SectionType::TdHob, 0x809000, 0x1000);
        let many: Vec<_> = std::iter::once(tiny)
            .chain((0..100).map(|i| sec(SectionType::TempMem, 0x1000000 + i * 0x2000, 0x1000)))
            .collect();
        assert!(qemu_td_hob(&many, 1 << 30)
            .unwrap_err()
            .contains("does not fit"));
    }
}
