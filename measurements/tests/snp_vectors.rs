//! The SNP launch digest against the virtee/sev test cases transcribed in
//! `../shared/vectors/measurements/virtee_snp_launch_digest_cases.json`
//! (firmware = the last 4 KiB of an AmdSev / OvmfX64 build, as upstream tests).

use std::path::PathBuf;

use chrysalis_measurements::snp::{
    parse_digest48, snp_launch_digest, snp_measure, snp_ovmf_hash, Artifact, SnpMeasureInput,
    VcpuType, Vmm,
};
use chrysalis_measurements::Error;
use serde_json::Value;

fn vectors() -> Option<PathBuf> {
    let dir = std::env::var_os("CHRYSALIS_VECTORS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors"))
        .join("measurements");
    if dir.join("virtee_snp_launch_digest_cases.json").exists() {
        Some(dir)
    } else {
        eprintln!("skipping: ../shared/vectors not found");
        None
    }
}

fn empty_file(dir: &tempfile::TempDir, name: &str) -> Artifact {
    let p = dir.path().join(name);
    std::fs::write(&p, b"").unwrap();
    Artifact::File(p)
}

#[test]
fn virtee_cases() {
    let Some(dir) = vectors() else { return };
    let cases: Value = serde_json::from_slice(
        &std::fs::read(dir.join("virtee_snp_launch_digest_cases.json")).unwrap(),
    )
    .unwrap();
    let given_ovmf_hash =
        parse_digest48(cases["ovmf_hash_AmdSev_suffix"].as_str().unwrap()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut positives = 0;
    let mut negatives = 0;
    for case in cases["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let firmware = Artifact::File(dir.join(case["ovmf"].as_str().unwrap()));
        let mut input = SnpMeasureInput::new(firmware);
        input.vcpu_type = VcpuType::EpycV4;
        input.vcpus = case["vcpus"].as_u64().unwrap_or(1) as u32;
        if let Some(gf) = case["guest_features"].as_str() {
            input.guest_features = u64::from_str_radix(gf.trim_start_matches("0x"), 16).unwrap();
        }
        input.vmm = match case["vmm"].as_str() {
            // virtee/sev models EC2 before its 2026 VMSA change.
            Some("EC2") => Vmm::Ec2Legacy,
            _ => Vmm::Qemu,
        };
        if case["kernel"].as_str() == Some("empty") {
            input.kernel = Some(empty_file(&tmp, "kernel"));
        }
        if case["initrd"].as_str() == Some("empty") {
            input.initrd = Some(empty_file(&tmp, "initrd"));
        }
        input.cmdline = case["append"].as_str().map(str::to_string);
        if case["ovmf_hash_given"].as_bool() == Some(true) {
            input.ovmf_hash = Some(given_ovmf_hash);
        }

        if let Some(expected_err) = case["expected_error"].as_str() {
            negatives += 1;
            // Upstream: "Kernel specified but OVMF metadata doesn't include
            // SNP_KERNEL_HASHES section".
            input.kernel = Some(empty_file(&tmp, "kernel"));
            let err = snp_launch_digest(&input).unwrap_err();
            let msg = err.to_string();
            assert!(matches!(err, Error::BadArtifact { .. }), "{name}: {err:?}");
            assert!(
                msg.contains("SNP_KERNEL_HASHES") && expected_err.contains("SNP_KERNEL_HASHES"),
                "{name}: {msg}"
            );
            assert!(
                msg.contains("virtee_ovmf_OvmfX64_suffix.bin"),
                "{name}: {msg}"
            );
            continue;
        }
        positives += 1;
        let expected = parse_digest48(case["expected_ld"].as_str().unwrap()).unwrap();
        let got = snp_launch_digest(&input).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(hex::encode(got), hex::encode(expected), "case {name}");
    }
    assert_eq!((positives, negatives), (12, 1));
}

#[test]
fn ovmf_hash_of_amdsev_suffix() {
    let Some(dir) = vectors() else { return };
    let cases: Value = serde_json::from_slice(
        &std::fs::read(dir.join("virtee_snp_launch_digest_cases.json")).unwrap(),
    )
    .unwrap();
    let fw = Artifact::File(dir.join("virtee_ovmf_AmdSev_suffix.bin"));
    let h = snp_ovmf_hash(&fw).unwrap();
    assert_eq!(
        hex::encode(h),
        cases["ovmf_hash_AmdSev_suffix"].as_str().unwrap()
    );
    // Giving the firmware-only digest must not change the result.
    let mut input = SnpMeasureInput::new(fw.clone());
    input.vcpus = 3;
    let computed = snp_measure(&input).unwrap();
    assert_eq!(computed.ovmf_hash, h);
    input.ovmf_hash = Some(h);
    assert_eq!(snp_launch_digest(&input).unwrap(), computed.launch_digest);
    // Bytes input gives the same as the path.
    let bytes = Artifact::Bytes {
        name: "fw".into(),
        data: std::fs::read(dir.join("virtee_ovmf_AmdSev_suffix.bin")).unwrap(),
    };
    input.firmware = bytes;
    assert_eq!(snp_launch_digest(&input).unwrap(), computed.launch_digest);
}

#[test]
fn firmware_layout_is_reported() {
    let Some(dir) = vectors() else { return };
    let fw = Artifact::File(dir.join("virtee_ovmf_AmdSev_suffix.bin"));
    let m = snp_measure(&SnpMeasureInput::new(fw)).unwrap();
    assert!(m.firmware.has_kernel_hashes);
    assert_eq!(m.firmware.size, 4096);
    assert_eq!(m.firmware.gpa, (1u64 << 32) - 4096);
    let json = serde_json::to_value(&m).unwrap();
    assert_eq!(json["launch_digest"].as_str().unwrap().len(), 96);
    assert_eq!(json["vmm"], "qemu");
    let fw = Artifact::File(dir.join("virtee_ovmf_OvmfX64_suffix.bin"));
    let m = snp_measure(&SnpMeasureInput::new(fw)).unwrap();
    assert!(!m.firmware.has_kernel_hashes);
}

/// Every truncation, and every single-bit flip in the last 256 bytes (footer
/// table), of a real firmware tail: an error or a digest, never a panic.
#[test]
fn mutated_firmware_never_panics() {
    let Some(dir) = vectors() else { return };
    let data = std::fs::read(dir.join("virtee_ovmf_AmdSev_suffix.bin")).unwrap();
    let measure = |d: Vec<u8>| {
        let mut input = SnpMeasureInput::new(Artifact::Bytes {
            name: "m.fd".into(),
            data: d,
        });
        input.vcpus = 2;
        input.kernel = Some(Artifact::Bytes {
            name: "k".into(),
            data: vec![1, 2, 3],
        });
        snp_launch_digest(&input)
    };
    for n in 0..data.len() {
        let err = measure(data[..n].to_vec()).unwrap_err();
        assert!(err.to_string().contains("m.fd"), "{err}");
    }
    let mut ok = 0;
    for byte in data.len() - 256..data.len() {
        for bit in 0..8 {
            let mut d = data.clone();
            d[byte] ^= 1 << bit;
            if measure(d).is_ok() {
                ok += 1;
            }
        }
    }
    // Flips in GUID data or unused bytes still parse; flips in the structure do not.
    assert!(ok > 0 && ok < 256 * 8, "{ok}");
}

#[test]
fn bad_inputs_are_named_errors() {
    let Some(dir) = vectors() else { return };
    let fw = Artifact::File(dir.join("virtee_ovmf_AmdSev_suffix.bin"));
    let tmp = tempfile::tempdir().unwrap();
    let base = SnpMeasureInput::new(fw);

    let mut i = base.clone();
    i.firmware = Artifact::File(tmp.path().join("no-such.fd"));
    let e = snp_launch_digest(&i).unwrap_err();
    assert!(
        matches!(e, Error::Io { .. }) && e.to_string().contains("no-such.fd"),
        "{e}"
    );

    let mut i = base.clone();
    i.kernel = Some(Artifact::File(tmp.path().join("no-such-kernel")));
    let e = snp_launch_digest(&i).unwrap_err();
    assert!(
        matches!(e, Error::Io { .. }) && e.to_string().contains("no-such-kernel"),
        "{e}"
    );

    for vcpus in [0, chrysalis_measurements::snp::MAX_VCPUS + 1] {
        let mut i = base.clone();
        i.vcpus = vcpus;
        assert!(
            matches!(snp_launch_digest(&i), Err(Error::BadInput(_))),
            "{vcpus}"
        );
    }

    let mut i = base.clone();
    i.cmdline = Some("console=ttyS0".into());
    assert!(
        matches!(snp_launch_digest(&i), Err(Error::BadInput(_))),
        "cmdline without kernel"
    );

    let mut i = base.clone();
    i.kernel = Some(empty_file(&tmp, "k"));
    i.cmdline = Some("a\0b".into());
    assert!(
        matches!(snp_launch_digest(&i), Err(Error::BadInput(_))),
        "NUL in cmdline"
    );

    assert!("EPYC-Zen9".parse::<VcpuType>().is_err());
    assert!("kvm".parse::<Vmm>().is_err());
    assert!(parse_digest48("00").is_err());
}
