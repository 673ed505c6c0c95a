//! `chrysalis`: the host-side tool of Chrysalis.
//!
//! Exit codes (stable; scripts rely on them):
//! 0 accepted / success, 1 I/O or usage problem, 2 malformed input,
//! 3 failed cryptographic verification (incl. expired or revoked
//! collateral), 4 rejected by policy or TCB status.
#![forbid(unsafe_code)]

mod attest;
mod client;
mod exit;
mod failure;
mod gpu;
mod host;
mod image;
mod launch;
mod measure;
mod pay;
mod ton;

use clap::{Parser, Subcommand};

/// Chrysalis: confidential GPU inference you can verify.
///
/// Operators check and launch machines, auditors recompute measurements,
/// clients verify attestation evidence before sending a prompt.
#[derive(Parser)]
#[command(name = "chrysalis", version, propagate_version = true)]
#[command(
    after_help = "Exit codes: 0 ok/accepted, 1 I/O or usage, 2 malformed input, 3 verification failed, 4 rejected by policy, 5 connection failed (verify, chat).\nRun `chrysalis attest --help` to start."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
// Parsed once per process; boxing variants would only obscure the clap derive.
#[allow(clippy::large_enum_variant)]
enum Command {
    /// Decode, generate, fetch collateral for, and verify TEE evidence
    /// (Intel TDX quotes, AMD SEV-SNP reports).
    Attest(attest::AttestArgs),
    /// Compute expected TDX/SNP launch measurements from image artifacts,
    /// replay TDX event logs, compute dm-verity root hashes.
    ///
    /// `chrysalis measure --firmware F --kernel K --initrd I --cmdline C --vcpus N --memory M [--tee tdx|snp] [--json]`
    Measure(measure::MeasureArgs),
    /// Policies: generate one from a measurements.json.
    Policy(measure::PolicyArgs),
    /// Connect to an RA-TLS server (or read --cert FILE), verify its evidence
    /// and binding, print who it is; exit 0 only if the policy accepts it
    /// (2 malformed, 3 verification/key binding, 4 policy, 5 connection).
    Verify(client::VerifyArgs),
    /// Send an OpenAI-compatible chat completion over a verified RA-TLS
    /// connection and stream the answer.
    Chat(client::ChatArgs),
    /// TON: operator wallets and the on-chain machine registry (register a
    /// verified machine, list and verify machines, admin the allowed images).
    ///
    /// `chrysalis ton wallet new --out FILE`, `chrysalis ton register --agent URL --wallet FILE --registry ADDR [--dry-run] [--json]`
    Ton(ton::TonArgs),
    /// Build the guest image with mkosi (artifacts, measurements.json,
    /// SHA256SUMS), or rebuild a published release and compare.
    ///
    /// `chrysalis image build [--profile cpu|gpu] [--out DIR]`,
    /// `chrysalis image reproduce RELEASE_DIR`
    Image(image::ImageArgs),
    /// Start QEMU with exactly the VM configuration the measurements assume.
    ///
    /// `chrysalis launch --tee tdx|snp|none --vcpus N --memory M [--gpu PCI_ADDR] [--forward HOST_PORT] [--print] IMAGE_DIR`
    Launch(launch::LaunchArgs),
    /// NVIDIA H100 confidential computing: verify recorded GPU evidence
    /// (chain, signature, nonce, RIMs, OCSP), show the local GPUs' CC state.
    ///
    /// `chrysalis gpu verify --evidence FILE --certs FILE [--rim FILE ...] --nonce HEX [--at RFC3339] [--offline] [--json]`, `chrysalis gpu status`
    Gpu(gpu::GpuArgs),
    /// Check this host: TDX/SNP enablement, IOMMU, QEMU and firmware, VFIO, GPU CC mode (`chrysalis host check`).
    Host(host::HostArgs),
}

fn main() {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Attest(args) => attest::run(args),
        Command::Measure(args) => measure::run(args),
        Command::Policy(args) => measure::run_policy(args),
        Command::Verify(args) => client::run_verify(args),
        Command::Chat(args) => client::run_chat(args),
        Command::Ton(args) => ton::run(args),
        Command::Image(args) => image::run(args),
        Command::Launch(args) => launch::run(args),
        Command::Host(args) => host::run(args),
        Command::Gpu(args) => gpu::run(args),
    };
    std::process::exit(code);
}
