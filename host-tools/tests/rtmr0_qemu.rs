//! RTMR0's ACPI tables from the pinned QEMU (`chrysalis measure acpi`): a
//! malicious host that changes the VM changes the tables, so the predicted
//! RTMR0 no longer matches. These tests run QEMU under qtest (no KVM, no
//! boot); they need the pinned QEMU (`bash ci/qemu-pinned.sh`, then
//! CHRYSALIS_QEMU=<the path it prints>) and skip with a message without it,
//! unless CHRYSALIS_REQUIRE_QEMU=1 (CI), where its absence fails.

use std::process::{Command, Output};

fn qemu() -> Option<String> {
    match std::env::var("CHRYSALIS_QEMU") {
        Ok(q) if !q.is_empty() => Some(q),
        _ if std::env::var("CHRYSALIS_REQUIRE_QEMU").as_deref() == Ok("1") => {
            panic!("CHRYSALIS_REQUIRE_QEMU=1 but CHRYSALIS_QEMU is not set (run: bash ci/qemu-pinned.sh)")
        }
        _ => {
            eprintln!("skipping: CHRYSALIS_QEMU not set (the pinned QEMU: bash ci/qemu-pinned.sh)");
            None
        }
    }
}

fn chrysalis(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chrysalis"))
        .args(args)
        .output()
        .expect("run chrysalis")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `measure acpi --json` for a shape.
fn acpi(extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["measure", "acpi", "--json"];
    args.extend_from_slice(extra);
    let o = chrysalis(&args);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn digests(v: &serde_json::Value) -> [String; 3] {
    ["table_loader_sha384", "rsdp_sha384", "tables_sha384"]
        .map(|k| v[k].as_str().unwrap().to_string())
}

#[test]
fn tables_are_qemus_set_and_deterministic() {
    if qemu().is_none() {
        return;
    }
    let a = acpi(&["--vcpus", "2", "--memory", "2G"]);
    let names: Vec<&str> = a["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["signature"].as_str().unwrap())
        .collect();
    // MCFG present: PCIEXBAR was programmed as the firmware does.
    assert_eq!(
        names,
        ["FACS", "DSDT", "FACP", "APIC", "MCFG", "WAET", "RSDT"]
    );
    assert!(a["source"].as_str().unwrap().contains("11.1.3"), "{a}");
    assert_eq!(
        digests(&a),
        digests(&acpi(&["--vcpus", "2", "--memory", "2G"]))
    );
}

#[test]
fn malicious_host_memory_vcpus_and_pci_devices_change_the_tables() {
    if qemu().is_none() {
        return;
    }
    let base = digests(&acpi(&["--vcpus", "2", "--memory", "2G"]))[2].clone();
    for (what, shape) in [
        // RAM past the aperture's alignment moves the DSDT's 64-bit window
        // (any other memory change moves the TD HOB, also in RTMR0: see the
        // measurements crate's malicious-host tests).
        (
            "other memory size",
            &["--vcpus", "2", "--memory", "48G"][..],
        ),
        ("other vCPU count", &["--vcpus", "3", "--memory", "2G"]),
        (
            "an added PCI device (GPU on a root port)",
            &["--vcpus", "2", "--memory", "2G", "--gpus", "1"],
        ),
        (
            "added PCI devices (model volume disks)",
            &["--vcpus", "2", "--memory", "2G", "--model-volume"],
        ),
    ] {
        assert_ne!(
            digests(&acpi(shape))[2],
            base,
            "{what} left etc/acpi/tables unchanged"
        );
    }
}

#[test]
fn blobs_written_are_what_measure_reads() {
    if qemu().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("acpi");
    let a = acpi(&[
        "--vcpus",
        "2",
        "--memory",
        "2G",
        "--out",
        out.to_str().unwrap(),
    ]);
    for f in ["table-loader", "rsdp", "tables"] {
        assert!(out.join(f).is_file(), "{f}");
    }
    assert_eq!(
        std::fs::metadata(out.join("tables")).unwrap().len(),
        128 << 10
    );
    assert_eq!(std::fs::metadata(out.join("rsdp")).unwrap().len(), 20);
    let _ = a;
}

#[test]
fn wrong_qemu_version_is_refused_with_the_way_to_get_the_pinned_one() {
    if qemu().is_none() {
        return;
    }
    let o = chrysalis(&["measure", "acpi", "--qemu-version", "9.2.0"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("9.2.0") && text(&o).contains("11.1.3"),
        "{}",
        text(&o)
    );
}

#[test]
fn without_a_qemu_rtmr0_is_an_error_naming_how_to_get_it_never_null() {
    let o = Command::new(env!("CARGO_BIN_EXE_chrysalis"))
        .args([
            "measure",
            "acpi",
            "--qemu",
            "/nonexistent/qemu-system-x86_64",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("ci/qemu-pinned.sh"), "{}", text(&o));
}
