//! Which packages a build installs, decided once before mkosi runs:
//!
//! - **locked** (the default): exactly `image/locks/PROFILE.lock` (or
//!   `--lock FILE`), every file fetched and checked first, served by the
//!   loopback mirror;
//! - **recording** (`--update-lock`): the live archives through the
//!   recording mirror; the build's every `.deb` becomes the new lock;
//! - **live** (`--no-lock`, `--snapshot`): image/sandbox's list or the named
//!   source, as it is today.
//!
//! mkosi's tools tree (kept in its output directory between builds) makes
//! artifact bytes too, so it is reused only when it was built from the same
//! package source; the package cache is fresh for locked and recording
//! builds, so every package goes through the mirror.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use super::lock::PackageLock;
use super::mirror::{self, Mirror, Upstreams};
use super::mkosi::{self, PackageSource};
use super::{BuildOptions, InputsUnavailable, Profile};

/// The file in mkosi's output directory naming the source its tools tree came from.
const TOOLS_STAMP: &str = "chrysalis-tools-source";
/// The name of the lock inside a release directory.
pub const RELEASE_LOCK: &str = "packages.lock";

enum Mode {
    Locked { text: Vec<u8> },
    Record { profile: Profile },
    Live,
}

/// A build's package source, ready for mkosi.
pub struct Prepared {
    /// What build-info.json records.
    pub source: PackageSource,
    /// The sandbox tree naming the source (None: image/sandbox's list).
    pub sandbox: Option<PathBuf>,
    /// A fresh package cache for mkosi (None: mkosi's default).
    pub package_cache: Option<PathBuf>,
    mirror: Option<Mirror>,
    mode: Mode,
    tools_key: String,
}

/// The committed lock of `profile` (relative to the repository root).
pub fn default_lock(profile: Profile) -> String {
    format!("image/locks/{}.lock", profile.name())
}

/// `$XDG_CACHE_HOME/chrysalis/locked-debs`: verified `.deb` files by SHA-256.
pub fn deb_cache() -> PathBuf {
    super::cache_dir().join("locked-debs")
}

/// Reads and parses a lock file; returns it with its bytes.
pub fn read_lock(path: &Path) -> Result<(PackageLock, Vec<u8>)> {
    let text = std::fs::read(path).with_context(|| path.display().to_string())?;
    let lock = PackageLock::parse(&String::from_utf8_lossy(&text))
        .with_context(|| format!("{}: not a package lock", path.display()))?;
    Ok((lock, text))
}

/// The lock fetched and checked: every file in the cache, or the error
/// naming each one that cannot be had.
pub fn fetch_locked(lock: &PackageLock, mirror_url: Option<&str>) -> Result<()> {
    let missing = mirror::fetch_all(lock, &deb_cache(), &Upstreams::new(mirror_url))?;
    if !missing.is_empty() {
        return Err(InputsUnavailable(missing).into());
    }
    Ok(())
}

/// Decides and sets up the package source of one build.
pub fn prepare(profile: Profile, source: &Path, o: &BuildOptions, work: &Path) -> Result<Prepared> {
    let sandbox_dir = work.join("sandbox");
    let package_cache = work.join("package-cache");
    let lock_file = match (&o.lock, o.no_lock || o.snapshot.is_some(), o.update_lock) {
        (Some(f), _, _) => Some(f.clone()),
        (None, false, false) => Some(source.join(default_lock(profile))),
        _ => None,
    };
    if let Some(file) = lock_file {
        if !file.is_file() {
            bail!(
                "{}: no package lock. Record one with `chrysalis image build --profile {} --update-lock`, or build from the live archives with --no-lock",
                file.display(),
                profile.name()
            );
        }
        let (lock, text) = read_lock(&file)?;
        eprintln!(
            "packages: {} locked .deb files ({} MB) from {}",
            lock.entries.len(),
            lock.total_bytes() / 1_000_000,
            file.display()
        );
        fetch_locked(&lock, o.mirror.as_deref())?;
        let m = Mirror::serve_locked(&lock, &deb_cache())?;
        mkosi::write_sources(&sandbox_dir, &m.sources(true))?;
        let sha = hex::encode(Sha256::digest(&text));
        let rel = file
            .canonicalize()
            .ok()
            .and_then(|f| f.strip_prefix(source).ok().map(Path::to_path_buf))
            .unwrap_or(file.clone());
        return Ok(Prepared {
            source: PackageSource::Lock {
                file: rel.display().to_string(),
                sha256: sha.clone(),
                packages: lock.entries.len(),
                bytes: lock.total_bytes(),
            },
            sandbox: Some(sandbox_dir),
            package_cache: Some(package_cache),
            mirror: Some(m),
            mode: Mode::Locked { text },
            tools_key: format!("lock {sha}"),
        });
    }
    if o.update_lock {
        let m = Mirror::record(Upstreams::new(o.mirror.as_deref()), &deb_cache())?;
        mkosi::write_sources(&sandbox_dir, &m.sources(false))?;
        eprintln!(
            "packages: live archives through the recording mirror; the new lock goes to {}",
            default_lock(profile)
        );
        return Ok(Prepared {
            source: PackageSource::Default,
            sandbox: Some(sandbox_dir),
            package_cache: Some(package_cache),
            mirror: Some(m),
            mode: Mode::Record { profile },
            tools_key: "recording".into(),
        });
    }
    let repo = PackageSource::from_options(o.snapshot.as_deref(), o.mirror.as_deref())?;
    eprintln!(
        "packages: LIVE source ({}), no lock: a rebuild on another day gets other packages",
        repo.url().unwrap_or_else(|| "image/sandbox's list".into())
    );
    let sandbox = repo.sandbox_tree(source, &sandbox_dir)?;
    Ok(Prepared {
        tools_key: format!("live {}", repo.url().unwrap_or_else(|| "default".into())),
        source: repo,
        sandbox,
        package_cache: None,
        mirror: None,
        mode: Mode::Live,
    })
}

impl Prepared {
    /// Removes mkosi's cached tools tree unless it was built from this
    /// build's package source (a recording build always rebuilds it, so
    /// its packages are recorded too).
    pub fn keep_tools_tree_only_if_same_source(&self, mkosi_out: &Path) -> Result<()> {
        let stamp = std::fs::read_to_string(mkosi_out.join(TOOLS_STAMP)).unwrap_or_default();
        let tools = mkosi_out.join("tools");
        if stamp.trim() == self.tools_key && !matches!(self.mode, Mode::Record { .. }) {
            return Ok(());
        }
        if tools.exists() {
            eprintln!("mkosi's tools tree was built from another package source: rebuilding it");
            std::fs::remove_dir_all(&tools).with_context(|| tools.display().to_string())?;
        }
        // Written again by `finish` once a build made the tree from this source.
        let _ = std::fs::remove_file(mkosi_out.join(TOOLS_STAMP));
        Ok(())
    }

    /// After mkosi succeeded: stops the mirror, writes the lock into the
    /// release directory (and, recording, into the source tree), stamps the
    /// tools tree. Returns the package source to record when it changed.
    pub fn finish(
        mut self,
        source: &Path,
        out: &Path,
        mkosi_out: &Path,
    ) -> Result<Option<PackageSource>> {
        let mirror = self.mirror.take();
        let recorded = match self.mode {
            Mode::Locked { ref text, .. } => {
                std::fs::write(out.join(RELEASE_LOCK), text)?;
                None
            }
            Mode::Record { profile } => {
                let m = mirror.context("recording without a mirror")?;
                let lock = m.finish_recording()?;
                let header = [
                    format!(
                        "Package lock of the {} image and mkosi's tools tree: every .deb the build installs.",
                        profile.name()
                    ),
                    "Written by `chrysalis image build --update-lock` (recorded from the live archives);".into(),
                    "format: SHA256 SIZE ARCHIVE SUITES POOL-PATH (host-tools/src/image/lock.rs).".into(),
                    format!(
                        "{} packages, {} bytes.",
                        lock.entries.len(),
                        lock.total_bytes()
                    ),
                ];
                let text = lock.render(&header);
                let file = source.join(default_lock(profile));
                if let Some(d) = file.parent() {
                    std::fs::create_dir_all(d)?;
                }
                std::fs::write(&file, &text).with_context(|| file.display().to_string())?;
                std::fs::write(out.join(RELEASE_LOCK), &text)?;
                eprintln!(
                    "recorded {} packages ({} MB) into {}",
                    lock.entries.len(),
                    lock.total_bytes() / 1_000_000,
                    file.display()
                );
                let sha256 = hex::encode(Sha256::digest(text.as_bytes()));
                self.tools_key = format!("lock {sha256}");
                Some(PackageSource::Lock {
                    file: default_lock(profile),
                    sha256,
                    packages: lock.entries.len(),
                    bytes: lock.total_bytes(),
                })
            }
            Mode::Live => {
                let _ = std::fs::remove_file(out.join(RELEASE_LOCK));
                None
            }
        };
        std::fs::write(mkosi_out.join(TOOLS_STAMP), &self.tools_key)?;
        Ok(recorded)
    }
}
