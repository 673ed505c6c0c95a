//! `chrysalis measure …` and `chrysalis policy from-measurements` command
//! lines (contracts of the measurements issue).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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

fn vectors() -> Option<PathBuf> {
    let d = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors");
    if d.join("MANIFEST.md").is_file() {
        Some(d)
    } else {
        eprintln!("skipping: ../shared/vectors not found");
        None
    }
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn snp_digest_is_a_bare_hex_line_or_json_matching_the_published_case() {
    let Some(v) = vectors() else { return };
    let cases: serde_json::Value = serde_json::from_slice(
        &std::fs::read(v.join("measurements/virtee_snp_launch_digest_cases.json")).unwrap(),
    )
    .unwrap();
    let fw = v.join("measurements/virtee_ovmf_AmdSev_suffix.bin");
    // Firmware-only digest (no --kernel) equals the published OVMF-only hash.
    let expected = cases["ovmf_hash_AmdSev_suffix"].as_str().unwrap();
    let o = chrysalis(&[
        "measure",
        "--firmware",
        p(&fw),
        "--vcpus",
        "1",
        "--memory",
        "2G",
        "--tee",
        "snp",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["snp"]["ovmf_hash"], expected);
    let m = j["snp"]["measurement"].as_str().unwrap();
    assert_eq!(m.len(), 96);
    assert_eq!(m, m.to_lowercase());
    let o = chrysalis(&[
        "measure",
        "--firmware",
        p(&fw),
        "--vcpus",
        "1",
        "--memory",
        "2G",
        "--tee",
        "snp",
    ]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), format!("{m}\n"));
}

#[test]
fn bad_artifacts_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.fd");
    std::fs::write(&junk, vec![0u8; 8192]).unwrap();
    let o = chrysalis(&[
        "measure",
        "--firmware",
        p(&junk),
        "--kernel",
        p(&junk),
        "--vcpus",
        "1",
        "--memory",
        "2G",
        "--tee",
        "tdx",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("junk.fd"), "{}", text(&o));
    let o = chrysalis(&[
        "measure",
        "--firmware",
        "/nonexistent/fw.fd",
        "--vcpus",
        "1",
        "--memory",
        "2G",
        "--tee",
        "snp",
    ]);
    assert_ne!(o.status.code(), Some(0));
    assert!(text(&o).contains("/nonexistent/fw.fd"), "{}", text(&o));
    let o = chrysalis(&["measure", "--firmware", p(&junk), "--memory", "lots"]);
    assert_ne!(o.status.code(), Some(0));
    assert!(text(&o).contains("--memory"), "{}", text(&o));
}

#[test]
fn verity_root_hash_line() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("root.img");
    std::fs::write(&img, vec![7u8; 4096 * 130]).unwrap();
    let o = chrysalis(&["measure", "verity", p(&img), "--salt", "aabb"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let line = String::from_utf8_lossy(&o.stdout).trim().to_string();
    assert_eq!(line.len(), 64);
    // veritysetup, when installed, agrees.
    if let Ok(vs) = Command::new("veritysetup")
        .args([
            "format",
            "--salt",
            "aabb",
            p(&img),
            p(&dir.path().join("hash")),
        ])
        .output()
    {
        if vs.status.success() {
            assert!(
                String::from_utf8_lossy(&vs.stdout).contains(&line),
                "{}",
                text(&vs)
            );
        }
    }
    let odd = dir.path().join("odd.img");
    std::fs::write(&odd, vec![1u8; 5000]).unwrap();
    let o = chrysalis(&["measure", "verity", p(&odd)]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("odd.img"), "{}", text(&o));
}

#[test]
fn replay_matches_the_quote_registers() {
    let Some(v) = vectors() else { return };
    let o = chrysalis(&[
        "measure",
        "replay",
        p(&v.join("tdx/gotdx_ccel_data.dat")),
        "--quote",
        p(&v.join("tdx/gotdx_cos-113-tdx-quote.dat")),
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        j["quote_rtmr_match"],
        serde_json::json!([true, true, true, true])
    );
    // Against another quote, the mismatch is reported with a non-zero exit.
    let o = chrysalis(&[
        "measure",
        "replay",
        p(&v.join("tdx/gotdx_ccel_data.dat")),
        "--quote",
        p(&v.join("tdx/dcapqvl_tdx_quote")),
    ]);
    assert_ne!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("≠ quote"), "{}", text(&o));
}

#[test]
fn replay_judges_a_served_runtime_log() {
    let Some(v) = vectors() else { return };
    let dir = tempfile::tempdir().unwrap();
    let events = chrysalis_attestation::runtime_events::rtmr3_events(b"{}");
    let log: Vec<chrysalis_attestation::runtime_events::LoggedEvent> =
        events.iter().map(Into::into).collect();
    let file = dir.path().join("attestation.json");
    // The whole /attestation answer or the bare list: both read.
    std::fs::write(
        &file,
        serde_json::to_vec(&serde_json::json!({"runtime_events": log})).unwrap(),
    )
    .unwrap();
    let ccel = v.join("tdx/gotdx_ccel_data.dat");
    let o = chrysalis(&["measure", "replay", p(&ccel), "--runtime-log", p(&file)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains("matches the image's events for the default host configuration"),
        "{}",
        text(&o)
    );
    // Another configuration, then a second boot-done: named, non-zero.
    let mut other = chrysalis_attestation::runtime_events::rtmr3_events(b"{\"a\":1}")
        .iter()
        .map(chrysalis_attestation::runtime_events::LoggedEvent::from)
        .collect::<Vec<_>>();
    std::fs::write(&file, serde_json::to_vec(&other).unwrap()).unwrap();
    let o = chrysalis(&["measure", "replay", p(&ccel), "--runtime-log", p(&file)]);
    assert!(text(&o).contains("first departure"), "{}", text(&o));
    other.push(other[1].clone());
    std::fs::write(&file, serde_json::to_vec(&other).unwrap()).unwrap();
    let o = chrysalis(&["measure", "replay", p(&ccel), "--runtime-log", p(&file)]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(
        text(&o).contains("out of order or repeated"),
        "{}",
        text(&o)
    );
}

/// A gpu node's log: with the image's driver and GPU count the `gpu` event
/// is compared too, and a gate that saw another driver is the departure.
#[test]
fn replay_judges_a_gpu_nodes_log_against_the_predicted_gpu_state() {
    use chrysalis_attestation::runtime_events::{rtmr3_boot_events, GpuEventState, LoggedEvent};
    let Some(v) = vectors() else { return };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("attestation.json");
    let ccel = v.join("tdx/gotdx_ccel_data.dat");
    let write_log = |driver: &str| {
        let state = GpuEventState::expected(1, driver).payload();
        let log: Vec<LoggedEvent> = rtmr3_boot_events(Some(b"{}"), Some(&state))
            .iter()
            .map(Into::into)
            .collect();
        std::fs::write(&file, serde_json::to_vec(&log).unwrap()).unwrap();
    };
    let replay = |extra: &[&str]| {
        let mut args = vec!["measure", "replay", p(&ccel), "--runtime-log", p(&file)];
        args.extend_from_slice(extra);
        chrysalis(&args)
    };
    let gpu = ["--gpus", "1", "--gpu-driver", "550.163.01"];
    write_log("550.163.01");
    let o = replay(&gpu);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains("matches the image's events"),
        "{}",
        text(&o)
    );
    write_log("550.90.07");
    let o = replay(&gpu);
    assert!(
        text(&o).contains("first departure from the default host configuration's events: event 1 (want chrysalis:gpu"),
        "{}",
        text(&o)
    );
    // Without the predicted state, the gpu event is not compared.
    let o = replay(&[]);
    assert!(
        text(&o).contains("matches the image's events"),
        "{}",
        text(&o)
    );
}

#[test]
fn policy_from_measurements_accepts_exactly_the_published_values() {
    let dir = tempfile::tempdir().unwrap();
    // Simulated evidence has fixed, recognisable registers; publish them.
    let ev = dir.path().join("q.bin");
    let o = chrysalis(&[
        "attest",
        "generate",
        "--provider",
        "sim",
        "--report-data",
        "01",
        "--out",
        p(&ev),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let show: serde_json::Value =
        serde_json::from_slice(&chrysalis(&["attest", "show", p(&ev), "--json"]).stdout).unwrap();
    let body = &show["evidence"]["body"];
    let manifest = serde_json::json!({
        "schema": 1,
        "tool": "test",
        "image": "sim-image",
        "configurations": [{
            "name": "sim",
            "vm": {"vcpus": 1, "memory_mib": 2048, "gpus": 0, "vmm": "qemu"},
            "tdx": {
                "mrtd": body["mrtd"], "rtmr0": body["rtmr"][0], "rtmr1": body["rtmr"][1],
                "rtmr2": body["rtmr"][2], "rtmr3": null
            }
        }]
    });
    let mpath = dir.path().join("measurements.json");
    std::fs::write(&mpath, serde_json::to_vec_pretty(&manifest).unwrap()).unwrap();
    let policy = dir.path().join("policy.toml");
    let col = dir.path().join("q.bin.collateral.json");
    // RTMR3 is null in the file, so it is derived as a client derives it
    // (the agent's events for the default host configuration): this
    // evidence, generated without an agent, does not have it.
    let o = chrysalis(&[
        "policy",
        "from-measurements",
        p(&mpath),
        "--out",
        p(&policy),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = chrysalis(&[
        "attest",
        "verify",
        p(&ev),
        "--collateral",
        p(&col),
        "--policy",
        p(&policy),
        "--allow-sim",
    ]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(text(&o).contains("RTMR3"), "{}", text(&o));
    // Unpinned on request, loudly.
    let o = chrysalis(&[
        "policy",
        "from-measurements",
        p(&mpath),
        "--out",
        p(&policy),
        "--unpinned",
        "rtmr3",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("UNPINNED: rtmr3"), "{}", text(&o));
    assert!(std::fs::read_to_string(&policy)
        .unwrap()
        .contains("rtmr3: UNPINNED"));
    let o = chrysalis(&[
        "attest",
        "verify",
        p(&ev),
        "--collateral",
        p(&col),
        "--policy",
        p(&policy),
        "--allow-sim",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // Change one published register: rejected, naming it.
    let mut bad = manifest.clone();
    bad["configurations"][0]["tdx"]["rtmr2"] = serde_json::json!("00".repeat(48));
    std::fs::write(&mpath, serde_json::to_vec_pretty(&bad).unwrap()).unwrap();
    let o = chrysalis(&[
        "policy",
        "from-measurements",
        p(&mpath),
        "--out",
        p(&policy),
        "--unpinned",
        "rtmr3",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = chrysalis(&[
        "attest",
        "verify",
        p(&ev),
        "--collateral",
        p(&col),
        "--policy",
        p(&policy),
        "--allow-sim",
    ]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(text(&o).contains("RTMR2"), "{}", text(&o));
    // A malformed manifest is named.
    std::fs::write(&mpath, "{\"schema\": 7}").unwrap();
    let o = chrysalis(&["policy", "from-measurements", p(&mpath)]);
    assert_ne!(o.status.code(), Some(0));
    assert!(text(&o).contains("measurements.json"), "{}", text(&o));
}

#[test]
fn policy_from_measurements_pins_td_attributes_and_xfam_when_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let ev = dir.path().join("q.bin");
    let o = chrysalis(&[
        "attest",
        "generate",
        "--provider",
        "sim",
        "--report-data",
        "01",
        "--out",
        p(&ev),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let show: serde_json::Value =
        serde_json::from_slice(&chrysalis(&["attest", "show", p(&ev), "--json"]).stdout).unwrap();
    let body = &show["evidence"]["body"];
    let manifest = |td_attributes: &serde_json::Value, xfam: &str| {
        serde_json::json!({
            "schema": 1,
            "tool": "test",
            "configurations": [{
                "name": "sim",
                "vm": {"vcpus": 1, "memory_mib": 2048, "gpus": 0, "vmm": "qemu"},
                "tdx": {
                    "mrtd": body["mrtd"], "rtmr0": null, "rtmr1": null, "rtmr2": null,
                    "rtmr3": null, "td_attributes": td_attributes, "xfam": xfam
                }
            }]
        })
    };
    let mpath = dir.path().join("measurements.json");
    let policy = dir.path().join("policy.toml");
    let col = dir.path().join("q.bin.collateral.json");
    let verify = || {
        chrysalis(&[
            "attest",
            "verify",
            p(&ev),
            "--collateral",
            p(&col),
            "--policy",
            p(&policy),
            "--allow-sim",
        ])
    };
    let generate = |m: serde_json::Value| {
        std::fs::write(&mpath, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
        // A null register is refused unless unpinned by name.
        let o = chrysalis(&["policy", "from-measurements", p(&mpath)]);
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        assert!(
            text(&o).contains("RTMR0") && text(&o).contains("--unpinned rtmr0"),
            "{}",
            text(&o)
        );
        let o = chrysalis(&[
            "policy",
            "from-measurements",
            p(&mpath),
            "--out",
            p(&policy),
            "--unpinned",
            "rtmr0,rtmr1,rtmr2,rtmr3",
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        std::fs::read_to_string(&policy).unwrap()
    };

    // Recorded: pinned, and the evidence's own values pass.
    let xfam = body["xfam"].as_str().unwrap();
    let toml = generate(manifest(&body["td_attributes"], xfam));
    assert!(toml.contains(&format!("xfam = \"{xfam}\"")), "{toml}");
    assert_eq!(verify().status.code(), Some(0), "{}", text(&verify()));

    // Another XFAM recorded: the same TD is refused, naming XFAM.
    generate(manifest(&body["td_attributes"], "0300000000000000"));
    let o = verify();
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(text(&o).contains("XFAM"), "{}", text(&o));

    // Not recorded: unpinned, and the policy says why.
    let mut m = manifest(&body["td_attributes"], xfam);
    let tdx = m["configurations"][0]["tdx"].as_object_mut().unwrap();
    tdx.remove("td_attributes");
    tdx.remove("xfam");
    let toml = generate(m);
    assert!(!toml.contains("\nxfam ="), "{toml}");
    assert!(
        toml.contains("# td_attributes / xfam: not recorded"),
        "{toml}"
    );
    assert_eq!(verify().status.code(), Some(0));
}
