//! Compiles every published release (`measurements/releases/*/measurements.json`)
//! into the crate, so a client's default policy needs no checkout and no path.

use std::fmt::Write as _;
use std::path::PathBuf;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let dir = manifest_dir.join("../../measurements/releases");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut releases: Vec<(String, PathBuf)> = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for e in entries.flatten() {
            let path = e.path().join("measurements.json");
            println!("cargo:rerun-if-changed={}", e.path().display());
            if path.is_file() {
                println!("cargo:rerun-if-changed={}", path.display());
                let name = e.file_name().to_string_lossy().into_owned();
                releases.push((name, path.canonicalize().expect("canonical path")));
            }
        }
    }
    // Sorted so that the catalogue (and so every output) has one order.
    releases.sort();
    let mut out = String::from(
        "/// `(release directory name, measurements.json text)`, sorted by name.\npub(crate) static BUILTIN: &[(&str, &str)] = &[\n",
    );
    for (name, path) in &releases {
        let _ = writeln!(
            out,
            "    ({name:?}, include_str!({:?})),",
            path.display().to_string()
        );
    }
    out.push_str("];\n");
    let dest = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets it")).join("builtin.rs");
    std::fs::write(dest, out).expect("write builtin.rs");
}
