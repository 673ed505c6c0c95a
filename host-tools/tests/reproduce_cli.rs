//! `chrysalis image reproduce` before any build starts: options the release
//! fixes are refused, a release without a lock is refused, and when inputs
//! cannot be had every one is named (with where it was expected) and
//! nothing is built (exit 6). No network: the "archive" is a closed port on
//! 127.0.0.1, and the package cache is a fresh directory.

use std::path::Path;
use std::process::{Command, Output};

use sha2::{Digest, Sha256};

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn chrysalis(args: &[&str], cache: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chrysalis"))
        .current_dir(repo())
        .env("XDG_CACHE_HOME", cache)
        .args(args)
        .output()
        .expect("run chrysalis")
}

fn git(args: &[&str]) -> Option<String> {
    let o = Command::new("git")
        .current_dir(repo())
        .args(args)
        .output()
        .ok()?;
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

/// A release directory naming `commit`, its cpu lock (by SHA-256) and `qemu`.
fn release_dir(dir: &Path, commit: &str, lock_sha: &str, qemu: &str) {
    std::fs::write(
        dir.join("SHA256SUMS"),
        format!("{}  measurements.json\n", "00".repeat(32)),
    )
    .unwrap();
    let info = serde_json::json!({
        "profile": "cpu",
        "release": "chrysalis-9.9.9-cpu",
        "package_source": {"lock": {"file": "image/locks/cpu.lock", "sha256": lock_sha, "packages": 1, "bytes": 1}},
        "mkosi": "mkosi 25.3",
        "commit": commit,
        "source_date_epoch": 1,
        "vms": ["2:2G:0"],
        "qemu_version": qemu,
        "vcpu_type": "EPYC-v4",
    });
    std::fs::write(dir.join("build-info.json"), info.to_string()).unwrap();
}

#[test]
fn options_the_release_fixes_are_refused() {
    let t = tempfile::tempdir().unwrap();
    release_dir(t.path(), "abc", "00", "11.1.3");
    let o = chrysalis(
        &[
            "image",
            "reproduce",
            t.path().to_str().unwrap(),
            "--vm",
            "8:64G:1",
            "--qemu-version",
            "9.2.0",
            "--no-lock",
        ],
        t.path(),
    );
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    for (flag, recorded) in [
        ("--vm", "2:2G:0"),
        ("--qemu-version", "11.1.3"),
        ("--no-lock", "image/locks/cpu.lock"),
    ] {
        assert!(
            err.contains(flag) && err.contains(recorded),
            "{flag} refused naming {recorded}: {err}"
        );
    }
}

#[test]
fn a_release_built_without_a_lock_cannot_be_reproduced() {
    let t = tempfile::tempdir().unwrap();
    release_dir(t.path(), "abc", "00", "11.1.3");
    let info = t.path().join("build-info.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&info).unwrap()).unwrap();
    v["package_source"] = serde_json::json!("default");
    std::fs::write(&info, v.to_string()).unwrap();
    let o = chrysalis(
        &["image", "reproduce", t.path().to_str().unwrap()],
        t.path(),
    );
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a lock"));
}

#[test]
fn unavailable_inputs_are_all_named_before_anything_is_built() {
    let Some(head) = git(&["rev-parse", "HEAD"]) else {
        eprintln!("SKIP: not a git checkout");
        return;
    };
    let Some(lock) = git(&["show", "HEAD:image/locks/cpu.lock"]) else {
        eprintln!("SKIP: HEAD has no image/locks/cpu.lock");
        return;
    };
    let lock = lock + "\n";
    let lock_sha = hex::encode(Sha256::digest(lock.as_bytes()));
    let entries = lock.lines().filter(|l| !l.starts_with('#')).count();
    let t = tempfile::tempdir().unwrap();
    let rel = t.path().join("release");
    std::fs::create_dir_all(&rel).unwrap();
    // QEMU 0.0.1 exists nowhere: one more unmet input, named in the same list.
    release_dir(&rel, &head, &lock_sha, "0.0.1");
    let work = t.path().join("work");
    let o = chrysalis(
        &[
            "image",
            "reproduce",
            rel.to_str().unwrap(),
            "--out",
            work.to_str().unwrap(),
            "--mirror",
            "http://127.0.0.1:9/debian",
        ],
        t.path(),
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(6), "{err}");
    assert!(err.contains("QEMU 0.0.1"), "{err}");
    // Every locked package, each with its URL on the unreachable archive.
    let named = err.matches("expected at http://127.0.0.1:9/debian").count();
    assert_eq!(named, entries, "{err}");
    assert!(err.contains("nothing was built"), "{err}");
    assert!(!work.join("source").exists(), "a worktree was made");
    assert!(!work.join("rebuild").exists(), "a build started");
}
