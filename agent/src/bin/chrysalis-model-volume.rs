//! `chrysalis-model-volume`: attaches and mounts the model volume that the
//! host configuration names (see `chrysalis_agent::model_volume`). Run by
//! `chrysalis-model.service` before the engine starts.
//!
//! Exit codes: 0 when the volume is mounted or the configuration names
//! none, 1 when attaching or mounting failed (the device never appeared, the
//! root hash does not match, ...), 2 for an invalid command line or
//! configuration.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use chrysalis_agent::model_volume::{
    Devices, ModelVolume, DATA_DEVICE, HASH_DEVICE, MOUNTPOINT, VERITYSETUP,
};
use chrysalis_agent::runtime_config::RuntimeConfig;
use clap::Parser;

/// Attach the dm-verity model volume named by the host configuration
/// (`"model_volume": {"verity_root_hash": HEX}`) and mount it read-only.
///
/// The root hash comes only from the configuration file the agent
/// measures, so the measured configuration fixes the model's bytes.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// The host configuration (the file the agent measures).
    #[arg(
        long,
        value_name = "FILE",
        default_value = "/run/chrysalis/host-config.json"
    )]
    runtime_config: PathBuf,
    /// The volume's data disk.
    #[arg(long, value_name = "DEV", default_value = DATA_DEVICE)]
    data: PathBuf,
    /// The volume's hash-tree disk.
    #[arg(long, value_name = "DEV", default_value = HASH_DEVICE)]
    hash: PathBuf,
    /// Mount point.
    #[arg(long, value_name = "DIR", default_value = MOUNTPOINT)]
    mountpoint: PathBuf,
    /// systemd's veritysetup helper.
    #[arg(long, value_name = "PATH", default_value = VERITYSETUP)]
    veritysetup: PathBuf,
    /// How long to wait for both disks to appear (seconds).
    #[arg(long, default_value_t = 30)]
    wait: u64,
    /// Print the commands instead of running them.
    #[arg(long)]
    print: bool,
}

fn main() {
    let cli = Cli::parse();
    let volume =
        match RuntimeConfig::load(&cli.runtime_config).and_then(|c| ModelVolume::from_config(&c)) {
            Ok(Some(v)) => v,
            Ok(None) => {
                println!(
                "chrysalis-model: the host configuration names no model volume; nothing mounted"
            );
                return;
            }
            Err(e) => {
                eprintln!("chrysalis-model: {e}");
                std::process::exit(2);
            }
        };
    let devices = Devices {
        veritysetup: cli.veritysetup,
        data: cli.data,
        hash: cli.hash,
        mountpoint: cli.mountpoint,
    };
    let commands = volume.commands(&devices);
    if cli.print {
        for c in &commands {
            println!("{}", c.join(" "));
        }
        return;
    }
    if let Err(e) = attach(&devices, &commands, Duration::from_secs(cli.wait)) {
        eprintln!("chrysalis-model: {e:#}");
        std::process::exit(1);
    }
    println!(
        "chrysalis-model: mounted read-only at {}, dm-verity root hash {} (from the measured host configuration)",
        devices.mountpoint.display(),
        hex::encode(volume.verity_root_hash)
    );
}

fn attach(devices: &Devices, commands: &[Vec<String>], wait: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + wait;
    for dev in [&devices.data, &devices.hash] {
        while !dev.exists() {
            if Instant::now() >= deadline {
                anyhow::bail!(
                    "{} did not appear within {} s: attach the volume with `chrysalis launch --model DIR`",
                    dev.display(),
                    wait.as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    for c in commands {
        let status = Command::new(&c[0])
            .args(&c[1..])
            .status()
            .map_err(|e| anyhow::anyhow!("running {}: {e}", c[0]))?;
        if !status.success() {
            anyhow::bail!("`{}` failed ({status})", c.join(" "));
        }
    }
    Ok(())
}
