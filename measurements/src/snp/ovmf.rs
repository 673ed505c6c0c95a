//! The parts of an OVMF firmware volume that the SNP launch digest depends on:
//! the GUIDed footer table at the end of the image and the SEV metadata it
//! points to (edk2 `OvmfPkg/ResetVector/X64/OvmfSevMetadata.asm`).
//!
//! Layout, all integers little-endian:
//! * the image is mapped so that it ends at 4 GiB: its first byte is at guest
//!   physical address `4 GiB - len`;
//! * the GUIDed footer table at the top of the image ([`crate::ovmf_footer`],
//!   shared with TDX) lists the entries below; the SEV-ES reset block, the
//!   kernel hashes table and the SEV metadata entries each hold a `u32`;
//! * the SEV metadata entry holds a `u32` offset from the end of the image to the
//!   metadata header `"ASEV", size: u32, version: u32 (= 1), num_items: u32`,
//!   followed by `num_items` section descriptors `gpa: u32, size: u32, kind: u32`.
//!
//! Everything is bounds-checked: a malformed image is an error naming the file
//! and the offset, never a panic.

use crate::error::Error;
use crate::guid::Guid;
use crate::ovmf_footer::{FooterError, FooterTable, ImageTail};

/// Size of a guest page, bytes.
pub const PAGE_SIZE: usize = 4096;
/// The firmware image ends at this guest physical address.
const FOUR_GIB: u64 = 1 << 32;
/// `"ASEV"`, size, version, num_items.
const METADATA_HEADER: usize = 16;
/// `gpa`, `size`, `kind` (edk2 declares all three as `DD`).
const METADATA_ITEM: usize = 12;

/// `7255371f-3a3b-4b04-927b-1da6efa8d454`: where QEMU puts the kernel hashes table.
const SEV_HASH_TABLE_RV_GUID: Guid = Guid::from_fields(
    0x7255_371f,
    0x3a3b,
    0x4b04,
    [0x92, 0x7b, 0x1d, 0xa6, 0xef, 0xa8, 0xd4, 0x54],
);
/// `00f771de-1a7e-4fcb-890e-68c77e2fb44e`: the SEV-ES AP reset vector.
const SEV_ES_RESET_BLOCK_GUID: Guid = Guid::from_fields(
    0x00f7_71de,
    0x1a7e,
    0x4fcb,
    [0x89, 0x0e, 0x68, 0xc7, 0x7e, 0x2f, 0xb4, 0x4e],
);
/// `dc886566-984a-4798-a75e-5585a7bf67cc`: the offset of the SEV metadata.
const SEV_METADATA_GUID: Guid = Guid::from_fields(
    0xdc88_6566,
    0x984a,
    0x4798,
    [0xa7, 0x5e, 0x55, 0x85, 0xa7, 0xbf, 0x67, 0xcc],
);

/// What the hypervisor does with a metadata section before launch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum SectionKind {
    /// 1: memory the firmware uses before it can validate pages itself; added as zero pages.
    SnpSecMem,
    /// 2: the SNP secrets page.
    SnpSecrets,
    /// 3: the CPUID page.
    Cpuid,
    /// 4: the SVSM calling-area page; added as zero pages.
    SvsmCaa,
    /// 0x10: the page that receives the kernel/initrd/cmdline hashes table.
    SnpKernelHashes,
}

impl SectionKind {
    fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            1 => SectionKind::SnpSecMem,
            2 => SectionKind::SnpSecrets,
            3 => SectionKind::Cpuid,
            4 => SectionKind::SvsmCaa,
            0x10 => SectionKind::SnpKernelHashes,
            _ => return None,
        })
    }
}

/// One SEV metadata section descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct MetadataSection {
    /// Guest physical address of the first byte (page-aligned).
    pub gpa: u64,
    /// Length in bytes (a whole number of pages).
    pub size: u64,
    /// Section type.
    pub kind: SectionKind,
}

/// A parsed OVMF image: its bytes plus the facts the launch digest needs.
#[derive(Debug, Clone)]
pub struct Ovmf<'a> {
    /// The image, or (see [`Ovmf::parse_tail`]) only its last bytes.
    data: &'a [u8],
    /// Length of the whole image, bytes.
    len: u64,
    /// SEV metadata sections in the order the firmware lists them (that order is
    /// the order the hypervisor measures them in).
    pub sections: Vec<MetadataSection>,
    /// Initial `EIP` of application processors (SEV-ES reset block), if present.
    pub sev_es_reset_eip: Option<u32>,
    /// Guest physical address of the kernel hashes table, if present.
    pub sev_hash_table_gpa: Option<u32>,
}

/// Why a parse stopped.
enum Stop {
    /// The image is malformed: what is wrong.
    Bad(String),
    /// A structure lies before the bytes at hand (only with a tail).
    NeedMore,
}

impl From<String> for Stop {
    fn from(s: String) -> Self {
        Stop::Bad(s)
    }
}

impl From<FooterError> for Stop {
    fn from(e: FooterError) -> Self {
        match e {
            FooterError::BeforeTail { .. } => Stop::NeedMore,
            FooterError::NoFooter { .. } => Stop::Bad(format!("{e} (not an OVMF build?)")),
            e => Stop::Bad(e.to_string()),
        }
    }
}

impl<'a> Ovmf<'a> {
    /// Parses the whole image `data`; `file` names it in error messages.
    pub fn parse(file: &str, data: &'a [u8]) -> Result<Self, Error> {
        match Self::parse_view(data, data.len() as u64) {
            Ok(o) => Ok(o),
            Err(Stop::Bad(what)) => Err(Error::BadArtifact {
                file: file.to_string(),
                what,
            }),
            // The whole image is at hand, so nothing lies before it.
            Err(Stop::NeedMore) => Err(Error::BadArtifact {
                file: file.to_string(),
                what: "internal: structure before the start of the image".into(),
            }),
        }
    }

    /// Parses from `tail`, the last bytes of an image of `len` bytes, without
    /// its page contents (enough when the firmware-only digest is known).
    /// `Ok(None)` when a structure lies before the tail: read the whole image.
    pub fn parse_tail(file: &str, tail: &'a [u8], len: u64) -> Result<Option<Self>, Error> {
        match Self::parse_view(tail, len) {
            Ok(o) => Ok(Some(o)),
            Err(Stop::NeedMore) => Ok(None),
            Err(Stop::Bad(what)) => Err(Error::BadArtifact {
                file: file.to_string(),
                what,
            }),
        }
    }

    fn parse_view(bytes: &'a [u8], len: u64) -> Result<Self, Stop> {
        if len == 0 || !len.is_multiple_of(PAGE_SIZE as u64) {
            return Err(Stop::Bad(format!(
                "size {len} bytes is not a positive multiple of the 4096-byte page size (not an OVMF image?)"
            )));
        }
        if len > FOUR_GIB {
            return Err(Stop::Bad(format!(
                "size {len} bytes does not fit below 4 GiB"
            )));
        }
        let len = len as usize;
        let v = ImageTail::new(bytes, len).ok_or_else(|| {
            Stop::Bad(format!(
                "internal: {} bytes given for a {len}-byte image",
                bytes.len()
            ))
        })?;
        let table = FooterTable::parse_tail(&v)?;
        let entry = |guid: &Guid| table.find(guid).map(|e| (e.offset, e.len));
        let reset_block = entry(&SEV_ES_RESET_BLOCK_GUID);
        let hash_table = entry(&SEV_HASH_TABLE_RV_GUID);
        let metadata = entry(&SEV_METADATA_GUID);

        // The first u32 of an entry's data; `what` names the entry and the field.
        let first_u32 =
            |entry: Option<(usize, usize)>, what: &'static str| -> Result<Option<u32>, Stop> {
                match entry {
                    None => Ok(None),
                    Some((at, n)) if n < 4 => Err(Stop::Bad(format!(
                    "{what} entry at offset {at:#x} is {n} bytes, shorter than its 4-byte value"
                ))),
                    Some((at, _)) => Ok(Some(v.le32(at, what)?)),
                }
            };
        let sev_es_reset_eip = first_u32(reset_block, "SEV-ES reset block")?;
        let sev_hash_table_gpa = first_u32(hash_table, "SEV hash table")?;
        let from_end = first_u32(metadata, "SEV metadata")?.ok_or_else(|| {
            "no SEV metadata section (not an AmdSev OVMF build? SEV-SNP needs an OVMF that declares its pre-validated memory; AmdSev and SEV-enabled OvmfPkgX64 builds do)".to_string()
        })? as usize;
        let sections = parse_metadata(&v, from_end)?;
        Ok(Ovmf {
            data: bytes,
            len: len as u64,
            sections,
            sev_es_reset_eip,
            sev_hash_table_gpa,
        })
    }

    /// The image bytes, or `None` if only a tail was parsed.
    pub fn data(&self) -> Option<&'a [u8]> {
        (self.data.len() as u64 == self.len).then_some(self.data)
    }

    /// Image size, bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Always false: an image has at least one page.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Guest physical address of the first byte of the image (`4 GiB - len`).
    pub fn gpa(&self) -> u64 {
        FOUR_GIB - self.len
    }

    /// Whether the firmware has a page for QEMU's kernel hashes table (AmdSev builds).
    pub fn has_kernel_hashes(&self) -> bool {
        self.sections
            .iter()
            .any(|s| s.kind == SectionKind::SnpKernelHashes)
    }
}

fn parse_metadata(v: &ImageTail<'_>, from_end: usize) -> Result<Vec<MetadataSection>, Stop> {
    let len = v.len();
    let start = len
        .checked_sub(from_end)
        .filter(|s| len - s >= METADATA_HEADER)
        .ok_or_else(|| {
            format!("SEV metadata offset {from_end:#x} from the end does not leave room for its 16-byte header in a {len}-byte image")
        })?;
    if v.get(start, 4, "SEV metadata signature")? != b"ASEV" {
        return Err(Stop::Bad(format!(
            "SEV metadata at offset {start:#x} does not start with \"ASEV\""
        )));
    }
    let size = v.le32(start + 4, "SEV metadata size")? as usize;
    let version = v.le32(start + 8, "SEV metadata version")?;
    let num_items = v.le32(start + 12, "SEV metadata item count")? as usize;
    if version != 1 {
        return Err(Stop::Bad(format!(
            "SEV metadata at offset {start:#x} has version {version}, only 1 is known"
        )));
    }
    if size < METADATA_HEADER || size > len - start {
        return Err(Stop::Bad(format!(
            "SEV metadata at offset {start:#x} has size {size}, outside {METADATA_HEADER}..={}",
            len - start
        )));
    }
    if num_items > (size - METADATA_HEADER) / METADATA_ITEM {
        return Err(Stop::Bad(format!(
            "SEV metadata at offset {start:#x} lists {num_items} sections but its {size} bytes hold at most {}",
            (size - METADATA_HEADER) / METADATA_ITEM
        )));
    }
    let mut sections = Vec::with_capacity(num_items);
    for i in 0..num_items {
        let at = start + METADATA_HEADER + i * METADATA_ITEM;
        let gpa = u64::from(v.le32(at, "SEV metadata section GPA")?);
        let size = u64::from(v.le32(at + 4, "SEV metadata section size")?);
        let raw_kind = v.le32(at + 8, "SEV metadata section type")?;
        let kind = SectionKind::from_u32(raw_kind).ok_or_else(|| {
            format!("SEV metadata section {i} (offset {at:#x}) has unknown type {raw_kind:#x}")
        })?;
        if !gpa.is_multiple_of(PAGE_SIZE as u64) || !size.is_multiple_of(PAGE_SIZE as u64) {
            return Err(Stop::Bad(format!(
                "SEV metadata section {i} (offset {at:#x}, {kind:?}) at GPA {gpa:#x} size {size:#x} is not page-aligned"
            )));
        }
        if gpa + size > FOUR_GIB {
            return Err(Stop::Bad(format!(
                "SEV metadata section {i} (offset {at:#x}, {kind:?}) at GPA {gpa:#x} size {size:#x} ends above 4 GiB"
            )));
        }
        sections.push(MetadataSection { gpa, size, kind });
    }
    Ok(sections)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ovmf_footer::{BYTES_AFTER_FOOTER, ENTRY_TRAILER, FOOTER_GUID};

    #[test]
    fn guid_le_matches_canonical_text() {
        assert_eq!(
            FOOTER_GUID.to_string(),
            "96b582de-1fb2-45f7-baea-a366c55a082d"
        );
        assert_eq!(
            SEV_METADATA_GUID.to_string(),
            "dc886566-984a-4798-a75e-5585a7bf67cc"
        );
        assert_eq!(
            SEV_ES_RESET_BLOCK_GUID.to_string(),
            "00f771de-1a7e-4fcb-890e-68c77e2fb44e"
        );
        assert_eq!(
            SEV_HASH_TABLE_RV_GUID.to_string(),
            "7255371f-3a3b-4b04-927b-1da6efa8d454"
        );
    }

    #[test]
    fn rejects_short_and_unaligned() {
        for len in [0usize, 1, 49, 4095, 4097] {
            let data = vec![0u8; len];
            assert!(Ovmf::parse("x.fd", &data).is_err(), "len {len}");
        }
        let err = Ovmf::parse("x.fd", &[0u8; 4096]).unwrap_err().to_string();
        assert!(err.contains("x.fd") && err.contains("footer"), "{err}");
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_random_tails(tail in proptest::collection::vec(proptest::num::u8::ANY, 0..512), fill in proptest::num::u8::ANY) {
            // A page of filler whose tail is random but carries the footer GUID,
            // so the parser gets past the first check most of the time.
            let mut data = vec![fill; 4096];
            let n = tail.len();
            data[4096 - n..].copy_from_slice(&tail);
            let _ = Ovmf::parse("p.fd", &data);
            let at = 4096 - BYTES_AFTER_FOOTER - ENTRY_TRAILER;
            data[at + 2..at + 18].copy_from_slice(FOOTER_GUID.bytes());
            let _ = Ovmf::parse("p.fd", &data);
        }
    }
}
