//! The 512-byte verity superblock `veritysetup format` writes at the start of
//! the hash device unless `--no-superblock` is given (cryptsetup
//! `struct verity_sb`, little-endian, packed):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | `"verity\0\0"` |
//! | 8 | 4 | version = 1 |
//! | 12 | 4 | hash type = 1 (normal; 0 is Chrome OS) |
//! | 16 | 16 | UUID, in RFC 4122 text order |
//! | 32 | 32 | hash algorithm name, NUL-padded |
//! | 64 | 4 | data block size |
//! | 68 | 4 | hash block size |
//! | 72 | 8 | data blocks |
//! | 80 | 2 | salt size |
//! | 82 | 6 | padding |
//! | 88 | 256 | salt, zero-padded |
//! | 344 | 168 | padding |
//!
//! The hash tree follows at the superblock size rounded up to the hash block size.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use super::VerityParams;
use crate::error::Error;

/// Superblock size, bytes.
pub const SUPERBLOCK_SIZE: usize = 512;
/// Longest salt the superblock (and veritysetup) accepts, bytes.
pub const MAX_SALT: usize = 256;

/// The superblock for `params` over `data_blocks` blocks, with `uuid`.
pub fn superblock(
    params: &VerityParams,
    data_blocks: u64,
    uuid: &[u8; 16],
) -> [u8; SUPERBLOCK_SIZE] {
    let mut sb = [0u8; SUPERBLOCK_SIZE];
    sb[0..8].copy_from_slice(b"verity\0\0");
    sb[8..12].copy_from_slice(&1u32.to_le_bytes());
    sb[12..16].copy_from_slice(&1u32.to_le_bytes());
    sb[16..32].copy_from_slice(uuid);
    let name = params.hash.name().as_bytes();
    sb[32..32 + name.len()].copy_from_slice(name);
    sb[64..68].copy_from_slice(&params.data_block_size.to_le_bytes());
    sb[68..72].copy_from_slice(&params.hash_block_size.to_le_bytes());
    sb[72..80].copy_from_slice(&data_blocks.to_le_bytes());
    // The salt length was checked against MAX_SALT when the parameters were validated.
    let salt = &params.salt[..params.salt.len().min(MAX_SALT)];
    sb[80..82].copy_from_slice(&(salt.len() as u16).to_le_bytes());
    sb[88..88 + salt.len()].copy_from_slice(salt);
    sb
}

/// Byte offset of the hash tree when a superblock precedes it.
pub fn tree_offset(hash_block_size: u32) -> u64 {
    (SUPERBLOCK_SIZE as u64).next_multiple_of(u64::from(hash_block_size))
}

/// Parses a UUID in its text form (`12345678-9abc-def0-1122-334455667788`,
/// hyphens optional) into the 16 bytes the superblock stores.
pub fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let hex: String = s.chars().filter(|c| *c != '-').collect();
    let groups: Vec<usize> = s.split('-').map(str::len).collect();
    if s.contains('-') && groups != [8, 4, 4, 4, 12] {
        return None;
    }
    let mut out = [0u8; 16];
    hex::decode_to_slice(hex, &mut out).ok()?;
    Some(out)
}

/// The parameters a verity superblock records: what `veritysetup format`
/// wrote, so that a hash device made elsewhere (e.g. by systemd-repart) can be
/// recomputed with the same salt and block sizes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Superblock {
    /// Hash parameters, with `data_blocks` set to the recorded count.
    pub params: VerityParams,
    /// Data blocks covered.
    pub data_blocks: u64,
    /// UUID (RFC 4122 byte order).
    pub uuid: [u8; 16],
}

/// Parses the first 512 bytes of a hash device; `file` names it in errors.
/// Rejects anything but version 1, hash type 1 (normal), a known hash, valid
/// block sizes, a salt of at most 256 bytes, and non-zero padding (which
/// veritysetup would not have written).
pub fn parse_superblock(file: &str, b: &[u8]) -> Result<Superblock, Error> {
    parse(b).map_err(|what| Error::BadArtifact {
        file: file.to_string(),
        what,
    })
}

/// Reads and parses the superblock at the start of the hash device `path`.
pub fn read_superblock(path: &Path) -> Result<Superblock, Error> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = File::open(path).map_err(io)?;
    let mut b = Vec::with_capacity(SUPERBLOCK_SIZE);
    f.by_ref()
        .take(SUPERBLOCK_SIZE as u64)
        .read_to_end(&mut b)
        .map_err(io)?;
    parse_superblock(&path.display().to_string(), &b)
}

fn parse(b: &[u8]) -> Result<Superblock, String> {
    let sb: &[u8; SUPERBLOCK_SIZE] = b
        .get(..SUPERBLOCK_SIZE)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| {
            format!(
                "{} bytes, shorter than the {SUPERBLOCK_SIZE}-byte verity superblock",
                b.len()
            )
        })?;
    let u32_at = |at: usize| u32::from_le_bytes([sb[at], sb[at + 1], sb[at + 2], sb[at + 3]]);
    if &sb[0..8] != b"verity\0\0" {
        return Err("no verity superblock (signature \"verity\" expected at offset 0)".into());
    }
    let (version, hash_type) = (u32_at(8), u32_at(12));
    if version != 1 || hash_type != 1 {
        return Err(format!(
            "superblock version {version}, hash type {hash_type}: only version 1 with hash type 1 (normal) is supported"
        ));
    }
    let name_len = sb[32..64].iter().position(|&c| c == 0).unwrap_or(32);
    let name = std::str::from_utf8(&sb[32..32 + name_len]).unwrap_or("");
    let hash: super::VerityHash = name.parse().map_err(|_| {
        format!("superblock hash algorithm {name:?} (offset 32) is not sha256, sha1 or sha512")
    })?;
    if sb[32 + name_len..64].iter().any(|&c| c != 0) {
        return Err("superblock hash algorithm name (offset 32) has bytes after its NUL".into());
    }
    let data_blocks = u64::from_le_bytes(sb[72..80].try_into().unwrap_or([0; 8]));
    let salt_len = usize::from(u16::from_le_bytes([sb[80], sb[81]]));
    if salt_len > MAX_SALT {
        return Err(format!(
            "superblock salt size {salt_len} (offset 80) exceeds {MAX_SALT}"
        ));
    }
    if sb[82..88]
        .iter()
        .chain(&sb[88 + salt_len..])
        .any(|&c| c != 0)
    {
        return Err(
            "superblock padding (offsets 82..88, after the salt, 344..512) is not zero".into(),
        );
    }
    let mut uuid = [0u8; 16];
    uuid.copy_from_slice(&sb[16..32]);
    let params = VerityParams {
        data_block_size: u32_at(64),
        hash_block_size: u32_at(68),
        salt: sb[88..88 + salt_len].to_vec(),
        hash,
        data_blocks: Some(data_blocks),
    };
    params.check().map_err(|e| match e {
        Error::BadInput(m) => format!("superblock: {m}"),
        other => format!("superblock: {other}"),
    })?;
    Ok(Superblock {
        params,
        data_blocks,
        uuid,
    })
}
