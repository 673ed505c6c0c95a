//! TDVF (TDX-capable OVMF) images and the MRTD they produce.
//!
//! The section list comes from the TDVF metadata ([`super::metadata`],
//! re-exported here), found through the OVMF GUIDed footer table
//! ([`crate::ovmf_footer`]).
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

use super::digest::{sha384, Digest384};
use super::files::read_file;
use super::hob::qemu_td_hob;
use crate::error::{Error, Result};
use crate::guid::Guid;
use crate::reader::slice_at;

pub use super::metadata::{
    find_guided_entry, parse_metadata, SectionType, TdvfMetadata, TdvfSection, ATTR_MR_EXTEND,
    ATTR_PAGE_AUG, MAX_SECTION_MEMORY, PAGE_SIZE, TDX_METADATA_OFFSET_GUID,
};

/// GUID of the OVMF GUIDed table footer ([`crate::ovmf_footer::FOOTER_GUID`]).
pub const TABLE_FOOTER_GUID: Guid = crate::ovmf_footer::FOOTER_GUID;

/// `TDH.MR.EXTEND` measures this many bytes per call.
pub const MR_EXTEND_CHUNK: usize = 256;

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
        let image = read_file(path, "firmware")?;
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
        qemu_td_hob(&self.metadata.sections, memory_bytes).map_err(|what| Error::BadArtifact {
            file: self.name.clone(),
            what,
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
}
