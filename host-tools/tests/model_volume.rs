//! `chrysalis image model` (the dm-verity model volume) and
//! `chrysalis launch --model`. The volume tests need mkfs.erofs
//! (erofs-utils) and veritysetup (cryptsetup-bin): they skip with a message
//! when either is missing, unless CHRYSALIS_REQUIRE_MODEL_TOOLS=1 (CI).

use std::path::Path;
use std::process::{Command, Output};

fn chrysalis(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chrysalis"))
        .args(args)
        .env("SOURCE_DATE_EPOCH", "1763596800")
        .output()
        .expect("run chrysalis")
}

fn os<S: AsRef<std::ffi::OsStr> + ?Sized>(s: &S) -> &std::ffi::OsStr {
    s.as_ref()
}

/// `chrysalis image model SRC --out OUT [extra...]`.
fn image_model(src: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        os("image"),
        os("model"),
        src.as_os_str(),
        os("--out"),
        out.as_os_str(),
    ];
    args.extend(extra.iter().map(os));
    chrysalis(&args)
}

fn have(tool: &str) -> bool {
    ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        .iter()
        .any(|d| Path::new(d).join(tool).is_file())
}

fn tools_present() -> bool {
    if have("mkfs.erofs") && have("veritysetup") {
        return true;
    }
    if std::env::var_os("CHRYSALIS_REQUIRE_MODEL_TOOLS").is_some() {
        panic!("CHRYSALIS_REQUIRE_MODEL_TOOLS is set but mkfs.erofs or veritysetup is missing");
    }
    eprintln!("SKIP: mkfs.erofs (erofs-utils) or veritysetup (cryptsetup-bin) not installed");
    false
}

/// A small model directory; `reverse` creates the same files in the
/// opposite order (the volume must not depend on directory order).
fn model_dir(root: &Path, reverse: bool) {
    let mut files: Vec<(String, Vec<u8>)> = vec![
        (
            "config.json".into(),
            br#"{"architectures":["LlamaForCausalLM"]}"#.to_vec(),
        ),
        ("tokenizer.json".into(), b"{}".to_vec()),
        (
            "weights/model-00001.safetensors".into(),
            (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect(),
        ),
        ("weights/README".into(), b"tiny".to_vec()),
    ];
    if reverse {
        files.reverse();
    }
    for (name, bytes) in files {
        let p = root.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, bytes).unwrap();
    }
}

fn info(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("model.json")).unwrap()).unwrap()
}

#[test]
fn volume_is_deterministic_and_verifies_under_its_root_hash() {
    if !tools_present() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let (src_a, src_b) = (t.path().join("src-a"), t.path().join("src-b"));
    model_dir(&src_a, false);
    model_dir(&src_b, true);
    let (out_a, out_b) = (t.path().join("out-a"), t.path().join("out-b"));
    for (src, out) in [(&src_a, &out_a), (&src_b, &out_b)] {
        let o = image_model(src, out, &[]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(String::from_utf8_lossy(&o.stdout).contains("verity root hash"));
    }
    for f in ["model.erofs", "model.verity", "model.json"] {
        assert_eq!(
            std::fs::read(out_a.join(f)).unwrap(),
            std::fs::read(out_b.join(f)).unwrap(),
            "{f} differs between two builds of the same files"
        );
    }
    let i = info(&out_a);
    let root = i["verity_root_hash"].as_str().unwrap().to_string();
    assert_eq!(root.len(), 64);
    assert_eq!(i["files"], 4);
    assert_eq!(
        i["runtime_config"]["model_volume"]["verity_root_hash"],
        root.as_str()
    );
    // veritysetup itself checks every block against the root hash.
    let verify = |data: &Path| {
        Command::new("veritysetup")
            .arg("verify")
            .arg(data)
            .arg(out_a.join("model.verity"))
            .arg(&root)
            .output()
            .unwrap()
    };
    let ok = verify(&out_a.join("model.erofs"));
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    // One flipped byte in the file data: the root hash no longer verifies.
    let tampered = t.path().join("tampered.erofs");
    let mut bytes = std::fs::read(out_a.join("model.erofs")).unwrap();
    let pos = bytes.len() / 2;
    bytes[pos] ^= 1;
    std::fs::write(&tampered, bytes).unwrap();
    assert!(
        !verify(&tampered).status.success(),
        "a flipped byte still verified"
    );
    // Different files, different root hash.
    std::fs::write(src_a.join("tokenizer.json"), b"{ }").unwrap();
    let out_c = t.path().join("out-c");
    let o = image_model(&src_a, &out_c, &["--json"]);
    assert!(o.status.success());
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_ne!(j["verity_root_hash"].as_str().unwrap(), root);
}

#[test]
fn bad_sources_are_refused_and_nothing_is_written() {
    if !tools_present() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    let o = image_model(&t.path().join("missing"), &out, &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a directory"));
    assert!(!out.exists());
    let src = t.path().join("src");
    model_dir(&src, false);
    std::os::unix::fs::symlink("/etc/passwd", src.join("weights/link")).unwrap();
    let o = image_model(&src, &out, &[]);
    assert_eq!(o.status.code(), Some(1));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("symbolic links") && e.contains("weights/link"),
        "{e}"
    );
    assert!(!out.exists() || std::fs::read_dir(&out).unwrap().next().is_none());
}

#[test]
fn launch_attaches_the_volume_by_serial_and_checks_the_config() {
    let o = chrysalis(&[
        os("launch"),
        os("--tee"),
        os("tdx"),
        os("--vcpus"),
        os("2"),
        os("--memory"),
        os("2G"),
        os("--model"),
        os("/m"),
        os("--print"),
        os("/r"),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s = String::from_utf8_lossy(&o.stdout);
    for part in [
        "file=/m/model.erofs,if=none,id=model,format=raw,readonly=on",
        "virtio-blk-pci,drive=model,serial=chrysalis-model,disable-legacy=on,iommu_platform=on",
        "file=/m/model.verity,if=none,id=modelverity,format=raw,readonly=on",
        "serial=chrysalis-model-ht",
    ] {
        assert!(s.contains(part), "missing {part:?} in {s}");
    }
    // virtio-blk serials longer than 20 bytes are cut, and the guest would
    // wait for a /dev/disk/by-id name that never appears.
    for serial in s.split("serial=").skip(1) {
        let serial = serial.split([',', ' ']).next().unwrap();
        assert!(
            serial.len() <= 20,
            "virtio serial {serial:?} is longer than 20 bytes"
        );
    }
    // The root disks stay first (/dev/vda, /dev/vdb).
    assert!(s.find("id=rootfs").unwrap() < s.find("id=model,").unwrap());

    // Without --print: a volume whose root hash the config does not name is refused.
    let t = tempfile::tempdir().unwrap();
    let m = t.path().join("m");
    std::fs::create_dir_all(&m).unwrap();
    std::fs::write(m.join("model.erofs"), b"x").unwrap();
    std::fs::write(m.join("model.verity"), b"x").unwrap();
    std::fs::write(
        t.path().join("cmdline"),
        "console=ttyS0 systemd.verity_root_data=/dev/vda systemd.verity_root_hash=/dev/vdb\n",
    )
    .unwrap();
    let hash = "ab".repeat(32);
    std::fs::write(
        m.join("model.json"),
        format!(r#"{{"verity_root_hash":"{hash}"}}"#),
    )
    .unwrap();
    let launch = |cfg: Option<&Path>| {
        let mut a = vec![
            os("launch"),
            os("--tee"),
            os("none"),
            os("--vcpus"),
            os("2"),
            os("--memory"),
            os("2G"),
            os("--model"),
            m.as_os_str(),
        ];
        if let Some(c) = cfg {
            a.extend([os("--config"), c.as_os_str()]);
        }
        a.push(t.path().as_os_str());
        chrysalis(&a)
    };
    let o = launch(None);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("needs --config"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // A --config that cannot be read is named.
    let o = launch(Some(&t.path().join("absent.json")));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("absent.json"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let cfg = t.path().join("cfg.json");
    std::fs::write(
        &cfg,
        format!(
            r#"{{"model_volume":{{"verity_root_hash":"{}"}}}}"#,
            "cd".repeat(32)
        ),
    )
    .unwrap();
    let o = launch(Some(&cfg));
    assert_eq!(o.status.code(), Some(1));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("would refuse to mount") && e.contains(&hash),
        "{e}"
    );
}
