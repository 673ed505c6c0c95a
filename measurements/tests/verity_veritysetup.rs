//! dm-verity root hashes and hash files against `veritysetup format`
//! (cryptsetup-bin; `ci/measure-tools.sh` installs it) on the same images and
//! parameters: sizes around every level boundary, salts empty and not, the
//! block-size combinations veritysetup allows, SHA-256/SHA-1/SHA-512, with and
//! without superblock. Skipped with a message when veritysetup is absent.

use std::path::{Path, PathBuf};
use std::process::Command;

use chrysalis_measurements::verity::{
    parse_uuid, read_superblock, verity_root_hash, write_hash_tree, HashTreeLayout, VerityHash,
    VerityParams,
};
use chrysalis_measurements::Error;

fn veritysetup() -> Option<PathBuf> {
    let found = Command::new("veritysetup")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("skipping: veritysetup not found (run ci/measure-tools.sh or apt-get install cryptsetup-bin)");
    }
    found.then(|| PathBuf::from("veritysetup"))
}

fn pseudo_random(len: usize, mut seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        seed ^= seed >> 12;
        seed ^= seed << 25;
        seed ^= seed >> 27;
        out.extend_from_slice(&seed.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Runs `veritysetup format` and returns its root hash; the hash file is `hash`.
fn reference(vs: &Path, data: &Path, hash: &Path, p: &VerityParams, uuid: Option<&str>) -> String {
    // veritysetup writes into an existing hash file without truncating it.
    let _ = std::fs::remove_file(hash);
    let mut cmd = Command::new(vs);
    cmd.arg("format").args(p.veritysetup_args());
    match uuid {
        None => {
            cmd.arg("--no-superblock");
        }
        Some(u) => {
            cmd.arg(format!("--uuid={u}"));
        }
    }
    let out = cmd.arg(data).arg(hash).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "veritysetup {:?}: {}{}",
        p,
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("Root hash:"))
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|| panic!("no root hash in {stdout}"))
}

/// Compares root hash and hash file (no superblock) for one image and parameter set.
fn check(vs: &Path, dir: &Path, blocks: u64, p: &VerityParams, seed: u64) {
    let data = dir.join(format!("data-{seed}"));
    std::fs::write(
        &data,
        pseudo_random((blocks * u64::from(p.data_block_size)) as usize, seed),
    )
    .unwrap();
    let theirs_tree = dir.join("theirs.hash");
    let ours_tree = dir.join("ours.hash");
    let theirs = reference(vs, &data, &theirs_tree, p, None);
    let r = write_hash_tree(&data, p, &ours_tree, HashTreeLayout::NoSuperblock).unwrap();
    let what = format!("{blocks} blocks, {p:?}");
    assert_eq!(hex::encode(&r.root_hash), theirs, "root hash, {what}");
    assert_eq!(r.data_blocks, blocks, "{what}");
    let (a, b) = (
        std::fs::read(&ours_tree).unwrap(),
        std::fs::read(&theirs_tree).unwrap(),
    );
    assert_eq!(a.len() as u64, r.hash_tree_size, "{what}");
    assert!(
        a == b,
        "hash tree differs ({} vs {} bytes), {what}",
        a.len(),
        b.len()
    );
    // The root-hash-only path agrees with the writing path.
    assert_eq!(verity_root_hash(&data, p).unwrap(), r);
    std::fs::remove_file(&data).unwrap();
}

fn params(dbs: u32, hbs: u32, salt: &str, hash: VerityHash) -> VerityParams {
    VerityParams {
        data_block_size: dbs,
        hash_block_size: hbs,
        hash,
        ..VerityParams::default()
    }
    .with_salt_hex(salt)
    .unwrap()
}

const SALT32: &str = "5f1d2c8e9a0b4c3d7e6f8a9b0c1d2e3f405162738495a6b7c8d9eafb0c1d2e3f";

#[test]
fn sha256_4k_level_boundaries_and_salts() {
    let Some(vs) = veritysetup() else { return };
    let tmp = tempfile::tempdir().unwrap();
    for salt in ["", "00", SALT32] {
        for blocks in [1u64, 2, 127, 128, 129, 257, 1000] {
            check(
                &vs,
                tmp.path(),
                blocks,
                &params(4096, 4096, salt, VerityHash::Sha256),
                blocks,
            );
        }
    }
    // 128² and 128² + 1 blocks (64 MiB): a third level appears; several read chunks.
    for blocks in [16384u64, 16385] {
        check(
            &vs,
            tmp.path(),
            blocks,
            &params(4096, 4096, SALT32, VerityHash::Sha256),
            blocks,
        );
    }
    check(
        &vs,
        tmp.path(),
        16385,
        &params(4096, 4096, "", VerityHash::Sha256),
        99,
    );
}

#[test]
fn other_block_sizes() {
    let Some(vs) = veritysetup() else { return };
    let tmp = tempfile::tempdir().unwrap();
    for (dbs, hbs) in [
        (512, 512),
        (512, 4096),
        (1024, 512),
        (1024, 1024),
        (4096, 512),
        (4096, 1024),
        (2048, 8192),
        (65536, 4096),
        (4096, 524288),
    ] {
        for blocks in [1u64, 3, 17, 300, 4097] {
            if u64::from(dbs) * blocks > 64 << 20 {
                continue;
            }
            check(
                &vs,
                tmp.path(),
                blocks,
                &params(dbs, hbs, "abcd", VerityHash::Sha256),
                blocks + u64::from(dbs),
            );
        }
    }
}

#[test]
fn sha1_and_sha512() {
    let Some(vs) = veritysetup() else { return };
    let tmp = tempfile::tempdir().unwrap();
    for hash in [VerityHash::Sha1, VerityHash::Sha512] {
        for (dbs, hbs) in [(4096, 4096), (512, 512), (1024, 4096)] {
            for blocks in [1u64, 8, 9, 64, 65, 129, 4097] {
                check(
                    &vs,
                    tmp.path(),
                    blocks,
                    &params(dbs, hbs, "0102", hash),
                    blocks * 3,
                );
            }
        }
    }
}

#[test]
fn superblock_layout_matches() {
    let Some(vs) = veritysetup() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let uuid = "12345678-9abc-def0-1122-334455667788";
    for (blocks, p) in [
        (129u64, params(4096, 4096, SALT32, VerityHash::Sha256)),
        (1, params(4096, 4096, "", VerityHash::Sha256)),
        (300, params(1024, 512, "ab", VerityHash::Sha512)),
        (70, params(4096, 1024, "cdef", VerityHash::Sha1)),
    ] {
        let data = tmp.path().join("data");
        std::fs::write(
            &data,
            pseudo_random((blocks * u64::from(p.data_block_size)) as usize, blocks),
        )
        .unwrap();
        let theirs_file = tmp.path().join("theirs-sb.hash");
        let ours_file = tmp.path().join("ours-sb.hash");
        let theirs = reference(&vs, &data, &theirs_file, &p, Some(uuid));
        let r = write_hash_tree(
            &data,
            &p,
            &ours_file,
            HashTreeLayout::Superblock {
                uuid: parse_uuid(uuid).unwrap(),
            },
        )
        .unwrap();
        assert_eq!(hex::encode(&r.root_hash), theirs);
        let (a, b) = (
            std::fs::read(&ours_file).unwrap(),
            std::fs::read(&theirs_file).unwrap(),
        );
        assert_eq!(a.len() as u64, r.hash_device_size_with_superblock);
        assert!(
            a == b,
            "superblock hash file differs ({} vs {} bytes) for {blocks} blocks {p:?}",
            a.len(),
            b.len()
        );
        // Reading veritysetup's superblock back gives the parameters it was made with.
        let sb = read_superblock(&theirs_file).unwrap();
        assert_eq!(sb.uuid, parse_uuid(uuid).unwrap());
        assert_eq!(sb.data_blocks, blocks);
        assert_eq!(
            sb.params,
            VerityParams {
                data_blocks: Some(blocks),
                ..p.clone()
            }
        );
    }
}

/// veritysetup silently covers only the whole blocks of an image whose size is
/// not a multiple of the block size; we refuse, naming file and size, unless
/// the block count is given — then we agree with `--data-blocks`.
#[test]
fn partial_last_block() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("odd.img");
    std::fs::write(&data, pseudo_random(3 * 4096 + 100, 5)).unwrap();
    let err = verity_root_hash(&data, &VerityParams::default()).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::BadArtifact { .. }), "{err:?}");
    assert!(
        msg.contains("odd.img") && msg.contains("12388") && msg.contains("4096"),
        "{msg}"
    );

    let p = VerityParams {
        data_blocks: Some(3),
        ..VerityParams::default()
    };
    let ours = verity_root_hash(&data, &p).unwrap();
    assert_eq!(ours.data_blocks, 3);
    let too_many = VerityParams {
        data_blocks: Some(4),
        ..VerityParams::default()
    };
    assert!(verity_root_hash(&data, &too_many).is_err());

    let Some(vs) = veritysetup() else { return };
    // What veritysetup does without --data-blocks: the same as 3 whole blocks.
    let implicit = reference(
        &vs,
        &data,
        &tmp.path().join("h1"),
        &VerityParams::default(),
        None,
    );
    let explicit = reference(&vs, &data, &tmp.path().join("h2"), &p, None);
    assert_eq!(implicit, explicit);
    assert_eq!(hex::encode(&ours.root_hash), explicit);
}

#[test]
fn bad_parameters_are_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("d.img");
    std::fs::write(&data, vec![0u8; 8192]).unwrap();
    for (dbs, hbs) in [
        (0, 4096),
        (4096, 256),
        (3000, 4096),
        (1 << 20, 4096),
        (4096, 1 << 20),
    ] {
        let p = VerityParams {
            data_block_size: dbs,
            hash_block_size: hbs,
            ..VerityParams::default()
        };
        assert!(
            matches!(verity_root_hash(&data, &p), Err(Error::BadInput(_))),
            "{dbs}/{hbs}"
        );
    }
    assert!(VerityParams::default()
        .with_salt_hex(&"ab".repeat(257))
        .is_err());
    assert!(VerityParams::default().with_salt_hex("xyz").is_err());
    assert!(VerityParams::default()
        .with_salt_hex(&"ab".repeat(256))
        .is_ok());
    let empty = tmp.path().join("empty.img");
    std::fs::write(&empty, b"").unwrap();
    let msg = verity_root_hash(&empty, &VerityParams::default())
        .unwrap_err()
        .to_string();
    assert!(msg.contains("empty.img"), "{msg}");
    let missing =
        verity_root_hash(&tmp.path().join("nope.img"), &VerityParams::default()).unwrap_err();
    assert!(matches!(missing, Error::Io { .. }) && missing.to_string().contains("nope.img"));
}
