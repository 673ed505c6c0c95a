//! `chrysalis measure …` and `chrysalis policy from-measurements`: expected
//! launch measurements from the artifacts alone, event-log replay, dm-verity.

use std::path::{Path, PathBuf};

use anyhow::anyhow;
use chrysalis_attestation as att;
use chrysalis_measurements as m;
use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;

use m::manifest::{Configuration, MeasurementsManifest, SnpExpected, TdxExpected, VmConfig};

use crate::exit;
use crate::failure::{Failure, IoContext};
use crate::memsize::parse_memory;

/// Results of this module's commands: typed failures until printed.
type Result<T, E = Failure> = std::result::Result<T, E>;

/// QEMU version measured for by default: the pinned one (selects the
/// page-add order; RTMR0's ACPI tables are generated with it).
const DEFAULT_QEMU_VERSION: &str = crate::qemu::version::PINNED_QEMU_VERSION;

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct MeasureArgs {
    #[command(subcommand)]
    command: Option<MeasureCommand>,
    #[command(flatten)]
    launch: LaunchArgs,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum TeeArg {
    Tdx,
    Snp,
}

/// Inputs of one launch measurement.
#[derive(Args, Clone)]
struct LaunchArgs {
    /// Firmware: TDVF/OVMF for TDX, OVMF AmdSev build for SNP.
    #[arg(long)]
    firmware: Option<PathBuf>,
    /// Kernel (bzImage with EFI stub). SNP without it measures firmware only.
    #[arg(long)]
    kernel: Option<PathBuf>,
    /// Initrd.
    #[arg(long)]
    initrd: Option<PathBuf>,
    /// Kernel command line, as passed to the VMM (`-append`).
    #[arg(long, default_value = "")]
    cmdline: String,
    /// Number of vCPUs.
    #[arg(long, default_value_t = 1)]
    vcpus: u32,
    /// Guest memory: a number of MiB, or with a unit suffix K, M, G, T (binary), e.g. 64G.
    #[arg(long, default_value = "2G")]
    memory: String,
    /// TEE to measure for. Default: snp if an SNP-only option is given, else tdx.
    #[arg(long, value_enum)]
    tee: Option<TeeArg>,
    /// Number of GPUs (each on its own PCIe root port: enters RTMR0 through the ACPI tables).
    #[arg(long, default_value_t = 0)]
    gpus: u32,
    /// The VM has the model volume's two disks attached (`launch --model`; enters RTMR0).
    #[arg(long)]
    model_volume: bool,
    /// TDX: QEMU version (MRTD page-add order; the ACPI tables are generated with this version).
    #[arg(long, default_value = DEFAULT_QEMU_VERSION)]
    qemu_version: String,
    /// TDX: QEMU's ACPI tables (directory with table-loader, rsdp, tables, or JSON) instead of
    /// generating them with the pinned QEMU for the argv `chrysalis launch` would use.
    #[arg(long)]
    acpi_tables: Option<PathBuf>,
    /// TDX: the QEMU that generates the ACPI tables [default: $CHRYSALIS_QEMU, else
    /// qemu-system-x86_64]; it must be --qemu-version (get it with `bash ci/qemu-pinned.sh`).
    #[arg(long, value_name = "PATH")]
    qemu: Option<PathBuf>,
    /// TDX: the agent's static configuration (measured into RTMR3).
    #[arg(long)]
    config: Option<PathBuf>,
    /// TDX, gpu image: the image's NVIDIA driver version (e.g. 550.163.01;
    /// `measure image` reads it from packages.json, and a gpu release's
    /// measurements.json records it as rtmr3_events.gpu_driver). With
    /// --gpus N > 0, RTMR3 (with --config) and `replay --runtime-log`
    /// include the `gpu` event the image's boot gate extends for N GPUs
    /// with that driver, CC on, dev tools off.
    #[arg(long, value_name = "VERSION")]
    gpu_driver: Option<String>,
    /// SNP: vCPU type as sev-snp-measure names it (EPYC, EPYC-v4, EPYC-Milan, EPYC-Genoa, …).
    #[arg(long)]
    vcpu_type: Option<String>,
    /// SNP: guest features (hex, default 0x1).
    #[arg(long)]
    guest_features: Option<String>,
    /// SNP: VMM model (qemu, ec2).
    #[arg(long)]
    vmm: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
// Parsed once per process; boxing variants would only obscure the clap derive.
#[allow(clippy::large_enum_variant)]
enum MeasureCommand {
    /// Measure a built image directory and write DIR/measurements.json.
    ///
    /// DIR holds: firmware-tdx.fd and/or firmware-snp.fd, vmlinuz, initrd
    /// (optional), cmdline (text), rootfs.img (optional, with verity-salt
    /// as hex text), agent-config.json (optional, for RTMR3).
    Image {
        /// The image directory.
        dir: PathBuf,
        /// VM configurations to compute, as VCPUS:MEMORY[:GPUS[:model]] (repeatable; default
        /// 8:64G:1; `model`: with the model volume's disks attached).
        #[arg(long = "vm", default_value = "8:64G:1")]
        vms: Vec<String>,
        /// SNP vCPU type.
        #[arg(long, default_value = "EPYC-v4")]
        vcpu_type: String,
        /// TDX QEMU version.
        #[arg(long, default_value = DEFAULT_QEMU_VERSION)]
        qemu_version: String,
        /// The QEMU that generates the ACPI tables (see `measure --qemu`).
        #[arg(long, value_name = "PATH")]
        qemu: Option<PathBuf>,
        /// Image release name recorded in the output.
        #[arg(long)]
        name: Option<String>,
        /// Write the manifest here instead of DIR/measurements.json (an
        /// auditor recomputing a release's measurements from its artifacts
        /// writes them apart and compares: `cmp FILE PUBLISHED`).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Print the manifest as JSON too.
        #[arg(long)]
        json: bool,
    },
    /// Replay a TDX event log (CCEL binary from /sys/firmware/acpi/tables/data/CCEL,
    /// or dstack JSON) to RTMR values; with the launch inputs, report the first
    /// event where the log departs from the computed one.
    Replay {
        /// The firmware's event log (optional with --runtime-log).
        #[arg(required_unless_present = "runtime_log")]
        eventlog: Option<PathBuf>,
        /// Compare the replayed registers with this quote's RTMRs.
        #[arg(long)]
        quote: Option<PathBuf>,
        /// Also replay the node's RTMR3 runtime event log (the
        /// `runtime_events` of its `GET /attestation` answer, or that
        /// answer whole): each event against the image's prediction for
        /// the default host configuration, RTMR3 against the quote's.
        #[arg(long, value_name = "FILE")]
        runtime_log: Option<PathBuf>,
        #[command(flatten)]
        launch: LaunchArgs,
    },
    /// TDX: QEMU's ACPI blobs for the VM `chrysalis launch --tee tdx` would
    /// start with this shape, generated by the pinned QEMU under qtest (no
    /// KVM, no boot); written as OUT/table-loader, OUT/rsdp, OUT/tables (the
    /// form `--acpi-tables` reads), with their SHA-384 and table list printed.
    Acpi {
        /// Number of vCPUs.
        #[arg(long, default_value_t = 1)]
        vcpus: u32,
        /// Guest memory (whole MiB; K/M/G/T suffixes).
        #[arg(long, default_value = "2G")]
        memory: String,
        /// Number of GPUs.
        #[arg(long, default_value_t = 0)]
        gpus: u32,
        /// With the model volume's two disks.
        #[arg(long)]
        model_volume: bool,
        /// QEMU version required of the generating QEMU.
        #[arg(long, default_value = DEFAULT_QEMU_VERSION)]
        qemu_version: String,
        /// The QEMU [default: $CHRYSALIS_QEMU, else qemu-system-x86_64].
        #[arg(long, value_name = "PATH")]
        qemu: Option<PathBuf>,
        /// Directory to write the three blobs to (created).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// dm-verity root hash of an image (as `veritysetup format`: 4096-byte
    /// blocks, SHA-256; salt empty unless given).
    Verity {
        /// The data image.
        file: PathBuf,
        /// Salt (hex; empty or "-" for none).
        #[arg(long, default_value = "")]
        salt: String,
        /// Data block size in bytes.
        #[arg(long, default_value_t = 4096)]
        data_block_size: u32,
        /// Hash block size in bytes.
        #[arg(long, default_value_t = 4096)]
        hash_block_size: u32,
        /// Also write the hash tree (no superblock) to this file.
        #[arg(long)]
        hash_tree: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
pub struct PolicyArgs {
    #[command(subcommand)]
    command: PolicyCommand,
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Turn a measurements.json into a policy file that accepts exactly those
    /// configurations, every register pinned — the same sets a default
    /// client derives from a published release. A register the file does
    /// not predict (null) is refused unless named with --unpinned.
    FromMeasurements {
        /// measurements.json
        file: PathBuf,
        /// Write here instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Leave this register unchecked (mrtd, rtmr0..rtmr3, measurement,
        /// host_data); repeatable or comma-separated. Loud: the file and
        /// stderr say ANY value of it is accepted.
        #[arg(long, value_name = "REGISTER", value_delimiter = ',')]
        unpinned: Vec<String>,
    },
}

fn report(f: Failure) -> i32 {
    eprintln!("error: {:#}", f.error);
    f.code()
}

pub fn run(args: MeasureArgs) -> i32 {
    let r = match args.command {
        None => launch(&args.launch),
        Some(MeasureCommand::Image {
            dir,
            vms,
            vcpu_type,
            qemu_version,
            qemu,
            name,
            out,
            json,
        }) => image(
            &dir,
            &vms,
            &vcpu_type,
            &qemu_version,
            qemu.as_deref(),
            name,
            &ImageOutput { file: out, json },
        ),
        Some(MeasureCommand::Acpi {
            vcpus,
            memory,
            gpus,
            model_volume,
            qemu_version,
            qemu,
            out,
            json,
        }) => acpi(
            &LaunchArgs {
                firmware: None,
                kernel: None,
                initrd: None,
                cmdline: String::new(),
                vcpus,
                memory,
                tee: Some(TeeArg::Tdx),
                gpus,
                model_volume,
                qemu_version,
                acpi_tables: None,
                qemu,
                config: None,
                gpu_driver: None,
                vcpu_type: None,
                guest_features: None,
                vmm: None,
                json,
            },
            out.as_deref(),
        ),
        Some(MeasureCommand::Replay {
            eventlog,
            quote,
            runtime_log,
            launch,
        }) => match &eventlog {
            Some(log) => replay(log, quote.as_deref(), &launch),
            None => Ok(()),
        }
        .and_then(|()| match &runtime_log {
            Some(f) => replay_runtime_log(
                f,
                quote.as_deref(),
                gpu_event_state(launch.gpus, launch.gpu_driver.as_deref()),
                launch.json,
            ),
            None => Ok(()),
        }),
        Some(MeasureCommand::Verity {
            file,
            salt,
            data_block_size,
            hash_block_size,
            hash_tree,
            json,
        }) => verity(
            &file,
            &salt,
            data_block_size,
            hash_block_size,
            hash_tree.as_deref(),
            json,
        ),
    };
    r.map(|()| exit::OK).unwrap_or_else(report)
}

pub fn run_policy(args: PolicyArgs) -> i32 {
    let r = (|| -> Result<()> {
        let PolicyCommand::FromMeasurements {
            file,
            out,
            unpinned,
        } = args.command;
        let text = std::fs::read_to_string(&file).io_context(|| file.display().to_string())?;
        let manifest = MeasurementsManifest::from_json(&text).map_err(|e| {
            Failure::new(
                att::ErrorCategory::Malformed,
                anyhow!("{}: {e}", file.display()),
            )
        })?;
        let name = manifest
            .image
            .clone()
            .unwrap_or_else(|| file.display().to_string());
        let release = chrysalis_releases::Release::parse(&name, &text)?;
        let unpinned: Vec<&str> = unpinned.iter().map(String::as_str).collect();
        let toml = release.policy_toml(&unpinned).map_err(|e| {
            Failure::new(
                att::ErrorCategory::Malformed,
                anyhow!("{}: {e}", file.display()),
            )
        })?;
        if !unpinned.is_empty() {
            eprintln!(
                "!!! UNPINNED: {} — the policy accepts ANY value of these registers",
                unpinned.join(", ")
            );
        }
        // Never write a policy the verifier would not read back.
        chrysalis_attestation::Policy::from_toml(&toml).map_err(|e| {
            Failure::new(
                att::ErrorCategory::Io,
                anyhow!("generated policy does not parse: {e}"),
            )
        })?;
        match out {
            Some(p) => chrysalis_attestation::fsutil::write_atomic(&p, toml.as_bytes())?,
            None => print!("{toml}"),
        }
        Ok(())
    })();
    r.map(|()| exit::OK).unwrap_or_else(report)
}

fn choose_tee(a: &LaunchArgs) -> TeeArg {
    a.tee.unwrap_or(
        if a.vcpu_type.is_some() || a.guest_features.is_some() || a.vmm.is_some() {
            TeeArg::Snp
        } else {
            TeeArg::Tdx
        },
    )
}

fn tdx_inputs(a: &LaunchArgs, firmware: &Path) -> Result<m::tdx::TdxInputs> {
    let memory_bytes = parse_memory(&a.memory)?;
    let kernel = a
        .kernel
        .clone()
        .io_context(|| "TDX measurement needs --kernel (RTMR1 measures the kernel)".into())?;
    let vm = m::tdx::VmConfig {
        vcpus: a.vcpus,
        memory_bytes,
        gpus: a.gpus,
        vmm: m::tdx::Vmm {
            name: "qemu".into(),
            version: a.qemu_version.clone(),
        },
    };
    let mut inputs = m::tdx::TdxInputs::new(firmware.to_path_buf(), kernel, a.cmdline.clone(), vm);
    inputs.initrd = a.initrd.clone();
    inputs.acpi_tables = a.acpi_tables.clone();
    if a.acpi_tables.is_none() {
        // A firmware that is no TDVF is named as such before QEMU is needed.
        m::tdx::Tdvf::load(firmware)?;
        inputs.acpi_generated = Some(generate_acpi(a, memory_bytes)?);
    }
    inputs.config = a.config.clone();
    inputs.gpu_event = gpu_event_state(a.gpus, a.gpu_driver.as_deref());
    Ok(inputs)
}

/// The state a gpu image's boot gate measures for `gpus` GPUs with
/// `driver` (None without GPUs or without a driver: no `gpu` event).
fn gpu_event_state(gpus: u32, driver: Option<&str>) -> Option<att::runtime_events::GpuEventState> {
    driver
        .filter(|_| gpus > 0)
        .map(|d| att::runtime_events::GpuEventState::expected(gpus, d))
}

/// The NVIDIA driver version of a gpu image, from its `packages.json`: the
/// upstream version (no epoch, no Debian revision) of the open kernel
/// module package, which is what the driver reports in GPU evidence
/// (`550.163.01-4~bpo13+1` → `550.163.01`).
pub(crate) fn gpu_driver_version(packages_json: &Path) -> Result<String> {
    const MODULE_PACKAGES: [&str; 2] = ["nvidia-open-kernel-dkms", "nvidia-kernel-open-dkms"];
    let text = std::fs::read_to_string(packages_json).io_context(|| {
        format!(
            "{}: a gpu image needs its package list",
            packages_json.display()
        )
    })?;
    #[derive(serde::Deserialize)]
    struct Package {
        name: String,
        version: String,
    }
    #[derive(serde::Deserialize)]
    struct Packages {
        packages: Vec<Package>,
    }
    let list: Packages = serde_json::from_str(&text).map_err(|e| {
        Failure::new(
            att::ErrorCategory::Malformed,
            anyhow!(
                "{}: not an mkosi package manifest: {e}",
                packages_json.display()
            ),
        )
    })?;
    let p = list
        .packages
        .iter()
        .find(|p| MODULE_PACKAGES.contains(&p.name.as_str()))
        .ok_or_else(|| {
            Failure::new(
                att::ErrorCategory::Malformed,
                anyhow!(
                    "{}: a gpu image must carry the NVIDIA kernel module ({}): its version is the driver the gpu RTMR3 event names",
                    packages_json.display(),
                    MODULE_PACKAGES.join(" or ")
                ),
            )
        })?;
    let v = p
        .version
        .split_once(':')
        .map_or(p.version.as_str(), |(_, v)| v);
    let v = v.rsplit_once('-').map_or(v, |(u, _)| u);
    Ok(v.to_string())
}

/// `measure acpi`: the blobs, written and listed.
fn acpi(a: &LaunchArgs, out: Option<&Path>) -> Result<()> {
    let memory_bytes = parse_memory(&a.memory)?;
    let (tables, source) = generate_tables(a, memory_bytes)?;
    if let Some(dir) = out {
        std::fs::create_dir_all(dir).io_context(|| dir.display().to_string())?;
        for (name, data) in [
            ("table-loader", &tables.table_loader),
            ("rsdp", &tables.rsdp),
            ("tables", &tables.tables),
        ] {
            chrysalis_attestation::fsutil::write_atomic(&dir.join(name), data)?;
        }
    }
    let list = m::tdx::acpi::list_tables(&tables.tables).map_err(|e| {
        Failure::new(
            att::ErrorCategory::Malformed,
            anyhow!("QEMU's etc/acpi/tables: {e}"),
        )
    })?;
    let d = tables.digests();
    let shape = crate::launch::VmShape {
        vcpus: a.vcpus,
        memory_mib: memory_bytes >> 20,
        gpus: a.gpus,
        model_volume: a.model_volume,
    };
    let launch_argv = crate::launch::tdx_shape_argv(&shape);
    let plan = crate::qemu::acpi::qtest_plan(&launch_argv, Path::new("SCRATCH"))?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "table_loader_sha384": hex::encode(d.table_loader),
                "rsdp_sha384": hex::encode(d.rsdp),
                "tables_sha384": hex::encode(d.tables),
                "tables": list.iter().map(|t| json!({
                    "signature": t.name(), "offset": t.offset, "length": t.length,
                })).collect::<Vec<_>>(),
                "source": source,
                "launch_argv": launch_argv,
                "qtest_argv": plan.argv,
                "pci64_base": format!("{:#x}", plan.pci64_base),
            }))?
        );
    } else {
        println!("table-loader  {}", hex::encode(d.table_loader));
        println!("rsdp          {}", hex::encode(d.rsdp));
        println!("tables        {}", hex::encode(d.tables));
        let names: Vec<String> = list
            .iter()
            .map(|t| format!("{} ({} B)", t.name(), t.length))
            .collect();
        println!("contents      {}", names.join(", "));
        println!("source        {source}");
    }
    Ok(())
}

/// RTMR0's ACPI tables for the VM `chrysalis launch --tee tdx` would start
/// with these options, generated with the QEMU of `--qemu-version`.
fn generate_acpi(a: &LaunchArgs, memory_bytes: u64) -> Result<m::tdx::GeneratedAcpi> {
    let (tables, source) = generate_tables(a, memory_bytes)?;
    Ok(m::tdx::GeneratedAcpi {
        digests: tables.digests(),
        source,
    })
}

/// The blobs and a sentence saying how they were made.
fn generate_tables(
    a: &LaunchArgs,
    memory_bytes: u64,
) -> Result<(m::tdx::rtmr::AcpiTables, String)> {
    use crate::qemu::{acpi, version};
    if !memory_bytes.is_multiple_of(1 << 20) {
        return Err(Failure::io(anyhow!(
            "--memory {}: `chrysalis launch` takes whole MiB, so RTMR0 is generated only for those",
            a.memory
        )));
    }
    let shape = crate::launch::VmShape {
        vcpus: a.vcpus,
        memory_mib: memory_bytes >> 20,
        gpus: a.gpus,
        model_volume: a.model_volume,
    };
    let qemu = version::locate(a.qemu.as_deref());
    let found = version::require(&qemu, &a.qemu_version).map_err(|e| {
        Failure::io(anyhow!(
            "RTMR0 needs QEMU's ACPI tables for this VM, generated with QEMU {}: {e}",
            a.qemu_version
        ))
    })?;
    let tables = acpi::generate(&qemu, &crate::launch::tdx_shape_argv(&shape))?;
    Ok((
        tables,
        format!(
            "generated by {} under qtest for the argv of `chrysalis launch --tee tdx` with {shape}",
            found.line
        ),
    ))
}

fn snp_input(a: &LaunchArgs, firmware: &Path) -> Result<m::snp::SnpMeasureInput> {
    let mut input = m::snp::SnpMeasureInput::new(m::snp::Artifact::File(firmware.to_path_buf()));
    input.kernel = a.kernel.clone().map(m::snp::Artifact::File);
    input.initrd = a.initrd.clone().map(m::snp::Artifact::File);
    input.cmdline = (a.kernel.is_some()).then(|| a.cmdline.clone());
    input.vcpus = a.vcpus;
    if let Some(t) = &a.vcpu_type {
        input.vcpu_type = t.parse()?;
    }
    if let Some(g) = &a.guest_features {
        let g = g.trim();
        let g = g
            .strip_prefix("0x")
            .or_else(|| g.strip_prefix("0X"))
            .unwrap_or(g);
        input.guest_features = u64::from_str_radix(g, 16)
            .io_context(|| format!("--guest-features {g:?}: expected hex, e.g. 0x1"))?;
    }
    if let Some(v) = &a.vmm {
        input.vmm = v.parse()?;
    }
    Ok(input)
}

fn launch(a: &LaunchArgs) -> Result<()> {
    let firmware = a.firmware.clone().io_context(|| {
        "--firmware is required (or use a subcommand: image, replay, verity)".into()
    })?;
    match choose_tee(a) {
        TeeArg::Snp => {
            let r = m::snp::snp_measure(&snp_input(a, &firmware)?)?;
            if a.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&json!({
                        "snp": {
                            "measurement": hex::encode(r.launch_digest),
                            "ovmf_hash": hex::encode(r.ovmf_hash),
                            "vcpus": r.vcpus,
                            "vcpu_type": r.vcpu_type,
                            "guest_features": format!("{:#x}", r.guest_features),
                            "vmm": r.vmm.name(),
                            "kernel_hashes": r.kernel_hashes,
                        },
                        "tool": tool(),
                    }))?
                );
            } else {
                println!("{}", hex::encode(r.launch_digest));
            }
        }
        TeeArg::Tdx => {
            let r = m::tdx::measure(&tdx_inputs(a, &firmware)?)?;
            if a.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&json!({ "tdx": r, "tool": tool() }))?
                );
            } else {
                println!("mrtd   {}", hex::encode(r.mrtd));
                for (i, reg) in r.rtmr.iter().enumerate() {
                    match reg {
                        Some(v) => println!("rtmr{i}  {}", hex::encode(v)),
                        None => println!("rtmr{i}  (not computed: see --json model notes)"),
                    }
                }
                println!(
                    "model  QEMU {} ({} page add), {} vCPUs, {} MiB, {} GPUs",
                    r.vm.vmm.version,
                    serde_json::to_value(r.model.page_add_order)?
                        .as_str()
                        .unwrap_or("?"),
                    r.vm.vcpus,
                    r.vm.memory_bytes >> 20,
                    r.vm.gpus
                );
            }
        }
    }
    Ok(())
}

fn tool() -> String {
    format!("chrysalis {}", env!("CARGO_PKG_VERSION"))
}

/// `measure replay --runtime-log FILE`: the node's RTMR3 events, each
/// digest recomputed, against the image's boot events for the default host
/// configuration (config, [gpu], boot-done), and RTMR3 against the quote.
/// With `gpu` (a gpu image's predicted state), the gpu event is compared
/// too; without it, a gpu event is skipped in the comparison.
fn replay_runtime_log(
    file: &Path,
    quote: Option<&Path>,
    gpu: Option<att::runtime_events::GpuEventState>,
    json_out: bool,
) -> Result<()> {
    use chrysalis_attestation::runtime_events as rt;
    let text = std::fs::read_to_string(file).io_context(|| file.display().to_string())?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        Failure::new(
            att::ErrorCategory::Malformed,
            anyhow!("{}: not JSON: {e}", file.display()),
        )
    })?;
    let events = value.get("runtime_events").cloned().unwrap_or(value);
    let log: Vec<rt::LoggedEvent> = serde_json::from_value(events).map_err(|e| {
        Failure::new(
            att::ErrorCategory::Malformed,
            anyhow!("{}: not an RTMR3 runtime event log: {e}", file.display()),
        )
    })?;
    let shape = rt::check_log_shape(&log).err();
    let gpu_payload = gpu.as_ref().map(rt::GpuEventState::payload);
    let predicted = rt::rtmr3_boot_events(
        Some(chrysalis_releases::DEFAULT_HOST_CONFIGURATION),
        gpu_payload.as_ref(),
    );
    // The first event that is not the prediction (without a predicted GPU
    // state, a gpu event is skipped in the comparison).
    let compared = |e: &&rt::LoggedEvent| gpu.is_some() || e.name != rt::RTMR3_GPU_EVENT;
    let first_departure = log
        .iter()
        .filter(compared)
        .zip(predicted.iter())
        .position(|(got, want)| got.name != want.name || got.payload != want.payload)
        .or_else(|| {
            let n = log.iter().filter(compared).count();
            (n != predicted.len()).then_some(n.min(predicted.len()))
        });
    let replayed = rt::replay_log(&log);
    let quoted = match quote {
        Some(q) => {
            let d = chrysalis_attestation::verifier::read_evidence(q)?;
            let chrysalis_attestation::Evidence::Tdx(tq) = &d.evidence else {
                return Err(Failure::io(anyhow!("{}: not a TDX quote", q.display())));
            };
            Some(tq.td_report().rtmr[3])
        }
        None => None,
    };
    let ok = shape.is_none() && quoted.is_none_or(|q| q == replayed);
    if json_out {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "runtime_events": log,
                "rtmr3": hex::encode(replayed),
                "quote_rtmr3_match": quoted.map(|q| q == replayed),
                "shape_error": shape,
                "first_departure_from_default": first_departure,
            }))?
        );
    } else {
        for (i, e) in log.iter().enumerate() {
            println!(
                "  {i}: {:<10} payload {} digest {}",
                e.name,
                if e.payload.is_empty() {
                    "(empty)".to_string()
                } else {
                    hex::encode(&e.payload)
                },
                hex::encode(rt::chrysalis_event_digest(&e.name, &e.payload))
            );
        }
        println!("RTMR3 replayed: {}", hex::encode(replayed));
        if let Some(q) = quoted {
            println!(
                "RTMR3 quoted:   {} ({})",
                hex::encode(q),
                if q == replayed {
                    "matches"
                } else {
                    "DIFFERS: the log is not what was extended"
                }
            );
        }
        if let Some(why) = &shape {
            println!("shape: {why}");
        }
        match first_departure {
            None => println!("matches the image's events for the default host configuration"),
            Some(i) => println!(
                "first departure from the default host configuration's events: event {i} (want {})",
                predicted
                    .get(i)
                    .map(|e| e.description.clone())
                    .unwrap_or_else(|| "no more events".into())
            ),
        }
    }
    if ok {
        Ok(())
    } else {
        Err(Failure::new(
            att::ErrorCategory::Verification,
            anyhow!("the runtime event log does not replay to the quote's RTMR3 or is malformed"),
        ))
    }
}

fn replay(eventlog: &Path, quote: Option<&Path>, launch: &LaunchArgs) -> Result<()> {
    let log = m::tdx::eventlog::EventLog::load(eventlog)?;
    let rtmrs = log.replay();
    let mut out = json!({
        "eventlog": eventlog.display().to_string(),
        "events": log.events.len(),
        "rtmr": rtmrs.iter().map(hex::encode).collect::<Vec<_>>(),
    });
    let mut ok = true;
    if let Some(q) = quote {
        let d = chrysalis_attestation::verifier::read_evidence(q)?;
        let chrysalis_attestation::Evidence::Tdx(tq) = &d.evidence else {
            return Err(Failure::io(anyhow!("{}: not a TDX quote", q.display())));
        };
        let quoted = tq.td_report().rtmr;
        let matches: Vec<bool> = (0..4).map(|i| quoted[i] == rtmrs[i]).collect();
        ok &= matches.iter().all(|b| *b);
        out["quote_rtmr_match"] = json!(matches);
    }
    if let Some(fw) = &launch.firmware {
        let expected = m::tdx::measure(&tdx_inputs(launch, fw)?)?;
        let cmp = m::tdx::eventlog::compare(&expected.events, &log.events);
        ok &= cmp.is_match();
        out["comparison"] = serde_json::to_value(&cmp)?;
        out["first_departure"] = json!(cmp.first().map(|d| d.to_string()));
    }
    if launch.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "{} events replayed from {}",
            log.events.len(),
            eventlog.display()
        );
        for (i, r) in rtmrs.iter().enumerate() {
            let mark = match out["quote_rtmr_match"].get(i).and_then(|v| v.as_bool()) {
                Some(true) => "  = quote",
                Some(false) => "  ≠ quote",
                None => "",
            };
            println!("rtmr{i}  {}{mark}", hex::encode(r));
        }
        if let Some(first) = out["first_departure"].as_str() {
            println!("first departure from the computed log: {first}");
        } else if launch.firmware.is_some() {
            println!("the log matches the computed events in every computed register");
        }
    }
    if !ok {
        return Err(Failure::io(anyhow!("event log does not match")));
    }
    Ok(())
}

fn verity(
    file: &Path,
    salt: &str,
    data_block_size: u32,
    hash_block_size: u32,
    hash_tree: Option<&Path>,
    json_out: bool,
) -> Result<()> {
    let params = m::verity::VerityParams {
        data_block_size,
        hash_block_size,
        ..Default::default()
    }
    .with_salt_hex(salt)?;
    let r = match hash_tree {
        Some(out) => {
            m::verity::write_hash_tree(file, &params, out, m::verity::HashTreeLayout::NoSuperblock)?
        }
        None => m::verity::verity_root_hash(file, &params)?,
    };
    if json_out {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        println!("{}", hex::encode(&r.root_hash));
    }
    Ok(())
}

fn parse_vm(spec: &str) -> Result<(u32, u64, u32, bool)> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (v, mem, g, model) = match parts.as_slice() {
        [v, mem] => (*v, *mem, "0", false),
        [v, mem, g] => (*v, *mem, *g, false),
        [v, mem, g, "model"] => (*v, *mem, *g, true),
        _ => {
            return Err(Failure::io(anyhow!(
                "--vm {spec:?}: expected VCPUS:MEMORY[:GPUS[:model]], e.g. 8:64G:1 or 8:64G:1:model"
            )))
        }
    };
    Ok((
        v.parse().io_context(|| format!("--vm {spec:?}: vCPUs"))?,
        parse_memory(mem)?,
        g.parse().io_context(|| format!("--vm {spec:?}: GPUs"))?,
        model,
    ))
}

/// Where `measure image` puts its manifest.
pub(crate) struct ImageOutput {
    /// The file to write [default: DIR/measurements.json].
    pub file: Option<PathBuf>,
    /// Also print the manifest on stdout.
    pub json: bool,
}

pub(crate) fn image(
    dir: &Path,
    vms: &[String],
    vcpu_type: &str,
    qemu_version: &str,
    qemu: Option<&Path>,
    name: Option<String>,
    output: &ImageOutput,
) -> Result<()> {
    let json_out = output.json;
    let file = |n: &str| Some(dir.join(n)).filter(|p| p.is_file());
    let fw_tdx = file("firmware-tdx.fd");
    let fw_snp = file("firmware-snp.fd");
    if fw_tdx.is_none() && fw_snp.is_none() {
        return Err(Failure::io(anyhow!(
            "{}: no firmware-tdx.fd or firmware-snp.fd: not an image directory",
            dir.display()
        )));
    }
    let kernel = file("vmlinuz").io_context(|| format!("{}: vmlinuz missing", dir.display()))?;
    let initrd = file("initrd");
    let cmdline = match file("cmdline") {
        Some(p) => std::fs::read_to_string(&p)
            .io_context(|| p.display().to_string())?
            .trim_end_matches('\n')
            .to_string(),
        None => String::new(),
    };
    let config = file("agent-config.json");
    // The image's agent measures the default host configuration `{}` when
    // the host gives none: RTMR3 is predicted for it. A gpu image's boot
    // gate adds the `gpu` event: the GPU count and the image's driver, CC
    // on, dev tools off (nothing card-specific), so it is predicted too.
    let gpu_image = name
        .as_deref()
        .is_some_and(chrysalis_releases::catalogue::is_gpu_release);
    let gpu_driver = match gpu_image {
        true => Some(gpu_driver_version(&dir.join("packages.json"))?),
        false => None,
    };
    let config_bytes = match &config {
        Some(p) => std::fs::read(p).io_context(|| p.display().to_string())?,
        None => chrysalis_releases::DEFAULT_HOST_CONFIGURATION.to_vec(),
    };

    let mut artifacts = std::collections::BTreeMap::new();
    for n in [
        "firmware-tdx.fd",
        "firmware-snp.fd",
        "vmlinuz",
        "initrd",
        "rootfs.img",
        "agent-config.json",
    ] {
        if let Some(p) = file(n) {
            artifacts.insert(n.to_string(), hex::encode(m::tdx::sha256_file(&p)?.0));
        }
    }
    let verity_root_hash = match file("rootfs.img") {
        Some(root) => {
            let salt = match file("verity-salt") {
                Some(p) => std::fs::read_to_string(&p)
                    .io_context(|| p.display().to_string())?
                    .trim()
                    .to_string(),
                None => String::new(),
            };
            let params = m::verity::VerityParams::default().with_salt_hex(&salt)?;
            Some(hex::encode(
                m::verity::verity_root_hash(&root, &params)?.root_hash,
            ))
        }
        None => None,
    };

    let mut configurations = Vec::new();
    for spec in vms {
        let (vcpus, memory_bytes, gpus, model_volume) = parse_vm(spec)?;
        let launch = LaunchArgs {
            firmware: None,
            kernel: Some(kernel.clone()),
            initrd: initrd.clone(),
            cmdline: cmdline.clone(),
            vcpus,
            memory: format!("{}K", memory_bytes >> 10),
            tee: None,
            gpus,
            model_volume,
            qemu_version: qemu_version.to_string(),
            acpi_tables: None,
            qemu: qemu.map(Path::to_path_buf),
            config: config.clone(),
            gpu_driver: gpu_driver.clone(),
            vcpu_type: Some(vcpu_type.to_string()),
            guest_features: None,
            vmm: None,
            json: false,
        };
        let vm = VmConfig {
            vcpus,
            memory_mib: memory_bytes >> 20,
            gpus,
            vmm: "qemu".into(),
            vmm_version: Some(qemu_version.to_string()),
            model_volume,
        };
        if let Some(fw) = &fw_tdx {
            let r = m::tdx::measure(&tdx_inputs(&launch, fw)?)?;
            let h = |o: &Option<[u8; 48]>| o.as_ref().map(hex::encode);
            configurations.push(Configuration {
                name: format!(
                    "tdx-{vcpus}cpu-{}m-{gpus}gpu{}",
                    memory_bytes >> 20,
                    if model_volume { "-model" } else { "" }
                ),
                vm: vm.clone(),
                tdx: Some(TdxExpected {
                    mrtd: hex::encode(r.mrtd),
                    rtmr0: h(&r.rtmr[0]),
                    rtmr1: h(&r.rtmr[1]),
                    rtmr2: h(&r.rtmr[2]),
                    rtmr3: Some(hex::encode(att::runtime_events::rtmr3_expected_with_gpu(
                        &config_bytes,
                        gpu_event_state(gpus, gpu_driver.as_deref()).as_ref(),
                    ))),
                    model: Some(format!(
                        "QEMU {qemu_version}, {} page add; RTMR0 {}",
                        serde_json::to_value(r.model.page_add_order)?
                            .as_str()
                            .unwrap_or("?"),
                        r.model.rtmr0
                    )),
                    // Host-dependent under `-cpu host`; see the generated policy.
                    td_attributes: None,
                    xfam: None,
                }),
                snp: None,
            });
        }
        if let Some(fw) = &fw_snp {
            let r = m::snp::snp_measure(&snp_input(&launch, fw)?)?;
            configurations.push(Configuration {
                name: format!(
                    "snp-{vcpus}cpu-{vcpu_type}{}",
                    if model_volume { "-model" } else { "" }
                ),
                vm,
                tdx: None,
                snp: Some(SnpExpected {
                    measurement: hex::encode(r.launch_digest),
                    vcpu_type: vcpu_type.to_string(),
                    guest_features: format!("{:#x}", r.guest_features),
                    // The guest measures the default configuration `{}`
                    // when the host gives none; `launch` passes this.
                    host_data: Some(hex::encode(crate::launch::config_sha256(&json!({})))),
                }),
            });
        }
    }
    let manifest = MeasurementsManifest {
        schema: m::manifest::SCHEMA_VERSION,
        tool: tool(),
        image: name,
        artifacts,
        verity_root_hash,
        cmdline: Some(cmdline),
        configurations,
        rtmr3_events: Some(m::manifest::Rtmr3Events::default_for(gpu_driver.as_deref())),
    };
    let out = output
        .file
        .clone()
        .unwrap_or_else(|| dir.join("measurements.json"));
    chrysalis_attestation::fsutil::write_atomic(&out, manifest.to_json().as_bytes())?;
    if json_out {
        print!("{}", manifest.to_json());
    } else {
        println!("wrote {}", out.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_specs() {
        assert_eq!(parse_vm("8:64G:1").unwrap(), (8, 64 << 30, 1, false));
        assert_eq!(parse_vm("2:2G").unwrap(), (2, 2 << 30, 0, false));
        assert_eq!(parse_vm("8:64G:1:model").unwrap(), (8, 64 << 30, 1, true));
        assert!(parse_vm("8").is_err());
        assert!(parse_vm("8:64G:1:disk").is_err());
    }

    #[test]
    fn gpu_driver_is_the_module_packages_upstream_version() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("packages.json");
        let write = |v: serde_json::Value| std::fs::write(&f, v.to_string()).unwrap();
        let pkg = |name: &str, version: &str| serde_json::json!({"type": "deb", "name": name, "version": version, "architecture": "amd64"});
        write(serde_json::json!({"manifest_version": 1, "packages": [
            pkg("libcuda1", "550.163.01-4~bpo13+1"),
            pkg("nvidia-open-kernel-dkms", "550.163.01-4~bpo13+1"),
        ]}));
        assert_eq!(gpu_driver_version(&f).unwrap(), "550.163.01");
        write(serde_json::json!({"packages": [pkg("nvidia-kernel-open-dkms", "1:575.57.08-1")]}));
        assert_eq!(gpu_driver_version(&f).unwrap(), "575.57.08");
        // No kernel module: named, never guessed from another package.
        write(serde_json::json!({"packages": [pkg("libcuda1", "550.163.01-4")]}));
        let e = gpu_driver_version(&f).unwrap_err();
        assert!(
            format!("{:#}", e.error).contains("nvidia-open-kernel-dkms"),
            "{:#}",
            e.error
        );
        std::fs::write(&f, "not json").unwrap();
        let e = gpu_driver_version(&f).unwrap_err();
        assert!(format!("{:#}", e.error).contains("not an mkosi package manifest"));
        let e = gpu_driver_version(&dir.path().join("absent.json")).unwrap_err();
        assert!(format!("{:#}", e.error).contains("a gpu image needs its package list"));
    }
}
