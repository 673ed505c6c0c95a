//! The OVMF GUIDed footer table: how TDX (TDVF metadata) and SEV-SNP (SEV
//! metadata, reset block, kernel hashes page) find their structures in a
//! firmware image.
//!
//! Layout (edk2 `OvmfPkg/ResetVector/Ia16/ResetVectorVtf0.asm`), all integers
//! little-endian, GUIDs in their mixed-endian wire form ([`Guid`]):
//!
//! * the last [`BYTES_AFTER_FOOTER`] (32) bytes of the image are the reset
//!   vector area;
//! * just before them sits the footer entry: `size: u16`, then the GUID
//!   [`FOOTER_GUID`] (`96b582de-1fb2-45f7-baea-a366c55a082d`); `size` counts
//!   the whole table, the footer's own [`ENTRY_TRAILER`] (18) bytes included;
//! * the entries are walked backwards from the footer: each is
//!   `[data][size: u16][GUID]`, its `size` counting data + 18.
//!
//! The parser works on the whole image or only on its last bytes
//! ([`ImageTail`]); offsets are always offsets in the whole image. It is
//! total: every length is checked against the table, a structure that would
//! lie before the bytes at hand is [`FooterError::BeforeTail`], a malformed
//! table is an error naming the offset, never a panic.

use crate::guid::Guid;
use crate::reader::{le16_at, le32_at, slice_at, Short};

/// `96b582de-1fb2-45f7-baea-a366c55a082d`: the GUID of the table footer.
pub const FOOTER_GUID: Guid = Guid::from_fields(
    0x96b5_82de,
    0x1fb2,
    0x45f7,
    [0xba, 0xea, 0xa3, 0x66, 0xc5, 0x5a, 0x08, 0x2d],
);
/// Bytes after the footer GUID: the reset vector area at the top of the image.
pub const BYTES_AFTER_FOOTER: usize = 32;
/// Size of an entry's trailer (`u16` length + GUID), the footer's included.
pub const ENTRY_TRAILER: usize = 18;

/// Why the table could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FooterError {
    /// The image cannot hold a footer at all.
    #[error("{len} bytes is too small for an OVMF image")]
    TooSmall {
        /// Image length.
        len: usize,
    },
    /// No footer GUID where it must be.
    #[error(
        "no OVMF GUIDed table footer (GUID 96b582de-1fb2-45f7-baea-a366c55a082d) at offset {offset:#x}"
    )]
    NoFooter {
        /// Offset where the footer GUID was expected.
        offset: usize,
    },
    /// The footer's table length is shorter than the footer or reaches
    /// before the start of the image.
    #[error("OVMF GUIDed table length {length} is invalid (image is {image_len} bytes)")]
    BadTableLength {
        /// The length the footer declares.
        length: usize,
        /// Image length.
        image_len: usize,
    },
    /// Fewer bytes than one entry's trailer remain in the table.
    #[error(
        "OVMF GUIDed table truncated: {left} bytes left before offset {end:#x}, \
         an entry needs at least 18"
    )]
    Truncated {
        /// Bytes left between the table start and `end`.
        left: usize,
        /// Offset where the next entry would end.
        end: usize,
    },
    /// An entry's length is shorter than its trailer or runs past the start
    /// of the table.
    #[error("OVMF GUIDed table entry ending at {end:#x} has invalid length {length}")]
    BadEntryLength {
        /// Offset just past the entry.
        end: usize,
        /// The length it declares.
        length: usize,
    },
    /// Two entries carry the same GUID: which one counts would be ambiguous.
    #[error("OVMF GUIDed table has GUID {guid} twice (second ending at offset {end:#x})")]
    DuplicateGuid {
        /// The repeated GUID.
        guid: Guid,
        /// Offset just past the second entry.
        end: usize,
    },
    /// The structure lies before the bytes at hand (only when parsing a
    /// tail): read more of the image.
    #[error("structure at offset {offset:#x} lies before the bytes at hand")]
    BeforeTail {
        /// Image offset of the structure.
        offset: usize,
    },
    /// A read outside the image (a bounds check the caller should have made).
    #[error("{0}")]
    OutOfRange(String),
}

/// The last bytes of a firmware image (or all of it), addressed by offsets
/// in the whole image. Every read is bounds-checked.
#[derive(Debug, Clone, Copy)]
pub struct ImageTail<'a> {
    bytes: &'a [u8],
    len: usize,
    base: usize,
}

impl<'a> ImageTail<'a> {
    /// The whole image.
    pub fn whole(image: &'a [u8]) -> ImageTail<'a> {
        ImageTail {
            bytes: image,
            len: image.len(),
            base: 0,
        }
    }

    /// The last `tail.len()` bytes of an image of `len` bytes; `None` when
    /// the tail is longer than the image.
    pub fn new(tail: &'a [u8], len: usize) -> Option<ImageTail<'a>> {
        let base = len.checked_sub(tail.len())?;
        Some(ImageTail {
            bytes: tail,
            len,
            base,
        })
    }

    /// Length of the whole image.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the image is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn local(&self, at: usize) -> Result<usize, FooterError> {
        at.checked_sub(self.base)
            .ok_or(FooterError::BeforeTail { offset: at })
    }

    /// `n` bytes at image offset `at`.
    pub fn get(&self, at: usize, n: usize, what: &'static str) -> Result<&'a [u8], FooterError> {
        slice_at(self.bytes, self.local(at)?, n, what).map_err(|e| self.out_of_range(e))
    }

    /// The little-endian `u16` at image offset `at`.
    pub fn le16(&self, at: usize, what: &'static str) -> Result<u16, FooterError> {
        le16_at(self.bytes, self.local(at)?, what).map_err(|e| self.out_of_range(e))
    }

    /// The little-endian `u32` at image offset `at`.
    pub fn le32(&self, at: usize, what: &'static str) -> Result<u32, FooterError> {
        le32_at(self.bytes, self.local(at)?, what).map_err(|e| self.out_of_range(e))
    }

    fn out_of_range(&self, mut e: Short) -> FooterError {
        e.offset += self.base;
        FooterError::OutOfRange(e.to_string())
    }
}

/// One entry of the table: its GUID and where its data lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// The entry's GUID.
    pub guid: Guid,
    /// Image offset of the entry's data.
    pub offset: usize,
    /// Length of the data (the entry's length less its 18-byte trailer).
    pub len: usize,
}

/// The parsed table: its entries, from the footer backwards (the order the
/// firmware reads them in).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FooterTable {
    /// The entries, footer excluded.
    pub entries: Vec<Entry>,
}

impl FooterTable {
    /// Reads the table of a whole image.
    pub fn parse(image: &[u8]) -> Result<FooterTable, FooterError> {
        FooterTable::parse_tail(&ImageTail::whole(image))
    }

    /// Reads the table from an image tail; [`FooterError::BeforeTail`] when
    /// the table reaches before the bytes at hand.
    pub fn parse_tail(v: &ImageTail<'_>) -> Result<FooterTable, FooterError> {
        let len = v.len();
        if len < BYTES_AFTER_FOOTER + ENTRY_TRAILER {
            return Err(FooterError::TooSmall { len });
        }
        let footer_end = len - BYTES_AFTER_FOOTER;
        if v.get(footer_end - 16, 16, "table footer GUID")? != FOOTER_GUID.bytes() {
            return Err(FooterError::NoFooter {
                offset: footer_end - 16,
            });
        }
        let table_len = usize::from(v.le16(footer_end - ENTRY_TRAILER, "table length")?);
        if table_len < ENTRY_TRAILER || table_len > footer_end {
            return Err(FooterError::BadTableLength {
                length: table_len,
                image_len: len,
            });
        }
        let table_start = footer_end - table_len;
        let mut entries: Vec<Entry> = Vec::new();
        let mut end = footer_end - ENTRY_TRAILER;
        while end > table_start {
            if end - table_start < ENTRY_TRAILER {
                return Err(FooterError::Truncated {
                    left: end - table_start,
                    end,
                });
            }
            let trailer = end - ENTRY_TRAILER;
            let length = usize::from(v.le16(trailer, "table entry length")?);
            let mut guid = [0u8; 16];
            guid.copy_from_slice(v.get(trailer + 2, 16, "table entry GUID")?);
            let guid = Guid(guid);
            if length < ENTRY_TRAILER || length > end - table_start {
                return Err(FooterError::BadEntryLength { end, length });
            }
            if entries.iter().any(|e| e.guid == guid) {
                return Err(FooterError::DuplicateGuid { guid, end });
            }
            entries.push(Entry {
                guid,
                offset: end - length,
                len: length - ENTRY_TRAILER,
            });
            end -= length;
        }
        Ok(FooterTable { entries })
    }

    /// The entry with `guid`, if any.
    pub fn find(&self, guid: &Guid) -> Option<&Entry> {
        self.entries.iter().find(|e| e.guid == *guid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Guid = Guid::from_fields(1, 2, 3, [4; 8]);
    const B: Guid = Guid::from_fields(5, 6, 7, [8; 8]);

    /// An image of `pad` bytes, then the `entries`, the footer and 32 bytes.
    fn image(pad: usize, entries: &[(&[u8], Guid)]) -> Vec<u8> {
        let mut table = Vec::new();
        for (data, guid) in entries {
            table.extend_from_slice(data);
            table.extend_from_slice(&((data.len() + ENTRY_TRAILER) as u16).to_le_bytes());
            table.extend_from_slice(guid.bytes());
        }
        let mut out = vec![0u8; pad];
        out.extend_from_slice(&table);
        out.extend_from_slice(&((table.len() + ENTRY_TRAILER) as u16).to_le_bytes());
        out.extend_from_slice(FOOTER_GUID.bytes());
        out.extend_from_slice(&[0; BYTES_AFTER_FOOTER]);
        out
    }

    #[test]
    fn walks_backwards_and_finds_entries() {
        let img = image(100, &[(&[1, 2, 3, 4], A), (&[9], B)]);
        let t = FooterTable::parse(&img).unwrap();
        assert_eq!(t.entries.len(), 2);
        assert_eq!(t.entries[0].guid, B);
        let a = t.find(&A).unwrap();
        assert_eq!(&img[a.offset..a.offset + a.len], &[1, 2, 3, 4]);
        assert!(t.find(&FOOTER_GUID).is_none());
        // The same from a tail holding the table, and BeforeTail from one
        // that does not.
        let tail = &img[90..];
        let v = ImageTail::new(tail, img.len()).unwrap();
        assert_eq!(FooterTable::parse_tail(&v).unwrap(), t);
        let short = ImageTail::new(&img[img.len() - 60..], img.len()).unwrap();
        assert!(matches!(
            FooterTable::parse_tail(&short),
            Err(FooterError::BeforeTail { .. })
        ));
        assert!(ImageTail::new(&img, 3).is_none());
    }

    #[test]
    fn malformed_tables_are_errors() {
        assert!(matches!(
            FooterTable::parse(&[0; 49]),
            Err(FooterError::TooSmall { len: 49 })
        ));
        assert!(matches!(
            FooterTable::parse(&[0; 4096]),
            Err(FooterError::NoFooter { offset: 4048 })
        ));
        let dup = image(10, &[(&[1], A), (&[2], A)]);
        let e = FooterTable::parse(&dup).unwrap_err();
        assert!(e.to_string().contains("twice"), "{e}");
        let mut short = image(10, &[(&[1], A)]);
        let footer_len_at = short.len() - BYTES_AFTER_FOOTER - ENTRY_TRAILER;
        short[footer_len_at..footer_len_at + 2].copy_from_slice(&28u16.to_le_bytes());
        let e = FooterTable::parse(&short).unwrap_err();
        assert!(e.to_string().contains("table truncated"), "{e}");
        let mut huge = image(10, &[(&[1], A)]);
        huge[footer_len_at..footer_len_at + 2].copy_from_slice(&0xffffu16.to_le_bytes());
        assert!(matches!(
            FooterTable::parse(&huge),
            Err(FooterError::BadTableLength { length: 0xffff, .. })
        ));
        let mut bad_entry = image(10, &[(&[1], A)]);
        let entry_len_at = footer_len_at - ENTRY_TRAILER;
        bad_entry[entry_len_at..entry_len_at + 2].copy_from_slice(&30u16.to_le_bytes());
        let e = FooterTable::parse(&bad_entry).unwrap_err();
        assert!(e.to_string().contains("invalid length 30"), "{e}");
    }

    proptest::proptest! {
        #[test]
        fn never_panics(tail in proptest::collection::vec(proptest::num::u8::ANY, 0..256), cut in 0usize..300) {
            let mut img = image(64, &[(&[1, 2], A)]);
            let n = tail.len().min(img.len());
            let at = img.len() - BYTES_AFTER_FOOTER - n.min(img.len() - BYTES_AFTER_FOOTER);
            let m = (img.len() - at).min(tail.len());
            img[at..at + m].copy_from_slice(&tail[..m]);
            let _ = FooterTable::parse(&img);
            let cut = cut.min(img.len());
            if let Some(v) = ImageTail::new(&img[cut..], img.len()) {
                let _ = FooterTable::parse_tail(&v);
            }
        }
    }
}
