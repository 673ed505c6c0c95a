//! The SNP guest-context launch digest: the chain of SHA-384 hashes over
//! `PAGE_INFO` structures that the AMD-SP extends on every `SNP_LAUNCH_UPDATE`
//! (SEV-SNP firmware ABI, "PAGE_INFO" table: 0x70 bytes).
//!
//! `PAGE_INFO` layout (little-endian):
//! | offset | size | field |
//! |---|---|---|
//! | 0x00 | 48 | DIGEST_CUR: the launch digest so far |
//! | 0x30 | 48 | CONTENTS: SHA-384 of the page for normal and VMSA pages, zero otherwise |
//! | 0x60 | 2 | LENGTH = 0x70 |
//! | 0x62 | 1 | PAGE_TYPE |
//! | 0x63 | 1 | IMI_PAGE = 0 |
//! | 0x64 | 3 | VMPL3/2/1 permissions = 0 |
//! | 0x67 | 1 | reserved = 0 |
//! | 0x68 | 8 | GPA |

use std::sync::OnceLock;

use rayon::prelude::*;
use sha2::{Digest, Sha384};

use super::ovmf::PAGE_SIZE;

/// Guest physical address the firmware records for every VMSA page: the RMP
/// stores `(u64)-1` page-aligned with bits above 51 cleared.
pub const VMSA_GPA: u64 = 0xFFFF_FFFF_F000;

/// Inputs at least this large (bytes) are hashed on the rayon pool.
const PARALLEL_FROM: usize = 64 * PAGE_SIZE;

/// `PAGE_INFO.PAGE_TYPE` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum PageType {
    /// Contents measured.
    Normal = 1,
    /// A vCPU save area.
    Vmsa = 2,
    /// Zero page.
    Zero = 3,
    /// Unmeasured page.
    Unmeasured = 4,
    /// SNP secrets page.
    Secrets = 5,
    /// CPUID page.
    Cpuid = 6,
}

/// SHA-384 of a page. Firmware volumes pad free space with 0xff (a quarter to
/// a half of Debian's OVMF builds), so the digest of a page made of one byte
/// value is computed once per value and reused; the check stops at the first
/// differing byte of any other page.
fn page_hash(page: &[u8]) -> [u8; 48] {
    static UNIFORM: [OnceLock<[u8; 48]>; 256] = [const { OnceLock::new() }; 256];
    match page.first() {
        Some(&b) if page.len() == PAGE_SIZE && page.iter().all(|&x| x == b) => {
            *UNIFORM[usize::from(b)].get_or_init(|| Sha384::digest([b; PAGE_SIZE]).into())
        }
        _ => Sha384::digest(page).into(),
    }
}

/// The launch digest being built.
#[derive(Debug, Clone)]
pub struct Gctx {
    ld: [u8; 48],
}

impl Gctx {
    /// Starts from an all-zero digest, or from a precomputed one (the state after
    /// the firmware pages: `sev-snp-measure --snp-ovmf-hash`).
    pub fn new(seed: Option<[u8; 48]>) -> Self {
        Gctx {
            ld: seed.unwrap_or([0; 48]),
        }
    }

    /// The digest so far.
    pub fn ld(&self) -> [u8; 48] {
        self.ld
    }

    fn update(&mut self, page_type: PageType, gpa: u64, contents: &[u8; 48]) {
        let mut info = [0u8; 0x70];
        info[..48].copy_from_slice(&self.ld);
        info[48..96].copy_from_slice(contents);
        info[0x60..0x62].copy_from_slice(&0x70u16.to_le_bytes());
        info[0x62] = page_type as u8;
        info[0x68..0x70].copy_from_slice(&gpa.to_le_bytes());
        self.ld = Sha384::digest(info).into();
    }

    /// Measures `data` (a whole number of pages) as normal pages from `gpa` on.
    /// The per-page SHA-384s are independent, so for large inputs they are
    /// computed in parallel; only the cheap 0x70-byte chain is sequential.
    pub fn update_normal_pages(&mut self, gpa: u64, data: &[u8]) {
        debug_assert_eq!(data.len() % PAGE_SIZE, 0);
        if data.len() < PARALLEL_FROM {
            // Waking the thread pool costs more than hashing a few pages.
            for (i, p) in data.chunks(PAGE_SIZE).enumerate() {
                self.update(
                    PageType::Normal,
                    gpa + (i * PAGE_SIZE) as u64,
                    &page_hash(p),
                );
            }
            return;
        }
        let page_hashes: Vec<[u8; 48]> = data
            .par_chunks(PAGE_SIZE)
            .with_min_len(16)
            .map(page_hash)
            .collect();
        for (i, h) in page_hashes.iter().enumerate() {
            self.update(PageType::Normal, gpa + (i * PAGE_SIZE) as u64, h);
        }
    }

    /// Measures `len` bytes (a whole number of pages) from `gpa` on as pages of
    /// a type whose contents are not hashed (zero or unmeasured pages).
    pub fn update_blank_pages(&mut self, page_type: PageType, gpa: u64, len: u64) {
        let mut off = 0;
        while off < len {
            self.update(page_type, gpa + off, &[0; 48]);
            off += PAGE_SIZE as u64;
        }
    }

    /// Measures one secrets or CPUID page at `gpa`.
    pub fn update_special_page(&mut self, page_type: PageType, gpa: u64) {
        self.update(page_type, gpa, &[0; 48]);
    }

    /// Measures one VMSA page.
    pub fn update_vmsa_page(&mut self, page: &[u8; PAGE_SIZE]) {
        self.update(PageType::Vmsa, VMSA_GPA, &Sha384::digest(page).into());
    }

    /// Measures the same VMSA page `n` times (the page hash is computed once).
    pub fn update_vmsa_pages(&mut self, page: &[u8; PAGE_SIZE], n: u32) {
        let h: [u8; 48] = Sha384::digest(page).into();
        for _ in 0..n {
            self.update(PageType::Vmsa, VMSA_GPA, &h);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Uniform pages (reused digests) and others, serial and parallel, give
    /// the chain computed page by page.
    #[test]
    fn normal_pages_equal_page_by_page_chain() {
        for pages in [3usize, 64, 200] {
            let mut data = vec![0u8; pages * PAGE_SIZE];
            for (i, p) in data.chunks_mut(PAGE_SIZE).enumerate() {
                match i % 4 {
                    0 => p.fill(0xff),
                    1 => p.fill(0),
                    2 => p
                        .iter_mut()
                        .enumerate()
                        .for_each(|(j, b)| *b = (i + j) as u8),
                    // Uniform except the last byte.
                    _ => {
                        p.fill(0xff);
                        p[PAGE_SIZE - 1] = 0;
                    }
                }
            }
            let mut fast = Gctx::new(None);
            fast.update_normal_pages(0x1000, &data);
            let mut slow = Gctx::new(None);
            for (i, p) in data.chunks(PAGE_SIZE).enumerate() {
                slow.update(
                    PageType::Normal,
                    0x1000 + (i * PAGE_SIZE) as u64,
                    &Sha384::digest(p).into(),
                );
            }
            assert_eq!(fast.ld(), slow.ld(), "{pages} pages");
        }
    }
}
