//! `chrysalis attest generate --provider sim` playing a published
//! configuration (`--sim-release`, `--sim-configuration`) with `--sim-set`
//! deviations: the evidence carries the release's registers, the boot
//! measurements of the runtime configuration, and exactly the deviation,
//! and the real verifier judges it.

use std::path::Path;
use std::process::Output;

use chrysalis_attestation::runtime_events::rtmr3_expected;
use serde_json::Value;

const RELEASE: &str = "chrysalis-0.2.0-cpu";

fn chrysalis(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_chrysalis"))
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

fn generate(out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "attest",
        "generate",
        "--provider",
        "sim",
        "--report-data",
        "01",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    chrysalis(&args)
}

fn show(file: &Path) -> Value {
    let o = chrysalis(&["attest", "show", file.to_str().unwrap(), "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    serde_json::from_slice::<Value>(&o.stdout).unwrap()["evidence"].clone()
}

/// The published `measurements.json` entry of `configuration`.
fn published(configuration: &str) -> Value {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../measurements/releases")
            .join(RELEASE)
            .join("measurements.json"),
    )
    .unwrap();
    let m: Value = serde_json::from_str(&text).unwrap();
    m["configurations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == configuration)
        .unwrap()
        .clone()
}

fn published_snp_measurement(configuration: &str) -> String {
    published(configuration)["snp"]["measurement"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn snp_node_of_a_release_with_one_deviation_is_authentic_and_refused_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let ev = dir.path().join("snp.bin");
    let o = generate(
        &ev,
        &[
            "--sim-release",
            RELEASE,
            "--sim-configuration",
            "snp-2cpu-EPYC-v4",
            "--sim-set",
            "vmpl=1",
            "--json",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["plays"], "chrysalis-0.2.0-cpu / snp-2cpu-EPYC-v4");
    assert_eq!(v["sim_set"], serde_json::json!(["vmpl=0x1"]));
    let r = show(&ev);
    assert_eq!(
        r["measurement"],
        published_snp_measurement("snp-2cpu-EPYC-v4")
    );
    assert_eq!(
        r["host_data"], "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
        "SHA-256 of the default host configuration {{}}"
    );
    assert_eq!(r["vmpl"], 1);

    // Authentic (signed by the simulated VCEK), refused for exactly the VMPL.
    let certs = dir.path().join("snp.bin.certs.pem");
    let o = chrysalis(&[
        "attest",
        "verify",
        ev.to_str().unwrap(),
        "--collateral",
        certs.to_str().unwrap(),
        "--allow-sim",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    let d: Value = serde_json::from_slice(&o.stdout).unwrap();
    let reasons = d["decision"]["reasons"].as_array().unwrap();
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert!(
        reasons[0].as_str().unwrap().contains("VMPL 1"),
        "{reasons:?}"
    );
}

#[test]
fn tdx_node_of_a_release_takes_every_published_register_and_replays_the_default_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let ev = dir.path().join("tdx.bin");
    let cfg = dir.path().join("runtime.json");
    std::fs::write(&cfg, br#"{ "model": "m",  "endpoint": "n:8443" }"#).unwrap();
    let base = [
        "--sim-release",
        RELEASE,
        "--sim-configuration",
        "tdx-2cpu-2048m-0gpu",
    ];
    let o = generate(&ev, &base);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        !text(&o).contains("cannot be verified"),
        "every register is published: {}",
        text(&o)
    );
    let body = &show(&ev)["body"];
    let tdx = &published("tdx-2cpu-2048m-0gpu")["tdx"];
    assert_eq!(body["mrtd"], tdx["mrtd"]);
    for i in 0..3 {
        assert_eq!(body["rtmr"][i], tdx[format!("rtmr{i}")], "RTMR{i}");
    }
    assert_eq!(body["rtmr"][3], hex::encode(rtmr3_expected(b"{}")));
    assert_eq!(body["rtmr"][3], tdx["rtmr3"], "as published");

    // Another runtime configuration: RTMR3 replays its canonical form.
    let mut args = base.to_vec();
    args.extend(["--sim-runtime-config", cfg.to_str().unwrap()]);
    let o = generate(&ev, &args);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(
        show(&ev)["body"]["rtmr"][3],
        hex::encode(rtmr3_expected(br#"{"endpoint":"n:8443","model":"m"}"#))
    );

    // --sim-set rtmr3 wins over the replay; integer fields land little-endian.
    let r3 = format!("rtmr3={}", "ab".repeat(48));
    let mut args = base.to_vec();
    args.extend(["--sim-set", &r3, "--sim-set", "td_attributes=0x10000040"]);
    let o = generate(&ev, &args);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let body = &show(&ev)["body"];
    assert_eq!(body["rtmr"][3], "ab".repeat(48));
    assert_eq!(body["td_attributes"], "4000001000000000");
}

#[test]
fn bad_assignments_and_misplaced_flags_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let ev = dir.path().join("x.bin");
    for (args, code, want) in [
        (
            &["--sim-set", "rtmr0=00"][..],
            2,
            "rtmr0: expected 48 bytes",
        ),
        (
            &["--sim-set", "nonsense=1"][..],
            2,
            "unknown field \"nonsense\"",
        ),
        (&["--tee", "snp", "--sim-set", "mrtd="][..], 2, "mrtd"),
        (
            &["--tee", "tdx", "--sim-set", "vmpl=1"][..],
            2,
            "a field of the snp report",
        ),
        (
            &[
                "--sim-release",
                "chrysalis-9.9.9-cpu",
                "--sim-configuration",
                "x",
            ][..],
            1,
            "no published release named \"chrysalis-9.9.9-cpu\"",
        ),
        (
            &[
                "--sim-release",
                RELEASE,
                "--sim-configuration",
                "snp-2cpu-EPYC-v4",
                "--tee",
                "tdx",
            ][..],
            2,
            "has no tdx values",
        ),
    ] {
        let o = generate(&ev, args);
        assert_eq!(o.status.code(), Some(code), "{args:?}: {}", text(&o));
        assert!(text(&o).contains(want), "{args:?}: {}", text(&o));
        assert!(!ev.exists(), "{args:?}: nothing written");
    }
    let o = chrysalis(&[
        "attest",
        "generate",
        "--provider",
        "tsm",
        "--report-data",
        "01",
        "--out",
        ev.to_str().unwrap(),
        "--sim-set",
        "vmpl=1",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("for --provider sim only"), "{}", text(&o));
    assert!(!ev.exists());
}
