//! Running mkosi: where it is, what it gets (binaries tree, package source),
//! and its progress on the terminal.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::Profile;

/// The mkosi version the image definition is written for.
pub const MKOSI_VERSION: &str = "25.3";

/// The repository root: `start` or the nearest ancestor of the current
/// directory holding `mkosi.conf` and `image/`.
pub fn find_source(start: Option<&Path>) -> Result<PathBuf> {
    if let Some(s) = start {
        if s.join("mkosi.conf").is_file() {
            return Ok(s.canonicalize()?);
        }
        bail!(
            "{}: no mkosi.conf there (--source names the repository root)",
            s.display()
        );
    }
    let cwd = std::env::current_dir()?;
    for d in cwd.ancestors() {
        if d.join("mkosi.conf").is_file() && d.join("image").is_dir() {
            return Ok(d.to_path_buf());
        }
    }
    bail!(
        "no mkosi.conf in {} or above: run inside the Chrysalis repository or pass --source DIR",
        cwd.display()
    )
}

/// The mkosi launcher: the flag, `$CHRYSALIS_MKOSI`, a 25.x `mkosi` on PATH,
/// or the pinned one (installed on demand by image/tools/install-mkosi.sh).
pub fn find_mkosi(flag: Option<&Path>, source: &Path) -> Result<PathBuf> {
    if let Some(p) = flag {
        return Ok(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("CHRYSALIS_MKOSI") {
        return Ok(PathBuf::from(p));
    }
    if let Ok(o) = Command::new("mkosi").arg("--version").output() {
        if String::from_utf8_lossy(&o.stdout).contains(&format!("mkosi {MKOSI_VERSION}")) {
            return Ok(PathBuf::from("mkosi"));
        }
    }
    let o = Command::new("bash")
        .arg(source.join("image/tools/install-mkosi.sh"))
        .stderr(Stdio::inherit())
        .output()
        .context("running image/tools/install-mkosi.sh")?;
    if !o.status.success() {
        bail!("image/tools/install-mkosi.sh failed: cannot install mkosi {MKOSI_VERSION}");
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
}

/// The packages whose binaries go into the image, built here.
const PACKAGES: [&str; 2] = ["chrysalis-agent", "chrysalis-stub-engine"];
/// The binaries that go into the image (`/usr/bin`).
const BINARIES: [&str; 4] = [
    "chrysalis-agent",
    "chrysalis-gpu-gate",
    "chrysalis-model-volume",
    "chrysalis-stub-engine",
];

/// The toolchain that builds the in-image binaries: `rustc -vV`'s
/// `release` and `commit-hash` (recorded in build-info.json; a rebuild
/// with another compiler gives other binaries).
pub fn rustc_version() -> Result<String> {
    let o = Command::new("rustc")
        .arg("-vV")
        .output()
        .context("running rustc -vV")?;
    if !o.status.success() {
        bail!("rustc -vV failed");
    }
    let text = String::from_utf8_lossy(&o.stdout);
    let field = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k))
            .map(|v| v.trim().to_string())
    };
    match (field("release:"), field("commit-hash:")) {
        (Some(r), Some(h)) => Ok(format!("{r} ({h})")),
        _ => bail!("rustc -vV printed no release/commit-hash"),
    }
}

/// Where the in-image binaries are built: `$CARGO_TARGET_DIR/image-binaries`
/// (or `SOURCE/target/image-binaries`), apart from ordinary builds because
/// their compiler flags differ.
fn image_target_dir(source: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| source.join("target"))
        .join("image-binaries")
}

/// `--remap-path-prefix` flags that make the binaries independent of where
/// the checkout, cargo's registry and the target directory are: panic
/// locations and debug paths name `/chrysalis/...` on every machine.
fn remap_flags(source: &Path, target: &Path) -> Vec<String> {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    // Longest prefix first: the target dir usually lies inside the source.
    let mut maps = vec![(target.to_path_buf(), "/chrysalis/target")];
    maps.push((source.to_path_buf(), "/chrysalis/source"));
    if let Some(c) = cargo_home {
        maps.push((c, "/chrysalis/cargo"));
    }
    maps.into_iter()
        .map(|(from, to)| format!("--remap-path-prefix={}={to}", from.display()))
        .collect()
}

/// `SourceDateEpoch=` of mkosi.conf (seconds since 1970): the one build
/// time every dated thing in the image gets.
pub fn source_date_epoch(source: &Path) -> Result<u64> {
    std::fs::read_to_string(source.join("mkosi.conf"))?
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("SourceDateEpoch=")?
                .trim()
                .parse()
                .ok()
        })
        .context("mkosi.conf has no SourceDateEpoch=")
}

/// The same prefix maps for C compilers the `-sys` crates run (`cc` adds
/// `CFLAGS`): gcc's `-ffile-prefix-map` covers `__FILE__` and debug paths.
fn c_prefix_flags(source: &Path, target: &Path) -> String {
    remap_flags(source, target)
        .iter()
        .map(|f| f.replace("--remap-path-prefix=", "-ffile-prefix-map="))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Builds the in-image binaries (release, locked, paths remapped, C parts
/// dated SOURCE_DATE_EPOCH: mimalloc compiles `__DATE__`/`__TIME__` in,
/// which made two builds half an hour apart differ) and returns their
/// directory.
pub fn build_binaries(source: &Path) -> Result<PathBuf> {
    eprintln!(
        "building chrysalis-agent and chrysalis-stub-engine (cargo build --release --locked, paths remapped)"
    );
    let target = image_target_dir(source);
    let mut c = Command::new("cargo");
    c.current_dir(source)
        .args(["build", "--release", "--locked"])
        .env("CARGO_TARGET_DIR", &target)
        .env_remove("RUSTFLAGS")
        .env(
            "CARGO_ENCODED_RUSTFLAGS",
            remap_flags(source, &target).join("\x1f"),
        )
        .env("SOURCE_DATE_EPOCH", source_date_epoch(source)?.to_string())
        .env("CFLAGS", c_prefix_flags(source, &target))
        .env("CXXFLAGS", c_prefix_flags(source, &target))
        .stdout(Stdio::null());
    for p in PACKAGES {
        c.args(["-p", p]);
    }
    let status = c.status().context("running cargo")?;
    if !status.success() {
        bail!("cargo build of the in-image binaries failed");
    }
    Ok(target.join("release"))
}

/// The package that gives mkosi's default initrd the root image's
/// emergency/rescue power-off drop-ins (the same files, from image/extra).
pub const INITRD_PACKAGE: &str = "chrysalis-initrd-poweroff";

/// Builds [`INITRD_PACKAGE`] (`dpkg-deb`, owner root, SOURCE_DATE_EPOCH
/// from mkosi.conf) into `dir`; returns `dir` for `--package-directory`.
pub fn build_initrd_package(source: &Path, dir: &Path) -> Result<PathBuf> {
    let root = dir.join("root");
    std::fs::create_dir_all(root.join("DEBIAN"))?;
    for unit in ["emergency", "rescue"] {
        let rel = format!("usr/lib/systemd/system/{unit}.service.d/50-chrysalis-poweroff.conf");
        let to = root.join(&rel);
        std::fs::create_dir_all(to.parent().context("drop-in path")?)?;
        std::fs::copy(source.join("image/extra").join(&rel), &to)
            .with_context(|| format!("image/extra/{rel}"))?;
    }
    std::fs::write(
        root.join("DEBIAN/control"),
        format!(
            "Package: {INITRD_PACKAGE}\nVersion: 1\nArchitecture: all\nSection: admin\nPriority: optional\nMaintainer: Chrysalis <chrysalis@localhost>\n\
             Description: emergency and rescue mode power the VM off (initrd)\n"
        ),
    )?;
    let epoch = source_date_epoch(source)?.to_string();
    let deb = dir.join(format!("{INITRD_PACKAGE}_1_all.deb"));
    let o = Command::new("dpkg-deb")
        .env("SOURCE_DATE_EPOCH", &epoch)
        .args(["--root-owner-group", "-Zgzip", "--build"])
        .arg(&root)
        .arg(&deb)
        .output()
        .context("running dpkg-deb (package dpkg) to build the initrd package")?;
    if !o.status.success() {
        bail!(
            "dpkg-deb --build {INITRD_PACKAGE}: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    std::fs::remove_dir_all(&root)?;
    Ok(dir.to_path_buf())
}

/// Copies the binaries into `stage/usr/bin` (an mkosi extra tree).
pub fn stage_binaries(from: &Path, stage: &Path) -> Result<PathBuf> {
    let bin = stage.join("usr/bin");
    std::fs::create_dir_all(&bin)?;
    for b in BINARIES {
        let src = from.join(b);
        if !src.is_file() {
            bail!(
                "{}: missing (build it, or pass --binaries DIR)",
                src.display()
            );
        }
        let dst = bin.join(b);
        std::fs::copy(&src, &dst).with_context(|| src.display().to_string())?;
        set_mode(&dst, 0o755)?;
    }
    Ok(stage.to_path_buf())
}

fn set_mode(p: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// Where packages come from.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PackageSource {
    /// image/sandbox's list as committed (a live mirror: rebuilds drift as it updates).
    Default,
    /// A dated snapshot.debian.org timestamp.
    Snapshot(String),
    /// A mirror URL.
    Mirror(String),
    /// Exactly the packages of a lock file, served by the loopback mirror
    /// ([`super::mirror`]).
    Lock {
        /// The lock file, relative to the repository root.
        file: String,
        /// SHA-256 of the lock file's bytes.
        sha256: String,
        /// Number of locked `.deb` files.
        packages: usize,
        /// Their total size in bytes.
        bytes: u64,
    },
}

impl PackageSource {
    /// From `--snapshot` / `--mirror` (checked: timestamp form, http(s) URL).
    pub fn from_options(snapshot: Option<&str>, mirror: Option<&str>) -> Result<Self> {
        match (snapshot, mirror) {
            (Some(s), _) => {
                let ok = s.len() == 16
                    && s.as_bytes()[8] == b'T'
                    && s.ends_with('Z')
                    && s[..8]
                        .bytes()
                        .chain(s[9..15].bytes())
                        .all(|b| b.is_ascii_digit());
                if !ok {
                    bail!("--snapshot {s:?}: expected YYYYMMDDTHHMMSSZ, e.g. 20251120T000000Z");
                }
                Ok(PackageSource::Snapshot(s.to_string()))
            }
            (None, Some(m)) => {
                if !(m.starts_with("http://") || m.starts_with("https://"))
                    || m.chars().any(|c| c.is_whitespace())
                {
                    bail!("--mirror {m:?}: expected an http(s) URL");
                }
                Ok(PackageSource::Mirror(m.trim_end_matches('/').to_string()))
            }
            (None, None) => Ok(PackageSource::Default),
        }
    }

    /// The apt URL, or `None` for the committed list.
    pub fn url(&self) -> Option<String> {
        match self {
            PackageSource::Default => None,
            PackageSource::Snapshot(t) => {
                Some(format!("http://snapshot.debian.org/archive/debian/{t}"))
            }
            PackageSource::Mirror(m) => Some(m.clone()),
            PackageSource::Lock { .. } => None,
        }
    }

    /// The security archive's URL for this source, or `None` for the committed list.
    fn security_url(&self) -> Option<String> {
        match self {
            PackageSource::Snapshot(t) => Some(format!(
                "http://snapshot.debian.org/archive/debian-security/{t}"
            )),
            PackageSource::Mirror(m) => Some(super::mirror::Upstreams::new(Some(m)).security),
            PackageSource::Default | PackageSource::Lock { .. } => None,
        }
    }

    /// Writes a sandbox tree whose apt list names this source (for mkosi's
    /// `--sandbox-tree`, layered over image/sandbox), or `None` for the default.
    pub fn sandbox_tree(&self, source: &Path, dir: &Path) -> Result<Option<PathBuf>> {
        let (Some(url), Some(security)) = (self.url(), self.security_url()) else {
            return Ok(None);
        };
        let template = std::fs::read_to_string(
            source.join("image/sandbox/etc/apt/sources.list.d/mkosi.sources"),
        )?;
        write_sources(dir, &rewrite_uris(&template, &url, &security))?;
        // Snapshots serve expired Release files by design.
        if matches!(self, PackageSource::Snapshot(_)) {
            let conf = dir.join("etc/apt/apt.conf.d");
            std::fs::create_dir_all(&conf)?;
            std::fs::write(
                conf.join("50-snapshot.conf"),
                "Acquire::Check-Valid-Until \"false\";\n",
            )?;
        }
        Ok(Some(dir.to_path_buf()))
    }
}

/// Writes `dir/etc/apt/sources.list.d/mkosi.sources` (a sandbox tree that
/// replaces image/sandbox's list).
pub fn write_sources(dir: &Path, text: &str) -> Result<()> {
    let list = dir.join("etc/apt/sources.list.d");
    std::fs::create_dir_all(&list)?;
    let mut f = std::fs::File::create(list.join("mkosi.sources"))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

/// Replaces every `URIs:` value of a deb822 source list: the security
/// archive's with `security`, every other with `url`.
fn rewrite_uris(template: &str, url: &str, security: &str) -> String {
    template
        .lines()
        .map(|l| match l.strip_prefix("URIs:") {
            Some(v) if v.trim().trim_end_matches('/').ends_with("-security") => {
                format!("URIs: {security}")
            }
            Some(_) => format!("URIs: {url}"),
            None => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// One mkosi build.
pub struct Run<'a> {
    pub mkosi: &'a Path,
    pub source: &'a Path,
    pub profile: Profile,
    pub extra_tree: &'a Path,
    pub sandbox: Option<&'a Path>,
    pub output_dir: &'a Path,
    pub log: &'a Path,
    /// Extra .deb files mkosi offers as a local repository (gpu profile:
    /// image/gpu/debs.lock, fetched and checked by [`fetch_pinned_debs`]).
    pub package_dirs: &'a [PathBuf],
    /// Hash-checked wheels mounted at `$SRCDIR/wheels` for the
    /// post-installation script (gpu profile, [`fetch_pinned_wheels`]).
    pub wheel_dir: Option<&'a Path>,
    /// mkosi's package cache (apt's downloads) for this build: a fresh one
    /// for locked and recording builds, so every package goes through the
    /// loopback mirror.
    pub package_cache: Option<&'a Path>,
}

/// Downloads the gpu profile's hash-locked wheels into `dir` on the build
/// host (image/gpu/fetch-wheels.sh; pip checks every SHA-256), so the image
/// build installs them without network.
pub fn fetch_pinned_wheels(source: &Path, dir: &Path) -> Result<()> {
    run_gpu_fetch(source, "fetch-wheels.sh", dir, None, "wheels")
}

/// Fetches the gpu profile's pinned .debs (image/gpu/debs.lock) into `dir`
/// with image/gpu/fetch-debs.sh, which checks each SHA-256.
pub fn fetch_pinned_debs(source: &Path, dir: &Path, package_source: &PackageSource) -> Result<()> {
    let mirror = package_source.url();
    run_gpu_fetch(
        source,
        "fetch-debs.sh",
        dir,
        mirror.as_deref(),
        "pinned packages",
    )
}

/// Runs `image/gpu/SCRIPT DIR [MIRROR]`; `what` names what is missing when it fails.
fn run_gpu_fetch(
    source: &Path,
    script: &str,
    dir: &Path,
    mirror: Option<&str>,
    what: &str,
) -> Result<()> {
    let mut c = Command::new("bash");
    c.arg(source.join("image/gpu").join(script)).arg(dir);
    if let Some(url) = mirror {
        c.arg(url);
    }
    let status = c
        .status()
        .with_context(|| format!("running image/gpu/{script}"))?;
    if !status.success() {
        bail!("image/gpu/{script} failed: the gpu profile's {what} are not available");
    }
    Ok(())
}

impl Run<'_> {
    fn command(&self) -> Command {
        let mut c = Command::new(self.mkosi);
        c.current_dir(self.source);
        c.arg(format!("--profile={}", self.profile.name()));
        c.arg(format!("--extra-tree={}", self.extra_tree.display()));
        c.arg(format!("--output-dir={}", self.output_dir.display()));
        for d in self.package_dirs {
            c.arg(format!("--package-directory={}", d.display()));
        }
        if let Some(d) = self.wheel_dir {
            c.arg(format!("--build-sources={}:wheels", d.display()));
        }
        if let Some(d) = self.package_cache {
            c.arg(format!("--package-cache-directory={}", d.display()));
        }
        if let Some(s) = self.sandbox {
            c.arg(format!("--sandbox-tree={}", s.display()));
            c.arg(format!("--tools-tree-sandbox-tree={}", s.display()));
        }
        c
    }

    /// `mkosi --version` (recorded in build-info.json).
    pub fn version(&self) -> Result<String> {
        let o = Command::new(self.mkosi).arg("--version").output()?;
        Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
    }

    /// Runs `mkosi … build`, logging everything to the log file and showing
    /// mkosi's step lines (`‣ …`) on a spinner.
    pub fn build(&self) -> Result<()> {
        let v = self.version()?;
        if !v.contains(MKOSI_VERSION) {
            bail!(
                "{}: {v:?}, but this image is defined for mkosi {MKOSI_VERSION} (image/tools/install-mkosi.sh installs it)",
                self.mkosi.display()
            );
        }
        std::fs::create_dir_all(self.output_dir)?;
        // mkosi refuses to overwrite its outputs, and `--force` would also
        // throw away the tools tree kept in the same directory (minutes to
        // rebuild): remove this image's previous outputs ourselves.
        for e in std::fs::read_dir(self.output_dir)? {
            let e = e?;
            let name = e.file_name().to_string_lossy().to_string();
            if name.starts_with("chrysalis") {
                if e.file_type()?.is_dir() {
                    std::fs::remove_dir_all(e.path())?;
                } else {
                    std::fs::remove_file(e.path())?;
                }
            }
        }
        let mut log =
            std::fs::File::create(self.log).with_context(|| self.log.display().to_string())?;
        let mut child = self
            .command()
            .arg("build")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", self.mkosi.display()))?;
        let pb = indicatif::ProgressBar::new_spinner();
        pb.set_style(
            indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] mkosi: {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        pb.enable_steady_tick(Duration::from_millis(200));
        pb.set_message(format!("building profile {}", self.profile.name()));
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let mut readers = Vec::new();
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let tx = tx.clone();
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            }));
        }
        drop(tx);
        let mut last = Vec::new();
        for line in rx {
            writeln!(log, "{line}")?;
            if let Some(step) = line.strip_prefix("‣ ") {
                pb.set_message(step.trim().chars().take(100).collect::<String>());
            }
            last.push(line);
            if last.len() > 20 {
                last.remove(0);
            }
        }
        for r in readers {
            let _ = r.join();
        }
        let status = child.wait()?;
        pb.finish_and_clear();
        if !status.success() {
            bail!(
                "mkosi failed ({status}); full log: {}\n{}",
                self.log.display(),
                last.join("\n")
            );
        }
        eprintln!(
            "mkosi build finished in {}s (log: {})",
            pb.elapsed().as_secs(),
            self.log.display()
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_source_options_are_checked() {
        assert!(matches!(
            PackageSource::from_options(Some("20251120T000000Z"), None).unwrap(),
            PackageSource::Snapshot(_)
        ));
        assert!(PackageSource::from_options(Some("2025-11-20"), None).is_err());
        assert!(PackageSource::from_options(Some("20251120X000000Z"), None).is_err());
        assert!(PackageSource::from_options(None, Some("ftp://x")).is_err());
        assert!(PackageSource::from_options(None, Some("http://a b")).is_err());
        assert!(matches!(
            PackageSource::from_options(None, None).unwrap(),
            PackageSource::Default
        ));
    }

    #[test]
    fn snapshot_rewrites_every_uri() {
        let t = "# c\nTypes: deb\nURIs: http://deb.debian.org/debian\nSuites: trixie\n";
        let s = PackageSource::Snapshot("20251120T000000Z".into());
        let t = format!("{t}\nTypes: deb\nURIs: http://deb.debian.org/debian-security\nSuites: trixie-security\n");
        let out = rewrite_uris(&t, &s.url().unwrap(), &s.security_url().unwrap());
        assert!(out.contains("URIs: http://snapshot.debian.org/archive/debian/20251120T000000Z\n"));
        assert!(out.contains(
            "URIs: http://snapshot.debian.org/archive/debian-security/20251120T000000Z\n"
        ));
        assert!(!out.contains("deb.debian.org"));
        assert!(out.starts_with("# c\nTypes: deb\n"));
    }
}
