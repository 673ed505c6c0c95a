//! The TDVF metadata: the section list TDVF declares to the VMM, and how to
//! find and check it in a firmware image.
//!
//! Finding it: the OVMF GUIDed footer table ([`crate::ovmf_footer`]) has an
//! entry with GUID `e47a6535-984a-4798-865e-4685a7bf8ec2` holding a `u32`
//! (little-endian): the TDVF descriptor's distance from the *end* of the
//! image.
//!
//! The descriptor (TDVF design guide, "TDVF metadata"): `"TDVF"`, `u32`
//! length (= 16 + 32 × sections), `u32` version (1), `u32` number of
//! sections, then per section `u32 DataOffset, u32 RawDataSize,
//! u64 MemoryAddress, u64 MemoryDataSize, u32 Type, u32 Attributes`, all
//! little-endian.
//!
//! A leaf of the TDX modules: the TD HOB ([`super::hob`]) and the MRTD
//! ([`super::tdvf`]) both consume these descriptors.

use serde::{Deserialize, Serialize};

use crate::guid::Guid;
use crate::ovmf_footer::{FooterError, FooterTable};
use crate::reader::{le32_at, Reader, Short};

/// GUID of the table entry holding the TDX metadata offset.
pub const TDX_METADATA_OFFSET_GUID: Guid = Guid::from_fields(
    0xe47a6535,
    0x984a,
    0x4798,
    [0x86, 0x5e, 0x46, 0x85, 0xa7, 0xbf, 0x8e, 0xc2],
);

/// Section attribute: the section's content is measured into MRTD
/// (`TDH.MR.EXTEND`).
pub const ATTR_MR_EXTEND: u32 = 1 << 0;
/// Section attribute: the pages are added after build (`TDH.MEM.PAGE.AUG`),
/// so they are not part of MRTD.
pub const ATTR_PAGE_AUG: u32 = 1 << 1;

/// TDX page size in bytes.
pub const PAGE_SIZE: u64 = 4096;
/// Upper bound on the memory all sections together describe (1 GiB):
/// real TDVF images describe a few MiB; the bound keeps hostile metadata
/// from asking for 2^64 page additions.
pub const MAX_SECTION_MEMORY: u64 = 1 << 30;

/// The kind of a TDVF section (TDVF design guide, table "TDVF_SECTION Type").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SectionType {
    /// Boot firmware volume (code).
    Bfv,
    /// Configuration firmware volume (UEFI variable store).
    Cfv,
    /// Where the VMM puts the TD HOB.
    TdHob,
    /// Temporary memory accepted at build time.
    TempMem,
    /// Permanent memory.
    PermMem,
    /// A payload image.
    Payload,
    /// Payload parameters.
    PayloadParam,
    /// A type this code does not know.
    Other(u32),
}

impl SectionType {
    /// Decodes the `Type` field.
    pub fn from_raw(v: u32) -> SectionType {
        match v {
            0 => SectionType::Bfv,
            1 => SectionType::Cfv,
            2 => SectionType::TdHob,
            3 => SectionType::TempMem,
            4 => SectionType::PermMem,
            5 => SectionType::Payload,
            6 => SectionType::PayloadParam,
            v => SectionType::Other(v),
        }
    }
}

/// One TDVF metadata section entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TdvfSection {
    /// Offset of the section's data in the firmware image (bytes).
    pub data_offset: u32,
    /// Length of the section's data in the image (bytes).
    pub raw_data_size: u32,
    /// Guest-physical address of the section (page-aligned).
    pub memory_address: u64,
    /// Size of the section in guest memory (bytes, page-aligned).
    pub memory_data_size: u64,
    /// What the section is.
    pub section_type: SectionType,
    /// Attribute bits ([`ATTR_MR_EXTEND`], [`ATTR_PAGE_AUG`]).
    pub attributes: u32,
}

impl TdvfSection {
    /// Whether the section's content is extended into MRTD.
    pub fn mr_extend(&self) -> bool {
        self.attributes & ATTR_MR_EXTEND != 0
    }

    /// Whether the section is added after build (not measured).
    pub fn page_aug(&self) -> bool {
        self.attributes & ATTR_PAGE_AUG != 0
    }

    /// Number of 4 KiB pages the section covers.
    pub fn pages(&self) -> u64 {
        self.memory_data_size / PAGE_SIZE
    }
}

/// The parsed TDVF descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TdvfMetadata {
    /// Offset of the descriptor (`"TDVF"`) in the image.
    pub descriptor_offset: usize,
    /// Descriptor version (1).
    pub version: u32,
    /// The sections, in metadata order (the order QEMU adds them in).
    pub sections: Vec<TdvfSection>,
}

/// Locates and parses the TDVF descriptor; the error says what is missing.
pub fn parse_metadata(image: &[u8]) -> std::result::Result<TdvfMetadata, String> {
    let entry = find_guided_entry(image, &TDX_METADATA_OFFSET_GUID)?.ok_or_else(|| {
        "firmware has no TDVF metadata (no TDX metadata offset entry, GUID \
         e47a6535-984a-4798-865e-4685a7bf8ec2, in the OVMF GUIDed table): not a TDX build"
            .to_string()
    })?;
    if entry.len() != 4 {
        return Err(format!(
            "TDX metadata offset entry has {} data bytes, expected 4",
            entry.len()
        ));
    }
    let from_end = le32_at(entry, 0, "TDX metadata offset").map_err(|e| e.to_string())? as usize;
    if from_end > image.len() || from_end < 16 {
        return Err(format!(
            "TDX metadata offset {from_end:#x} (from the end) is outside the {}-byte image",
            image.len()
        ));
    }
    let at = image.len() - from_end;
    let mut r = Reader::new(&image[at..]);
    let short = |e: Short| format!("TDVF descriptor at {at:#x}: {e}");
    let sig = r.array::<4>("signature").map_err(short)?;
    if &sig != b"TDVF" {
        return Err(format!(
            "no TDVF descriptor at {at:#x}: signature is {:?}, expected \"TDVF\"",
            String::from_utf8_lossy(&sig)
        ));
    }
    let length = r.u32("length").map_err(short)?;
    let version = r.u32("version").map_err(short)?;
    let count = r.u32("number of sections").map_err(short)?;
    if version != 1 {
        return Err(format!(
            "TDVF descriptor version {version} is not supported (expected 1)"
        ));
    }
    if count == 0 {
        return Err("TDVF descriptor has no sections".into());
    }
    if u64::from(length) != 16 + 32 * u64::from(count) {
        return Err(format!(
            "TDVF descriptor length {length} does not match {count} sections (expected {})",
            16 + 32 * u64::from(count)
        ));
    }
    if (length as usize) > image.len() - at {
        return Err(format!(
            "TDVF descriptor ({length} bytes at {at:#x}) runs past the end of the image"
        ));
    }
    let mut sections = Vec::with_capacity(count as usize);
    let mut total: u64 = 0;
    for i in 0..count {
        let s = TdvfSection {
            data_offset: r.u32("section DataOffset").map_err(short)?,
            raw_data_size: r.u32("section RawDataSize").map_err(short)?,
            memory_address: r.u64("section MemoryAddress").map_err(short)?,
            memory_data_size: r.u64("section MemoryDataSize").map_err(short)?,
            section_type: SectionType::from_raw(r.u32("section Type").map_err(short)?),
            attributes: r.u32("section Attributes").map_err(short)?,
        };
        check_section(image, i, &s)?;
        total = total.saturating_add(s.memory_data_size);
        if total > MAX_SECTION_MEMORY {
            return Err(format!(
                "TDVF sections describe more than {MAX_SECTION_MEMORY} bytes of memory"
            ));
        }
        sections.push(s);
    }
    Ok(TdvfMetadata {
        descriptor_offset: at,
        version,
        sections,
    })
}

/// The sanity checks QEMU applies to each section, plus bounds.
fn check_section(image: &[u8], i: u32, s: &TdvfSection) -> std::result::Result<(), String> {
    let bad = |what: String| Err(format!("TDVF section {i} ({:?}): {what}", s.section_type));
    if !s.memory_address.is_multiple_of(PAGE_SIZE) {
        return bad(format!(
            "memory address {:#x} is not page-aligned",
            s.memory_address
        ));
    }
    if !s.memory_data_size.is_multiple_of(PAGE_SIZE) || s.memory_data_size == 0 {
        return bad(format!(
            "memory size {:#x} is not a non-zero multiple of 4 KiB",
            s.memory_data_size
        ));
    }
    if s.memory_address.checked_add(s.memory_data_size).is_none() {
        return bad("memory range overflows 64 bits".into());
    }
    if u64::from(s.raw_data_size) > s.memory_data_size {
        return bad(format!(
            "raw data size {:#x} exceeds memory size {:#x}",
            s.raw_data_size, s.memory_data_size
        ));
    }
    if u64::from(s.data_offset) + u64::from(s.raw_data_size) > image.len() as u64 {
        return bad(format!(
            "data {:#x}+{:#x} lies outside the {}-byte image",
            s.data_offset,
            s.raw_data_size,
            image.len()
        ));
    }
    if s.mr_extend() && s.page_aug() {
        return bad(
            "MR.EXTEND and PAGE.AUG together: pages added after build cannot be measured".into(),
        );
    }
    if s.mr_extend() && u64::from(s.data_offset) + s.memory_data_size > image.len() as u64 {
        return bad(format!(
            "MR.EXTEND covers {:#x} bytes from {:#x}, past the end of the {}-byte image",
            s.memory_data_size,
            s.data_offset,
            image.len()
        ));
    }
    match s.section_type {
        SectionType::Bfv | SectionType::Cfv if s.raw_data_size == 0 => {
            bad("firmware volume with no data".into())
        }
        SectionType::TdHob | SectionType::TempMem if s.raw_data_size != 0 => {
            bad("memory-only section carries data".into())
        }
        _ => Ok(()),
    }
}

/// Finds an entry of the OVMF GUIDed table ([`crate::ovmf_footer`]) by
/// GUID. `Ok(None)` when the table exists but has no such entry; `Err` when
/// there is no valid table.
pub fn find_guided_entry<'a>(
    image: &'a [u8],
    guid: &Guid,
) -> std::result::Result<Option<&'a [u8]>, String> {
    let table = FooterTable::parse(image).map_err(|e| match e {
        FooterError::TooSmall { .. } | FooterError::NoFooter { .. } => {
            format!("firmware has no TDVF metadata: {e}")
        }
        e => e.to_string(),
    })?;
    Ok(table.find(guid).map(|e| &image[e.offset..e.offset + e.len]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiny_and_footerless_images_are_rejected() {
        let e = parse_metadata(&[0u8; 10]).unwrap_err();
        assert!(e.contains("no TDVF metadata"), "{e}");
        let e = parse_metadata(&[0u8; 4096]).unwrap_err();
        assert!(e.contains("footer"), "{e}");
    }
}
