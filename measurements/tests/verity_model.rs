//! The streaming dm-verity builder against a direct, whole-tree-in-memory
//! transcription of the format (level by level), on random sizes, block sizes,
//! salts and hashes. Needs no external tool.

use chrysalis_measurements::verity::{
    parse_uuid, verity_root_hash, write_hash_tree, HashTreeLayout, VerityHash, VerityParams,
};
use proptest::prelude::*;
use sha2::Digest;

fn h(hash: VerityHash, salt: &[u8], data: &[u8]) -> Vec<u8> {
    match hash {
        VerityHash::Sha256 => sha2::Sha256::new()
            .chain_update(salt)
            .chain_update(data)
            .finalize()
            .to_vec(),
        VerityHash::Sha512 => sha2::Sha512::new()
            .chain_update(salt)
            .chain_update(data)
            .finalize()
            .to_vec(),
        VerityHash::Sha1 => sha1::Sha1::new()
            .chain_update(salt)
            .chain_update(data)
            .finalize()
            .to_vec(),
    }
}

/// Level 0 = digests of the data blocks packed into zero-padded hash blocks;
/// each next level hashes the blocks of the one below, until one block is
/// left; the root is the digest of that block (of the data block if there is
/// only one). Returns (root, tree bytes with the top level first).
fn naive(data: &[u8], dbs: usize, hbs: usize, salt: &[u8], hash: VerityHash) -> (Vec<u8>, Vec<u8>) {
    let blocks: Vec<&[u8]> = data.chunks(dbs).collect();
    if blocks.len() == 1 {
        return (h(hash, salt, blocks[0]), Vec::new());
    }
    let slot = hash.digest_size().next_power_of_two();
    let mut digests: Vec<Vec<u8>> = blocks.iter().map(|b| h(hash, salt, b)).collect();
    let mut levels: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut level = Vec::new();
        for group in digests.chunks(hbs / slot) {
            let mut block = vec![0u8; hbs];
            for (i, d) in group.iter().enumerate() {
                block[i * slot..i * slot + d.len()].copy_from_slice(d);
            }
            level.push(block);
        }
        digests = level.iter().map(|b| h(hash, salt, b)).collect();
        let done = level.len() == 1;
        levels.push(level.concat());
        if done {
            break;
        }
    }
    levels.reverse();
    (digests.remove(0), levels.concat())
}

fn sizes() -> impl Strategy<Value = (usize, usize)> {
    (0u32..4, 0u32..4).prop_map(|(a, b)| (512usize << a, 512usize << b))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn streaming_equals_naive(
        (dbs, hbs) in sizes(),
        blocks in 1usize..700,
        salt in proptest::collection::vec(any::<u8>(), 0..40),
        hash in prop_oneof![Just(VerityHash::Sha256), Just(VerityHash::Sha1), Just(VerityHash::Sha512)],
        seed in any::<u8>(),
    ) {
        let data: Vec<u8> = (0..dbs * blocks).map(|i| (i as u8).wrapping_mul(31) ^ seed ^ (i >> 9) as u8).collect();
        let tmp = tempfile::tempdir().unwrap();
        let img = tmp.path().join("img");
        std::fs::write(&img, &data).unwrap();
        let p = VerityParams { data_block_size: dbs as u32, hash_block_size: hbs as u32, salt: salt.clone(), hash, data_blocks: None };
        let out = tmp.path().join("tree");
        let r = write_hash_tree(&img, &p, &out, HashTreeLayout::NoSuperblock).unwrap();
        let (root, tree) = naive(&data, dbs, hbs, &salt, hash);
        prop_assert_eq!(&r.root_hash, &root);
        prop_assert_eq!(std::fs::read(&out).unwrap(), tree);
        prop_assert_eq!(r.data_blocks, blocks as u64);
    }
}

#[test]
fn superblock_fields() {
    let tmp = tempfile::tempdir().unwrap();
    let img = tmp.path().join("img");
    std::fs::write(&img, vec![7u8; 4096 * 200]).unwrap();
    let p = VerityParams::default().with_salt_hex("a1b2c3").unwrap();
    let out = tmp.path().join("tree");
    let uuid = parse_uuid("00112233-4455-6677-8899-aabbccddeeff").unwrap();
    let r = write_hash_tree(&img, &p, &out, HashTreeLayout::Superblock { uuid }).unwrap();
    let f = std::fs::read(&out).unwrap();
    assert_eq!(&f[0..8], b"verity\0\0");
    assert_eq!(&f[16..32], &uuid);
    assert_eq!(&f[32..38], b"sha256");
    assert_eq!(u64::from_le_bytes(f[72..80].try_into().unwrap()), 200);
    assert_eq!(u16::from_le_bytes(f[80..82].try_into().unwrap()), 3);
    assert_eq!(&f[88..91], &[0xa1, 0xb2, 0xc3]);
    assert!(f[512..4096].iter().all(|b| *b == 0));
    let no_sb = verity_root_hash(&img, &p).unwrap();
    assert_eq!(no_sb.root_hash, r.root_hash);
    assert_eq!(f.len() as u64, 4096 + no_sb.hash_tree_size);
    let sb = chrysalis_measurements::verity::parse_superblock("tree", &f).unwrap();
    assert_eq!(
        sb.params,
        VerityParams {
            data_blocks: Some(200),
            ..p.clone()
        }
    );
    // Every truncation fails; flipping any byte of the header fields, the salt
    // length or the padding fails or changes what is read, never panics.
    for n in 0..512 {
        assert!(chrysalis_measurements::verity::parse_superblock("tree", &f[..n]).is_err());
    }
    for i in 0..512 {
        let mut g = f[..512].to_vec();
        g[i] ^= 0x80;
        if let Ok(other) = chrysalis_measurements::verity::parse_superblock("tree", &g) {
            assert_ne!(
                (other.params, other.uuid),
                (sb.params.clone(), sb.uuid),
                "byte {i}"
            );
        }
    }
    assert_eq!(parse_uuid("0011223344556677-8899aabbccddeeff"), None);
    assert_eq!(parse_uuid("00112233445566778899aabbccddeeff"), Some(uuid));
}
