//! dm-verity hash tree geometry and the streaming (cascading) tree builder.
//!
//! Format version 1 (the kernel's and `veritysetup`'s default): every digest is
//! `H(salt ‖ block)`. Level 0 holds the digests of the data blocks, packed into
//! hash blocks of `hash_block_size` bytes, each digest in a slot of the digest
//! size rounded up to a power of two, unused slots and the tail zero; level
//! `i + 1` holds the digests of the hash blocks of level `i`; the top level is
//! one block, and the root hash is the digest of that block. With a single data
//! block there is no hash block and the root hash is that block's digest.
//! On the hash device the levels are stored top level first (as
//! cryptsetup's `VERITY_create_or_verify_hash` lays them out).
//!
//! The builder keeps one partially filled hash block per level: when a block
//! fills up it is written out (if a sink is given), hashed, and its digest is
//! pushed one level up, so memory does not grow with the data size.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use sha1::Sha1;
use sha2::{Digest, Sha256, Sha512};

use super::VerityHash;
use crate::error::Error;

/// Where each level of the hash tree lies, for a given data size.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VerityGeometry {
    /// Data blocks covered.
    pub data_blocks: u64,
    /// Digests per hash block (a power of two ≥ 2).
    pub hashes_per_block: u64,
    /// Bytes per digest slot (digest size rounded up to a power of two).
    pub slot_size: usize,
    /// Number of hash levels (0 for a single data block).
    pub levels: usize,
    /// Hash blocks in each level, level 0 (over the data) first.
    pub level_blocks: Vec<u64>,
    /// Offset of each level in the hash tree (without superblock), in hash
    /// blocks; the top level is at 0.
    pub level_start: Vec<u64>,
    /// Total hash blocks.
    pub hash_blocks: u64,
}

impl VerityGeometry {
    /// The geometry for `data_blocks` (> 0) blocks hashed with `hash` into
    /// `hash_block_size`-byte blocks (a power of two ≥ 512).
    pub fn new(data_blocks: u64, hash: VerityHash, hash_block_size: u32) -> Result<Self, Error> {
        if data_blocks == 0 {
            return Err(Error::BadInput(
                "dm-verity needs at least one data block".into(),
            ));
        }
        let slot_size = hash.digest_size().next_power_of_two();
        let per_block = u64::from(hash_block_size) / slot_size as u64;
        if per_block < 2 || !per_block.is_power_of_two() {
            return Err(Error::BadInput(format!(
                "hash block size {hash_block_size} holds {per_block} {hash} digests; at least 2 (a power of two) needed"
            )));
        }
        let bits = per_block.trailing_zeros();
        // As cryptsetup: the smallest number of levels such that one top block
        // covers every data block.
        let mut levels = 0usize;
        while bits as usize * levels < 64 && ((data_blocks - 1) >> (bits as usize * levels)) != 0 {
            levels += 1;
        }
        let mut level_blocks = Vec::with_capacity(levels);
        for i in 0..levels {
            let shift = bits as u64 * (i as u64 + 1);
            let n = if shift >= 64 {
                1
            } else {
                // ceil(data_blocks / 2^shift) without overflow.
                ((data_blocks - 1) >> shift) + 1
            };
            level_blocks.push(n);
        }
        let mut level_start = vec![0u64; levels];
        let mut pos = 0u64;
        for i in (0..levels).rev() {
            level_start[i] = pos;
            pos += level_blocks[i];
        }
        Ok(VerityGeometry {
            data_blocks,
            hashes_per_block: per_block,
            slot_size,
            levels,
            level_blocks,
            level_start,
            hash_blocks: pos,
        })
    }
}

/// Computes `H(salt ‖ data)` into `out` (exactly the digest size).
pub(crate) fn salted_hash(hash: VerityHash, salt: &[u8], data: &[u8], out: &mut [u8]) {
    match hash {
        VerityHash::Sha256 => {
            let mut h = Sha256::new();
            h.update(salt);
            h.update(data);
            out.copy_from_slice(&h.finalize());
        }
        VerityHash::Sha1 => {
            let mut h = Sha1::new();
            h.update(salt);
            h.update(data);
            out.copy_from_slice(&h.finalize());
        }
        VerityHash::Sha512 => {
            let mut h = Sha512::new();
            h.update(salt);
            h.update(data);
            out.copy_from_slice(&h.finalize());
        }
    }
}

/// Where finished hash blocks go.
pub(crate) struct Sink<'a> {
    pub file: &'a mut File,
    pub path: &'a Path,
    /// Byte offset of the hash tree in the file (after a superblock).
    pub base: u64,
}

struct Level {
    block: Vec<u8>,
    filled: u64,
    emitted: u64,
}

/// The streaming builder.
pub(crate) struct TreeBuilder<'a> {
    hash: VerityHash,
    salt: &'a [u8],
    geo: &'a VerityGeometry,
    hash_block_size: usize,
    levels: Vec<Level>,
    sink: Option<Sink<'a>>,
    root: Option<Vec<u8>>,
    data_digests: u64,
}

impl<'a> TreeBuilder<'a> {
    pub fn new(
        hash: VerityHash,
        salt: &'a [u8],
        geo: &'a VerityGeometry,
        hash_block_size: u32,
        sink: Option<Sink<'a>>,
    ) -> Self {
        let hbs = hash_block_size as usize;
        TreeBuilder {
            hash,
            salt,
            geo,
            hash_block_size: hbs,
            levels: (0..geo.levels)
                .map(|_| Level {
                    block: vec![0; hbs],
                    filled: 0,
                    emitted: 0,
                })
                .collect(),
            sink,
            root: None,
            data_digests: 0,
        }
    }

    /// Adds the digests of the next data blocks (concatenated, digest size each).
    pub fn push_data_digests(&mut self, digests: &[u8]) -> Result<(), Error> {
        let ds = self.hash.digest_size();
        for d in digests.chunks_exact(ds) {
            self.data_digests += 1;
            if self.geo.levels == 0 {
                // A single data block: its digest is the root hash.
                self.root = Some(d.to_vec());
            } else {
                self.push(0, d)?;
            }
        }
        Ok(())
    }

    fn push(&mut self, level: usize, digest: &[u8]) -> Result<(), Error> {
        let slot = self.geo.slot_size;
        let per = self.geo.hashes_per_block;
        let l = &mut self.levels[level];
        let at = l.filled as usize * slot;
        l.block[at..at + digest.len()].copy_from_slice(digest);
        l.filled += 1;
        if l.filled == per {
            self.emit(level)?;
        }
        Ok(())
    }

    /// Writes out the (possibly partial, zero-padded) block of `level`, and
    /// pushes its digest one level up, or makes it the root.
    fn emit(&mut self, level: usize) -> Result<(), Error> {
        let hbs = self.hash_block_size as u64;
        let index = self.geo.level_start[level] + self.levels[level].emitted;
        if let Some(s) = &mut self.sink {
            let off = s.base + index * hbs;
            let io = |source| Error::Io {
                path: s.path.to_path_buf(),
                source,
            };
            s.file.seek(SeekFrom::Start(off)).map_err(io)?;
            s.file.write_all(&self.levels[level].block).map_err(io)?;
        }
        let mut buf = [0u8; 64];
        let d = &mut buf[..self.hash.digest_size()];
        salted_hash(self.hash, self.salt, &self.levels[level].block, d);
        let l = &mut self.levels[level];
        l.block.fill(0);
        l.filled = 0;
        l.emitted += 1;
        if level + 1 == self.geo.levels {
            self.root = Some(d.to_vec());
            Ok(())
        } else {
            self.push(level + 1, d)
        }
    }

    /// Flushes the partial blocks and returns the root hash.
    pub fn finish(mut self) -> Result<Vec<u8>, Error> {
        for level in 0..self.geo.levels {
            if self.levels[level].filled > 0 {
                self.emit(level)?;
            }
        }
        let consistent = self.data_digests == self.geo.data_blocks
            && self
                .levels
                .iter()
                .zip(&self.geo.level_blocks)
                .all(|(l, n)| l.emitted == *n);
        match self.root {
            Some(root) if consistent => Ok(root),
            _ => Err(Error::BadInput(format!(
                "internal: hash tree shape differs from its geometry ({} of {} data blocks hashed)",
                self.data_digests, self.geo.data_blocks
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_matches_cryptsetup_layout() {
        let g = VerityGeometry::new(1, VerityHash::Sha256, 4096).unwrap();
        assert_eq!((g.levels, g.hash_blocks), (0, 0));
        let g = VerityGeometry::new(128, VerityHash::Sha256, 4096).unwrap();
        assert_eq!((g.levels, g.hash_blocks), (1, 1));
        let g = VerityGeometry::new(129, VerityHash::Sha256, 4096).unwrap();
        assert_eq!(g.level_blocks, vec![2, 1]);
        assert_eq!(g.level_start, vec![1, 0]);
        let g = VerityGeometry::new(16385, VerityHash::Sha256, 4096).unwrap();
        assert_eq!(g.level_blocks, vec![129, 2, 1]);
        assert_eq!(g.level_start, vec![3, 1, 0]);
        // SHA-1 digests take 32-byte slots.
        let g = VerityGeometry::new(129, VerityHash::Sha1, 4096).unwrap();
        assert_eq!((g.slot_size, g.hashes_per_block), (32, 128));
        assert!(VerityGeometry::new(0, VerityHash::Sha256, 4096).is_err());
        // u64::MAX blocks still terminates with a sane shape.
        let g = VerityGeometry::new(u64::MAX, VerityHash::Sha512, 512).unwrap();
        assert_eq!(*g.level_blocks.last().unwrap(), 1);
    }
}
