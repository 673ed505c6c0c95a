//! `chrysalis`: the host-side tool of Chrysalis.
//!
//! Exit codes (stable; scripts rely on them):
//! 0 accepted / success, 1 I/O or usage problem, 2 malformed input,
//! 3 failed cryptographic verification (incl. expired or revoked
//! collateral), 4 rejected by policy or TCB status, 5 connection failed,
//! 6 a pinned input unavailable, 141 standard output closed by its reader
//! (see `exit`).
#![forbid(unsafe_code)]

// std's `println!`/`print!` panic when the reader of a pipe has gone; these
// stop the command quietly instead (see `stdout`). Defined before the
// modules so that every one of them uses them.
macro_rules! println {
    () => {
        $crate::stdout::write_fmt(format_args!(""), true)
    };
    ($($arg:tt)*) => {
        $crate::stdout::write_fmt(format_args!($($arg)*), true)
    };
}
macro_rules! print {
    ($($arg:tt)*) => {
        $crate::stdout::write_fmt(format_args!($($arg)*), false)
    };
}

mod attest;
mod client;
mod exit;
mod failure;
mod gpu;
mod host;
mod image;
mod launch;
mod measure;
mod memsize;
mod pay;
mod qemu;
mod stdout;
mod ton;

use clap::{Parser, Subcommand};

/// Chrysalis: confidential GPU inference you can verify.
///
/// Where to start:
///
///   client    chrysalis verify https://NODE:8443       is it a published Chrysalis release? (then: chrysalis chat)
///
///   auditor   chrysalis image reproduce RELEASE_DIR    rebuild a release bit for bit (then: measure, policy from-measurements)
///
///   operator  chrysalis host check                     is this host ready? (then: image build, launch, ton register)
#[derive(Parser)]
#[command(name = "chrysalis", version, propagate_version = true)]
#[command(
    after_help = "Exit codes: 0 ok/accepted, 1 I/O or usage, 2 malformed input, 3 verification failed, 4 rejected by policy, 5 connection failed, 6 pinned input unavailable, 141 stdout closed by its reader.\nShell completions: `chrysalis completions bash|zsh|fish`; man pages: `chrysalis man --out DIR`."
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
    /// Verify a node: by default accepted only when it runs a published
    /// Chrysalis release (every register pinned), with evidence bound to a
    /// fresh nonce and, for a gpu release, verified GPU evidence; prints
    /// who it is (exit 0), or who it is and why not (2 malformed, 3
    /// verification/key binding, 4 policy, 5 connection).
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
    /// Print a shell completion script, generated from these definitions
    /// (`chrysalis completions bash > /etc/bash_completion.d/chrysalis`).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Write man pages (chrysalis.1 and one per subcommand), generated from
    /// these definitions, into DIR.
    Man {
        /// Output directory (created if missing).
        #[arg(long, value_name = "DIR")]
        out: std::path::PathBuf,
    },
}

/// `chrysalis man --out DIR`: one page per command, `chrysalis-verify.1` …
fn write_man_pages(dir: &std::path::Path) -> i32 {
    fn pages(cmd: &clap::Command, prefix: &str, dir: &std::path::Path) -> std::io::Result<usize> {
        let name = if prefix.is_empty() {
            cmd.get_name().to_owned()
        } else {
            format!("{prefix}-{}", cmd.get_name())
        };
        let mut buf = Vec::new();
        // clap names are `&'static str` without its `string` feature; this
        // runs once per page in a short-lived process.
        let static_name: &'static str = Box::leak(name.clone().into_boxed_str());
        clap_mangen::Man::new(cmd.clone().name(static_name)).render(&mut buf)?;
        chrysalis_attestation::fsutil::write_atomic(&dir.join(format!("{name}.1")), &buf)
            .map_err(std::io::Error::other)?;
        let mut n = 1;
        for sub in cmd
            .get_subcommands()
            .filter(|s| !s.is_hide_set() && s.get_name() != "help")
        {
            n += pages(sub, &name, dir)?;
        }
        Ok(n)
    }
    let mut cmd = <Cli as clap::CommandFactory>::command();
    cmd.build();
    match std::fs::create_dir_all(dir).and_then(|()| pages(&cmd, "", dir)) {
        Ok(n) => {
            println!("wrote {n} man pages to {}", dir.display());
            exit::OK
        }
        Err(e) => {
            eprintln!("error: {}: {e}", dir.display());
            exit::IO
        }
    }
}

fn main() {
    // Usage errors exit 1 (the documented "I/O or usage" code), not clap's
    // 2, which means malformed input here; help and version exit 0.
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            std::process::exit(if e.use_stderr() { exit::IO } else { exit::OK });
        }
    };
    let code = stdout::run(|| match cli.command {
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
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            // clap_complete panics on a write error: generate in memory.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cmd, "chrysalis", &mut script);
            stdout::write_bytes(&script);
            exit::OK
        }
        Command::Man { out } => write_man_pages(&out),
    });
    std::process::exit(code);
}
