//! The SNP launch digest against two independent implementations on the same
//! inputs: the `sev` crate's calculator (always) and `sev-snp-measure` from
//! PyPI (when `ci/measure-tools.sh` has made its venv; skipped otherwise).
//!
//! Firmware inputs: a synthetic OVMF built here (footer table, SEV metadata with
//! every section type, multi-page sections, kernel hashes table at an offset),
//! and, when `../shared/vectors` is present, the AmdSev / OvmfX64 tails from
//! virtee/sev alone and behind a 2 MiB pseudo-random body (a realistic size).

use std::path::{Path, PathBuf};
use std::process::Command;

use chrysalis_measurements::snp::{snp_launch_digest, Artifact, SnpMeasureInput, VcpuType, Vmm};

// ---- inputs ------------------------------------------------------------------

/// Deterministic filler (xorshift64*), so failures reproduce.
fn pseudo_random(len: usize, mut seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        seed ^= seed >> 12;
        seed ^= seed << 25;
        seed ^= seed >> 27;
        out.extend_from_slice(&seed.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

fn guid_le(text: &str) -> [u8; 16] {
    let h: Vec<u8> = hex::decode(text.replace('-', "")).unwrap();
    let mut g = [0u8; 16];
    g.copy_from_slice(&h);
    g[0..4].reverse();
    g[4..6].reverse();
    g[6..8].reverse();
    g
}

/// An OVMF-shaped image of `len` bytes: pseudo-random body, SEV metadata
/// `meta_from_end` bytes before the end, and a footer table with the metadata,
/// SEV-ES reset block and SEV hash table entries.
fn synth_firmware(
    len: usize,
    meta_from_end: usize,
    sections: &[(u32, u32, u32)],
    reset_eip: u32,
    hash_table_gpa: u32,
) -> Vec<u8> {
    let mut d = pseudo_random(len, len as u64 ^ 0x5e5);
    let meta_at = len - meta_from_end;
    let mut meta = b"ASEV".to_vec();
    meta.extend_from_slice(&(16 + 12 * sections.len() as u32).to_le_bytes());
    meta.extend_from_slice(&1u32.to_le_bytes());
    meta.extend_from_slice(&(sections.len() as u32).to_le_bytes());
    for (gpa, size, kind) in sections {
        for v in [gpa, size, kind] {
            meta.extend_from_slice(&v.to_le_bytes());
        }
    }
    d[meta_at..meta_at + meta.len()].copy_from_slice(&meta);

    let entry = |data: &[u8], guid: &str| {
        let mut e = data.to_vec();
        e.extend_from_slice(&((data.len() + 18) as u16).to_le_bytes());
        e.extend_from_slice(&guid_le(guid));
        e
    };
    let mut table = Vec::new();
    // Entries are found walking backwards from the footer: the last one here is read first.
    let mut ht = hash_table_gpa.to_le_bytes().to_vec();
    ht.extend_from_slice(&0x400u32.to_le_bytes());
    table.extend(entry(&ht, "7255371f-3a3b-4b04-927b-1da6efa8d454"));
    table.extend(entry(
        &reset_eip.to_le_bytes(),
        "00f771de-1a7e-4fcb-890e-68c77e2fb44e",
    ));
    table.extend(entry(
        &(meta_from_end as u32).to_le_bytes(),
        "dc886566-984a-4798-a75e-5585a7bf67cc",
    ));
    let footer_at = len - 32 - 18;
    let start = footer_at - table.len();
    d[start..footer_at].copy_from_slice(&table);
    d[footer_at..footer_at + 2].copy_from_slice(&((table.len() + 18) as u16).to_le_bytes());
    d[footer_at + 2..footer_at + 18]
        .copy_from_slice(&guid_le("96b582de-1fb2-45f7-baea-a366c55a082d"));
    d
}

fn vectors() -> Option<PathBuf> {
    let dir = std::env::var_os("CHRYSALIS_VECTORS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors"))
        .join("measurements");
    dir.join("virtee_ovmf_AmdSev_suffix.bin")
        .exists()
        .then_some(dir)
}

const DEBIAN_OVMF: [&str; 2] = ["/usr/share/ovmf/OVMF.fd", "/usr/share/OVMF/OVMF_CODE.fd"];

struct Inputs {
    _tmp: tempfile::TempDir,
    /// (label, path, has kernel hashes)
    firmwares: Vec<(String, PathBuf, bool)>,
    kernel: PathBuf,
    initrd: PathBuf,
}

fn inputs() -> Inputs {
    let tmp = tempfile::tempdir().unwrap();
    let mut firmwares = Vec::new();
    // Every section type, a multi-page SEC_MEM, the hash table 0xc00 into its page.
    let sections = [
        (0x80_0000, 0x9000, 1),
        (0x80_9000, 0x2000, 1),
        (0x80_b000, 0x1000, 2),
        (0x80_c000, 0x1000, 3),
        (0x80_d000, 0x1000, 4),
        (0x80_e000, 0x1000, 0x10),
        (0x80_f000, 0x3000, 1),
    ];
    let synth = synth_firmware(256 * 1024, 0x800, &sections, 0xffff_f004, 0x80_ec00);
    let p = tmp.path().join("synth.fd");
    std::fs::write(&p, synth).unwrap();
    firmwares.push(("synthetic 256 KiB".to_string(), p, true));
    // Metadata 200 KiB before the end: beyond the tail read when the firmware
    // digest is given, so that path falls back to reading the whole image.
    // Also: another section order, the hash table at the start of its page.
    let synth = synth_firmware(
        256 * 1024,
        200 * 1024,
        &[
            (0x80_0000, 0x1000, 0x10),
            (0x80_1000, 0x1000, 3),
            (0x80_2000, 0x1000, 2),
            (0x81_0000, 0x4000, 1),
        ],
        0xffff_e008,
        0x80_0000,
    );
    let p = tmp.path().join("synth-far.fd");
    std::fs::write(&p, synth).unwrap();
    firmwares.push((
        "synthetic 256 KiB, metadata far from the end".to_string(),
        p,
        true,
    ));
    if let Some(dir) = vectors() {
        for (name, kh) in [
            ("virtee_ovmf_AmdSev_suffix.bin", true),
            ("virtee_ovmf_OvmfX64_suffix.bin", false),
        ] {
            let tail = std::fs::read(dir.join(name)).unwrap();
            firmwares.push((name.to_string(), dir.join(name), kh));
            let mut big = pseudo_random(2 << 20, 7);
            big.extend_from_slice(&tail);
            let p = tmp.path().join(format!("big-{name}"));
            std::fs::write(&p, big).unwrap();
            firmwares.push((format!("2 MiB + {name}"), p, kh));
        }
    } else {
        eprintln!("note: ../shared/vectors not found; comparing without the virtee firmware tails");
    }
    // Real, whole firmware: Debian's OvmfPkgX64 builds (package ovmf), SEV
    // metadata but no kernel hashes page; a quarter of OVMF.fd is 0xff padding.
    for p in DEBIAN_OVMF {
        if Path::new(p).exists() {
            firmwares.push((p.to_string(), PathBuf::from(p), false));
        } else {
            eprintln!(
                "note: {p} not found (apt-get install ovmf, or ci/measure-tools.sh); not compared"
            );
        }
    }
    let kernel = tmp.path().join("vmlinuz");
    std::fs::write(&kernel, pseudo_random((1 << 20) + 123, 1)).unwrap();
    let initrd = tmp.path().join("initrd.img");
    std::fs::write(&initrd, pseudo_random(300 * 1024 + 7, 2)).unwrap();
    Inputs {
        _tmp: tmp,
        firmwares,
        kernel,
        initrd,
    }
}

/// (kernel, initrd, cmdline) variants.
fn boot_variants(
    i: &Inputs,
    with_kernel: bool,
) -> Vec<(Option<PathBuf>, Option<PathBuf>, Option<String>)> {
    let mut v = vec![(None, None, None)];
    if with_kernel {
        v.push((Some(i.kernel.clone()), None, None));
        v.push((
            Some(i.kernel.clone()),
            Some(i.initrd.clone()),
            Some("console=ttyS0 root=/dev/vda1 ro roothash=00ff".to_string()),
        ));
        v.push((
            Some(i.kernel.clone()),
            Some(i.initrd.clone()),
            Some(String::new()),
        ));
    }
    v
}

const VCPU_COUNTS: [u32; 4] = [1, 2, 4, 64];
const VCPU_TYPES: [VcpuType; 3] = [VcpuType::EpycV4, VcpuType::EpycMilan, VcpuType::EpycGenoa];

#[allow(clippy::too_many_arguments)]
fn ours(
    fw: &Path,
    kernel: &Option<PathBuf>,
    initrd: &Option<PathBuf>,
    cmdline: &Option<String>,
    vcpus: u32,
    t: VcpuType,
    features: u64,
    vmm: Vmm,
) -> [u8; 48] {
    let mut input = SnpMeasureInput::new(Artifact::File(fw.to_path_buf()));
    input.kernel = kernel.clone().map(Artifact::File);
    input.initrd = initrd.clone().map(Artifact::File);
    input.cmdline = cmdline.clone();
    input.vcpus = vcpus;
    input.vcpu_type = t;
    input.guest_features = features;
    input.vmm = vmm;
    snp_launch_digest(&input).unwrap()
}

/// Giving the firmware-only digest (which skips reading the firmware pages)
/// gives the same launch digest as computing it.
#[test]
fn given_ovmf_hash_changes_nothing() {
    let i = inputs();
    for (label, fw, kh) in &i.firmwares {
        let mut input = SnpMeasureInput::new(Artifact::File(fw.clone()));
        input.vcpus = 4;
        if *kh {
            input.kernel = Some(Artifact::File(i.kernel.clone()));
            input.cmdline = Some("x".into());
        }
        let full = chrysalis_measurements::snp::snp_measure(&input).unwrap();
        input.ovmf_hash = Some(full.ovmf_hash);
        let given = chrysalis_measurements::snp::snp_measure(&input).unwrap();
        assert_eq!(given, full, "{label}");
        assert_eq!(
            full.ovmf_hash,
            chrysalis_measurements::snp::snp_ovmf_hash(&input.firmware).unwrap(),
            "{label}"
        );
    }
}

// ---- against the sev crate -----------------------------------------------------

#[test]
fn matches_sev_crate_calculator() {
    use sev::measurement::snp::{snp_calc_launch_digest, SnpMeasurementArgs};
    use sev::measurement::vcpu_types::CpuType;
    use sev::measurement::vmsa::{GuestFeatures, VMMType};

    let i = inputs();
    let mut n = 0;
    for (label, fw, kh) in &i.firmwares {
        for (kernel, initrd, cmdline) in boot_variants(&i, *kh) {
            for vcpus in VCPU_COUNTS {
                for t in VCPU_TYPES {
                    for features in [0x1u64, 0x21] {
                        for (vmm, sev_vmm) in
                            [(Vmm::Qemu, VMMType::QEMU), (Vmm::Ec2Legacy, VMMType::EC2)]
                        {
                            let theirs = snp_calc_launch_digest(SnpMeasurementArgs {
                                vcpus,
                                vcpu_type: CpuType::try_from(t.name().as_str()).unwrap(),
                                ovmf_file: fw.clone(),
                                guest_features: GuestFeatures(features),
                                kernel_file: kernel.clone(),
                                initrd_file: initrd.clone(),
                                append: cmdline.as_deref(),
                                ovmf_hash_str: None,
                                vmm_type: Some(sev_vmm),
                            })
                            .unwrap();
                            let theirs: Vec<u8> = theirs.try_into().unwrap();
                            let mine =
                                ours(fw, &kernel, &initrd, &cmdline, vcpus, t, features, vmm);
                            assert_eq!(
                                hex::encode(mine),
                                hex::encode(theirs),
                                "{label} kernel={} initrd={} cmdline={cmdline:?} vcpus={vcpus} {t} features={features:#x} {vmm}",
                                kernel.is_some(),
                                initrd.is_some()
                            );
                            n += 1;
                        }
                    }
                }
            }
        }
    }
    eprintln!("{n} configurations equal to sev::measurement::snp::snp_calc_launch_digest");
}

/// The `sev` crate trims the command line; QEMU hashes it as given. Ours keeps
/// it, so with surrounding spaces the two differ and ours equals the trimmed
/// digest only when there is nothing to trim.
#[test]
fn cmdline_is_not_trimmed() {
    let i = inputs();
    let (_, fw, _) = &i.firmwares[0];
    let k = Some(i.kernel.clone());
    let d = |c: &str| {
        ours(
            fw,
            &k,
            &None,
            &Some(c.to_string()),
            1,
            VcpuType::EpycV4,
            1,
            Vmm::Qemu,
        )
    };
    assert_ne!(d(" quiet "), d("quiet"));
    assert_ne!(d("quiet\n"), d("quiet"));
}

// ---- against sev-snp-measure (PyPI) ---------------------------------------------

fn refvenv_python() -> Option<PathBuf> {
    let venv = std::env::var_os("CHRYSALIS_REFVENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
                .join("refvenv")
        });
    let py = venv.join("bin/python");
    let ok = py.exists()
        && Command::new(&py)
            .args(["-c", "import sevsnpmeasure"])
            .status()
            .is_ok_and(|s| s.success());
    if !ok {
        eprintln!(
            "skipping: sev-snp-measure venv not found at {} (run ci/measure-tools.sh)",
            venv.display()
        );
    }
    ok.then_some(py)
}

/// One Python process computes every case with the package's own function
/// (`sevsnpmeasure.guest.snp_calc_launch_digest`), one JSON line in, one out.
const PY_BATCH: &str = r#"
import json, sys
from sevsnpmeasure import guest, vcpu_types
from sevsnpmeasure.vmm_types import VMMType
for line in sys.stdin:
    c = json.loads(line)
    ld = guest.snp_calc_launch_digest(
        c["vcpus"], vcpu_types.CPU_SIGS[c["type"]], c["ovmf"], c["kernel"], c["initrd"],
        c["append"], c["features"], "", VMMType[c["vmm"]])
    print(ld.hex(), flush=True)
"#;

#[test]
fn matches_sev_snp_measure() {
    let Some(py) = refvenv_python() else { return };
    let i = inputs();
    let mut cases = Vec::new();
    for (label, fw, kh) in &i.firmwares {
        let mut variants = boot_variants(&i, *kh);
        if *kh {
            // QEMU hashes the command line as given: surrounding spaces count.
            variants.push((Some(i.kernel.clone()), None, Some("  quiet splash ".into())));
        }
        for (kernel, initrd, cmdline) in variants {
            for vcpus in VCPU_COUNTS {
                for t in VCPU_TYPES {
                    for features in [0x1u64, 0x21] {
                        for (vmm, py_vmm) in
                            [(Vmm::Qemu, "QEMU"), (Vmm::Ec2, "ec2"), (Vmm::Gce, "gce")]
                        {
                            cases.push((
                                label.clone(),
                                fw.clone(),
                                kernel.clone(),
                                initrd.clone(),
                                cmdline.clone(),
                                vcpus,
                                t,
                                features,
                                vmm,
                                py_vmm,
                            ));
                        }
                    }
                }
            }
        }
    }
    let mut stdin = String::new();
    for (_, fw, kernel, initrd, cmdline, vcpus, t, features, _, py_vmm) in &cases {
        let path = |p: &Option<PathBuf>| {
            p.as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        };
        stdin.push_str(
            &serde_json::json!({
                "ovmf": fw.display().to_string(), "kernel": path(kernel), "initrd": path(initrd),
                "append": cmdline.clone().unwrap_or_default(), "vcpus": vcpus, "type": t.name(),
                "features": features, "vmm": py_vmm,
            })
            .to_string(),
        );
        stdin.push('\n');
    }
    let out = run_with_stdin(&py, &["-c", PY_BATCH], &stdin);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), cases.len());
    for (c, theirs) in cases.iter().zip(lines) {
        let (label, fw, kernel, initrd, cmdline, vcpus, t, features, vmm, _) = c;
        let mine = ours(fw, kernel, initrd, cmdline, *vcpus, *t, *features, *vmm);
        assert_eq!(
            hex::encode(mine),
            theirs,
            "{label} kernel={} initrd={} cmdline={cmdline:?} vcpus={vcpus} {t} features={features:#x} {vmm}",
            kernel.is_some(),
            initrd.is_some()
        );
    }
    eprintln!("{} configurations equal to sev-snp-measure", cases.len());

    // And a few through its command line, as a user would run it.
    let cli = py.with_file_name("sev-snp-measure");
    let (_, fw, _) = &i.firmwares[0];
    for (vcpus, t, vmm, kernel) in [
        (1, VcpuType::EpycV4, "QEMU", false),
        (4, VcpuType::EpycMilan, "QEMU", true),
        (64, VcpuType::EpycGenoa, "ec2", true),
    ] {
        let mut args = vec![
            "--mode".to_string(),
            "snp".into(),
            "--vcpus".into(),
            vcpus.to_string(),
            "--vcpu-type".into(),
            t.name(),
            "--vmm-type".into(),
            vmm.into(),
            "--ovmf".into(),
            fw.display().to_string(),
            "--guest-features".into(),
            "0x21".into(),
        ];
        if kernel {
            args.extend([
                "--kernel".into(),
                i.kernel.display().to_string(),
                "--initrd".into(),
                i.initrd.display().to_string(),
                "--append".into(),
                "console=ttyS0".into(),
            ]);
        }
        let out = Command::new(&cli).args(&args).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let theirs = String::from_utf8(out.stdout).unwrap().trim().to_string();
        let vmm = if vmm == "ec2" { Vmm::Ec2 } else { Vmm::Qemu };
        let (k, ini, c) = if kernel {
            (
                Some(i.kernel.clone()),
                Some(i.initrd.clone()),
                Some("console=ttyS0".to_string()),
            )
        } else {
            (None, None, None)
        };
        assert_eq!(
            hex::encode(ours(fw, &k, &ini, &c, vcpus, t, 0x21, vmm)),
            theirs,
            "CLI {args:?}"
        );
    }
}

fn run_with_stdin(cmd: &Path, args: &[&str], stdin: &str) -> String {
    use std::io::Write;
    let mut child = Command::new(cmd)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut w = child.stdin.take().unwrap();
    let input = stdin.to_string();
    let writer = std::thread::spawn(move || w.write_all(input.as_bytes()));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

/// Debian's 4 MiB OVMF code build has an SEV-ES reset block but no SEV
/// metadata: it cannot pre-validate memory under SNP. sev-snp-measure still
/// prints a digest for it; we refuse with a message naming the file.
#[test]
fn firmware_without_sev_metadata_is_refused() {
    let p = Path::new("/usr/share/OVMF/OVMF_CODE_4M.fd");
    if !p.exists() {
        eprintln!("skipping: {} not found (apt-get install ovmf)", p.display());
        return;
    }
    let err =
        snp_launch_digest(&SnpMeasureInput::new(Artifact::File(p.to_path_buf()))).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("OVMF_CODE_4M.fd") && msg.contains("no SEV metadata"),
        "{msg}"
    );
}
