//! `chrysalis image build` and `chrysalis image reproduce`: the guest image
//! from `mkosi.conf` (mkosi does the build), then the release directory an
//! operator boots and an auditor rebuilds: artifacts, `cmdline`,
//! `measurements.json` (computed by the measurements crate) and `SHA256SUMS`.
//!
//! Release directory layout (every file listed in `SHA256SUMS`):
//!
//! | file | what |
//! |---|---|
//! | `vmlinuz`, `initrd` | kernel and initrd (mkosi's default initrd) for direct boot |
//! | `cmdline` | the kernel command line, carrying the dm-verity root hash |
//! | `rootfs.img` | the erofs root (dm-verity data device, `/dev/vda` in the guest) |
//! | `rootfs.verity` | its hash tree with superblock (hash device, `/dev/vdb`) |
//! | `verity-salt` | the salt recorded in that superblock (hex) |
//! | `chrysalis.efi` | the same kernel, initrd and root hash as one UKI (disk boot; not measured) |
//! | `firmware-tdx.fd`, `firmware-snp.fd` | TDVF and OVMF AmdSev (`--firmware DIR`, else built by `image/firmware/build.sh` into its hash-checked cache) |
//! | `packages.json` | mkosi's package manifest: every package and version in the image |
//! | `packages.lock` | the package lock the build installed (every `.deb` of the image and of mkosi's tools tree, with SHA-256) |
//! | `firmware-build.txt` | the firmware recipe, sources and toolchain versions (`image/firmware/build.sh`'s record) |
//! | `build-info.json` | profile, package source (the lock's SHA-256), SOURCE_DATE_EPOCH, mkosi and rustc versions, git commit, the exact `image build` arguments |
//! | `measurements.json` | expected TDX/SNP measurements per VM configuration |

mod assemble;
pub mod firmware;
pub mod lock;
pub mod mirror;
mod mkosi;
pub mod model;
mod packages;
mod reproduce;

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::{Args, Subcommand, ValueEnum};

use crate::exit;

pub use assemble::read_sha256sums;

/// Guest device of the verity data (the first virtio disk `chrysalis launch` attaches).
pub const ROOT_DATA_DEVICE: &str = "/dev/vda";
/// Guest device of the verity hash tree (the second virtio disk).
pub const ROOT_HASH_DEVICE: &str = "/dev/vdb";

#[derive(Args)]
pub struct ImageArgs {
    #[command(subcommand)]
    command: ImageCommand,
}

/// Image profile (both come from the same `mkosi.conf`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Profile {
    /// No NVIDIA parts; the deterministic stub engine. Builds and boots in CI.
    Cpu,
    /// NVIDIA open driver with CC support, GSP firmware, CUDA, vLLM.
    Gpu,
}

impl Profile {
    fn name(self) -> &'static str {
        match self {
            Profile::Cpu => "cpu",
            Profile::Gpu => "gpu",
        }
    }
}

/// Options shared by `build` and `reproduce`.
#[derive(Args, Clone)]
pub struct BuildOptions {
    /// The repository root holding mkosi.conf [default: the nearest
    /// directory upwards from the current one that has mkosi.conf].
    #[arg(long, value_name = "DIR")]
    source: Option<PathBuf>,
    /// mkosi to run [default: $CHRYSALIS_MKOSI, else `mkosi` on PATH if it
    /// is 25.x, else the pinned one installed by image/tools/install-mkosi.sh].
    #[arg(long, value_name = "PATH")]
    mkosi: Option<PathBuf>,
    /// Directory with prebuilt chrysalis-agent, chrysalis-gpu-gate, chrysalis-model-volume and chrysalis-stub-engine
    /// [default: build them with `cargo build --release --locked`].
    #[arg(long, value_name = "DIR")]
    binaries: Option<PathBuf>,
    /// Directory with firmware-tdx.fd and firmware-snp.fd (both required)
    /// [default: image/firmware/out when it is a complete, hash-checked
    /// build of this tree's image/firmware/build.sh; else that script runs
    /// first]. Every build measures: without firmware it fails.
    #[arg(long, value_name = "DIR")]
    firmware: Option<PathBuf>,
    /// Install exactly the packages of this lock file [default:
    /// image/locks/PROFILE.lock]. Every locked .deb is fetched (from
    /// --mirror, else deb.debian.org) into a content-addressed cache and
    /// checked against its SHA-256 before anything is built; a file that
    /// cannot be had is named, with where it was expected, and the build
    /// stops (exit 6). The build's apt sees only these files, served on
    /// 127.0.0.1.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["no_lock", "update_lock", "snapshot"])]
    lock: Option<PathBuf>,
    /// Build from the live source list (image/sandbox, or --mirror /
    /// --snapshot) without a lock: the result depends on the day.
    #[arg(long, conflicts_with = "update_lock")]
    no_lock: bool,
    /// Build from the live archives and record every .deb fetched (image
    /// and tools tree) as the new image/locks/PROFILE.lock.
    #[arg(long, conflicts_with = "snapshot")]
    update_lock: bool,
    /// Build from this snapshot.debian.org timestamp (e.g. 20251120T000000Z)
    /// instead of image/sandbox's mirror (implies --no-lock).
    #[arg(long, value_name = "TIMESTAMP", conflicts_with = "mirror")]
    snapshot: Option<String>,
    /// The Debian archive URL to fetch from: the locked files, or with
    /// --no-lock / --update-lock the live packages (its -security sibling
    /// serves trixie-security).
    #[arg(long, value_name = "URL")]
    mirror: Option<String>,
    /// VM configurations to compute measurements for, as
    /// VCPUS:MEMORY[:GPUS] (repeatable).
    #[arg(long = "vm", value_name = "SPEC", default_values_t = ["8:64G:1".to_string(), "2:2G:0".to_string()])]
    vms: Vec<String>,
    /// QEMU version the TDX values assume.
    #[arg(long, default_value = crate::qemu::version::PINNED_QEMU_VERSION)]
    qemu_version: String,
    /// SNP vCPU type the SNP values assume.
    #[arg(long, default_value = "EPYC-v4")]
    vcpu_type: String,
    /// mkosi's output directory; it also keeps mkosi's tools tree between
    /// builds [default: $XDG_CACHE_HOME/chrysalis/mkosi-output].
    #[arg(long, value_name = "DIR")]
    mkosi_output: Option<PathBuf>,
    /// Release name recorded in measurements.json [default: chrysalis-VERSION-PROFILE].
    #[arg(long)]
    release: Option<String>,
}

#[derive(Subcommand)]
// Parsed once per process; boxing variants would only obscure the clap derive.
#[allow(clippy::large_enum_variant)]
enum ImageCommand {
    /// Build the guest image with mkosi and write the release directory:
    /// artifacts, cmdline, measurements.json and SHA256SUMS.
    ///
    /// mkosi's output is logged to DIR/build.log. A first build bootstraps
    /// mkosi's tools tree and takes several minutes.
    Build {
        /// Profile.
        #[arg(long, value_enum, default_value = "cpu")]
        profile: Profile,
        /// Release directory to write (created; existing artifacts replaced).
        #[arg(long, value_name = "DIR", default_value = "chrysalis-image")]
        out: PathBuf,
        #[command(flatten)]
        options: BuildOptions,
        /// Print the resulting measurements.json path and hashes as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Rebuild a published release from the commit it records and compare
    /// every artifact and measurements.json with it.
    ///
    /// Checks first, naming every problem at once: the commit is in this
    /// clone, rustc and QEMU are the recorded versions, every locked package
    /// can still be fetched and matches its SHA-256, the disk has room.
    /// Then checks the commit out in a separate worktree, builds that
    /// commit's chrysalis and runs its `image build` with the release's own
    /// options and lock. Options the release fixes (--vm, --lock, ...) are
    /// refused. Exit 0 REPRODUCED; 3 when an artifact differs (named, with
    /// diffoscope's report when installed); 6 when an input cannot be had
    /// (nothing built); 1 other failures.
    Reproduce(reproduce::ReproduceArgs),
    /// Build a model volume: a read-only erofs image of a model directory
    /// and its dm-verity hash tree (OUT/model.erofs, OUT/model.verity,
    /// OUT/model.json), deterministic, with the root hash to put into the
    /// runtime configuration as {"model_volume": {"verity_root_hash": HEX}}.
    /// Attach it with `chrysalis launch --config FILE --model OUT`; the
    /// guest mounts it at /models only under that measured root hash.
    /// Needs mkfs.erofs (erofs-utils) and veritysetup (cryptsetup-bin).
    Model {
        /// The model directory (e.g. a Hugging Face snapshot; no symlinks).
        source: PathBuf,
        /// Output directory.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Print model.json instead of a summary.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(args: ImageArgs) -> i32 {
    let r = match args.command {
        ImageCommand::Build {
            profile,
            out,
            options,
            json,
        } => build(profile, &out, &options).and_then(|summary| {
            if json {
                println!("{}", serde_json::to_string_pretty(&summary)?);
            } else {
                summary.print();
            }
            Ok(exit::OK)
        }),
        ImageCommand::Reproduce(a) => reproduce::run(&a),
        ImageCommand::Model { source, out, json } => model::build(&source, &out).and_then(|info| {
            if json {
                println!("{}", serde_json::to_string_pretty(&info)?);
            } else {
                println!(
                    "model volume: {} files, {} + {} bytes in {}",
                    info.files,
                    info.data_bytes,
                    info.hash_bytes,
                    out.display()
                );
                println!("verity root hash  {}", info.verity_root_hash);
                println!(
                    "add to the runtime configuration (chrysalis launch --config): {}",
                    info.runtime_config
                );
            }
            Ok(exit::OK)
        }),
    };
    r.unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        if e.downcast_ref::<InputsUnavailable>().is_some() {
            exit::UNAVAILABLE
        } else {
            exit::IO
        }
    })
}

/// Inputs a build is pinned to that cannot be had here (each named).
#[derive(Debug)]
pub struct InputsUnavailable(pub Vec<mirror::Unavailable>);

impl std::fmt::Display for InputsUnavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} pinned input(s) cannot be had; nothing was built:",
            self.0.len()
        )?;
        for u in &self.0 {
            writeln!(f, "  {}\n    expected at {}\n    {}", u.path, u.url, u.why)?;
        }
        if self
            .0
            .iter()
            .any(|u| u.kind == mirror::UnavailableKind::LockedPackage)
        {
            write!(
                f,
                "A locked package gone from every reachable source cannot be replaced by another version without changing the image: \
                 pass --mirror URL for a mirror or archive that still has these files, or build a new release (--update-lock)."
            )
        } else {
            write!(f, "Provide what is named above and run again.")
        }
    }
}

impl std::error::Error for InputsUnavailable {}

/// `$XDG_CACHE_HOME/chrysalis` (or `~/.cache/chrysalis`).
fn cache_dir() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("chrysalis")
}

/// The release name: `--release`, else `chrysalis-VERSION-PROFILE`.
pub fn release_name(o: &BuildOptions, profile: Profile) -> String {
    o.release
        .clone()
        .unwrap_or_else(|| format!("chrysalis-{}-{}", env!("CARGO_PKG_VERSION"), profile.name()))
}

/// A build named with `--release` is published: it comes from a clean,
/// committed tree (build-info.json names the commit a rebuild checks out)
/// and installs a package lock.
fn require_release_inputs(source: &Path, o: &BuildOptions) -> Result<()> {
    if o.no_lock || o.update_lock || o.snapshot.is_some() {
        anyhow::bail!(
            "--release: a release installs a package lock (drop --no-lock/--update-lock/--snapshot; record a lock first with --update-lock and commit it)"
        );
    }
    match assemble::uncommitted_changes(source) {
        Some(changes) if changes.is_empty() => {}
        Some(changes) => anyhow::bail!(
            "--release: the tree has uncommitted changes; a release is built from a commit a rebuild can check out:\n{changes}"
        ),
        None => anyhow::bail!("--release: {} is not a git checkout (git status failed)", source.display()),
    }
    Ok(())
}

/// Runs mkosi and assembles the release directory `out`.
pub fn build(profile: Profile, out: &Path, o: &BuildOptions) -> Result<assemble::Summary> {
    let source = mkosi::find_source(o.source.as_deref())?;
    std::fs::create_dir_all(out)?;
    let out = out.canonicalize()?;
    let work = out.join(".work");
    if work.exists() {
        std::fs::remove_dir_all(&work)?;
    }
    std::fs::create_dir_all(&work)?;
    if o.release.is_some() {
        require_release_inputs(&source, o)?;
    }
    // Packages first: a locked input that cannot be had stops the build
    // before the long steps (binaries, firmware, mkosi).
    let packages = packages::prepare(profile, &source, o, &work)?;
    let binaries = match &o.binaries {
        Some(d) => d.clone(),
        None => mkosi::build_binaries(&source)?,
    };
    let stage = mkosi::stage_binaries(&binaries, &work.join("binaries"))?;
    // The image names its release for the agent's certificate claims (a
    // hint clients show; the registers are what they check). The SHA-256
    // of measurements.json cannot be inside the image it measures.
    let ids = stage.join("usr/lib/chrysalis");
    std::fs::create_dir_all(&ids)?;
    std::fs::write(
        ids.join("image-id.json"),
        serde_json::json!({ "release": release_name(o, profile) }).to_string() + "\n",
    )?;
    let repo = packages.source.clone();
    let sandbox = packages.sandbox.clone();
    let package_cache = packages.package_cache.clone();
    let tool = mkosi::find_mkosi(o.mkosi.as_deref(), &source)?;
    let mkosi_out = match &o.mkosi_output {
        Some(d) => d.clone(),
        None => cache_dir().join("mkosi-output"),
    };
    packages.keep_tools_tree_only_if_same_source(&mkosi_out)?;
    // The initrd's emergency/rescue power-off, as a package the default
    // initrd installs (mkosi gives the initrd packages, not extra trees).
    let mut package_dirs = vec![mkosi::build_initrd_package(
        &source,
        &work.join("initrd-package"),
    )?];
    let wheel_dir = match profile {
        Profile::Gpu => {
            let debs = cache_dir().join("debs");
            mkosi::fetch_pinned_debs(&source, &debs, &repo)?;
            package_dirs.push(debs);
            let wheels = cache_dir().join("wheels");
            mkosi::fetch_pinned_wheels(&source, &wheels)?;
            Some(wheels)
        }
        Profile::Cpu => None,
    };
    let run = mkosi::Run {
        mkosi: &tool,
        source: &source,
        profile,
        extra_tree: &stage,
        sandbox: sandbox.as_deref(),
        output_dir: &mkosi_out,
        log: &out.join("build.log"),
        package_dirs: &package_dirs,
        wheel_dir: wheel_dir.as_deref(),
        package_cache: package_cache.as_deref(),
    };
    let started = std::time::Instant::now();
    // The firmware first: a build that cannot measure fails before the
    // long mkosi run, not after it.
    let firmware = firmware::ensure(o.firmware.as_deref(), &source, &work.join("firmware.log"))?;
    run.build()?;
    let repo = packages.finish(&source, &out, &mkosi_out)?.unwrap_or(repo);
    let summary = assemble::assemble(&assemble::Inputs {
        mkosi_out: &mkosi_out,
        out: &out,
        profile,
        firmware: &firmware,
        source: &source,
        package_source: &repo,
        mkosi_version: &run.version()?,
        options: o,
        build_seconds: started.elapsed().as_secs(),
        rustc: if o.binaries.is_some() {
            None
        } else {
            Some(mkosi::rustc_version()?)
        },
    })?;
    std::fs::remove_dir_all(&work)?;
    Ok(summary)
}
