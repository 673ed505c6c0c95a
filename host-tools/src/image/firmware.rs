//! The confidential-VM firmware every build measures with: TDVF and OVMF
//! AmdSev from `image/firmware/build.sh` (Debian's edk2 sources, pinned by
//! SHA-256, built reproducibly at a fixed path).
//!
//! A build never goes without them: `--firmware DIR` names them, else the
//! cache `image/firmware/out` is used when it is a complete build of the
//! current recipe, else `image/firmware/build.sh` runs (a few minutes) and
//! fills the cache. A cache counts only when its `firmware-build.txt`
//! names the SHA-256 of the `build.sh` in this tree (the recipe, with the
//! source pins) and the SHA-256 of both files, and both files still hash to
//! that. Anything else is rebuilt, and a build that cannot get firmware
//! fails: a release without measurements is not a release.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use chrysalis_measurements as m;

/// The two firmware files a release carries.
pub const FILES: [&str; 2] = ["firmware-tdx.fd", "firmware-snp.fd"];
/// The record `build.sh` writes beside them.
pub const RECORD: &str = "firmware-build.txt";
/// The line of [`RECORD`] naming the recipe: `recipe <sha256 of build.sh>`.
const RECIPE_PREFIX: &str = "recipe ";

/// Why a cache directory does not count.
#[derive(Debug, PartialEq, Eq)]
pub enum CacheState {
    /// Complete, of this recipe, hashes check.
    Valid,
    /// Not usable, and why (one line).
    Invalid(String),
}

/// Checks a cache directory against the recipe `build_sh`.
pub fn check_cache(dir: &Path, build_sh: &Path) -> Result<CacheState> {
    let record = dir.join(RECORD);
    let Ok(text) = std::fs::read_to_string(&record) else {
        return Ok(CacheState::Invalid(format!("{} missing", record.display())));
    };
    let recipe = hex::encode(
        m::tdx::sha256_file(build_sh)
            .with_context(|| build_sh.display().to_string())?
            .0,
    );
    let recorded = text.lines().find_map(|l| l.strip_prefix(RECIPE_PREFIX));
    match recorded {
        Some(r) if r.trim() == recipe => {}
        Some(r) => {
            return Ok(CacheState::Invalid(format!(
                "built by another recipe (build.sh {}, this tree's is {recipe})",
                r.trim()
            )))
        }
        None => {
            return Ok(CacheState::Invalid(format!(
                "{} names no recipe (made by an older build.sh)",
                record.display()
            )))
        }
    }
    for name in FILES {
        let want = text.lines().find_map(|l| {
            let (hash, file) = l.split_once("  ")?;
            (file.trim() == name && hash.len() == 64).then(|| hash.to_ascii_lowercase())
        });
        let Some(want) = want else {
            return Ok(CacheState::Invalid(format!(
                "{} records no SHA-256 of {name}",
                record.display()
            )));
        };
        let path = dir.join(name);
        if !path.is_file() {
            return Ok(CacheState::Invalid(format!("{} missing", path.display())));
        }
        let got = hex::encode(m::tdx::sha256_file(&path)?.0);
        if got != want {
            return Ok(CacheState::Invalid(format!(
                "{} has SHA-256 {got}, the build recorded {want}",
                path.display()
            )));
        }
    }
    Ok(CacheState::Valid)
}

/// The firmware directory a build uses: `explicit` (must hold both files),
/// or the source tree's cache, rebuilt with `image/firmware/build.sh` when
/// it is not a valid build of the current recipe. `log` receives the
/// firmware build's output.
pub fn ensure(explicit: Option<&Path>, source: &Path, log: &Path) -> Result<PathBuf> {
    if let Some(d) = explicit {
        for name in FILES {
            if !d.join(name).is_file() {
                bail!(
                    "--firmware {}: no {name} there; a build measures both TDX and SNP (image/firmware/build.sh DIR makes them)",
                    d.display()
                );
            }
        }
        return Ok(d.to_path_buf());
    }
    let build_sh = source.join("image/firmware/build.sh");
    let cache = source.join("image/firmware/out");
    match check_cache(&cache, &build_sh)? {
        CacheState::Valid => return Ok(cache),
        CacheState::Invalid(why) => eprintln!(
            "firmware cache {}: {why}: building TDVF and OVMF AmdSev from Debian's edk2 sources (image/firmware/build.sh, several minutes; log {})",
            cache.display(),
            log.display()
        ),
    }
    let out = std::fs::File::create(log).with_context(|| log.display().to_string())?;
    let status = Command::new("bash")
        .arg(&build_sh)
        .arg(&cache)
        .current_dir(source)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .status()
        .context("running image/firmware/build.sh")?;
    if !status.success() {
        bail!(
            "cannot measure: image/firmware/build.sh failed ({status}; log {}). It needs gcc, make, nasm, iasl (acpica-tools), uuid-dev, python3, xz and curl with access to a Debian mirror; or pass --firmware DIR with firmware-tdx.fd and firmware-snp.fd",
            log.display()
        );
    }
    match check_cache(&cache, &build_sh)? {
        CacheState::Valid => Ok(cache),
        CacheState::Invalid(why) => bail!(
            "cannot measure: image/firmware/build.sh finished but its output does not check: {why}"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(p: &Path) -> String {
        hex::encode(m::tdx::sha256_file(p).unwrap().0)
    }

    fn cache_with_record(d: &Path, recipe: &str) {
        std::fs::write(d.join("firmware-tdx.fd"), b"tdx").unwrap();
        std::fs::write(d.join("firmware-snp.fd"), b"snp").unwrap();
        let text = format!(
            "edk2 ...\n{RECIPE_PREFIX}{recipe}\n{}  firmware-tdx.fd\n{}  firmware-snp.fd\n",
            sha(&d.join("firmware-tdx.fd")),
            sha(&d.join("firmware-snp.fd"))
        );
        std::fs::write(d.join(RECORD), text).unwrap();
    }

    #[test]
    fn a_cache_counts_only_for_its_recipe_and_intact_files() {
        let d = tempfile::tempdir().unwrap();
        let build_sh = d.path().join("build.sh");
        std::fs::write(&build_sh, "#!/bin/sh\necho recipe 1\n").unwrap();
        let cache = d.path().join("out");
        std::fs::create_dir(&cache).unwrap();
        assert!(matches!(
            check_cache(&cache, &build_sh).unwrap(),
            CacheState::Invalid(w) if w.contains("missing")
        ));
        cache_with_record(&cache, &sha(&build_sh));
        assert_eq!(check_cache(&cache, &build_sh).unwrap(), CacheState::Valid);

        // One byte of a firmware file changed: refused, naming the file.
        std::fs::write(cache.join("firmware-snp.fd"), b"snq").unwrap();
        assert!(matches!(
            check_cache(&cache, &build_sh).unwrap(),
            CacheState::Invalid(w) if w.contains("firmware-snp.fd has SHA-256")
        ));

        // Another recipe (e.g. a new source pin in build.sh): refused.
        cache_with_record(&cache, &sha(&build_sh));
        std::fs::write(&build_sh, "#!/bin/sh\necho recipe 2\n").unwrap();
        assert!(matches!(
            check_cache(&cache, &build_sh).unwrap(),
            CacheState::Invalid(w) if w.contains("another recipe")
        ));

        // A record from before recipes were recorded: refused.
        std::fs::write(
            cache.join(RECORD),
            format!("{}  firmware-tdx.fd\n", sha(&cache.join("firmware-tdx.fd"))),
        )
        .unwrap();
        assert!(matches!(
            check_cache(&cache, &build_sh).unwrap(),
            CacheState::Invalid(w) if w.contains("names no recipe")
        ));
    }

    #[test]
    fn explicit_firmware_needs_both_files() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("firmware-tdx.fd"), b"tdx").unwrap();
        let e = ensure(Some(d.path()), d.path(), &d.path().join("log")).unwrap_err();
        assert!(e.to_string().contains("no firmware-snp.fd"), "{e}");
        std::fs::write(d.path().join("firmware-snp.fd"), b"snp").unwrap();
        assert_eq!(
            ensure(Some(d.path()), d.path(), &d.path().join("log")).unwrap(),
            d.path()
        );
    }

    #[test]
    fn the_recipe_records_itself() {
        // build.sh writes the line check_cache looks for.
        let s = include_str!("../../../image/firmware/build.sh");
        assert!(
            s.contains("echo \"recipe $(sha256sum \"$here/build.sh\" | cut -d' ' -f1)\""),
            "image/firmware/build.sh must record `recipe <sha256 of build.sh>` in firmware-build.txt"
        );
    }
}
