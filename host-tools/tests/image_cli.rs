//! Contract tests of `chrysalis launch`, `chrysalis image` and
//! `chrysalis host check` that need no image build, no QEMU and no TEE.

use std::process::{Command, Output};

fn chrysalis(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chrysalis"))
        .args(args)
        .output()
        .expect("run chrysalis")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

#[test]
fn launch_print_works_without_artifacts() {
    let o = chrysalis(&[
        "launch",
        "--tee",
        "tdx",
        "--vcpus",
        "8",
        "--memory",
        "64G",
        "--gpu",
        "0000:41:00.0",
        "--forward",
        "18443",
        "--print",
        "/nonexistent/release",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s = stdout(&o);
    for part in [
        "qemu-system-x86_64 ",
        "confidential-guest-support=tdx0",
        "-object tdx-guest,id=tdx0",
        "-smp 8",
        "-m 65536M",
        "-bios /nonexistent/release/firmware-tdx.fd",
        "-kernel /nonexistent/release/vmlinuz",
        "-initrd /nonexistent/release/initrd",
        "-append \"$(cat /nonexistent/release/cmdline)\"",
        "file=/nonexistent/release/rootfs.img,if=none,id=rootfs,format=raw,readonly=on",
        "vfio-pci,host=0000:41:00.0",
        "hostfwd=tcp:127.0.0.1:18443-:8443",
    ] {
        assert!(s.contains(part), "missing {part:?} in {s}");
    }
}

#[test]
fn launch_none_uses_debian_ovmf_and_snp_its_firmware() {
    let o = chrysalis(&[
        "launch", "--tee", "none", "--vcpus", "2", "--memory", "2G", "--print", "/r",
    ]);
    assert!(o.status.success());
    assert!(stdout(&o).contains("-bios /usr/share/ovmf/OVMF.fd"));
    let o = chrysalis(&[
        "launch", "--tee", "snp", "--vcpus", "2", "--memory", "2G", "--print", "/r",
    ]);
    assert!(o.status.success());
    let s = stdout(&o);
    assert!(
        s.contains("-bios /r/firmware-snp.fd") && s.contains("kernel-hashes=on"),
        "{s}"
    );
}

#[test]
fn launch_rejects_bad_input_clearly() {
    let o = chrysalis(&[
        "launch", "--tee", "tdx", "--vcpus", "2", "--memory", "lots", "--print", "/r",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--memory"));
    let o = chrysalis(&[
        "launch", "--tee", "tdx", "--vcpus", "2", "--memory", "2G", "--gpu", "41:00.0", "--print",
        "/r",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("PCI address"));
    // Without --print the artifacts must exist.
    let d = tempfile::tempdir().unwrap();
    let o = chrysalis(&[
        "launch",
        "--tee",
        "none",
        "--vcpus",
        "2",
        "--memory",
        "2G",
        d.path().to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("cmdline"));
}

#[test]
fn image_reproduce_needs_a_release() {
    let d = tempfile::tempdir().unwrap();
    let o = chrysalis(&["image", "reproduce", d.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("SHA256SUMS"));
}

#[test]
fn host_check_json_is_machine_readable() {
    let o = chrysalis(&["host", "check", "--json"]);
    // 0 or 4 depending on the host; never a crash.
    assert!(matches!(o.status.code(), Some(0) | Some(4)), "{o:?}");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    let checks = v["checks"].as_array().expect("checks");
    assert!(checks.iter().any(|c| c["name"] == "kvm"));
    assert!(checks
        .iter()
        .filter(|c| c["status"] == "fail")
        .all(|c| !c["fix"].as_str().unwrap_or("").is_empty()));
}
