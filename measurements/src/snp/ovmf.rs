//! The parts of an OVMF firmware volume that the SNP launch digest depends on:
//! the GUIDed footer table at the end of the image and the SEV metadata it
//! points to (edk2 `OvmfPkg/ResetVector/X64/OvmfSevMetadata.asm`).
//!
//! Layout, all integers little-endian:
//! * the image is mapped so that it ends at 4 GiB: its first byte is at guest
//!   physical address `4 GiB - len`;
//! * 32 bytes before the end sits the footer entry: `size: u16`, `guid: [u8; 16]`
//!   (`96b582de-1fb2-45f7-baea-a366c55a082d`, stored as a little-endian GUID);
//!   `size` counts the footer entry and the table entries before it;
//! * the table entries are walked backwards from the footer: each ends with the
//!   same `size: u16, guid` header and its data precedes the header;
//! * the SEV metadata entry holds a `u32` offset from the end of the image to the
//!   metadata header `"ASEV", size: u32, version: u32 (= 1), num_items: u32`,
//!   followed by `num_items` section descriptors `gpa: u32, size: u32, kind: u32`.
//!
//! Everything is bounds-checked: a malformed image is an error naming the file
//! and the offset, never a panic.

use crate::error::Error;

/// Size of a guest page, bytes.
pub const PAGE_SIZE: usize = 4096;
/// The firmware image ends at this guest physical address.
const FOUR_GIB: u64 = 1 << 32;
/// Bytes between the footer entry and the end of the image.
const FOOTER_TAIL: usize = 32;
/// `size: u16` + GUID.
const ENTRY_HEADER: usize = 18;
/// `"ASEV"`, size, version, num_items.
const METADATA_HEADER: usize = 16;
/// `gpa`, `size`, `kind` (edk2 declares all three as `DD`).
const METADATA_ITEM: usize = 12;

/// A GUID in its on-disk (little-endian, "mixed-endian") byte order.
pub(crate) const fn guid_le(d1: u32, d2: u16, d3: u16, d4: [u8; 8]) -> [u8; 16] {
    let a = d1.to_le_bytes();
    let b = d2.to_le_bytes();
    let c = d3.to_le_bytes();
    [
        a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d4[0], d4[1], d4[2], d4[3], d4[4], d4[5],
        d4[6], d4[7],
    ]
}

/// `96b582de-1fb2-45f7-baea-a366c55a082d`: the footer of the GUIDed table.
const FOOTER_GUID: [u8; 16] = guid_le(
    0x96b5_82de,
    0x1fb2,
    0x45f7,
    [0xba, 0xea, 0xa3, 0x66, 0xc5, 0x5a, 0x08, 0x2d],
);
/// `7255371f-3a3b-4b04-927b-1da6efa8d454`: where QEMU puts the kernel hashes table.
const SEV_HASH_TABLE_RV_GUID: [u8; 16] = guid_le(
    0x7255_371f,
    0x3a3b,
    0x4b04,
    [0x92, 0x7b, 0x1d, 0xa6, 0xef, 0xa8, 0xd4, 0x54],
);
/// `00f771de-1a7e-4fcb-890e-68c77e2fb44e`: the SEV-ES AP reset vector.
const SEV_ES_RESET_BLOCK_GUID: [u8; 16] = guid_le(
    0x00f7_71de,
    0x1a7e,
    0x4fcb,
    [0x89, 0x0e, 0x68, 0xc7, 0x7e, 0x2f, 0xb4, 0x4e],
);
/// `dc886566-984a-4798-a75e-5585a7bf67cc`: the offset of the SEV metadata.
const SEV_METADATA_GUID: [u8; 16] = guid_le(
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

/// The last `bytes.len()` bytes of an image of `len` bytes, addressed by
/// offsets in the whole image. Every structure the parser needs is located
/// from the end, so a tail usually suffices.
struct View<'a> {
    bytes: &'a [u8],
    len: usize,
    base: usize,
}

impl<'a> View<'a> {
    /// `n` bytes at image offset `at`; the caller has checked `at + n <= len`.
    fn get(&self, at: usize, n: usize) -> Result<&'a [u8], Stop> {
        if at < self.base {
            return Err(Stop::NeedMore);
        }
        self.bytes
            .get(at - self.base..at - self.base + n)
            .ok_or_else(|| {
                Stop::Bad(format!(
                    "internal: {n} bytes at offset {at:#x} out of range"
                ))
            })
    }
    fn u16(&self, at: usize) -> Result<u16, Stop> {
        let b = self.get(at, 2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&self, at: usize) -> Result<u32, Stop> {
        let b = self.get(at, 4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
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
        if bytes.len() > len {
            return Err(Stop::Bad(format!(
                "internal: {} bytes given for a {len}-byte image",
                bytes.len()
            )));
        }
        let v = View {
            bytes,
            len,
            base: len - bytes.len(),
        };
        // len >= 4096 here, so this cannot underflow.
        let footer_at = len - FOOTER_TAIL - ENTRY_HEADER;
        if v.get(footer_at + 2, 16)? != FOOTER_GUID {
            return Err(Stop::Bad(format!(
                "no OVMF GUIDed footer table (GUID 96b582de-1fb2-45f7-baea-a366c55a082d expected at offset {footer_at:#x}; not an OVMF build?)"
            )));
        }
        let footer_size = usize::from(v.u16(footer_at)?);
        let table_len = footer_size.checked_sub(ENTRY_HEADER).ok_or_else(|| {
            format!(
                "OVMF footer table size {footer_size} at offset {footer_at:#x} is smaller than its own header ({ENTRY_HEADER})"
            )
        })?;
        let table_start = footer_at.checked_sub(table_len).ok_or_else(|| {
            format!(
                "OVMF footer table size {footer_size} at offset {footer_at:#x} reaches before the start of the image"
            )
        })?;

        let mut reset_block = None;
        let mut hash_table = None;
        let mut metadata = None;
        let mut seen: Vec<[u8; 16]> = Vec::new();
        // Walk the entries backwards from the footer.
        let mut end = footer_at;
        while end - table_start >= ENTRY_HEADER {
            let hdr = end - ENTRY_HEADER;
            let size = usize::from(v.u16(hdr)?);
            let mut guid = [0u8; 16];
            guid.copy_from_slice(v.get(hdr + 2, 16)?);
            if size < ENTRY_HEADER || size > end - table_start {
                return Err(Stop::Bad(format!(
                    "OVMF footer table entry at offset {hdr:#x} has size {size}, outside {ENTRY_HEADER}..={}",
                    end - table_start
                )));
            }
            if seen.contains(&guid) {
                return Err(Stop::Bad(format!(
                    "OVMF footer table has GUID {} twice (second at offset {hdr:#x})",
                    fmt_guid(&guid)
                )));
            }
            seen.push(guid);
            let body_at = end - size;
            let body_len = size - ENTRY_HEADER;
            match guid {
                SEV_ES_RESET_BLOCK_GUID => reset_block = Some((body_at, body_len)),
                SEV_HASH_TABLE_RV_GUID => hash_table = Some((body_at, body_len)),
                SEV_METADATA_GUID => metadata = Some((body_at, body_len)),
                _ => {}
            }
            end -= size;
        }

        // The first u32 of an entry's data; `what` names the entry and the field.
        let first_u32 = |entry: Option<(usize, usize)>, what: &str| -> Result<Option<u32>, Stop> {
            match entry {
                None => Ok(None),
                Some((at, n)) if n < 4 => Err(Stop::Bad(format!(
                    "{what} entry at offset {at:#x} is {n} bytes, shorter than its 4-byte value"
                ))),
                Some((at, _)) => v.u32(at).map(Some),
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

fn parse_metadata(v: &View<'_>, from_end: usize) -> Result<Vec<MetadataSection>, Stop> {
    let len = v.len;
    let start = len
        .checked_sub(from_end)
        .filter(|s| len - s >= METADATA_HEADER)
        .ok_or_else(|| {
            format!("SEV metadata offset {from_end:#x} from the end does not leave room for its 16-byte header in a {len}-byte image")
        })?;
    if v.get(start, 4)? != b"ASEV" {
        return Err(Stop::Bad(format!(
            "SEV metadata at offset {start:#x} does not start with \"ASEV\""
        )));
    }
    let size = v.u32(start + 4)? as usize;
    let version = v.u32(start + 8)?;
    let num_items = v.u32(start + 12)? as usize;
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
        let gpa = u64::from(v.u32(at)?);
        let size = u64::from(v.u32(at + 4)?);
        let raw_kind = v.u32(at + 8)?;
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

fn fmt_guid(g: &[u8; 16]) -> String {
    format!(
        "{:08x}-{:04x}-{:04x}-{}-{}",
        u32::from_le_bytes([g[0], g[1], g[2], g[3]]),
        u16::from_le_bytes([g[4], g[5]]),
        u16::from_le_bytes([g[6], g[7]]),
        hex::encode(&g[8..10]),
        hex::encode(&g[10..16])
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guid_le_matches_canonical_text() {
        assert_eq!(
            fmt_guid(&FOOTER_GUID),
            "96b582de-1fb2-45f7-baea-a366c55a082d"
        );
        assert_eq!(
            fmt_guid(&SEV_METADATA_GUID),
            "dc886566-984a-4798-a75e-5585a7bf67cc"
        );
        assert_eq!(
            fmt_guid(&SEV_ES_RESET_BLOCK_GUID),
            "00f771de-1a7e-4fcb-890e-68c77e2fb44e"
        );
        assert_eq!(
            fmt_guid(&SEV_HASH_TABLE_RV_GUID),
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
            let at = 4096 - FOOTER_TAIL - ENTRY_HEADER;
            data[at + 2..at + 18].copy_from_slice(&FOOTER_GUID);
            let _ = Ovmf::parse("p.fd", &data);
        }
    }
}
