//! `chrysalis image reproduce RELEASE_DIR`: rebuild with the release's own
//! build inputs and compare artifact by artifact.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use super::assemble::{read_sha256sums, BuildInfo};
use super::{BuildOptions, Profile};
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

/// True when two build-info records differ in the commit and nothing else.
pub fn only_commit_differs(a: &BuildInfo, b: &BuildInfo) -> bool {
    a.commit != b.commit
        && BuildInfo {
            commit: None,
            ..a.clone()
        } == BuildInfo {
            commit: None,
            ..b.clone()
        }
}

pub fn run(release: &Path, out: Option<&Path>, o: &BuildOptions, json: bool) -> Result<i32> {
    let published = read_sha256sums(&release.join("SHA256SUMS"))?;
    let info_path = release.join("build-info.json");
    let info: BuildInfo = serde_json::from_str(
        &std::fs::read_to_string(&info_path).with_context(|| info_path.display().to_string())?,
    )
    .with_context(|| format!("{}: not a build-info.json", info_path.display()))?;
    let profile = match info.profile.as_str() {
        "cpu" => Profile::Cpu,
        "gpu" => Profile::Gpu,
        p => bail!("{}: unknown profile {p:?}", info_path.display()),
    };
    // The release's own inputs, unless overridden on the command line.
    let mut opts = o.clone();
    opts.release.get_or_insert(info.release.clone());
    opts.vms = info.vms.clone();
    opts.qemu_version = info.qemu_version.clone();
    opts.vcpu_type = info.vcpu_type.clone();
    if opts.snapshot.is_none() && opts.mirror.is_none() {
        match &info.package_source {
            serde_json::Value::Object(m) => {
                opts.snapshot = m.get("snapshot").and_then(|v| v.as_str()).map(String::from);
                opts.mirror = m.get("mirror").and_then(|v| v.as_str()).map(String::from);
            }
            _ => eprintln!("note: the release was built from the default (live) package list: a rebuild after the mirror moved on will differ; releases should name --snapshot"),
        }
    }
    if opts.firmware.is_none() && published.keys().any(|k| k.starts_with("firmware-")) {
        eprintln!("note: the release ships firmware; pass --firmware DIR with your own build of it (image/firmware/build.sh) to compare it, else image/firmware/out is used (built first when it is not a complete build of this tree's recipe)");
    }
    let rebuild_dir = out
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(format!("{}.rebuild", release.display())));
    let summary = super::build(profile, &rebuild_dir, &opts)?;
    let rebuilt = read_sha256sums(&summary.out.join("SHA256SUMS"))?;
    let mut diffs = compare(&published, &rebuilt);
    // build-info.json names the git commit it was built from: rebuilding an
    // unchanged definition from a later commit differs there and only there.
    // That is an input difference to report, not an irreproducible build.
    let rebuilt_info: BuildInfo = serde_json::from_str(&std::fs::read_to_string(
        summary.out.join("build-info.json"),
    )?)?;
    if only_commit_differs(&info, &rebuilt_info) {
        diffs.retain(|d| d.artifact != "build-info.json");
        eprintln!(
            "note: rebuilt from commit {} (the release names {}); build-info.json differs only there",
            rebuilt_info.commit.as_deref().unwrap_or("?"),
            info.commit.as_deref().unwrap_or("?")
        );
    }
    let diffoscope = Command::new("diffoscope").arg("--version").output().is_ok();
    for d in &mut diffs {
        if let (true, Some(_), Some(_)) = (diffoscope, &d.published, &d.rebuilt) {
            let report = summary.out.join(format!(".diffoscope-{}.txt", d.artifact));
            let _ = Command::new("diffoscope")
                .arg("--text")
                .arg(&report)
                .arg(release.join(&d.artifact))
                .arg(summary.out.join(&d.artifact))
                .status();
            d.diffoscope_report = Some(report);
        }
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "release": release, "rebuild": summary.out, "identical": diffs.is_empty(),
                "artifacts": published.len(), "differences": diffs,
            }))?
        );
    } else if diffs.is_empty() {
        println!(
            "REPRODUCED: all {} artifacts of {} (measurements.json included) are bit-identical in {}",
            published.len(),
            release.display(),
            summary.out.display()
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
    fn a_commit_difference_alone_is_not_a_reproducibility_failure() {
        let a = BuildInfo {
            profile: "cpu".into(),
            release: "r".into(),
            package_source: serde_json::json!("default"),
            mkosi: "mkosi 25.3".into(),
            commit: Some("aaa".into()),
            source_date_epoch: Some(1),
            vms: vec!["2:2G:0".into()],
            qemu_version: "9.2.0".into(),
            vcpu_type: "EPYC-v4".into(),
        };
        let mut b = a.clone();
        assert!(!only_commit_differs(&a, &b));
        b.commit = Some("bbb".into());
        assert!(only_commit_differs(&a, &b));
        b.source_date_epoch = Some(2);
        assert!(!only_commit_differs(&a, &b));
    }

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
}
