//! dm-verity root hashes and hash trees, identical to `veritysetup format`
//! (format version 1) for the same parameters.
//!
//! The image is streamed in chunks: the data blocks of a chunk are hashed in
//! parallel (rayon, order preserved) while the next chunk is read, and the tree
//! keeps one partial hash block per level ([`tree`]), so memory stays at a few
//! chunk buffers (about 16 MiB) whatever the image size.
//!
//! Differences from `veritysetup format`, on purpose:
//! * the salt is a parameter; `veritysetup` draws 32 random bytes unless
//!   `--salt` is given, so its root hash is not reproducible by default. Our
//!   default ([`VerityParams::default`]) is the empty salt (`veritysetup --salt=`
//!   or `--salt=-`): it needs nothing recorded to reproduce, and a public fixed
//!   salt would protect no better (the salt only separates trees against
//!   multi-target attacks on the hash, which a known salt does not prevent);
//! * an image whose size is not a multiple of the data block size is an error
//!   naming the file and its size. `veritysetup` silently covers only the whole
//!   blocks (`size / data_block_size`), leaving the tail unverified; to do that
//!   deliberately, give [`VerityParams::data_blocks`] (its `--data-blocks`);
//! * the superblock, when written, needs an explicit UUID (veritysetup draws a
//!   random one unless `--uuid` is given).

pub mod superblock;
pub mod tree;

use std::fmt;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::str::FromStr;

use rayon::prelude::*;
use serde::Serialize;

use crate::error::Error;
use superblock::MAX_SALT;
pub use superblock::{parse_superblock, parse_uuid, read_superblock, Superblock};
pub use tree::VerityGeometry;
use tree::{salted_hash, Sink, TreeBuilder};

/// Bytes read per chunk; two chunks are in flight (one hashed, one read).
const CHUNK: usize = 8 << 20;

/// Hash algorithm of the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum VerityHash {
    /// SHA-256 (veritysetup's default), 32-byte digests.
    #[default]
    Sha256,
    /// SHA-1, 20-byte digests stored in 32-byte slots.
    Sha1,
    /// SHA-512, 64-byte digests.
    Sha512,
}

impl VerityHash {
    /// Digest size, bytes.
    pub fn digest_size(&self) -> usize {
        match self {
            VerityHash::Sha256 => 32,
            VerityHash::Sha1 => 20,
            VerityHash::Sha512 => 64,
        }
    }

    /// The name veritysetup uses (`--hash`) and writes in the superblock.
    pub fn name(&self) -> &'static str {
        match self {
            VerityHash::Sha256 => "sha256",
            VerityHash::Sha1 => "sha1",
            VerityHash::Sha512 => "sha512",
        }
    }
}

impl fmt::Display for VerityHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for VerityHash {
    type Err = Error;

    /// `sha256`, `sha1` or `sha512`, case-insensitively.
    fn from_str(s: &str) -> Result<Self, Error> {
        [VerityHash::Sha256, VerityHash::Sha1, VerityHash::Sha512]
            .into_iter()
            .find(|h| h.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                Error::BadInput(format!(
                    "unknown dm-verity hash {s:?}; known: sha256, sha1, sha512"
                ))
            })
    }
}

/// Parameters of `veritysetup format` (format version 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerityParams {
    /// Data block size, bytes: a power of two in 512..=524288 (default 4096).
    pub data_block_size: u32,
    /// Hash block size, bytes: a power of two in 512..=524288 (default 4096).
    pub hash_block_size: u32,
    /// Salt, at most 256 bytes (default empty; see the module docs).
    pub salt: Vec<u8>,
    /// Hash algorithm (default SHA-256).
    pub hash: VerityHash,
    /// Cover only this many data blocks from the start of the image
    /// (`--data-blocks`); `None` = the whole image, whose size must then be a
    /// multiple of the data block size.
    pub data_blocks: Option<u64>,
}

impl Default for VerityParams {
    fn default() -> Self {
        VerityParams {
            data_block_size: 4096,
            hash_block_size: 4096,
            salt: Vec::new(),
            hash: VerityHash::Sha256,
            data_blocks: None,
        }
    }
}

impl VerityParams {
    /// Sets the salt from hex (empty or `-` for no salt, as veritysetup).
    pub fn with_salt_hex(mut self, salt: &str) -> Result<Self, Error> {
        self.salt = parse_salt(salt)?;
        Ok(self)
    }

    pub(crate) fn check(&self) -> Result<(), Error> {
        for (what, v) in [
            ("data block size", self.data_block_size),
            ("hash block size", self.hash_block_size),
        ] {
            if !(512..=512 * 1024).contains(&v) || !v.is_power_of_two() {
                return Err(Error::BadInput(format!(
                    "{what} {v} is not a power of two in 512..=524288 (as veritysetup requires)"
                )));
            }
        }
        if self.salt.len() > MAX_SALT {
            return Err(Error::BadInput(format!(
                "salt is {} bytes; the verity superblock holds at most {MAX_SALT}",
                self.salt.len()
            )));
        }
        Ok(())
    }

    /// The arguments that make `veritysetup format` compute the same tree.
    pub fn veritysetup_args(&self) -> Vec<String> {
        let mut a = vec![
            format!("--hash={}", self.hash),
            format!("--data-block-size={}", self.data_block_size),
            format!("--hash-block-size={}", self.hash_block_size),
            format!(
                "--salt={}",
                if self.salt.is_empty() {
                    "-".to_string()
                } else {
                    hex::encode(&self.salt)
                }
            ),
        ];
        if let Some(n) = self.data_blocks {
            a.push(format!("--data-blocks={n}"));
        }
        a
    }
}

/// Parses a salt given as hex; empty or `-` is the empty salt (veritysetup's
/// spelling).
pub fn parse_salt(s: &str) -> Result<Vec<u8>, Error> {
    let t = s.trim();
    if t.is_empty() || t == "-" {
        return Ok(Vec::new());
    }
    let v = hex::decode(t).map_err(|e| Error::BadInput(format!("salt {t:?} is not hex: {e}")))?;
    if v.len() > MAX_SALT {
        return Err(Error::BadInput(format!(
            "salt is {} bytes; the verity superblock holds at most {MAX_SALT}",
            v.len()
        )));
    }
    Ok(v)
}

/// How [`write_hash_tree`] lays out the hash file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashTreeLayout {
    /// The tree alone, byte-identical to `veritysetup format --no-superblock`
    /// (empty for a single data block). For a partition whose root hash goes on
    /// the kernel command line (`roothash=`), as systemd-veritysetup uses it.
    NoSuperblock,
    /// A 512-byte superblock with this UUID, zero padding up to the hash block
    /// size, then the tree: byte-identical to `veritysetup format --uuid=UUID`.
    Superblock {
        /// UUID stored in the superblock (RFC 4122 byte order), see [`parse_uuid`].
        uuid: [u8; 16],
    },
}

/// The result of hashing an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerityResult {
    /// The root hash (digest size of the algorithm), serialized as hex.
    #[serde(with = "hex::serde")]
    pub root_hash: Vec<u8>,
    /// The salt used, serialized as hex.
    #[serde(with = "hex::serde")]
    pub salt: Vec<u8>,
    /// Hash algorithm.
    pub hash: VerityHash,
    /// Data block size, bytes.
    pub data_block_size: u32,
    /// Hash block size, bytes.
    pub hash_block_size: u32,
    /// Data blocks covered.
    pub data_blocks: u64,
    /// Hash blocks in the tree.
    pub hash_blocks: u64,
    /// Size of the tree without superblock, bytes (`hash_blocks × hash_block_size`).
    pub hash_tree_size: u64,
    /// Size of the hash file with a superblock, bytes.
    pub hash_device_size_with_superblock: u64,
    /// Tree levels (0 for a single data block).
    pub levels: usize,
}

/// The dm-verity root hash of the image at `path`, as `veritysetup format`
/// computes it with the same parameters.
pub fn verity_root_hash(path: &Path, params: &VerityParams) -> Result<VerityResult, Error> {
    run(path, params, None)
}

/// Like [`verity_root_hash`], and writes the hash tree to `out` (created or
/// truncated) in the given layout.
pub fn write_hash_tree(
    path: &Path,
    params: &VerityParams,
    out: &Path,
    layout: HashTreeLayout,
) -> Result<VerityResult, Error> {
    run(path, params, Some((out, layout)))
}

fn run(
    path: &Path,
    params: &VerityParams,
    out: Option<(&Path, HashTreeLayout)>,
) -> Result<VerityResult, Error> {
    params.check()?;
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(io)?;
    // Seeking to the end also sizes block devices, where metadata says 0.
    let size = file.seek(SeekFrom::End(0)).map_err(io)?;
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    let dbs = u64::from(params.data_block_size);
    let data_blocks = match params.data_blocks {
        None => {
            if !size.is_multiple_of(dbs) {
                return Err(Error::BadArtifact {
                    file: path.display().to_string(),
                    what: format!(
                        "size {size} bytes is not a multiple of the {dbs}-byte data block size ({} whole blocks + {} bytes; veritysetup would silently leave the last {} bytes unverified; pad the image or give the number of data blocks)",
                        size / dbs,
                        size % dbs,
                        size % dbs
                    ),
                });
            }
            size / dbs
        }
        Some(n) => {
            if n.checked_mul(dbs).is_none_or(|need| need > size) {
                return Err(Error::BadArtifact {
                    file: path.display().to_string(),
                    what: format!(
                        "{n} data blocks of {dbs} bytes asked, but the file is only {size} bytes"
                    ),
                });
            }
            n
        }
    };
    if data_blocks == 0 {
        return Err(Error::BadArtifact {
            file: path.display().to_string(),
            what: "empty: dm-verity needs at least one data block".into(),
        });
    }
    let geo = VerityGeometry::new(data_blocks, params.hash, params.hash_block_size)?;
    let hbs = u64::from(params.hash_block_size);
    let too_big = || {
        Error::BadInput(format!(
            "hash tree for {data_blocks} blocks does not fit in 64 bits"
        ))
    };
    let hash_tree_size = geo.hash_blocks.checked_mul(hbs).ok_or_else(too_big)?;
    let with_sb = superblock::tree_offset(params.hash_block_size)
        .checked_add(hash_tree_size)
        .ok_or_else(too_big)?;

    let mut out_file = None;
    if let Some((out_path, layout)) = out {
        let oio = |source| Error::Io {
            path: out_path.to_path_buf(),
            source,
        };
        let mut f = File::create(out_path).map_err(oio)?;
        let base = match layout {
            HashTreeLayout::NoSuperblock => 0,
            HashTreeLayout::Superblock { uuid } => {
                f.write_all(&superblock::superblock(params, data_blocks, &uuid))
                    .map_err(oio)?;
                superblock::tree_offset(params.hash_block_size)
            }
        };
        out_file = Some((f, out_path, base, base + hash_tree_size));
    }

    let sink = out_file.as_mut().map(|(f, p, base, _)| Sink {
        file: f,
        path: p,
        base: *base,
    });
    let mut builder = TreeBuilder::new(
        params.hash,
        &params.salt,
        &geo,
        params.hash_block_size,
        sink,
    );
    hash_data(&mut file, path, data_blocks, params, &mut builder)?;
    let root_hash = builder.finish()?;

    if let Some((f, p, _, total)) = out_file {
        let oio = |source| Error::Io {
            path: p.to_path_buf(),
            source,
        };
        // Also covers the zero gap after a superblock when the tree is empty.
        f.set_len(total).map_err(oio)?;
        f.sync_all().map_err(oio)?;
    }

    Ok(VerityResult {
        root_hash,
        salt: params.salt.clone(),
        hash: params.hash,
        data_block_size: params.data_block_size,
        hash_block_size: params.hash_block_size,
        data_blocks,
        hash_blocks: geo.hash_blocks,
        hash_tree_size,
        hash_device_size_with_superblock: with_sb,
        levels: geo.levels,
    })
}

/// Reads into `buf` until it is full or the file ends; returns the bytes read.
fn read_full(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Streams the data blocks through `builder`: a reader thread fills one chunk
/// buffer while the rayon pool hashes the other.
fn hash_data(
    file: &mut File,
    path: &Path,
    data_blocks: u64,
    params: &VerityParams,
    builder: &mut TreeBuilder<'_>,
) -> Result<(), Error> {
    let dbs = params.data_block_size as usize;
    let ds = params.hash.digest_size();
    let blocks_per_chunk = (CHUNK / dbs).max(1);
    let total = data_blocks
        .checked_mul(dbs as u64)
        .ok_or_else(|| Error::BadInput("image size overflows 64 bits".into()))?;
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };

    std::thread::scope(|scope| -> Result<(), Error> {
        // Two buffers circulate: full ones to the hasher, empty ones back.
        let (full_tx, full_rx) = std::sync::mpsc::sync_channel::<std::io::Result<Vec<u8>>>(1);
        let (empty_tx, empty_rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(2);
        for _ in 0..2 {
            // Cannot fail: the receiver is alive and the channel has room.
            let _ = empty_tx.send(vec![0u8; blocks_per_chunk * dbs]);
        }
        scope.spawn(move || {
            let mut left = total;
            while left > 0 {
                let Ok(mut buf) = empty_rx.recv() else { return };
                let want = (buf.len() as u64).min(left) as usize;
                buf.truncate(want);
                let r = read_full(file, &mut buf).and_then(|n| {
                    if n < want {
                        Err(std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            format!(
                                "file ended {} bytes early (did it shrink while hashed?)",
                                left - n as u64
                            ),
                        ))
                    } else {
                        Ok(buf)
                    }
                });
                let failed = r.is_err();
                if full_tx.send(r).is_err() || failed {
                    return;
                }
                left -= want as u64;
            }
        });

        let mut digests = vec![0u8; blocks_per_chunk * ds];
        let mut done = 0u64;
        while done < total {
            let mut buf = full_rx
                .recv()
                .map_err(|_| io(std::io::Error::other("reader thread stopped")))?
                .map_err(io)?;
            let n = buf.len() / dbs;
            digests[..n * ds]
                .par_chunks_mut(ds)
                .zip(buf.par_chunks(dbs))
                .for_each(|(d, block)| salted_hash(params.hash, &params.salt, block, d));
            builder.push_data_digests(&digests[..n * ds])?;
            done += buf.len() as u64;
            buf.resize(blocks_per_chunk * dbs, 0);
            // The reader may have finished already; then the buffer is just dropped.
            let _ = empty_tx.send(buf);
        }
        Ok(())
    })
}
