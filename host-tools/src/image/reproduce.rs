//! `chrysalis image reproduce RELEASE_DIR`: rebuild a release from the
//! commit it records, with its package lock, and compare every artifact.
//!
//! Order matters: everything that can stop a reproduction (the commit not in
//! this clone, another rustc or QEMU than recorded, a locked package gone
//! from every reachable source, too little disk) is checked and named, all
//! at once, before anything long starts. Then the recorded commit is checked
//! out in a separate worktree, *its* `chrysalis` is built and runs *its*
//! `image build` with the recorded options, and the SHA256SUMS are compared.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use super::assemble::{read_sha256sums, BuildInfo};
use super::mirror::{Unavailable, UnavailableKind};
use super::mkosi::PackageSource;
use super::packages::{self, RELEASE_LOCK};
use super::{firmware, mkosi, InputsUnavailable, Profile};
use crate::exit;

/// One artifact's comparison.
#[derive(Debug, Serialize, PartialEq)]
pub struct Difference {
    /// Artifact name.
    pub artifact: String,
    /// SHA-256 in the release (`null`: only in the rebuild).
    pub published: Option<String>,
    /// SHA-256 of the rebuild (`null`: missing from the rebuild).
    pub rebuilt: Option<String>,
    /// diffoscope's report, when diffoscope is installed.
    pub diffoscope_report: Option<PathBuf>,
}

/// Compares two SHA256SUMS maps; returns the differing artifacts.
pub fn compare(
    published: &BTreeMap<String, String>,
    rebuilt: &BTreeMap<String, String>,
) -> Vec<Difference> {
    let mut names: Vec<&String> = published.keys().chain(rebuilt.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter(|n| published.get(*n) != rebuilt.get(*n))
        .map(|n| Difference {
            artifact: n.clone(),
            published: published.get(n).cloned(),
            rebuilt: rebuilt.get(n).cloned(),
            diffoscope_report: None,
        })
        .collect()
}

/// What `image reproduce` takes: where to work and which tools to use.
/// Everything the release fixes (VM shapes, QEMU version, packages, release
/// name, commit) comes from its build-info.json.
#[derive(clap::Args, Clone)]
pub struct ReproduceArgs {
    /// The published release directory (SHA256SUMS, build-info.json,
    /// packages.lock), e.g. measurements/releases/chrysalis-0.2.0-cpu.
    pub release_dir: PathBuf,
    /// Work directory: the recorded commit's worktree (`source/`), its
    /// cargo target (`target/`) and the rebuild (`rebuild/`)
    /// [default: $XDG_CACHE_HOME/chrysalis/reproduce/RELEASE].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// mkosi to run [default: as `image build`].
    #[arg(long, value_name = "PATH")]
    pub mkosi: Option<PathBuf>,
    /// mkosi's output directory (keeps its tools tree when built from the
    /// same lock) [default: as `image build`].
    #[arg(long, value_name = "DIR")]
    pub mkosi_output: Option<PathBuf>,
    /// Fetch the locked packages from this Debian archive URL instead of
    /// deb.debian.org (the files are checked against the lock either way).
    #[arg(long, value_name = "URL")]
    pub mirror: Option<String>,
    /// Build the firmware again from the recorded recipe even when this
    /// checkout's image/firmware/out is a hash-checked build of the same
    /// recipe.
    #[arg(long)]
    pub rebuild_firmware: bool,
    /// Keep the worktree of the recorded commit after the comparison.
    #[arg(long)]
    pub keep_source: bool,
    /// Print the comparison as JSON.
    #[arg(long)]
    pub json: bool,
    /// Options of `image build` the release fixes: refused with the value
    /// the release records.
    #[arg(long = "vm", hide = true)]
    vm: Vec<String>,
    #[arg(long, hide = true)]
    qemu_version: Option<String>,
    #[arg(long, hide = true)]
    vcpu_type: Option<String>,
    #[arg(long, hide = true)]
    snapshot: Option<String>,
    #[arg(long, hide = true)]
    release: Option<String>,
    #[arg(long, hide = true)]
    lock: Option<String>,
    #[arg(long, hide = true)]
    no_lock: bool,
    #[arg(long, hide = true)]
    update_lock: bool,
    #[arg(long, hide = true)]
    binaries: Option<String>,
    #[arg(long, hide = true)]
    firmware: Option<String>,
    #[arg(long, hide = true)]
    source: Option<String>,
}

impl ReproduceArgs {
    /// The fixed options given, each with what the release records.
    fn fixed_given(&self, info: &BuildInfo) -> Vec<String> {
        let mut v = Vec::new();
        let mut say = |given: bool, flag: &str, recorded: String| {
            if given {
                v.push(format!("{flag}: the release fixes it ({recorded})"));
            }
        };
        say(!self.vm.is_empty(), "--vm", info.vms.join(" "));
        say(
            self.qemu_version.is_some(),
            "--qemu-version",
            info.qemu_version.clone(),
        );
        say(
            self.vcpu_type.is_some(),
            "--vcpu-type",
            info.vcpu_type.clone(),
        );
        say(self.release.is_some(), "--release", info.release.clone());
        let pkgs = || info.package_source.to_string();
        say(self.snapshot.is_some(), "--snapshot", pkgs());
        say(self.lock.is_some(), "--lock", pkgs());
        say(self.no_lock, "--no-lock", pkgs());
        say(self.update_lock, "--update-lock", pkgs());
        let commit = || info.commit.clone().unwrap_or_default();
        say(
            self.binaries.is_some(),
            "--binaries",
            format!("built from commit {}", commit()),
        );
        say(
            self.firmware.is_some(),
            "--firmware",
            format!("built by commit {}'s image/firmware/build.sh", commit()),
        );
        say(
            self.source.is_some(),
            "--source",
            format!("commit {}", commit()),
        );
        v
    }
}

/// Free space in bytes on the filesystem holding `dir` (`df -Pk`).
fn free_bytes(dir: &Path) -> Option<u64> {
    let o = Command::new("df").arg("-Pk").arg(dir).output().ok()?;
    let text = String::from_utf8_lossy(&o.stdout);
    let line = text.lines().nth(1)?;
    let kb: u64 = line.split_whitespace().nth(3)?.parse().ok()?;
    Some(kb * 1024)
}

fn git(repo: &Path, args: &[&str]) -> Result<std::process::Output> {
    Command::new("git")
        .current_dir(repo)
        .args(args)
        .output()
        .context("running git")
}

/// Removes a worktree this command made (and git's record of it).
fn remove_worktree(repo: &Path, dir: &Path) -> Result<()> {
    let _ = git(
        repo,
        &["worktree", "remove", "--force", &dir.display().to_string()],
    );
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    let _ = git(repo, &["worktree", "prune"]);
    Ok(())
}

/// One prerequisite that is not met.
fn missing(what: &str, expected: &str, why: String) -> Unavailable {
    Unavailable {
        kind: UnavailableKind::Prerequisite,
        path: what.to_string(),
        url: expected.to_string(),
        why,
    }
}

/// Disk a rebuild needs, bytes (mkosi workspace, tools tree, artifacts, target).
/// Measured: a fresh rebuild of `chrysalis-0.2.1-gpu` (both cargo targets
/// from scratch, tools tree rebuilt) peaked at 32 GiB more than before it
/// started (repart copies the 11 GB tree before mkfs.erofs).
fn disk_needed(profile: Profile) -> u64 {
    match profile {
        Profile::Cpu => 20 << 30,
        Profile::Gpu => 40 << 30,
    }
}

pub fn run(a: &ReproduceArgs) -> Result<i32> {
    let release = a.release_dir.as_path();
    let published = read_sha256sums(&release.join("SHA256SUMS"))?;
    let info_path = release.join("build-info.json");
    let info: BuildInfo = serde_json::from_str(
        &std::fs::read_to_string(&info_path).with_context(|| info_path.display().to_string())?,
    )
    .with_context(|| format!("{}: not a build-info.json", info_path.display()))?;
    let refused = a.fixed_given(&info);
    if !refused.is_empty() {
        bail!(
            "refusing options the release fixes (a reproduction uses the release's own inputs):\n  {}",
            refused.join("\n  ")
        );
    }
    let profile = match info.profile.as_str() {
        "cpu" => Profile::Cpu,
        "gpu" => Profile::Gpu,
        p => bail!("{}: unknown profile {p:?}", info_path.display()),
    };
    let commit = match info.commit.as_deref() {
        Some(c) if !c.ends_with("-dirty") => c.to_string(),
        Some(c) => bail!(
            "{}: built from a tree with uncommitted changes ({c}): no commit can reproduce it",
            info_path.display()
        ),
        None => bail!("{}: records no commit", info_path.display()),
    };
    let PackageSource::Lock {
        file: lock_file,
        sha256: lock_sha,
        ..
    } = serde_json::from_value::<PackageSource>(info.package_source.clone())
        .unwrap_or(PackageSource::Default)
    else {
        bail!(
            "{}: built from the live package list ({}), not a lock: its packages cannot be had again byte for byte, so it cannot be reproduced (releases from 0.2.0 on carry packages.lock)",
            info_path.display(),
            info.package_source
        );
    };
    let repo = mkosi::find_source(None)?;
    let root = a
        .out
        .clone()
        .unwrap_or_else(|| super::cache_dir().join("reproduce").join(&info.release));
    std::fs::create_dir_all(&root).with_context(|| root.display().to_string())?;
    let root = root.canonicalize()?;

    // Step 1: every prerequisite, all named at once.
    eprintln!(
        "[1/4] checking what a rebuild of {} from commit {commit} needs",
        info.release
    );
    let mut unmet = Vec::new();
    let has_commit = git(&repo, &["cat-file", "-e", &format!("{commit}^{{commit}}")])?
        .status
        .success();
    if !has_commit {
        unmet.push(missing(
            &format!("commit {commit}"),
            &repo.display().to_string(),
            format!("not in this clone: `git fetch origin {commit}` (or a full clone)"),
        ));
    }
    if let Some(want) = &info.rustc {
        match mkosi::rustc_version() {
            Ok(have) if &have == want => {}
            Ok(have) => unmet.push(missing(
                "rustc",
                want,
                format!("this machine has {have}: other in-image binaries"),
            )),
            Err(e) => unmet.push(missing("rustc", want, format!("{e:#}"))),
        }
    }
    let qemu = crate::qemu::version::locate(None);
    if let Err(e) = crate::qemu::version::require(&qemu, &info.qemu_version) {
        unmet.push(missing(
            &format!("QEMU {}", info.qemu_version),
            &qemu.display().to_string(),
            e.to_string(),
        ));
    }
    for tool in ["dpkg-deb", "xz", "cargo"] {
        if Command::new(tool).arg("--version").output().is_err() {
            unmet.push(missing(tool, "PATH", "not installed".into()));
        }
    }
    if let Some(free) = free_bytes(&root) {
        if free < disk_needed(profile) {
            unmet.push(missing(
                "disk space",
                &root.display().to_string(),
                format!(
                    "{} GiB free, a {} rebuild needs {} GiB",
                    free >> 30,
                    profile.name(),
                    disk_needed(profile) >> 30
                ),
            ));
        }
    }
    let mut lock = None;
    if has_commit {
        let o = git(&repo, &["show", &format!("{commit}:{lock_file}")])?;
        if !o.status.success() {
            unmet.push(missing(
                &lock_file,
                &format!("commit {commit}"),
                "the recorded commit has no such lock file".into(),
            ));
        } else {
            let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&o.stdout));
            let in_release = std::fs::read(release.join(RELEASE_LOCK)).ok();
            if sha != lock_sha {
                unmet.push(missing(
                    &lock_file,
                    &format!("commit {commit}"),
                    format!("SHA-256 {sha}, build-info.json records {lock_sha}"),
                ));
            } else if in_release.is_some_and(|r| r != o.stdout) {
                unmet.push(missing(
                    RELEASE_LOCK,
                    &release.display().to_string(),
                    format!("differs from {lock_file} at commit {commit}"),
                ));
            } else {
                match super::lock::PackageLock::parse(&String::from_utf8_lossy(&o.stdout)) {
                    Ok(l) => lock = Some(l),
                    Err(e) => unmet.push(missing(
                        &lock_file,
                        &format!("commit {commit}"),
                        e.to_string(),
                    )),
                }
            }
        }
    }
    if let Some(l) = &lock {
        eprintln!(
            "      fetching/checking {} locked packages ({} MB) into {}",
            l.entries.len(),
            l.total_bytes() / 1_000_000,
            packages::deb_cache().display()
        );
        unmet.extend(super::mirror::fetch_all(
            l,
            &packages::deb_cache(),
            &super::mirror::Upstreams::new(a.mirror.as_deref()),
        )?);
    }
    if !unmet.is_empty() {
        return Err(InputsUnavailable(unmet).into());
    }
    let tool = mkosi::find_mkosi(a.mkosi.as_deref(), &repo)?;

    // Step 2: the recorded commit in its own worktree, and its chrysalis.
    let source = root.join("source");
    if source.exists() {
        remove_worktree(&repo, &source)?;
    }
    eprintln!("[2/4] checking out {commit} into {}", source.display());
    let o = git(
        &repo,
        &[
            "worktree",
            "add",
            "--detach",
            &source.display().to_string(),
            &commit,
        ],
    )?;
    if !o.status.success() {
        bail!(
            "git worktree add failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    let target = root.join("target");
    eprintln!("      building that commit's chrysalis (cargo build --locked -p chrysalis-host-tools, target {})", target.display());
    let status = Command::new("cargo")
        .current_dir(&source)
        .args(["build", "--locked", "-p", "chrysalis-host-tools"])
        .env("CARGO_TARGET_DIR", &target)
        .status()
        .context("running cargo")?;
    if !status.success() {
        bail!("building chrysalis at commit {commit} failed");
    }

    // Step 3: that chrysalis builds the image with the recorded options.
    let rebuild = root.join("rebuild");
    let mut c = Command::new(target.join("debug/chrysalis"));
    c.current_dir(&source)
        .env("CARGO_TARGET_DIR", &target)
        .env("CHRYSALIS_QEMU", &qemu)
        .env("CHRYSALIS_MKOSI", &tool)
        .args(["image", "build", "--profile", profile.name()])
        .arg("--out")
        .arg(&rebuild)
        .args([
            "--release",
            &info.release,
            "--qemu-version",
            &info.qemu_version,
            "--vcpu-type",
            &info.vcpu_type,
        ])
        .arg("--lock")
        .arg(source.join(&lock_file));
    for vm in &info.vms {
        c.args(["--vm", vm]);
    }
    if let Some(m) = &a.mirror {
        c.args(["--mirror", m]);
    }
    if let Some(d) = &a.mkosi_output {
        c.arg("--mkosi-output").arg(d);
    }
    let cached_firmware = repo.join("image/firmware/out");
    if !a.rebuild_firmware
        && firmware::check_cache(&cached_firmware, &source.join("image/firmware/build.sh"))?
            == firmware::CacheState::Valid
    {
        eprintln!(
            "      firmware: {} is a hash-checked build of the recorded commit's recipe (pass --rebuild-firmware to build it again)",
            cached_firmware.display()
        );
        c.arg("--firmware").arg(&cached_firmware);
    }
    eprintln!(
        "[3/4] building the {} image as recorded (into {})",
        profile.name(),
        rebuild.display()
    );
    let status = c
        .status()
        .context("running the recorded commit's chrysalis")?;
    if !status.success() {
        bail!("the rebuild at commit {commit} failed ({status})");
    }

    // Step 4: compare.
    eprintln!(
        "[4/4] comparing every artifact with {}",
        release.join("SHA256SUMS").display()
    );
    let rebuilt = read_sha256sums(&rebuild.join("SHA256SUMS"))?;
    let diffs = compare(&published, &rebuilt);
    let code = report(release, &rebuild, &published, diffs, a.json)?;
    if !a.keep_source {
        remove_worktree(&repo, &source)?;
    }
    Ok(code)
}

/// `image reproduce --checkout`-style comparison of a rebuild directory
/// with the release; prints and returns the exit code.
fn report(
    release: &Path,
    rebuild: &Path,
    published: &BTreeMap<String, String>,
    mut diffs: Vec<Difference>,
    json: bool,
) -> Result<i32> {
    let diffoscope = Command::new("diffoscope").arg("--version").output().is_ok();
    for d in &mut diffs {
        let in_release = release.join(&d.artifact);
        if let (true, Some(_), Some(_), true) =
            (diffoscope, &d.published, &d.rebuilt, in_release.is_file())
        {
            let report = rebuild.join(format!(".diffoscope-{}.txt", d.artifact));
            let _ = Command::new("diffoscope")
                .arg("--text")
                .arg(&report)
                .arg(&in_release)
                .arg(rebuild.join(&d.artifact))
                .status();
            d.diffoscope_report = Some(report);
        }
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "release": release, "rebuild": rebuild, "identical": diffs.is_empty(),
                "artifacts": published.len(), "differences": diffs,
            }))?
        );
    } else if diffs.is_empty() {
        println!(
            "REPRODUCED: all {} artifacts of {} (measurements.json included) are bit-identical in {}",
            published.len(),
            release.display(),
            rebuild.display()
        );
    } else {
        println!(
            "NOT REPRODUCED: {} of {} artifacts differ",
            diffs.len(),
            published.len()
        );
        for d in &diffs {
            println!(
                "  {}: published {} rebuilt {}",
                d.artifact,
                d.published.as_deref().unwrap_or("(absent)"),
                d.rebuilt.as_deref().unwrap_or("(absent)")
            );
            if let Some(r) = &d.diffoscope_report {
                println!("    differing files inside: {}", r.display());
            }
        }
        if !diffoscope {
            println!("  (install diffoscope to see which files inside an artifact differ)");
        }
    }
    Ok(if diffs.is_empty() {
        exit::OK
    } else {
        exit::VERIFICATION
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_every_differing_or_missing_artifact() {
        let p: BTreeMap<String, String> = [("a", "1"), ("b", "2"), ("c", "3")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut r = p.clone();
        assert!(compare(&p, &r).is_empty());
        r.insert("b".into(), "9".into());
        r.remove("c");
        r.insert("d".into(), "4".into());
        let d = compare(&p, &r);
        let names: Vec<&str> = d.iter().map(|d| d.artifact.as_str()).collect();
        assert_eq!(names, ["b", "c", "d"]);
        assert_eq!(d[1].rebuilt, None);
        assert_eq!(d[2].published, None);
    }

    #[test]
    fn only_missing_packages_call_for_a_mirror_or_a_new_release() {
        let disk = missing(
            "disk space",
            "/cache",
            "31 GiB free, a gpu rebuild needs 40 GiB".into(),
        );
        let prerequisites = InputsUnavailable(vec![disk.clone()]).to_string();
        assert!(prerequisites.contains("31 GiB free"), "{prerequisites}");
        assert!(!prerequisites.contains("--mirror"), "{prerequisites}");
        let package = Unavailable {
            kind: UnavailableKind::LockedPackage,
            path: "pool/main/s/systemd/systemd_257.7-1_amd64.deb".into(),
            url: "http://127.0.0.1:9/debian/pool/main/s/systemd/systemd_257.7-1_amd64.deb".into(),
            why: "HTTP 404".into(),
        };
        let both = InputsUnavailable(vec![disk, package]).to_string();
        assert!(both.contains("--mirror URL"), "{both}");
        assert!(both.contains("2 pinned input(s)"), "{both}");
    }
}
