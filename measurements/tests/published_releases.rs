//! Every release published under `measurements/releases/` is consistent:
//! its `measurements.json` parses, names the release its directory is
//! named after, carries TDX and SNP configurations, and is the file its
//! `SHA256SUMS` lists (so it was copied from the build, not edited), as is
//! every other published file. A release built from a package lock
//! carries it (`packages.lock`, also listed) and the firmware's build
//! record, names a clean commit that is in this repository's history, and
//! that commit's lock file is byte for byte the published one (the checks
//! that need git history say why they are skipped in a shallow clone).

use std::path::Path;
use std::process::Command;

use chrysalis_measurements::manifest::MeasurementsManifest;
use sha2::{Digest, Sha256};

#[test]
fn published_releases_are_the_builds_files() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("releases");
    let mut releases = 0;
    for entry in std::fs::read_dir(&root).unwrap() {
        let dir = entry.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        releases += 1;
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let sums = std::fs::read_to_string(dir.join("SHA256SUMS")).unwrap();
        let listed = |file: &str| {
            sums.lines()
                .find_map(|l| l.strip_suffix(&format!("  {file}")).map(str::to_string))
                .unwrap_or_else(|| panic!("{name}: SHA256SUMS does not list {file}"))
        };
        // Every file published here is one the build listed.
        for e in std::fs::read_dir(&dir).unwrap() {
            let file = e.unwrap().file_name().to_string_lossy().to_string();
            if file == "SHA256SUMS" || file.starts_with("README") {
                continue;
            }
            let bytes = std::fs::read(dir.join(&file)).unwrap();
            assert_eq!(
                hex::encode(Sha256::digest(&bytes)),
                listed(&file),
                "{name}/{file} is not the file the build listed in SHA256SUMS"
            );
        }
        for file in ["measurements.json", "build-info.json", "packages.json"] {
            let bytes = std::fs::read(dir.join(file)).unwrap();
            assert_eq!(
                hex::encode(Sha256::digest(&bytes)),
                listed(file),
                "{name}/{file} is not the file the build listed in SHA256SUMS"
            );
        }
        let text = std::fs::read_to_string(dir.join("measurements.json")).unwrap();
        let m = MeasurementsManifest::from_json(&text).unwrap();
        assert_eq!(
            m.image.as_deref(),
            Some(name.as_str()),
            "{name}: measurements.json names another release"
        );
        assert!(
            m.configurations.iter().any(|c| c.tdx.is_some()),
            "{name}: no TDX values"
        );
        assert!(
            m.configurations.iter().any(|c| c.snp.is_some()),
            "{name}: no SNP values"
        );
        for (artifact, digest) in &m.artifacts {
            assert_eq!(&listed(artifact), digest, "{name}: {artifact}");
        }
        let info: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("build-info.json")).unwrap()).unwrap();
        let commit = info["commit"].as_str().unwrap();
        assert!(
            !commit.ends_with("-dirty"),
            "{name}: built from a tree with uncommitted changes"
        );
        if let Some(lock) = info["package_source"].get("lock") {
            check_locked_release(&name, &dir, commit, lock, &m);
        }
    }
    assert!(
        releases > 0,
        "no published release under {}",
        root.display()
    );
}

/// RTMR3 of every TDX configuration is the agent's boot events for the
/// default host configuration, plus, for a gpu release, the `gpu` event of
/// the configuration's GPU count with the driver its package list names.
fn check_rtmr3(name: &str, dir: &Path, m: &MeasurementsManifest) {
    use chrysalis_attestation::runtime_events::{rtmr3_expected_with_gpu, GpuEventState};
    let events = m
        .rtmr3_events
        .as_ref()
        .unwrap_or_else(|| panic!("{name}: no rtmr3_events"));
    let driver = events.gpu_driver.as_deref();
    if chrysalis_releases::catalogue::is_gpu_release(name) {
        let packages: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("packages.json")).unwrap()).unwrap();
        let module = packages["packages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "nvidia-open-kernel-dkms")
            .unwrap_or_else(|| panic!("{name}: no NVIDIA kernel module in packages.json"));
        let version = module["version"].as_str().unwrap();
        assert_eq!(
            driver,
            Some(version.rsplit_once('-').unwrap().0),
            "{name}: rtmr3_events.gpu_driver is not the image's driver ({version})"
        );
    } else {
        assert_eq!(driver, None, "{name}: a cpu release names a GPU driver");
    }
    for c in &m.configurations {
        let Some(tdx) = &c.tdx else { continue };
        let gpu = driver
            .filter(|_| c.vm.gpus > 0)
            .map(|d| GpuEventState::expected(c.vm.gpus, d));
        assert_eq!(
            tdx.rtmr3.as_deref(),
            Some(hex::encode(rtmr3_expected_with_gpu(b"{}", gpu.as_ref())).as_str()),
            "{name}/{}: RTMR3 is not the default host configuration's boot events",
            c.name
        );
    }
}

/// A release built from a package lock: the lock and firmware record are
/// published, every TDX register of every configuration is predicted, and
/// the recorded commit holds exactly that lock.
fn check_locked_release(
    name: &str,
    dir: &Path,
    commit: &str,
    lock: &serde_json::Value,
    m: &MeasurementsManifest,
) {
    let published = std::fs::read(dir.join("packages.lock"))
        .unwrap_or_else(|_| panic!("{name}: built from a lock but packages.lock is not published"));
    assert_eq!(
        hex::encode(Sha256::digest(&published)),
        lock["sha256"].as_str().unwrap(),
        "{name}: packages.lock is not the lock build-info.json names"
    );
    assert!(
        dir.join("firmware-build.txt").is_file(),
        "{name}: the firmware's build record is not published"
    );
    let text = std::fs::read_to_string(dir.join("measurements.json")).unwrap();
    let raw: serde_json::Value = serde_json::from_str(&text).unwrap();
    for c in raw["configurations"].as_array().unwrap() {
        if let Some(tdx) = c.get("tdx").filter(|t| !t.is_null()) {
            for reg in ["mrtd", "rtmr0", "rtmr1", "rtmr2", "rtmr3"] {
                assert!(
                    tdx[reg].is_string(),
                    "{name}/{}: {reg} is not predicted",
                    c["name"]
                );
            }
        }
    }
    assert!(!m.configurations.is_empty());
    check_rtmr3(name, dir, m);
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let git = |args: &[&str]| Command::new("git").current_dir(&repo).args(args).output();
    match git(&["rev-parse", "--is-shallow-repository"]) {
        Ok(o) if o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == "false" => {}
        _ => {
            eprintln!("SKIP {name}: commit checks need git and the full history (not a git checkout, or a shallow clone)");
            return;
        }
    }
    let ancestor = git(&["merge-base", "--is-ancestor", commit, "HEAD"]).unwrap();
    assert!(
        ancestor.status.success(),
        "{name}: the recorded commit {commit} is not in this repository's history"
    );
    let file = lock["file"].as_str().unwrap();
    let at_commit = git(&["show", &format!("{commit}:{file}")]).unwrap();
    assert!(
        at_commit.status.success(),
        "{name}: commit {commit} has no {file}"
    );
    assert_eq!(
        at_commit.stdout, published,
        "{name}: {file} at commit {commit} differs from the published packages.lock"
    );
}
