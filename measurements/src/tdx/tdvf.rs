//! TDVF (TDX-capable OVMF) metadata and the MRTD it produces.
//!
//! Finding the metadata: OVMF ends with a GUIDed table just below the last
//! 32 bytes of the image (the reset vector area). Its footer entry is
//! `[u16 table length][GUID 96b582de-1fb2-45f7-baea-a366c55a082d]`, the
//! length counting the whole table including the footer's 18 bytes. Entries
//! are walked backwards; each is `[data][u16 entry length][GUID]`, the length
//! counting data + 18. The entry with GUID
//! `e47a6535-984a-4798-865e-4685a7bf8ec2` holds a `u32` (little-endian): the
//! TDVF descriptor's distance from the *end* of the image.
//!
//! The descriptor (TDVF design guide, "TDVF metadata"): `"TDVF"`, `u32`
//! length (= 16 + 32 × sections), `u32` version (1), `u32` number of
//! sections, then per section `u32 DataOffset, u32 RawDataSize,
//! u64 MemoryAddress, u64 MemoryDataSize, u32 Type, u32 Attributes`, all
//! little-endian.
//!
//! MRTD: for every page of every section not marked `PAGE.AUG`, QEMU asks
//! the TDX module for `TDH.MEM.PAGE.ADD`, which extends MRTD's running
//! SHA-384 with a 128-byte block `"MEM.PAGE.ADD"` (zero-padded to 16 bytes)
//! ‖ GPA (`u64` LE) ‖ zeros; for sections marked `MR.EXTEND`, each 256-byte
//! chunk of a page is measured by `TDH.MR.EXTEND`: a 128-byte block
//! `"MR.EXTEND"` (padded to 16) ‖ chunk GPA ‖ zeros, then the 256 bytes.
//! MRTD is the SHA-384 of that whole stream. Only the order differs between
//! QEMU generations, see [`PageAddOrder`].

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha384};

use super::guid::Guid;
use super::reader::{le16_at, le32_at, slice_at, Reader};
use super::{sha384, Digest384};
use crate::error::{Error, Result};

/// GUID of the OVMF GUIDed table footer.
pub const TABLE_FOOTER_GUID: Guid = Guid::from_fields(
    0x96b582de,
    0x1fb2,
    0x45f7,
    [0xba, 0xea, 0xa3, 0x66, 0xc5, 0x5a, 0x08, 0x2d],
);

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
/// `TDH.MR.EXTEND` measures this many bytes per call.
pub const MR_EXTEND_CHUNK: usize = 256;
/// Upper bound on the memory all sections together describe (1 GiB):
/// real TDVF images describe a few MiB; the bound keeps hostile metadata
/// from asking for 2^64 page additions.
pub const MAX_SECTION_MEMORY: u64 = 1 << 30;

/// Bytes after the footer GUID: the reset vector area at the top of the image.
const BYTES_AFTER_FOOTER: usize = 32;
/// Size of a GUIDed table entry's trailer (`u16` length + GUID).
const ENTRY_TRAILER: usize = 18;

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

/// How the VMM orders page additions and extensions, which changes MRTD.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PageAddOrder {
    /// Each page is added and then (if `MR.EXTEND`) extended before the
    /// next page: QEMU ≥ 9 with upstream KVM TDX.
    SinglePass,
    /// Per section, all pages are added first, then all are extended:
    /// QEMU 8.x with the KVM TDX patches of that era (one
    /// `KVM_TDX_INIT_MEM_REGION` per section). Real dstack quotes from
    /// QEMU 8.2.2 match this order.
    TwoPass,
}

impl PageAddOrder {
    /// The order a QEMU version uses: 8.x → two-pass, ≥ 9 → single-pass.
    /// Versions before 8 had no TDX support this model covers.
    pub fn for_qemu_version(version: &str) -> Result<PageAddOrder> {
        let major = parse_major(version).ok_or_else(|| {
            Error::BadInput(format!(
                "QEMU version {version:?} is not MAJOR.MINOR[.PATCH]"
            ))
        })?;
        match major {
            0..=7 => Err(Error::BadInput(format!(
                "QEMU {version} predates the TDX support this model covers (8.x or later)"
            ))),
            8 => Ok(PageAddOrder::TwoPass),
            _ => Ok(PageAddOrder::SinglePass),
        }
    }
}

fn parse_major(version: &str) -> Option<u32> {
    let mut parts = version.trim().split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?;
    if minor.is_empty() || !minor.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(major)
}

/// A TDVF firmware image with its parsed metadata.
#[derive(Clone)]
pub struct Tdvf {
    name: String,
    image: Vec<u8>,
    metadata: TdvfMetadata,
}

impl Tdvf {
    /// Reads and parses a firmware file (e.g. `OVMF.fd`).
    pub fn load(path: &Path) -> Result<Tdvf> {
        let image = super::measure::read_file(path, "firmware")?;
        Tdvf::from_bytes(path.display().to_string(), image)
    }

    /// Parses a firmware image held in memory; `name` is used in errors.
    pub fn from_bytes(name: impl Into<String>, image: Vec<u8>) -> Result<Tdvf> {
        let name = name.into();
        let metadata = parse_metadata(&image).map_err(|what| Error::BadArtifact {
            file: name.clone(),
            what,
        })?;
        Ok(Tdvf {
            name,
            image,
            metadata,
        })
    }

    /// The name given at load (the path).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The whole image.
    pub fn image(&self) -> &[u8] {
        &self.image
    }

    /// The parsed metadata.
    pub fn metadata(&self) -> &TdvfMetadata {
        &self.metadata
    }

    /// MRTD for the given page-add order.
    pub fn mrtd(&self, order: PageAddOrder) -> Digest384 {
        let mut h = Sha384::new();
        for s in &self.metadata.sections {
            if s.page_aug() {
                // Added after build: neither added nor extended at build time.
                continue;
            }
            let data = self.extend_data(s);
            match order {
                PageAddOrder::SinglePass => {
                    for page in 0..s.pages() {
                        page_add(&mut h, s, page);
                        if let Some(d) = data {
                            mr_extend_page(&mut h, s, d, page);
                        }
                    }
                }
                PageAddOrder::TwoPass => {
                    for page in 0..s.pages() {
                        page_add(&mut h, s, page);
                    }
                    if let Some(d) = data {
                        for page in 0..s.pages() {
                            mr_extend_page(&mut h, s, d, page);
                        }
                    }
                }
            }
        }
        h.finalize().into()
    }

    /// The bytes a `MR.EXTEND` section measures (its whole memory size read
    /// from the image; bounds were checked at parse), or `None`.
    fn extend_data(&self, s: &TdvfSection) -> Option<&[u8]> {
        if !s.mr_extend() {
            return None;
        }
        let start = s.data_offset as usize;
        self.image.get(start..start + s.memory_data_size as usize)
    }

    /// SHA-384 of the configuration firmware volume (the section of type
    /// CFV, its raw data in the image): what TDVF measures into RTMR0 as
    /// `EV_EFI_PLATFORM_FIRMWARE_BLOB2`.
    pub fn cfv_digest(&self) -> Result<Digest384> {
        let s = self
            .metadata
            .sections
            .iter()
            .find(|s| s.section_type == SectionType::Cfv)
            .ok_or_else(|| Error::BadArtifact {
                file: self.name.clone(),
                what: "TDVF metadata has no CFV (configuration volume) section".into(),
            })?;
        let data = slice_at(
            &self.image,
            s.data_offset as usize,
            s.raw_data_size as usize,
            "CFV section data",
        )
        .map_err(|e| Error::BadArtifact {
            file: self.name.clone(),
            what: e.to_string(),
        })?;
        Ok(sha384(data))
    }

    /// The TD HOB QEMU builds for this firmware and `memory_bytes` of RAM
    /// (see [`super::hob`]).
    pub fn td_hob(&self, memory_bytes: u64) -> Result<Vec<u8>> {
        super::hob::qemu_td_hob(&self.metadata.sections, memory_bytes).map_err(|what| {
            Error::BadArtifact {
                file: self.name.clone(),
                what,
            }
        })
    }
}

impl std::fmt::Debug for Tdvf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The image is megabytes: show its size, not its bytes.
        f.debug_struct("Tdvf")
            .field("name", &self.name)
            .field("image_len", &self.image.len())
            .field("metadata", &self.metadata)
            .finish()
    }
}

fn page_add(h: &mut Sha384, s: &TdvfSection, page: u64) {
    let mut block = [0u8; 128];
    block[..12].copy_from_slice(b"MEM.PAGE.ADD");
    let gpa = s.memory_address + page * PAGE_SIZE;
    block[16..24].copy_from_slice(&gpa.to_le_bytes());
    h.update(block);
}

fn mr_extend_page(h: &mut Sha384, s: &TdvfSection, data: &[u8], page: u64) {
    let page_start = (page * PAGE_SIZE) as usize;
    for chunk in 0..(PAGE_SIZE as usize / MR_EXTEND_CHUNK) {
        let off = page_start + chunk * MR_EXTEND_CHUNK;
        let mut block = [0u8; 128];
        block[..9].copy_from_slice(b"MR.EXTEND");
        let gpa = s.memory_address + off as u64;
        block[16..24].copy_from_slice(&gpa.to_le_bytes());
        h.update(block);
        h.update(&data[off..off + MR_EXTEND_CHUNK]);
    }
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
    let short = |e: super::reader::Short| format!("TDVF descriptor at {at:#x}: {e}");
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

/// Finds an entry of the OVMF GUIDed table by GUID. `Ok(None)` when the
/// table exists but has no such entry; `Err` when there is no valid table.
pub fn find_guided_entry<'a>(
    image: &'a [u8],
    guid: &Guid,
) -> std::result::Result<Option<&'a [u8]>, String> {
    if image.len() < BYTES_AFTER_FOOTER + ENTRY_TRAILER {
        return Err(format!(
            "firmware has no TDVF metadata: {} bytes is too small for an OVMF image",
            image.len()
        ));
    }
    let footer_end = image.len() - BYTES_AFTER_FOOTER;
    let footer_guid = &image[footer_end - 16..footer_end];
    if footer_guid != TABLE_FOOTER_GUID.bytes() {
        return Err(format!(
            "firmware has no TDVF metadata: no OVMF GUIDed table footer \
             (GUID 96b582de-1fb2-45f7-baea-a366c55a082d) at offset {:#x}",
            footer_end - 16
        ));
    }
    let table_len = le16_at(image, footer_end - ENTRY_TRAILER, "table length")
        .map_err(|e| e.to_string())? as usize;
    if table_len < ENTRY_TRAILER || table_len > footer_end {
        return Err(format!(
            "OVMF GUIDed table length {table_len} is invalid (image is {} bytes)",
            image.len()
        ));
    }
    let table_start = footer_end - table_len;
    let mut cursor = footer_end - ENTRY_TRAILER;
    while cursor > table_start {
        if cursor - table_start < ENTRY_TRAILER {
            return Err(format!(
                "OVMF GUIDed table truncated: {} bytes left before offset {cursor:#x}, \
                 an entry needs at least {ENTRY_TRAILER}",
                cursor - table_start
            ));
        }
        let entry_guid = &image[cursor - 16..cursor];
        let len = le16_at(image, cursor - ENTRY_TRAILER, "table entry length")
            .map_err(|e| e.to_string())? as usize;
        if len < ENTRY_TRAILER || len > cursor - table_start {
            return Err(format!(
                "OVMF GUIDed table entry ending at {cursor:#x} has invalid length {len}"
            ));
        }
        if entry_guid == guid.bytes() {
            return Ok(Some(&image[cursor - len..cursor - ENTRY_TRAILER]));
        }
        cursor -= len;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_versions_pick_the_order() {
        assert_eq!(
            PageAddOrder::for_qemu_version("8.2.2").unwrap(),
            PageAddOrder::TwoPass
        );
        assert_eq!(
            PageAddOrder::for_qemu_version("9.2.1").unwrap(),
            PageAddOrder::SinglePass
        );
        assert_eq!(
            PageAddOrder::for_qemu_version("10.1").unwrap(),
            PageAddOrder::SinglePass
        );
        assert!(PageAddOrder::for_qemu_version("7.2.0").is_err());
        assert!(PageAddOrder::for_qemu_version("nine").is_err());
        assert!(PageAddOrder::for_qemu_version("9").is_err());
    }

    #[test]
    fn tiny_and_footerless_images_are_rejected() {
        let e = parse_metadata(&[0u8; 10]).unwrap_err();
        assert!(e.contains("no TDVF metadata"), "{e}");
        let e = parse_metadata(&[0u8; 4096]).unwrap_err();
        assert!(e.contains("footer"), "{e}");
    }
}
