//! `chrysalis image model`: the model volume: a read-only erofs image of a
//! model directory plus its dm-verity hash tree, and the root hash the host
//! puts into the measured runtime configuration
//! (`"model_volume": {"verity_root_hash": HEX}`; the guest side is
//! `chrysalis_agent::model_volume`).
//!
//! Built with the real tools: `mkfs.erofs` (erofs-utils) and `veritysetup`
//! (cryptsetup). Deterministic: fixed timestamps, owners, UUIDs and salt, no
//! extended attributes, so the same directory always gives the same root
//! hash and anyone holding the model files can recompute it. Nothing is
//! left half-written: both images are built under temporary names in the
//! output directory and renamed into place only when both are complete.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde::Serialize;

/// Data image, attached with virtio serial [`DATA_SERIAL`].
pub const DATA_FILE: &str = "model.erofs";
/// Hash-tree image, attached with virtio serial [`HASH_SERIAL`].
pub const HASH_FILE: &str = "model.verity";
/// virtio-blk serial of the data disk: the guest opens
/// `/dev/disk/by-id/virtio-<serial>` (chrysalis_agent::model_volume).
/// Serials are cut at 20 bytes.
pub const DATA_SERIAL: &str = "chrysalis-model";
/// virtio-blk serial of the hash-tree disk.
pub const HASH_SERIAL: &str = "chrysalis-model-ht";
/// Description of the volume.
pub const INFO_FILE: &str = "model.json";

/// Filesystem UUID of every model volume (volumes are addressed by their
/// virtio serial, never by UUID; a fixed value keeps the bytes a function
/// of the files alone).
const FS_UUID: &str = "6d6f6465-6c00-4000-8000-636872797361";
/// dm-verity superblock UUID, fixed for the same reason.
const VERITY_UUID: &str = "6d6f6465-6c00-4000-8000-766572697479";
/// dm-verity salt: SHA-256("chrysalis model volume"). Public and fixed: the
/// salt only has to differ from other systems' trees; SHA-256 itself keeps
/// the model bytes bound to the root hash.
const SALT_HEX: &str = "f365ad7949310d8c550f07fe76a4c88364178559451de5900d6e88b50481d167";

/// What `chrysalis image model` writes to `model.json` and prints.
#[derive(Debug, Serialize)]
pub struct ModelVolumeInfo {
    /// dm-verity root hash (SHA-256, hex): put it in the runtime configuration.
    pub verity_root_hash: String,
    /// Size of model.erofs in bytes.
    pub data_bytes: u64,
    /// Size of model.verity in bytes.
    pub hash_bytes: u64,
    /// Number of regular files in the volume.
    pub files: u64,
    /// UNIX time stamped on every file (SOURCE_DATE_EPOCH, else 0).
    pub timestamp: u64,
    /// The runtime-configuration section naming this volume.
    pub runtime_config: serde_json::Value,
}

fn tool(name: &str, package: &str) -> Result<PathBuf> {
    for dir in std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain(["/usr/sbin".into(), "/sbin".into()])
    {
        let p = dir.join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    bail!("{name} not found: install Debian's {package} package")
}

fn run(cmd: &mut Command, what: &str) -> Result<()> {
    let out = cmd.output().with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn count_files(dir: &Path) -> Result<u64> {
    let mut n = 0;
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let e = e?;
        let t = e.file_type()?;
        if t.is_dir() {
            n += count_files(&e.path())?;
        } else if t.is_file() {
            n += 1;
        } else if t.is_symlink() {
            // Links could point outside the verified volume.
            bail!(
                "{}: symbolic links are not allowed in a model volume",
                e.path().display()
            );
        }
    }
    Ok(n)
}

/// Builds `out/model.erofs`, `out/model.verity` and `out/model.json` from
/// the model directory `source`.
pub fn build(source: &Path, out: &Path) -> Result<ModelVolumeInfo> {
    if !source.is_dir() {
        bail!("model source {}: not a directory", source.display());
    }
    let files = count_files(source)?;
    if files == 0 {
        bail!("model source {}: no files", source.display());
    }
    let mkfs = tool("mkfs.erofs", "erofs-utils")?;
    let veritysetup = tool("veritysetup", "cryptsetup-bin")?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let timestamp: u64 = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) => v
            .parse()
            .with_context(|| format!("SOURCE_DATE_EPOCH={v:?}: not a UNIX time"))?,
        Err(_) => 0,
    };
    let data_tmp = out.join(format!(".{DATA_FILE}.tmp"));
    let hash_tmp = out.join(format!(".{HASH_FILE}.tmp"));
    let root_tmp = out.join(".model.roothash.tmp");
    let cleanup = || {
        for p in [&data_tmp, &hash_tmp, &root_tmp] {
            let _ = std::fs::remove_file(p);
        }
    };
    let result = (|| -> Result<ModelVolumeInfo> {
        cleanup();
        run(
            Command::new(&mkfs)
                .arg(format!("-T{timestamp}"))
                .arg(format!("-U{FS_UUID}"))
                .args(["-x-1", "--all-root", "--quiet"])
                .arg(&data_tmp)
                .arg(source),
            "mkfs.erofs",
        )?;
        run(
            Command::new(&veritysetup)
                .args([
                    "format",
                    "--hash=sha256",
                    "--data-block-size=4096",
                    "--hash-block-size=4096",
                ])
                .arg(format!("--salt={SALT_HEX}"))
                .arg(format!("--uuid={VERITY_UUID}"))
                .arg(format!("--root-hash-file={}", root_tmp.display()))
                .arg(&data_tmp)
                .arg(&hash_tmp),
            "veritysetup format",
        )?;
        let root = std::fs::read_to_string(&root_tmp)?
            .trim()
            .to_ascii_lowercase();
        if root.len() != 64 || !root.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!("veritysetup wrote an unexpected root hash {root:?}");
        }
        let info = ModelVolumeInfo {
            data_bytes: std::fs::metadata(&data_tmp)?.len(),
            hash_bytes: std::fs::metadata(&hash_tmp)?.len(),
            files,
            timestamp,
            runtime_config: serde_json::json!({
                "model_volume": { "verity_root_hash": root }
            }),
            verity_root_hash: root,
        };
        std::fs::rename(&data_tmp, out.join(DATA_FILE))?;
        std::fs::rename(&hash_tmp, out.join(HASH_FILE))?;
        std::fs::write(
            out.join(INFO_FILE),
            serde_json::to_string_pretty(&info)? + "\n",
        )?;
        Ok(info)
    })();
    cleanup();
    result
}

/// Reads the root hash recorded in `dir/model.json`.
pub fn recorded_root_hash(dir: &Path) -> Result<String> {
    let p = dir.join(INFO_FILE);
    let text = std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?;
    let v: serde_json::Value =
        serde_json::from_slice(&text).with_context(|| format!("{}: not JSON", p.display()))?;
    v.get("verity_root_hash")
        .and_then(|h| h.as_str())
        .map(str::to_string)
        .with_context(|| format!("{}: no verity_root_hash", p.display()))
}
