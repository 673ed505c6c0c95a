//! Every release published under `measurements/releases/` is consistent:
//! its `measurements.json` parses, names the release its directory is
//! named after, carries TDX and SNP configurations, and is the file its
//! `SHA256SUMS` lists (so it was copied from the build, not edited), as is
//! every other published file.

use std::path::Path;

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
    }
    assert!(
        releases > 0,
        "no published release under {}",
        root.display()
    );
}
