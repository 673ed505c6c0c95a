//! `chrysalis-gpu-gate`: the boot's GPU gate in the gpu image. Run once,
//! as root, by `chrysalis-gpu-gate.service` after the NVIDIA device nodes
//! exist and `nvidia-persistenced` runs, before the agent and the engine.
//!
//! It collects every GPU's attestation report and certificate chain
//! through NVML for a fresh random nonce, verifies them (chain to the
//! pinned NVIDIA root, signature, nonce, measurements against the RIMs,
//! OCSP and the `[gpu]` policy: `chrysalis_agent::gpu`, i.e.
//! `chrysalis_gpu::gate`), and only then sets the GPUs' confidential-
//! computing ready state — the one privileged step, which is why this is a
//! separate root process and not the network-facing agent. On success it
//! writes the verified bundle (`--out`, read by `chrysalis-agent --gpu gate
//! --gpu-bundle FILE`, which verifies it again and serves it) and exits 0;
//! the engine unit requires this unit, so CUDA work can only start after.
//!
//! RIMs: the `--rim` files, and for what they lack (no RIM of the report's
//! driver or VBIOS version) the RIMs the signed report names, fetched by id
//! from `--rim-service` (NVIDIA's by default) into `--rim-cache`, where the
//! agent's offline re-verification (`--gpu-rim-cache DIR --gpu-offline`)
//! reads them. The service is untrusted: a fetched RIM must be the version
//! its id names and verify (signature, chain to the pinned NVIDIA CoRIM
//! root, OCSP per policy) exactly like a file RIM, or the gate refuses.
//!
//! Exit codes: 0 passed (ready state set, bundle written); 1 refused (the
//! GPUs did not prove they are in CC mode with the expected firmware and
//! driver: the reason is printed, nothing is written, the ready state stays
//! off); 2 invalid command line or configuration (policy, RIM files, RIM
//! service URL).
#![forbid(unsafe_code)]

use std::path::PathBuf;

use chrysalis_agent::gpu::{GpuSettings, GpuSourceKind, RimServiceSettings};
use clap::Parser;

/// Attest the GPUs, set them ready only if the evidence verifies, and
/// write the verified evidence bundle for the agent.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// Policy file whose `[gpu]` section applies [default: the strict
    /// default policy: CC mode on, dev tools off, OCSP required, RIMs
    /// required].
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// A driver or VBIOS reference integrity manifest, or a directory of
    /// them (`*.swidtag`, `*.xml`); repeatable.
    #[arg(long, value_name = "FILE|DIR")]
    rim: Vec<PathBuf>,
    /// OCSP response cache directory.
    #[arg(long, value_name = "DIR")]
    ocsp_cache: Option<PathBuf>,
    /// Use only cached OCSP responses and cached RIMs.
    #[arg(long)]
    offline: bool,
    /// RIM service the RIMs the --rim files lack are fetched from, by the
    /// ids the GPUs' signed reports give (`{URL}/v1/rim/{id}`).
    #[arg(long, value_name = "URL", default_value = chrysalis_gpu::rim_service::NVIDIA_RIM_SERVICE)]
    rim_service: String,
    /// Use only the --rim files: never ask a RIM service.
    #[arg(long, conflicts_with = "rim_cache")]
    no_rim_service: bool,
    /// Where fetched RIMs are kept (`{id}.xml`, written atomically, checked
    /// again on every use); the agent's offline re-verification reads them.
    #[arg(long, value_name = "DIR")]
    rim_cache: Option<PathBuf>,
    /// Where the verified evidence bundle goes (written atomically, 0444).
    #[arg(
        long,
        value_name = "FILE",
        default_value = "/run/chrysalis/gpu/evidence.json"
    )]
    out: PathBuf,
}

fn main() {
    let cli = Cli::parse();
    let settings = GpuSettings {
        source: GpuSourceKind::Nvml,
        policy: cli.policy.clone(),
        rims: cli.rim.clone(),
        ocsp_cache: cli.ocsp_cache.clone(),
        offline: cli.offline,
    };
    let rim_service = (!cli.no_rim_service).then(|| RimServiceSettings {
        url: cli.rim_service.clone(),
        cache: cli.rim_cache.clone(),
    });
    // Nothing of a previous run may stand for this one.
    let _ = std::fs::remove_file(&cli.out);
    match settings.check_using(time::OffsetDateTime::now_utc(), rim_service.as_ref()) {
        Ok(Ok(attested)) => {
            let written = chrysalis_attestation::fsutil::write_atomic_mode(
                &cli.out,
                attested.bundle.as_bytes(),
                Some(0o444),
            );
            if let Err(e) = written {
                // The GPUs are ready but the agent cannot serve the proof:
                // fail, so the engine (BindsTo=) never runs.
                eprintln!(
                    "chrysalis-gpu-gate: passed, but writing {} failed: {e}",
                    cli.out.display()
                );
                std::process::exit(1);
            }
            println!("chrysalis-gpu-gate: passed: {}", attested.summary);
        }
        Ok(Err(why)) => {
            eprintln!("chrysalis-gpu-gate: REFUSED, GPUs stay not ready: {why}");
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("chrysalis-gpu-gate: configuration: {e}");
            std::process::exit(2);
        }
    }
}
