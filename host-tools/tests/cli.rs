//! The `chrysalis attest` command lines of the issue are contracts: these
//! tests call them exactly so and check outputs and exit codes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn chrysalis(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chrysalis"))
        .args(args)
        .output()
        .expect("run chrysalis")
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exited by signal (panic?)")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn text(o: &Output) -> String {
    format!("{}{}", stdout(o), String::from_utf8_lossy(&o.stderr))
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

fn generate(dir: &Path, tee: &str, rd: &str) -> (PathBuf, PathBuf) {
    let out = dir.join(format!("{tee}.bin"));
    let o = chrysalis(&[
        "attest",
        "generate",
        "--provider",
        "sim",
        "--report-data",
        rd,
        "--tee",
        tee,
        "--out",
        p(&out),
    ]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(stdout(&o).contains("SIMULATED"));
    let collateral = if tee == "tdx" {
        dir.join("tdx.bin.collateral.json")
    } else {
        dir.join("snp.bin.certs.pem")
    };
    assert!(collateral.is_file());
    (out, collateral)
}

#[test]
fn simulated_evidence_is_rejected_by_default_and_accepted_with_allow_sim() {
    let dir = tempfile::tempdir().unwrap();
    for tee in ["tdx", "snp"] {
        let (ev, col) = generate(dir.path(), tee, "0xc0ffee");
        let o = chrysalis(&["attest", "verify", p(&ev), "--collateral", p(&col)]);
        assert_eq!(code(&o), 4, "{tee}: {}", text(&o));
        assert!(stdout(&o).contains("REJECTED"));
        assert!(stdout(&o).contains("SIMULATED"));

        let o = chrysalis(&[
            "attest",
            "verify",
            p(&ev),
            "--collateral",
            p(&col),
            "--allow-sim",
            "--json",
        ]);
        assert_eq!(code(&o), 0, "{tee}: {}", text(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["accepted"], true);
        assert_eq!(v["simulated"], true);
        assert!(v["warning"].as_str().unwrap().contains("SIMULATED"));
        assert_eq!(v["evidence"]["anchor"], "simulated");
        assert!(v["evidence"]["report_data"]
            .as_str()
            .unwrap()
            .starts_with("c0ffee00"));

        // The binding: a different expected report_data is a policy rejection.
        let o = chrysalis(&[
            "attest",
            "verify",
            p(&ev),
            "--collateral",
            p(&col),
            "--allow-sim",
            "--report-data",
            "0xbadd",
        ]);
        assert_eq!(code(&o), 4, "{}", text(&o));
        assert!(stdout(&o).contains("does not match the expected binding"));

        // show decodes and says it did not verify.
        let o = chrysalis(&["attest", "show", p(&ev)]);
        assert_eq!(code(&o), 0);
        assert!(stdout(&o).contains("NOT VERIFIED"));
        assert!(stdout(&o).contains("SIMULATED"));
    }
}

#[test]
fn policy_file_measurements_are_enforced_listing_every_failure() {
    let dir = tempfile::tempdir().unwrap();
    let (ev, col) = generate(dir.path(), "tdx", "01");
    let o = chrysalis(&["attest", "show", p(&ev), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let mrtd = v["evidence"]["body"]["mrtd"].as_str().unwrap().to_string();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        format!(
            "allow_simulated = true\n[[tdx.measurements]]\nname = \"dev\"\nmrtd = \"{mrtd}\"\n"
        ),
    )
    .unwrap();
    let o = chrysalis(&[
        "attest",
        "verify",
        p(&ev),
        "--collateral",
        p(&col),
        "--policy",
        p(&good),
    ]);
    assert_eq!(code(&o), 0, "{}", text(&o));

    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        format!(
            "report_data = \"02\"\n[[tdx.measurements]]\nname = \"release-1\"\nmrtd = \"{}\"\nrtmr3 = \"{}\"\n",
            "ab".repeat(48),
            "cd".repeat(48)
        ),
    )
    .unwrap();
    let o = chrysalis(&[
        "attest",
        "verify",
        p(&ev),
        "--collateral",
        p(&col),
        "--policy",
        p(&bad),
        "--json",
    ]);
    assert_eq!(code(&o), 4, "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let reasons: Vec<String> = v["decision"]["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect();
    // Every failure is listed, not just the first.
    assert!(
        reasons.iter().any(|r| r.contains("SIMULATED")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("report_data")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.starts_with("MRTD") && r.contains("release-1")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.starts_with("RTMR3")),
        "{reasons:?}"
    );

    let typo = dir.path().join("typo.toml");
    std::fs::write(&typo, "[[tdx.measurements]]\nmrtd = \"abcd\"\n").unwrap();
    let o = chrysalis(&[
        "attest",
        "verify",
        p(&ev),
        "--collateral",
        p(&col),
        "--policy",
        p(&typo),
    ]);
    assert_eq!(code(&o), 2, "{}", text(&o));
    assert!(
        text(&o).contains("tdx.measurements[0].mrtd"),
        "{}",
        text(&o)
    );
}

#[test]
fn malformed_inputs_exit_2_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.bin");
    std::fs::write(&junk, [0x04u8, 0x00, 0x02, 0x00, 0x81, 0, 0, 0, 1, 2, 3]).unwrap();
    let o = chrysalis(&["attest", "show", p(&junk)]);
    assert_eq!(code(&o), 2, "{}", text(&o));
    assert!(text(&o).contains("TdxQuote.header"), "{}", text(&o));
    let o = chrysalis(&["attest", "verify", p(&junk), "--collateral", p(&junk)]);
    assert_eq!(code(&o), 2, "{}", text(&o));

    let (ev, col) = generate(dir.path(), "tdx", "01");
    let o = chrysalis(&[
        "attest",
        "verify",
        p(&ev),
        "--collateral",
        p(&col),
        "--at",
        "last tuesday",
    ]);
    assert_eq!(code(&o), 2, "{}", text(&o));
    assert!(text(&o).contains("RFC 3339"));
    let o = chrysalis(&[
        "attest",
        "verify",
        p(&ev),
        "--collateral",
        p(&col),
        "--accept-tcb",
        "Fine",
    ]);
    assert_eq!(code(&o), 2, "{}", text(&o));
    assert!(text(&o).contains("unknown TCB status"));
    // Collateral for the other TEE.
    let (_, snp_col) = generate(dir.path(), "snp", "01");
    let o = chrysalis(&["attest", "verify", p(&ev), "--collateral", p(&snp_col)]);
    assert_eq!(code(&o), 2, "{}", text(&o));
    // A missing file is an I/O error naming the path.
    let o = chrysalis(&["attest", "show", "/nonexistent/quote.bin"]);
    assert_eq!(code(&o), 1);
    assert!(text(&o).contains("/nonexistent/quote.bin"));
    // generate: bad report data, nothing written.
    let out = dir.path().join("never.bin");
    let o = chrysalis(&[
        "attest",
        "generate",
        "--provider",
        "sim",
        "--report-data",
        "zz",
        "--out",
        p(&out),
    ]);
    assert_ne!(code(&o), 0);
    assert!(!out.exists());
}

#[test]
fn tampered_simulated_quote_fails_verification_with_exit_3() {
    let dir = tempfile::tempdir().unwrap();
    let (ev, col) = generate(dir.path(), "tdx", "01");
    let mut bytes = std::fs::read(&ev).unwrap();
    bytes[200] ^= 1; // inside the TD report body
    std::fs::write(&ev, &bytes).unwrap();
    let o = chrysalis(&[
        "attest",
        "verify",
        p(&ev),
        "--collateral",
        p(&col),
        "--allow-sim",
    ]);
    assert_eq!(code(&o), 3, "{}", text(&o));
    assert!(text(&o).contains("quote signature"), "{}", text(&o));
}

#[test]
fn real_vectors_through_the_cli() {
    let Some(v) = vectors() else { return };
    let q = v.join("tdx/dcapqvl_tdx_quote");
    let c = v.join("tdx/dcapqvl_tdx_quote_collateral.json");
    let o = chrysalis(&[
        "attest",
        "verify",
        p(&q),
        "--collateral",
        p(&c),
        "--at",
        "2025-07-19T10:00:34Z",
    ]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(stdout(&o).contains("ACCEPTED") && stdout(&o).contains("production"));
    let o = chrysalis(&[
        "attest",
        "verify",
        p(&q),
        "--collateral",
        p(&c),
        "--at",
        "2025-08-19T10:00:34Z",
    ]);
    assert_eq!(code(&o), 3, "{}", text(&o));
    assert!(
        text(&o).contains("expired") && text(&o).contains("days ago"),
        "{}",
        text(&o)
    );

    let q = v.join("tdx/dcapqvl_tdx_quote_outdated");
    let c = v.join("tdx/dcapqvl_tdx_quote_outdated_collateral.json");
    let o = chrysalis(&[
        "attest",
        "verify",
        p(&q),
        "--collateral",
        p(&c),
        "--at",
        "2026-03-01T00:00:00Z",
    ]);
    assert_eq!(code(&o), 4, "{}", text(&o));

    // show: hex with 0x prefix, JSON output.
    let o = chrysalis(&[
        "attest",
        "show",
        p(&v.join("tdx/dcapqvl_tdx-quote.hex")),
        "--json",
    ]);
    assert_eq!(code(&o), 0);
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["tee"], "tdx");
    assert_eq!(j["encoding"], "hex");
    assert!(j["evidence"]["body"]["mrtd"]
        .as_str()
        .unwrap()
        .starts_with("7ba9e262"));

    // SNP: report + VCEK (AMD roots pinned). The report (2022 firmware:
    // microcode 115, SNP 8) is authentic but below the Milan TCB floor the
    // verifier ships (AMD-SB-3019): rejected by default, naming the floor;
    // accepted when the caller explicitly accepts an out-of-date TCB.
    let r = v.join("snp/virtee_report_milan.hex");
    let vcek = v.join("snp/virtee_vcek_milan.der");
    let o = chrysalis(&[
        "attest",
        "verify",
        p(&r),
        "--collateral",
        p(&vcek),
        "--at",
        "2024-01-01T00:00:00Z",
    ]);
    assert_eq!(code(&o), 4, "{}", text(&o));
    assert!(text(&o).contains("below the Milan floor"), "{}", text(&o));
    let o = chrysalis(&[
        "attest",
        "verify",
        p(&r),
        "--collateral",
        p(&vcek),
        "--at",
        "2024-01-01T00:00:00Z",
        "--accept-tcb",
        "OutOfDate",
    ]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let bad = v.join("snp/virtee_report_milan_TAMPERED_byte21.bin");
    let o = chrysalis(&[
        "attest",
        "verify",
        p(&bad),
        "--collateral",
        p(&vcek),
        "--at",
        "2024-01-01T00:00:00Z",
    ]);
    assert_eq!(code(&o), 3, "{}", text(&o));
    let o = chrysalis(&[
        "attest",
        "show",
        p(&v.join("snp/gosev_attestation_milan.bin")),
    ]);
    assert_eq!(code(&o), 0, "{}", text(&o));
}

#[test]
fn usage_help_completions_and_man_pages() {
    // Usage errors are exit 1 (I/O or usage), never 2 (malformed input).
    let o = chrysalis(&["verify", "--no-such-flag"]);
    assert_eq!(code(&o), 1, "{}", text(&o));
    let o = chrysalis(&[
        "verify",
        "https://127.0.0.1:1",
        "--any-image",
        "--release",
        "x",
    ]);
    assert_eq!(code(&o), 1, "{}", text(&o));
    // The top-level help starts each persona at its first command.
    let o = chrysalis(&["--help"]);
    assert_eq!(code(&o), 0);
    let help = stdout(&o);
    for first in [
        "client    chrysalis verify",
        "auditor   chrysalis image reproduce",
        "operator  chrysalis host check",
    ] {
        assert!(help.contains(first), "{first}: {help}");
    }
    // Completions and man pages come from the same definitions.
    let o = chrysalis(&["completions", "bash"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(
        stdout(&o).contains("--any-image"),
        "verify's flags are completed"
    );
    let dir = tempfile::tempdir().unwrap();
    let o = chrysalis(&["man", "--out", dir.path().to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let verify = std::fs::read_to_string(dir.path().join("chrysalis-verify.1")).unwrap();
    assert!(verify.contains("any\\-image"), "{verify}");
    assert!(!dir.path().join("chrysalis-help.1").exists());
    // The published releases compiled in are listed.
    let o = chrysalis(&["verify", "--list-releases"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(
        stdout(&o).contains("chrysalis-0.2.0-cpu / "),
        "{}",
        text(&o)
    );
}

/// Runs chrysalis with a standard output whose reader has already gone
/// (the read end of the pipe is closed before it starts, so every write
/// fails: deterministic, unlike racing `| head`).
fn with_closed_stdout(args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    Command::new(env!("CARGO_BIN_EXE_chrysalis"))
        .args(args)
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("run chrysalis")
}

#[test]
fn a_closed_stdout_stops_quietly_and_is_never_success() {
    let dir = tempfile::tempdir().unwrap();
    let (ev, col) = generate(dir.path(), "tdx", "0xc0ffee");
    for args in [
        vec!["completions", "bash"],
        vec!["attest", "show", p(&ev)],
        // Would be accepted (exit 0) if it could print its verdict.
        vec![
            "attest",
            "verify",
            p(&ev),
            "--collateral",
            p(&col),
            "--allow-sim",
        ],
    ] {
        let o = with_closed_stdout(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(code(&o), 141, "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    // With an open stdout the same command prints and succeeds.
    let o = chrysalis(&["attest", "show", p(&ev)]);
    assert_eq!(code(&o), 0, "{}", text(&o));
}
