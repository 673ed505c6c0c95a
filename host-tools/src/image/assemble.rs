//! From mkosi's output directory to the release directory: artifacts under
//! stable names, the dm-verity root hash recomputed and cross-checked, the
//! direct-boot `cmdline`, `build-info.json`, `measurements.json`, `SHA256SUMS`.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use chrysalis_measurements as m;
use serde::Serialize;

use super::mkosi::PackageSource;
use super::{BuildOptions, Profile};

/// Files of the release directory that are not artifacts (not in SHA256SUMS).
pub const NOT_ARTIFACTS: [&str; 2] = ["SHA256SUMS", "build.log"];

/// What assembling needs.
pub struct Inputs<'a> {
    pub mkosi_out: &'a Path,
    pub out: &'a Path,
    pub profile: Profile,
    /// Directory with both firmware files ([`super::firmware::ensure`]).
    pub firmware: &'a Path,
    pub source: &'a Path,
    pub package_source: &'a PackageSource,
    pub mkosi_version: &'a str,
    pub options: &'a BuildOptions,
    pub build_seconds: u64,
    /// `rustc` release and commit of the in-image binaries (None: `--binaries` given).
    pub rustc: Option<String>,
}

/// `build-info.json`: how the release was built (everything here is an input
/// of a rebuild, nothing varies between identical builds).
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct BuildInfo {
    /// Image profile.
    pub profile: String,
    /// Release name (also in measurements.json).
    pub release: String,
    /// `default` (image/sandbox's list), or the snapshot timestamp / mirror URL.
    pub package_source: serde_json::Value,
    /// `mkosi --version`.
    pub mkosi: String,
    /// Git commit of the definition, `-dirty` appended when the tree had changes.
    pub commit: Option<String>,
    /// SOURCE_DATE_EPOCH the image was built with (from mkosi.conf).
    pub source_date_epoch: Option<u64>,
    /// VM configurations measured (VCPUS:MEMORY:GPUS).
    pub vms: Vec<String>,
    /// QEMU version the TDX values assume.
    pub qemu_version: String,
    /// SNP vCPU type.
    pub vcpu_type: String,
    /// `rustc` release and commit hash that built the in-image binaries
    /// (absent: prebuilt binaries were given, or an older build).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rustc: Option<String>,
}

/// What a build produced.
#[derive(Debug, Serialize)]
pub struct Summary {
    /// The release directory.
    pub out: PathBuf,
    /// Artifact sizes in bytes, by name.
    pub sizes: BTreeMap<String, u64>,
    /// dm-verity root hash (hex).
    pub verity_root_hash: String,
    /// Measured configurations in measurements.json.
    pub configurations: usize,
    /// Wall time of the build, seconds.
    pub build_seconds: u64,
}

impl Summary {
    /// Human-readable report.
    pub fn print(&self) {
        println!("release directory {}", self.out.display());
        for (n, s) in &self.sizes {
            println!("  {n:<20} {:>10.1} MiB", *s as f64 / (1 << 20) as f64);
        }
        println!("verity root hash  {}", self.verity_root_hash);
        println!("measurements.json: {} configurations", self.configurations);
        println!("built in {} s", self.build_seconds);
    }
}

/// mkosi output names (Output=chrysalis) → release names.
const FROM_MKOSI: [(&str, &str); 6] = [
    ("chrysalis.vmlinuz", "vmlinuz"),
    ("chrysalis.initrd", "initrd"),
    ("chrysalis.efi", "chrysalis.efi"),
    ("chrysalis.root-x86-64.raw", "rootfs.img"),
    ("chrysalis.root-x86-64-verity.raw", "rootfs.verity"),
    ("chrysalis.manifest", "packages.json"),
];

/// Assembles the release directory.
pub fn assemble(i: &Inputs) -> Result<Summary> {
    for (from, to) in FROM_MKOSI {
        let src = i.mkosi_out.join(from);
        if !src.is_file() {
            bail!(
                "mkosi did not produce {from} (in {}): check mkosi.conf's SplitArtifacts and the build log",
                i.mkosi_out.display()
            );
        }
        std::fs::rename(&src, i.out.join(to))
            .or_else(|_| std::fs::copy(&src, i.out.join(to)).map(|_| ()))
            .with_context(|| format!("{} → {}", src.display(), to))?;
    }
    for name in super::firmware::FILES {
        let src = i.firmware.join(name);
        std::fs::copy(&src, i.out.join(name)).with_context(|| src.display().to_string())?;
    }
    // The firmware's recipe, source pins and toolchain versions, so the
    // release names how its firmware was built (and SHA256SUMS covers it).
    let record = i.firmware.join(super::firmware::RECORD);
    if record.is_file() {
        std::fs::copy(&record, i.out.join(super::firmware::RECORD))?;
    } else {
        let _ = std::fs::remove_file(i.out.join(super::firmware::RECORD));
    }

    let root_hash = verity(i.out)?;
    check_uki_roothash(&i.out.join("chrysalis.efi"), &root_hash)?;
    let cmdline = direct_cmdline(
        &std::fs::read_to_string(i.source.join("image/cmdline.direct"))?,
        &root_hash,
    )?;
    std::fs::write(i.out.join("cmdline"), format!("{cmdline}\n"))?;

    let release = super::release_name(i.options, i.profile);
    let info = BuildInfo {
        profile: i.profile.name().to_string(),
        release: release.clone(),
        package_source: serde_json::to_value(i.package_source)?,
        mkosi: i.mkosi_version.to_string(),
        commit: git_commit(i.source),
        source_date_epoch: super::mkosi::source_date_epoch(i.source).ok(),
        vms: i.options.vms.clone(),
        qemu_version: i.options.qemu_version.clone(),
        vcpu_type: i.options.vcpu_type.clone(),
        rustc: i.rustc.clone(),
    };
    std::fs::write(
        i.out.join("build-info.json"),
        serde_json::to_string_pretty(&info)? + "\n",
    )?;

    let configurations = measurements(i, &release)?;
    let sizes = write_sha256sums(i.out)?;
    Ok(Summary {
        out: i.out.to_path_buf(),
        sizes,
        verity_root_hash: root_hash,
        configurations,
        build_seconds: i.build_seconds,
    })
}

/// Reads repart's verity superblock, writes `verity-salt`, recomputes the
/// root hash of `rootfs.img` and the whole hash device, and checks that the
/// hash device mkosi wrote is exactly the recomputed one. Trims `rootfs.img`
/// to the blocks the superblock covers (the rest would be unverified bytes).
fn verity(out: &Path) -> Result<String> {
    let data = out.join("rootfs.img");
    let hash = out.join("rootfs.verity");
    let sb = m::verity::read_superblock(&hash)?;
    let covered = sb.data_blocks * u64::from(sb.params.data_block_size);
    let len = std::fs::metadata(&data)?.len();
    if len < covered {
        bail!("rootfs.img is {len} bytes but its verity superblock covers {covered}");
    }
    if len > covered {
        std::fs::OpenOptions::new()
            .write(true)
            .open(&data)?
            .set_len(covered)?;
    }
    std::fs::write(
        out.join("verity-salt"),
        format!("{}\n", hex::encode(&sb.params.salt)),
    )?;
    let params = m::verity::VerityParams {
        data_blocks: None,
        ..sb.params.clone()
    };
    let recomputed = out.join(".work/rootfs.verity.recomputed");
    let r = m::verity::write_hash_tree(
        &data,
        &params,
        &recomputed,
        m::verity::HashTreeLayout::Superblock { uuid: sb.uuid },
    )?;
    if !same_prefix_then_zeros(&recomputed, &hash)? {
        bail!(
            "the hash device mkosi wrote (rootfs.verity) differs from the one recomputed from rootfs.img: refusing to publish"
        );
    }
    std::fs::remove_file(&recomputed)?;
    Ok(hex::encode(r.root_hash))
}

/// True when `b` starts with the bytes of `a` and has only zeros after them.
fn same_prefix_then_zeros(a: &Path, b: &Path) -> Result<bool> {
    let mut fa = std::io::BufReader::new(std::fs::File::open(a)?);
    let mut fb = std::io::BufReader::new(std::fs::File::open(b)?);
    let (mut ba, mut bb) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    loop {
        let na = read_full(&mut fa, &mut ba)?;
        if na == 0 {
            break;
        }
        let nb = read_full(&mut fb, &mut bb[..na])?;
        if nb != na || ba[..na] != bb[..na] {
            return Ok(false);
        }
    }
    loop {
        let nb = read_full(&mut fb, &mut bb)?;
        if nb == 0 {
            return Ok(true);
        }
        if bb[..nb].iter().any(|&x| x != 0) {
            return Ok(false);
        }
    }
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// The UKI's `roothash=` (mkosi's view) must equal the recomputed one.
fn check_uki_roothash(uki: &Path, root_hash: &str) -> Result<()> {
    let bytes = std::fs::read(uki)?;
    let needle = b"roothash=";
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .context("chrysalis.efi: no roothash= in the UKI's command line")?;
    let start = at + needle.len();
    let found: String = bytes[start..]
        .iter()
        .take_while(|b| b.is_ascii_hexdigit())
        .map(|&b| b as char)
        .collect();
    if found != root_hash {
        bail!("the UKI's roothash={found} differs from the recomputed root hash {root_hash}");
    }
    Ok(())
}

/// The direct-boot command line from the `image/cmdline.direct` template.
pub fn direct_cmdline(template: &str, root_hash: &str) -> Result<String> {
    let opts: Vec<String> = template
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.replace("@ROOTHASH@", root_hash))
        .collect();
    if !opts.iter().any(|o| o == &format!("roothash={root_hash}")) {
        bail!("image/cmdline.direct has no roothash=@ROOTHASH@ line");
    }
    Ok(opts.join(" "))
}

/// `git status --porcelain` of the tracked files (None: not a git checkout).
/// The whole tracked tree, not only mkosi.conf and image/: the agent's
/// sources and Cargo.lock end up in the image as binaries too.
pub fn uncommitted_changes(source: &Path) -> Option<String> {
    std::process::Command::new("git")
        .current_dir(source)
        .args(["status", "--porcelain", "--untracked-files=no"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

fn git_commit(source: &Path) -> Option<String> {
    let out = |args: &[&str]| {
        std::process::Command::new("git")
            .current_dir(source)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let commit = out(&["rev-parse", "HEAD"])?;
    let dirty = uncommitted_changes(source).is_some_and(|s| !s.is_empty());
    Some(if dirty {
        format!("{commit}-dirty")
    } else {
        commit
    })
}

/// Writes measurements.json; returns the number of configurations. Every
/// `--vm` must come out with a TDX and an SNP configuration: a release
/// that cannot be checked is refused here, not discovered by a client.
fn measurements(i: &Inputs, release: &str) -> Result<usize> {
    crate::measure::image(
        i.out,
        &i.options.vms,
        &i.options.vcpu_type,
        &i.options.qemu_version,
        None,
        Some(release.to_string()),
        &crate::measure::ImageOutput {
            file: None,
            json: false,
        },
    )
    .map_err(|f| f.error)?;
    let text = std::fs::read_to_string(i.out.join("measurements.json"))?;
    let parsed = m::manifest::MeasurementsManifest::from_json(&text)
        .map_err(|e| anyhow::anyhow!("measurements.json: {e}"))?;
    let roothash = parsed.cmdline.as_deref().and_then(|c| {
        c.split_whitespace()
            .find_map(|o| o.strip_prefix("roothash="))
    });
    check_every_configuration(&parsed, &i.options.vms)?;
    if parsed.verity_root_hash.as_deref() != roothash {
        bail!(
            "measurements.json: verity root hash {:?} differs from the command line's roothash {:?} (verity parameters other than 4096-byte blocks, SHA-256?)",
            parsed.verity_root_hash,
            roothash
        );
    }
    Ok(parsed.configurations.len())
}

/// Every measured VM shape (`--vm`, duplicates counted once) has a TDX
/// and an SNP configuration (more than one per shape, e.g. per QEMU
/// version, is fine).
fn check_every_configuration(
    parsed: &m::manifest::MeasurementsManifest,
    vms: &[String],
) -> Result<()> {
    use std::collections::BTreeSet;
    let shapes = |tdx: bool| -> BTreeSet<(u32, u64, u32)> {
        parsed
            .configurations
            .iter()
            .filter(|c| {
                if tdx {
                    c.tdx.is_some()
                } else {
                    c.snp.is_some()
                }
            })
            .map(|c| (c.vm.vcpus, c.vm.memory_mib, c.vm.gpus))
            .collect()
    };
    let wanted = vms.iter().collect::<BTreeSet<_>>().len();
    let (tdx, snp) = (shapes(true).len(), shapes(false).len());
    if wanted == 0 || tdx != wanted || snp != wanted {
        bail!(
            "measurements.json: TDX configurations for {tdx} and SNP for {snp} of the {wanted} VM shape(s) given with --vm: every shape must be measured for both; refusing to publish"
        );
    }
    Ok(())
}

/// Artifacts of a release directory: regular files, sorted, minus
/// [`NOT_ARTIFACTS`] and hidden files.
pub fn artifact_names(dir: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| dir.display().to_string())? {
        let e = e?;
        let name = e.file_name().to_string_lossy().to_string();
        if e.file_type()?.is_file()
            && !name.starts_with('.')
            && !NOT_ARTIFACTS.contains(&name.as_str())
        {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// Writes `SHA256SUMS` (sha256sum format) over every artifact; returns sizes.
pub fn write_sha256sums(dir: &Path) -> Result<BTreeMap<String, u64>> {
    let mut text = String::new();
    let mut sizes = BTreeMap::new();
    for n in artifact_names(dir)? {
        let (h, len) = m::tdx::sha256_file(&dir.join(&n))?;
        text.push_str(&format!("{}  {n}\n", hex::encode(h)));
        sizes.insert(n, len);
    }
    std::fs::write(dir.join("SHA256SUMS"), text)?;
    Ok(sizes)
}

/// Parses a `SHA256SUMS` file into name → hex digest.
pub fn read_sha256sums(path: &Path) -> Result<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
    let mut map = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let (hash, name) = line
            .split_once("  ")
            .with_context(|| format!("{}:{}: expected \"HASH  NAME\"", path.display(), n + 1))?;
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!(
                "{}:{}: {hash:?} is not a SHA-256 hex digest",
                path.display(),
                n + 1
            );
        }
        map.insert(name.to_string(), hash.to_ascii_lowercase());
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmdline_from_template() {
        let t = "# comment\nconsole=ttyS0\n\nroothash=@ROOTHASH@\nro\n";
        assert_eq!(
            direct_cmdline(t, "ab12").unwrap(),
            "console=ttyS0 roothash=ab12 ro"
        );
        assert!(direct_cmdline("console=ttyS0\n", "ab").is_err());
    }

    #[test]
    fn the_committed_template_carries_the_verity_devices() {
        let t = include_str!("../../../image/cmdline.direct");
        let c = direct_cmdline(t, "00").unwrap();
        assert!(c.contains(&format!(
            "systemd.verity_root_data={}",
            super::super::ROOT_DATA_DEVICE
        )));
        assert!(c.contains(&format!(
            "systemd.verity_root_hash={}",
            super::super::ROOT_HASH_DEVICE
        )));
        assert!(c.contains("root=/dev/mapper/root"));
    }

    #[test]
    fn sha256sums_round_trip_and_rejects_garbage() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a"), b"x").unwrap();
        std::fs::write(d.path().join("build.log"), b"log").unwrap();
        std::fs::write(d.path().join(".hidden"), b"h").unwrap();
        write_sha256sums(d.path()).unwrap();
        let m = read_sha256sums(&d.path().join("SHA256SUMS")).unwrap();
        assert_eq!(m.keys().collect::<Vec<_>>(), vec!["a"]);
        assert_eq!(
            m["a"],
            "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"
        );
        std::fs::write(d.path().join("bad"), "zz  a\n").unwrap();
        assert!(read_sha256sums(&d.path().join("bad")).is_err());
        std::fs::write(d.path().join("bad"), "no separator\n").unwrap();
        assert!(read_sha256sums(&d.path().join("bad")).is_err());
    }

    #[test]
    fn a_release_needs_tdx_and_snp_for_every_shape() {
        let text =
            include_str!("../../../measurements/releases/chrysalis-0.2.0-cpu/measurements.json");
        let m = m::manifest::MeasurementsManifest::from_json(text).unwrap();
        let vms = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        check_every_configuration(&m, &vms(&["8:64G:1", "2:2G:0"])).unwrap();
        check_every_configuration(&m, &vms(&["8:64G:1", "2:2G:0", "2:2G:0"])).unwrap();
        assert!(check_every_configuration(&m, &vms(&["8:64G:1", "2:2G:0", "4:4G:0"])).is_err());
        assert!(check_every_configuration(&m, &[]).is_err());
        let mut no_snp = m.clone();
        no_snp.configurations.retain(|c| c.snp.is_none());
        let e = check_every_configuration(&no_snp, &vms(&["8:64G:1", "2:2G:0"])).unwrap_err();
        assert!(e.to_string().contains("SNP for 0"), "{e}");
    }

    #[test]
    fn prefix_then_zeros() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        std::fs::write(&a, b"abc").unwrap();
        std::fs::write(&b, b"abc\0\0\0").unwrap();
        assert!(same_prefix_then_zeros(&a, &b).unwrap());
        std::fs::write(&b, b"abc\0\x01").unwrap();
        assert!(!same_prefix_then_zeros(&a, &b).unwrap());
        std::fs::write(&b, b"abd").unwrap();
        assert!(!same_prefix_then_zeros(&a, &b).unwrap());
        std::fs::write(&b, b"ab").unwrap();
        assert!(!same_prefix_then_zeros(&a, &b).unwrap());
    }
}
