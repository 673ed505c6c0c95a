//! The agent's offline re-verification of the gate's bundle with the RIMs
//! the gate fetched by id into its cache (`--gpu-rim-cache DIR
//! --gpu-offline`): NVIDIA's 2025 hopper sample and the RIMs published for
//! it (../shared/vectors/nvidia; skipped when absent) stand in for the
//! gate's output and cache. Offline: no request is made.

use std::path::PathBuf;

use chrysalis_agent::gpu::{GpuSettings, GpuSourceKind, RimServiceSettings};
use chrysalis_gpu::{GpuEvidenceSource, RecordedSource};

const DRIVER_ID: &str = "NV_GPU_DRIVER_GH100_550.90.07";
const VBIOS_ID: &str = "NV_GPU_VBIOS_1010_0200_882_96009F0001";

fn vectors() -> Option<PathBuf> {
    let d = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors/nvidia");
    if d.join(format!("gonvattest_{DRIVER_ID}.xml")).exists() {
        Some(d)
    } else {
        eprintln!(
            "skipping: {} is absent (shared NVIDIA vectors)",
            d.display()
        );
        None
    }
}

#[test]
fn the_gates_bundle_verifies_offline_with_the_rims_in_the_gates_cache() {
    let Some(v) = vectors() else { return };
    let d = tempfile::tempdir().unwrap();
    // RIMs required and compared; OCSP off (no NVIDIA responses offline).
    let policy = d.path().join("policy.toml");
    std::fs::write(
        &policy,
        "[gpu]\nrequire_cc_mode = false\nrequire_devtools_off = false\nocsp = \"off\"\n\
         require_rims = true\nrequire_rim_version_match = true\n",
    )
    .unwrap();
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
    let settings = GpuSettings {
        source: GpuSourceKind::Gate(file),
        policy: Some(policy),
        rims: vec![],
        ocsp_cache: None,
        offline: true,
    };
    // Inside both RIM signer chains' validity.
    let at = time::macros::datetime!(2025-09-21 00:00 UTC);
    let cache = d.path().join("rims");
    let service = RimServiceSettings {
        cache: Some(cache.clone()),
        ..Default::default()
    };

    // The gate fetched nothing (empty cache): not ready, naming the id.
    let why = settings
        .check_using(at, Some(&service))
        .unwrap()
        .unwrap_err();
    assert!(why.contains(DRIVER_ID) && why.contains("offline"), "{why}");

    // What the gate fetched, under the ids: verified again, all compared.
    std::fs::create_dir(&cache).unwrap();
    for id in [DRIVER_ID, VBIOS_ID] {
        std::fs::copy(
            v.join(format!("gonvattest_{id}.xml")),
            cache.join(format!("{id}.xml")),
        )
        .unwrap();
    }
    let ok = settings
        .check_using(at, Some(&service))
        .unwrap()
        .expect("verifies with the cached RIMs");
    assert_eq!(ok.bundle.as_bytes(), &bundle[..]);

    // Without the service settings, the RIMs are simply missing.
    let why = settings.check(at).unwrap().unwrap_err();
    assert!(why.contains("RIM"), "{why}");

    // A bad URL is a configuration error, not a refusal.
    let bad = RimServiceSettings {
        url: "ftp://x".into(),
        cache: None,
    };
    assert!(settings.check_using(at, Some(&bad)).is_err());
}

#[test]
fn rim_service_flags_reach_the_config() {
    use clap::Parser;
    let cli = chrysalis_agent::cli::Cli::try_parse_from([
        "chrysalis-agent",
        "--provider",
        "sim",
        "--gpu",
        "gate",
        "--gpu-bundle",
        "/run/chrysalis/gpu/evidence.json",
        "--gpu-rim-cache",
        "/var/cache/chrysalis-gpu-gate/rims",
        "--gpu-offline",
    ])
    .unwrap();
    let cfg = cli.into_config().unwrap();
    let r = cfg.gpu_rim_service.expect("RIM service settings");
    assert_eq!(r.url, chrysalis_gpu::rim_service::NVIDIA_RIM_SERVICE);
    assert_eq!(
        r.cache.as_deref(),
        Some(std::path::Path::new("/var/cache/chrysalis-gpu-gate/rims"))
    );
    assert!(cfg.gpu.unwrap().offline);

    // Without a GPU source the flags are refused.
    let cli = chrysalis_agent::cli::Cli::try_parse_from([
        "chrysalis-agent",
        "--provider",
        "sim",
        "--gpu-rim-service",
        "http://127.0.0.1:1",
    ])
    .unwrap();
    assert!(cli.into_config().is_err());
}

#[test]
fn rim_service_keys_of_the_config_file() {
    use clap::Parser;
    let d = tempfile::tempdir().unwrap();
    let file = d.path().join("agent.toml");
    std::fs::write(
        &file,
        "provider = \"sim\"\n[gpu]\nsource = \"nvml\"\nrim_service = \"http://127.0.0.1:9\"\n\
         rim_cache = \"/tmp/rims\"\noffline = true\n",
    )
    .unwrap();
    let cfg = chrysalis_agent::cli::Cli::try_parse_from([
        "chrysalis-agent",
        "--config",
        file.to_str().unwrap(),
    ])
    .unwrap()
    .into_config()
    .unwrap();
    let r = cfg.gpu_rim_service.expect("RIM service settings");
    assert_eq!(r.url, "http://127.0.0.1:9");
    assert_eq!(r.cache.as_deref(), Some(std::path::Path::new("/tmp/rims")));
    // An unknown key next to them is still refused.
    std::fs::write(&file, "provider = \"sim\"\n[gpu]\nrim_servic = \"x\"\n").unwrap();
    let e = chrysalis_agent::cli::Cli::try_parse_from([
        "chrysalis-agent",
        "--config",
        file.to_str().unwrap(),
    ])
    .unwrap()
    .into_config();
    assert!(e.is_err());
}
