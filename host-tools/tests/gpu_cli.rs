//! `chrysalis gpu verify` / `chrysalis gpu status` command lines (issue 8
//! contract) on NVIDIA's public sample evidence; exit codes as
//! `chrysalis attest verify`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const NONCE: &str = "931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb";

fn chrysalis(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chrysalis"))
        .args(args)
        .env(
            "XDG_CACHE_HOME",
            std::env::temp_dir().join("chrysalis-gpu-cli-test-cache"),
        )
        .output()
        .expect("run chrysalis")
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exited by signal (panic?)")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn vectors() -> Option<PathBuf> {
    let d = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors/nvidia");
    if d.join("nvtrust_hopperAttestationReport.txt").is_file() {
        Some(d)
    } else {
        eprintln!("skipping: ../shared/vectors/nvidia not found");
        None
    }
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

struct V {
    report: PathBuf,
    chain: PathBuf,
    driver: PathBuf,
    vbios: PathBuf,
}

fn v() -> Option<V> {
    let d = vectors()?;
    Some(V {
        report: d.join("nvtrust_hopperAttestationReport.txt"),
        chain: d.join("nvtrust_hopperCertChain.txt"),
        driver: d.join("nvtrust_Driver_RIM_test_no_gpu.swidtag"),
        vbios: d.join("nvtrust_1010_0200_882_96005E0001_test_no_gpu.swidtag"),
    })
}

#[test]
fn sample_verifies_offline() {
    let Some(v) = v() else { return };
    let o = chrysalis(&[
        "gpu",
        "verify",
        "--evidence",
        p(&v.report),
        "--certs",
        p(&v.chain),
        "--nonce",
        NONCE,
        "--offline",
    ]);
    let t = text(&o);
    assert_eq!(code(&o), 0, "{t}");
    assert!(t.contains("GPU 0: GH100"), "{t}");
    assert!(t.contains("550.90.07 / 96.00.9F.00.01"), "{t}");
    assert!(t.contains("CC mode           not carried"), "{t}");
    assert!(t.contains("RIMs              NOT COMPARED"), "{t}");
    assert!(t.contains("OCSP              NOT CHECKED"), "{t}");
    assert!(t.contains("ACCEPTED: authenticity only"), "{t}");
}

#[test]
fn sample_json() {
    let Some(v) = v() else { return };
    let o = chrysalis(&[
        "gpu",
        "verify",
        "--evidence",
        p(&v.report),
        "--certs",
        p(&v.chain),
        "--nonce",
        NONCE,
        "--offline",
        "--at",
        "2024-06-01T00:00:00Z",
        "--json",
    ]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["accepted"], true);
    assert_eq!(j["at"], "2024-06-01T00:00:00Z");
    assert_eq!(j["gpus"][0]["model"], "GH100");
    assert_eq!(j["gpus"][0]["driver_version"], "550.90.07");
    assert_eq!(j["gpus"][0]["device_chain"].as_array().unwrap().len(), 5);
}

#[test]
fn wrong_nonce_is_exit_3() {
    let Some(v) = v() else { return };
    let other = "00".repeat(32);
    let o = chrysalis(&[
        "gpu",
        "verify",
        "--evidence",
        p(&v.report),
        "--certs",
        p(&v.chain),
        "--nonce",
        &other,
        "--offline",
        "--json",
    ]);
    assert_eq!(code(&o), 3, "{}", text(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["accepted"], false);
    assert_eq!(j["error"]["category"], "verification");
    assert!(j["error"]["message"]
        .as_str()
        .unwrap()
        .contains("nonce mismatch"));
}

#[test]
fn sample_rims_mismatch_and_expire() {
    let Some(v) = v() else { return };
    let base = [
        "gpu",
        "verify",
        "--evidence",
        p(&v.report),
        "--certs",
        p(&v.chain),
        "--rim",
        p(&v.driver),
        "--rim",
        p(&v.vbios),
        "--nonce",
        NONCE,
        "--offline",
    ];
    // At a time the RIM signers were valid: signatures verify, measurements differ (see chrysalis-gpu tests).
    let mut a = base.to_vec();
    a.extend(["--at", "2024-06-01T00:00:00Z"]);
    let o = chrysalis(&a);
    assert_eq!(code(&o), 3, "{}", text(&o));
    assert!(
        text(&o).contains("do not match the RIMs at index(es) [1, 2, 3, 7"),
        "{}",
        text(&o)
    );
    // Now: the RIM signer certificates expired on 2025-06-22.
    let o = chrysalis(&base);
    assert_eq!(code(&o), 3, "{}", text(&o));
    assert!(text(&o).contains("expired"), "{}", text(&o));
}

#[test]
fn flipped_bit_truncated_and_missing_inputs() {
    let Some(v) = v() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let hexs = std::fs::read_to_string(&v.report).unwrap();
    let mut raw = hex::decode(hexs.trim()).unwrap();
    raw[1000] ^= 0x04;
    let flipped = tmp.path().join("flipped.txt");
    std::fs::write(&flipped, hex::encode(&raw)).unwrap();
    let o = chrysalis(&[
        "gpu",
        "verify",
        "--evidence",
        p(&flipped),
        "--certs",
        p(&v.chain),
        "--nonce",
        NONCE,
        "--offline",
    ]);
    assert_eq!(code(&o), 3, "{}", text(&o));
    assert!(
        text(&o).contains("signature does not verify"),
        "{}",
        text(&o)
    );
    let short = tmp.path().join("short.txt");
    std::fs::write(&short, hex::encode(&raw[..raw.len() - 1])).unwrap();
    let o = chrysalis(&[
        "gpu",
        "verify",
        "--evidence",
        p(&short),
        "--certs",
        p(&v.chain),
        "--nonce",
        NONCE,
        "--offline",
    ]);
    assert_eq!(code(&o), 2, "{}", text(&o));
    assert!(text(&o).contains("signature"), "{}", text(&o));
    let o = chrysalis(&[
        "gpu",
        "verify",
        "--evidence",
        "/nonexistent/report.txt",
        "--certs",
        p(&v.chain),
        "--nonce",
        NONCE,
    ]);
    assert_eq!(code(&o), 1, "{}", text(&o));
    let o = chrysalis(&[
        "gpu",
        "verify",
        "--evidence",
        p(&v.report),
        "--certs",
        p(&v.chain),
        "--nonce",
        "abcd",
    ]);
    assert_eq!(code(&o), 2, "{}", text(&o));
    assert!(text(&o).contains("--nonce"), "{}", text(&o));
}

#[test]
fn policy_requires_cc_state_and_bundle_carries_it() {
    let Some(v) = v() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let policy = tmp.path().join("policy.toml");
    std::fs::write(
        &policy,
        "[gpu]\nocsp = \"off\"\nrequire_rims = false\nmin_driver_version = \"550.54.14\"\n",
    )
    .unwrap();
    // SDK report: no CC state -> rejected by policy (exit 4).
    let o = chrysalis(&[
        "gpu",
        "verify",
        "--evidence",
        p(&v.report),
        "--certs",
        p(&v.chain),
        "--nonce",
        NONCE,
        "--offline",
        "--policy",
        p(&policy),
    ]);
    assert_eq!(code(&o), 4, "{}", text(&o));
    assert!(text(&o).contains("carries no CC state"), "{}", text(&o));
    // The same evidence in a bundle with the driver-reported CC state: accepted.
    let bundle = serde_json::json!({
        "format": "chrysalis-gpu-evidence/1",
        "nonce": NONCE,
        "gpus": [{
            "index": 0,
            "report": std::fs::read_to_string(&v.report).unwrap().trim(),
            "cert_chain": std::fs::read_to_string(&v.chain).unwrap(),
            "cc": {"system_cc_enabled": true, "devtools_mode": false}
        }]
    });
    let bf = tmp.path().join("bundle.json");
    std::fs::write(&bf, serde_json::to_vec(&bundle).unwrap()).unwrap();
    let o = chrysalis(&[
        "gpu",
        "verify",
        "--evidence",
        p(&bf),
        "--nonce",
        NONCE,
        "--offline",
        "--policy",
        p(&policy),
        "--json",
    ]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["bundle_sha384"].as_str().unwrap().len(), 96);
    assert_eq!(j["gpus"][0]["cc"]["system_cc_enabled"], true);
    // Dev tools on: rejected (exit 4).
    let mut b2 = bundle.clone();
    b2["gpus"][0]["cc"]["devtools_mode"] = serde_json::json!(true);
    std::fs::write(&bf, serde_json::to_vec(&b2).unwrap()).unwrap();
    let o = chrysalis(&[
        "gpu",
        "verify",
        "--evidence",
        p(&bf),
        "--nonce",
        NONCE,
        "--offline",
        "--policy",
        p(&policy),
    ]);
    assert_eq!(code(&o), 4, "{}", text(&o));
    assert!(text(&o).contains("dev-tools mode is on"), "{}", text(&o));
    // A malformed policy is exit 2 and names the key.
    std::fs::write(&policy, "[gpu]\nrequire_cc = true\n").unwrap();
    let o = chrysalis(&[
        "gpu",
        "verify",
        "--evidence",
        p(&bf),
        "--nonce",
        NONCE,
        "--offline",
        "--policy",
        p(&policy),
    ]);
    assert_eq!(code(&o), 2, "{}", text(&o));
    assert!(text(&o).contains("require_cc"), "{}", text(&o));
}

#[test]
fn status_without_driver() {
    let o = chrysalis(&["gpu", "status"]);
    if code(&o) == 0 {
        eprintln!(
            "an NVIDIA driver is present here; status printed:\n{}",
            text(&o)
        );
        return;
    }
    assert_eq!(code(&o), 1, "{}", text(&o));
    assert!(text(&o).contains("no NVIDIA driver"), "{}", text(&o));
    let o = chrysalis(&["gpu", "status", "--json"]);
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["driver"], false);
}

#[test]
fn collect_without_driver() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("bundle.json");
    let o = chrysalis(&[
        "gpu",
        "collect",
        "--nonce",
        NONCE,
        "--out",
        out.to_str().unwrap(),
    ]);
    if code(&o) == 0 {
        eprintln!("an NVIDIA driver is present here: {}", text(&o));
        return;
    }
    assert_eq!(code(&o), 1, "{}", text(&o));
    assert!(text(&o).contains("no NVIDIA driver"), "{}", text(&o));
    assert!(!out.exists(), "nothing half-written");
}
