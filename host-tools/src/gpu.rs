//! `chrysalis gpu`: verify recorded NVIDIA H100 CC evidence, show the local
//! GPUs' confidential-computing state.

use std::path::{Path, PathBuf};

use chrysalis_gpu::nvml::NvmlSource;
use chrysalis_gpu::ocsp::OcspClient;
use chrysalis_gpu::{
    check_policy, verify_bundle, verify_gpu, Collateral, Error, GpuEvidence, GpuPolicy,
};
use clap::{Args, Subcommand};
use serde_json::json;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::exit;

#[derive(Args)]
pub struct GpuArgs {
    #[command(subcommand)]
    command: GpuCommand,
}

#[derive(Subcommand)]
enum GpuCommand {
    /// Verify recorded GPU evidence: device certificate chain to the pinned
    /// NVIDIA Device Identity CA, report signature, nonce, measurements
    /// against signed RIMs, OCSP status (from cache or network).
    #[command(
        after_help = "Inputs are the formats of NVIDIA's SDK samples: --evidence is the hex attestation report\n(or a chrysalis-gpu-evidence/1 bundle JSON, which carries its own chains and CC state),\n--certs the PEM device chain (leaf first), --rim each driver/VBIOS SWID tag.\n\nWithout --policy only authenticity is judged (chain, signature, nonce, RIMs if given,\nOCSP where available); the SDK report format carries no CC mode, which is then reported\nas not checked. With --policy the [gpu] section decides (CC mode on, dev tools off,\nminimum driver, OCSP required, mismatch tolerance).\n\nExamples:\n  chrysalis gpu verify --evidence hopperAttestationReport.txt --certs hopperCertChain.txt \\\n      --nonce 931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb --offline\n  chrysalis gpu verify --evidence r.txt --certs c.pem --rim driver.swidtag --rim vbios.swidtag \\\n      --nonce HEX --at 2024-06-01T00:00:00Z --offline --json\n\nExit codes: 0 accepted, 1 I/O, 2 malformed input, 3 verification failed (chain, signature,\nnonce, RIM signature or measurement mismatch, revoked/stale OCSP), 4 rejected by policy."
    )]
    Verify {
        /// Attestation report (hex text) or evidence bundle (JSON).
        #[arg(long, value_name = "FILE")]
        evidence: PathBuf,
        /// Device certificate chain, PEM, leaf first (required for a hex report).
        #[arg(long, value_name = "FILE")]
        certs: Option<PathBuf>,
        /// A reference integrity manifest (SWID tag XML); repeat for driver and VBIOS.
        #[arg(long = "rim", value_name = "FILE")]
        rims: Vec<PathBuf>,
        /// The 32-byte nonce the report must carry, hex.
        #[arg(long, value_name = "HEX")]
        nonce: String,
        /// Verification time (RFC 3339); default now.
        #[arg(long, value_name = "RFC3339")]
        at: Option<String>,
        /// Never use the network: OCSP answers (and RIMs, with
        /// --rim-service/--rim-cache) only from the cache.
        #[arg(long)]
        offline: bool,
        /// Fetch the driver and VBIOS RIMs the --rim files lack, by the ids
        /// the signed report gives, from this RIM service (NVIDIA's:
        /// https://rim.attestation.nvidia.com). Untrusted: checked like a
        /// --rim file (signature, chain to the pinned root, version).
        #[arg(long, value_name = "URL")]
        rim_service: Option<String>,
        /// Keep fetched RIMs here (`ID.xml`); alone, implies NVIDIA's RIM
        /// service; with --offline only this cache answers.
        #[arg(long, value_name = "DIR")]
        rim_cache: Option<PathBuf>,
        /// OCSP cache directory (default: $XDG_CACHE_HOME/chrysalis/ocsp or ~/.cache/chrysalis/ocsp).
        #[arg(long, value_name = "DIR")]
        ocsp_cache: Option<PathBuf>,
        /// Policy file whose [gpu] section is applied.
        #[arg(long, value_name = "FILE")]
        policy: Option<PathBuf>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Collect this machine's GPU evidence for a nonce through NVML and write
    /// the evidence bundle (JSON) to --out. Does not verify it and never sets
    /// the GPUs ready; verify it with `chrysalis gpu verify --evidence FILE`.
    Collect {
        /// The 32-byte nonce, hex.
        #[arg(long, value_name = "HEX")]
        nonce: String,
        /// Where to write the bundle JSON.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Show the local GPUs' confidential-computing state (through NVML).
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(args: GpuArgs) -> i32 {
    match args.command {
        GpuCommand::Verify {
            evidence,
            certs,
            rims,
            nonce,
            at,
            offline,
            rim_service,
            rim_cache,
            ocsp_cache,
            policy,
            json,
        } => {
            let inputs = VerifyInputs {
                evidence,
                certs,
                rims,
                nonce,
                at,
                offline,
                rim_service,
                rim_cache,
                ocsp_cache,
                policy,
            };
            match verify(&inputs) {
                Ok(out) => {
                    print_ok(&out, json);
                    exit::OK
                }
                Err(Failure::Lib(e)) => fail(&e, json),
                Err(Failure::Io(m)) => {
                    if json {
                        println!(
                            "{}",
                            json!({"accepted": false, "error": {"category": "io", "message": m}})
                        );
                    } else {
                        eprintln!("error: {m}");
                    }
                    exit::IO
                }
            }
        }
        GpuCommand::Status { json } => status(json),
        GpuCommand::Collect { nonce, out } => collect(&nonce, &out),
    }
}

fn collect(nonce: &str, out: &Path) -> i32 {
    use chrysalis_gpu::GpuEvidenceSource;
    let Some(nonce) = parse_nonce(nonce) else {
        eprintln!("error: --nonce must be 32 bytes of hex (64 digits)");
        return exit::MALFORMED;
    };
    let result = NvmlSource::open().and_then(|mut s| s.collect(&nonce));
    match result {
        Ok(bundle) => {
            let tmp = out.with_extension("tmp");
            if let Err(e) = std::fs::write(&tmp, &bundle).and_then(|_| std::fs::rename(&tmp, out)) {
                eprintln!("error: {}: {e}", out.display());
                return exit::IO;
            }
            println!(
                "wrote {} ({} bytes): NOT VERIFIED, run `chrysalis gpu verify --evidence {}`",
                out.display(),
                bundle.len(),
                out.display()
            );
            exit::OK
        }
        Err(e) => fail(&e, false),
    }
}

fn parse_nonce(s: &str) -> Option<[u8; 32]> {
    hex::decode(s.trim().trim_start_matches("0x"))
        .ok()
        .and_then(|v| v.try_into().ok())
}

struct VerifyInputs {
    evidence: PathBuf,
    certs: Option<PathBuf>,
    rims: Vec<PathBuf>,
    nonce: String,
    at: Option<String>,
    offline: bool,
    rim_service: Option<String>,
    rim_cache: Option<PathBuf>,
    ocsp_cache: Option<PathBuf>,
    policy: Option<PathBuf>,
}

struct Outcome {
    policy_label: String,
    gpus: Vec<chrysalis_gpu::VerifiedGpu>,
    bundle_sha384: Option<String>,
    at: String,
}

/// A failure of `gpu verify`: a library error (its category decides the
/// exit code) or a file that could not be read (exit 1).
enum Failure {
    Lib(Error),
    Io(String),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Lib(e)
    }
}

fn read(path: &Path) -> Result<Vec<u8>, Failure> {
    std::fs::read(path).map_err(|e| Failure::Io(format!("{}: {e}", path.display())))
}

fn malformed(what: &'static str, reason: impl Into<String>) -> Error {
    Error::Malformed {
        what,
        reason: reason.into(),
    }
}

fn default_cache() -> Option<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(PathBuf::from(x).join("chrysalis/ocsp"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/chrysalis/ocsp"))
}

fn verify(i: &VerifyInputs) -> Result<Outcome, Failure> {
    let nonce: [u8; 32] = parse_nonce(&i.nonce)
        .ok_or_else(|| malformed("--nonce", "must be 32 bytes of hex (64 digits)"))?;
    let at = match &i.at {
        Some(s) => OffsetDateTime::parse(s, &Rfc3339)
            .map_err(|e| Failure::Lib(malformed("--at", format!("{s:?}: {e}"))))?,
        None => OffsetDateTime::now_utc(),
    };
    let (policy, policy_label) = match &i.policy {
        Some(p) => (GpuPolicy::from_file(p)?, format!("policy {}", p.display())),
        None => (
            GpuPolicy::authenticity_only(),
            "authenticity only (no --policy: CC mode, dev tools and driver minimum not judged)"
                .to_string(),
        ),
    };
    let cache = i.ocsp_cache.clone().or_else(default_cache);
    let mut collateral = Collateral::from_rim_files(&i.rims, OcspClient::new(cache, i.offline))?;
    if i.rim_service.is_some() || i.rim_cache.is_some() {
        let url = i
            .rim_service
            .as_deref()
            .unwrap_or(chrysalis_gpu::rim_service::NVIDIA_RIM_SERVICE);
        collateral = collateral.with_rim_service(chrysalis_gpu::RimServiceClient::new(
            url,
            i.rim_cache.clone(),
            i.offline,
        )?);
    }
    let evidence = read(&i.evidence)?;
    let at_s = at.format(&Rfc3339).unwrap_or_default();
    if evidence.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
        let set = verify_bundle(&evidence, &collateral, &policy, &nonce, at)?;
        return Ok(Outcome {
            policy_label,
            bundle_sha384: Some(hex::encode(set.bundle_digest())),
            gpus: set.gpus().to_vec(),
            at: at_s,
        });
    }
    let certs = i.certs.as_ref().ok_or_else(|| {
        Failure::Io("--certs FILE is required with a hex attestation report".into())
    })?;
    let ev = GpuEvidence {
        index: 0,
        name: None,
        report: String::from_utf8(evidence)
            .map_err(|_| Failure::Lib(malformed("evidence", "not hex text")))?
            .split_whitespace()
            .collect(),
        cert_chain: String::from_utf8(read(certs)?)
            .map_err(|_| Failure::Lib(malformed("certificate chain", "not PEM text")))?,
        cc: None,
    };
    let v = verify_gpu(&ev, &collateral, &policy, &nonce, at)?;
    check_policy(&v, &policy)?;
    Ok(Outcome {
        policy_label,
        gpus: vec![v],
        bundle_sha384: None,
        at: at_s,
    })
}

fn fail(e: &Error, json_out: bool) -> i32 {
    let cat = e.category();
    if json_out {
        println!(
            "{}",
            json!({"accepted": false, "error": {"category": cat.name(), "message": e.to_string()}})
        );
    } else {
        eprintln!("error: {e}");
        eprintln!("REJECTED ({})", cat.name());
    }
    crate::exit::code(cat)
}

fn print_ok(o: &Outcome, json_out: bool) {
    if json_out {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "accepted": true,
                "policy": o.policy_label,
                "at": o.at,
                "bundle_sha384": o.bundle_sha384,
                "gpus": o.gpus,
            }))
            .unwrap_or_default()
        );
        return;
    }
    for g in &o.gpus {
        println!(
            "GPU {}: {}{}",
            g.index(),
            g.model(),
            g.name().map(|n| format!(" ({n})")).unwrap_or_default()
        );
        println!("  device chain      verified to the pinned NVIDIA Device Identity CA ({} certificates)", g.device_chain().len());
        println!("  report signature  verified (ECDSA P-384, device leaf key)");
        println!("  nonce             matches");
        println!(
            "  driver / VBIOS    {} / {}",
            g.driver_version().unwrap_or("(not in report)"),
            g.vbios_version().unwrap_or("(not in report)")
        );
        match g.cc() {
            Some(cc) => println!(
                "  CC mode           {} (dev tools {}) [driver-reported]",
                if cc.system_cc_enabled { "on" } else { "OFF" },
                if cc.devtools_mode { "ON" } else { "off" }
            ),
            None => {
                println!("  CC mode           not carried by this evidence format: NOT CHECKED")
            }
        }
        match g.rim() {
            Some(r) => {
                let name = |x: &Option<chrysalis_gpu::verify::RimRef>| {
                    x.as_ref().map(|r| r.version.clone()).unwrap_or_default()
                };
                println!(
                    "  RIMs              driver {} + VBIOS {}: signatures verified; {} measurements compared, {} mismatched{}",
                    name(&r.driver_rim),
                    name(&r.vbios_rim),
                    r.compared,
                    r.mismatched.len(),
                    if r.versions_match { "" } else { " (RIM versions differ from the report's)" }
                );
            }
            None => println!(
                "  RIMs              NOT COMPARED (no --rim given): measurements unchecked"
            ),
        }
        let oc = g.ocsp();
        if !oc.checks.is_empty() {
            println!(
                "  OCSP              {} certificate(s) good",
                oc.checks.len()
            );
        }
        if let Some(why) = &oc.not_checked {
            println!("  OCSP              NOT CHECKED: {why}");
        }
    }
    if let Some(d) = &o.bundle_sha384 {
        println!("bundle sha384      {d}");
    }
    println!("checked at         {}", o.at);
    println!("ACCEPTED: {}", o.policy_label);
}

fn status(json_out: bool) -> i32 {
    let src = match NvmlSource::open() {
        Ok(s) => s,
        Err(e) => {
            if json_out {
                println!("{}", json!({"driver": false, "error": e.to_string()}));
            } else {
                eprintln!("{e}");
            }
            return exit::IO;
        }
    };
    match src.status() {
        Ok(s) => {
            if json_out {
                println!("{}", serde_json::to_string_pretty(&s).unwrap_or_default());
            } else {
                println!(
                    "driver            {}",
                    s.driver_version.as_deref().unwrap_or("(unknown)")
                );
                match s.cc {
                    Some(cc) => println!(
                        "CC                {} (dev tools {})",
                        if cc.system_cc_enabled { "on" } else { "OFF" },
                        if cc.devtools_mode { "ON" } else { "off" }
                    ),
                    None => println!("CC                (not readable)"),
                }
                for g in &s.gpus {
                    println!(
                        "GPU {}             {} VBIOS {} ready={}",
                        g.index,
                        g.name.as_deref().unwrap_or("?"),
                        g.vbios_version.as_deref().unwrap_or("?"),
                        g.ready.map(|r| r.to_string()).unwrap_or("?".into())
                    );
                }
            }
            exit::OK
        }
        Err(e) => fail(&e, json_out),
    }
}
