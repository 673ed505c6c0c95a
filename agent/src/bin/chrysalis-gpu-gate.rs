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
//! Exit codes: 0 passed (ready state set, bundle written); 1 refused (the
//! GPUs did not prove they are in CC mode with the expected firmware and
//! driver: the reason is printed, nothing is written, the ready state stays
//! off); 2 invalid command line or configuration (policy, RIM files).
#![forbid(unsafe_code)]

use std::path::PathBuf;

use chrysalis_agent::gpu::{GpuSettings, GpuSourceKind};
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
    /// Use only cached OCSP responses.
    #[arg(long)]
    offline: bool,
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
    // Nothing of a previous run may stand for this one.
    let _ = std::fs::remove_file(&cli.out);
    match settings.check(time::OffsetDateTime::now_utc()) {
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
