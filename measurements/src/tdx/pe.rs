//! The Authenticode digest of a PE/COFF image, as EDK2 computes it when it
//! measures an EFI application (`MeasurePeImageAndExtend`; Microsoft
//! "Windows Authenticode Portable Executable Signature Format"):
//!
//! 1. the headers up to `SizeOfHeaders`, skipping the optional header's
//!    `CheckSum` field and the certificate-table data directory entry (when
//!    the image has one);
//! 2. every section's raw data (`SizeOfRawData` bytes at `PointerToRawData`),
//!    in ascending `PointerToRawData` order, skipping empty sections;
//! 3. whatever follows the sections, except the certificate table's size at
//!    the end.
//!
//! No padding is added: EDK2 hashes the bytes it was given. (Signing tools
//! pad files to a multiple of 8 bytes *before* signing; for a signed file the
//! padding is part of the image.)
//!
//! Parsing is bounds-checked; an input that is not PE says what is missing.

use sha2::Digest;

use super::digest::Digest384;
use crate::reader::{le16_at, le32_at, Short};

/// Index of the certificate table in the data directories.
const DIR_SECURITY: u32 = 4;
/// Size of a section header.
const SECTION_HEADER: usize = 40;
/// Most sections a PE file may declare (the COFF field is 16 bits; Windows
/// loaders cap at 96). Bounds work on hostile input.
pub const MAX_SECTIONS: usize = 96;

/// Where the parts of a PE image lie (byte offsets into the file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeLayout {
    /// Offset of the optional header's `CheckSum` field.
    pub checksum_offset: usize,
    /// Offset of the certificate-table directory entry, if the image has one.
    pub cert_dir_offset: Option<usize>,
    /// `SizeOfHeaders`.
    pub size_of_headers: usize,
    /// `(PointerToRawData, SizeOfRawData)` of non-empty sections, sorted.
    pub sections: Vec<(usize, usize)>,
    /// Size of the certificate table (0 when absent).
    pub cert_size: usize,
}

/// Reads the layout of a PE image; the error says what is missing.
pub fn layout(image: &[u8]) -> Result<PeLayout, String> {
    let e = |x: Short| x.to_string();
    if image.len() < 0x40 || &image[..2] != b"MZ" {
        return Err("not a PE image: no MZ (DOS) header".into());
    }
    let pe = le32_at(image, 0x3c, "e_lfanew").map_err(e)? as usize;
    match image.get(pe..pe.saturating_add(4)) {
        Some(b"PE\0\0") => {}
        _ => {
            return Err(format!(
                "not a PE image: no \"PE\\0\\0\" signature at e_lfanew {pe:#x}"
            ))
        }
    }
    let coff = pe + 4;
    let nsections = le16_at(image, coff + 2, "COFF NumberOfSections").map_err(e)? as usize;
    let opt_size = le16_at(image, coff + 16, "COFF SizeOfOptionalHeader").map_err(e)? as usize;
    let opt = coff + 20;
    let magic = le16_at(image, opt, "optional header magic").map_err(e)?;
    let (nrva_off, dirs_off) = match magic {
        0x10b => (opt + 92, opt + 96),
        0x20b => (opt + 108, opt + 112),
        m => {
            return Err(format!(
                "PE optional header magic {m:#x} is neither PE32 nor PE32+"
            ))
        }
    };
    let size_of_headers = le32_at(image, opt + 60, "SizeOfHeaders").map_err(e)? as usize;
    let checksum_offset = opt + 64;
    let nrva = le32_at(image, nrva_off, "NumberOfRvaAndSizes").map_err(e)?;
    if dirs_off + 8 * nrva as usize > opt + opt_size {
        return Err(format!(
            "PE optional header ({opt_size} bytes) is too small for {nrva} data directories"
        ));
    }
    let (cert_dir_offset, cert_size) = if nrva > DIR_SECURITY {
        let at = dirs_off + 8 * DIR_SECURITY as usize;
        let size = le32_at(image, at + 4, "certificate table size").map_err(e)? as usize;
        (Some(at), size)
    } else {
        (None, 0)
    };
    let headers_end_needed = cert_dir_offset.map_or(checksum_offset + 4, |c| c + 8);
    if size_of_headers < headers_end_needed || size_of_headers > image.len() {
        return Err(format!(
            "PE SizeOfHeaders {size_of_headers:#x} must cover the optional header \
             ({headers_end_needed:#x}) and lie within the {}-byte file",
            image.len()
        ));
    }
    if nsections > MAX_SECTIONS {
        return Err(format!(
            "PE declares {nsections} sections (at most {MAX_SECTIONS})"
        ));
    }
    let table = opt + opt_size;
    let mut sections = Vec::with_capacity(nsections);
    for i in 0..nsections {
        let at = table + i * SECTION_HEADER;
        let size = le32_at(image, at + 16, "section SizeOfRawData").map_err(e)? as usize;
        let ptr = le32_at(image, at + 20, "section PointerToRawData").map_err(e)? as usize;
        if size == 0 {
            continue;
        }
        if ptr.checked_add(size).is_none_or(|end| end > image.len()) {
            return Err(format!(
                "PE section {i} data {ptr:#x}+{size:#x} lies outside the {}-byte file",
                image.len()
            ));
        }
        sections.push((ptr, size));
    }
    // Stable sort, like EDK2's insertion sort.
    sections.sort_by_key(|&(ptr, _)| ptr);
    Ok(PeLayout {
        checksum_offset,
        cert_dir_offset,
        size_of_headers,
        sections,
        cert_size,
    })
}

/// The Authenticode digest of `image` with hash `D` (SHA-384 for TDX
/// measurements; SHA-256 is what most signatures carry).
pub fn authenticode<D: Digest>(image: &[u8]) -> Result<Vec<u8>, String> {
    let l = layout(image)?;
    let mut h = D::new();
    h.update(&image[..l.checksum_offset]);
    match l.cert_dir_offset {
        Some(c) => {
            h.update(&image[l.checksum_offset + 4..c]);
            h.update(&image[c + 8..l.size_of_headers]);
        }
        None => h.update(&image[l.checksum_offset + 4..l.size_of_headers]),
    }
    let mut hashed = l.size_of_headers;
    for &(ptr, size) in &l.sections {
        h.update(&image[ptr..ptr + size]);
        hashed += size;
    }
    if image.len() > hashed {
        match image.len().checked_sub(l.cert_size) {
            Some(end) if end >= hashed => h.update(&image[hashed..end]),
            _ => {
                return Err(format!(
                    "PE certificate table ({} bytes) overlaps the {hashed} bytes of headers and sections",
                    l.cert_size
                ))
            }
        }
    }
    Ok(h.finalize().to_vec())
}

/// The Authenticode SHA-384 of `image`.
pub fn authenticode_sha384(image: &[u8]) -> Result<Digest384, String> {
    let v = authenticode::<sha2::Sha384>(image)?;
    let mut out = [0u8; 48];
    out.copy_from_slice(&v);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_pe_inputs_say_why() {
        assert!(layout(b"hello").unwrap_err().contains("MZ"));
        let mut img = vec![0u8; 0x100];
        img[..2].copy_from_slice(b"MZ");
        img[0x3c] = 0x80;
        assert!(layout(&img).unwrap_err().contains("PE\\0\\0"));
        img[0x3c] = 0xff;
        assert!(layout(&img).unwrap_err().contains("signature"));
    }
}
