//! `--gpu gate`: the agent serves the bundle this boot's GPU gate
//! (`chrysalis-gpu-gate`, root) verified, verifying it again against the
//! nonce it carries; no bundle (the gate did not pass) means not ready.
//! NVIDIA's recorded sample (../shared/vectors/nvidia; skipped when absent)
//! stands in for the gate's output.

use std::path::PathBuf;

use chrysalis_agent::gpu::{GpuSettings, GpuSourceKind};
use chrysalis_gpu::{GpuEvidenceSource, RecordedSource};

fn vectors() -> Option<PathBuf> {
    let d = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors/nvidia");
    if d.join("nvtrust_hopperAttestationReport.txt").exists() {
        Some(d)
    } else {
        eprintln!(
            "skipping: {} is absent (shared NVIDIA vectors)",
            d.display()
        );
        None
    }
}

fn gate_settings(bundle: PathBuf, policy: Option<PathBuf>) -> GpuSettings {
    GpuSettings {
        source: GpuSourceKind::Gate(bundle),
        policy,
        rims: vec![],
        ocsp_cache: None,
        offline: true,
    }
}

#[test]
fn without_the_gates_bundle_the_agent_is_not_ready() {
    let d = tempfile::tempdir().unwrap();
    let why = gate_settings(d.path().join("evidence.json"), None)
        .check(time::OffsetDateTime::now_utc())
        .expect("configuration is fine")
        .expect_err("no bundle: not ready");
    assert!(why.contains("GPU gate bundle"), "{why}");
    std::fs::write(d.path().join("evidence.json"), b"{}").unwrap();
    let why = gate_settings(d.path().join("evidence.json"), None)
        .check(time::OffsetDateTime::now_utc())
        .unwrap()
        .unwrap_err();
    assert!(why.contains("GPU gate bundle"), "{why}");
}

#[test]
fn the_gates_bundle_is_verified_again_against_its_own_nonce() {
    let Some(v) = vectors() else { return };
    let d = tempfile::tempdir().unwrap();
    let policy = d.path().join("policy.toml");
    std::fs::write(
        &policy,
        "[gpu]\nrequire_cc_mode = false\nrequire_devtools_off = false\nocsp = \"off\"\n\
         require_rims = false\n",
    )
    .unwrap();
    // The sample answers this nonce: as the gate would have written it.
    let nonce: [u8; 32] =
        hex::decode("931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb")
            .unwrap()
            .try_into()
            .unwrap();
    let mut src = RecordedSource::from_sdk_files(
        &v.join("nvtrust_hopperAttestationReport.txt"),
        &v.join("nvtrust_hopperCertChain.txt"),
        None,
    )
    .unwrap();
    let bundle = src.collect(&nonce).unwrap();
    let file = d.path().join("evidence.json");
    std::fs::write(&file, &bundle).unwrap();
    let at = time::macros::datetime!(2024-06-01 00:00 UTC);
    let settings = gate_settings(file.clone(), Some(policy.clone()));
    let attested = settings
        .check_with_nonce(at, &nonce)
        .unwrap()
        .expect("the gate's bundle verifies");
    assert_eq!(attested.bundle.as_bytes(), &bundle[..]);
    // check() itself takes the nonce from the bundle (a fresh random one,
    // as for NVML, would never match what the gate collected).
    let now = settings
        .check(time::OffsetDateTime::now_utc())
        .unwrap()
        .expect("verified against the bundle's own nonce");
    assert_eq!(now.digest, attested.digest);

    // RIMs given as a directory (how the image passes them to gate and
    // agent): both files are read and compared, so the sample's
    // measurements are refused, as with the files named one by one.
    let rims = d.path().join("rims");
    std::fs::create_dir(&rims).unwrap();
    for f in [
        "nvtrust_Driver_RIM_test_no_gpu.swidtag",
        "nvtrust_1010_0200_882_96005E0001_test_no_gpu.swidtag",
    ] {
        std::fs::copy(v.join(f), rims.join(f)).unwrap();
    }
    std::fs::write(rims.join("README"), "not a RIM").unwrap();
    let mut with_rims = settings.clone();
    with_rims.rims = vec![rims];
    let why = with_rims.check_with_nonce(at, &nonce).unwrap().unwrap_err();
    assert!(why.contains("do not match the RIMs"), "{why}");

    // A bundle claiming another nonce than the one its report answers is
    // refused (the nonce is read from the bundle, then checked by the
    // report's signature).
    let mut forged: serde_json::Value = serde_json::from_slice(&bundle).unwrap();
    forged["nonce"] = serde_json::Value::String("07".repeat(32));
    std::fs::write(&file, serde_json::to_vec(&forged).unwrap()).unwrap();
    let why = settings
        .check(time::OffsetDateTime::now_utc())
        .unwrap()
        .unwrap_err();
    assert!(why.to_lowercase().contains("nonce"), "{why}");
}
