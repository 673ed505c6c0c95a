//! `chrysalis attest …`: show, verify, generate evidence; fetch collateral.

use crate::client::Failure;
use std::path::{Path, PathBuf};

use anyhow::Context;
use chrysalis_attestation as att;
use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;

use att::policy::{CheckContext, SIMULATED_WARNING};
use att::verifier::{Anchors, Collateral};
use att::{Error, Evidence, Identity, Policy, TcbStatus, Tee, VerifiedEvidence};

use crate::exit;

#[derive(Args)]
pub struct AttestArgs {
    #[command(subcommand)]
    command: AttestCommand,
}

#[derive(Subcommand)]
enum AttestCommand {
    /// Decode evidence and print every field. Accepts binary, hex (with or
    /// without 0x), base64, or JSON with a `quote`/`report` field; detects TDX
    /// quote vs SNP report. Decoding is not verification.
    Show {
        /// Evidence file.
        file: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Verify evidence against its collateral and a root of trust, then judge
    /// it with a policy. Exits 0 only when accepted.
    ///
    /// Without --policy, only authenticity and TCB status are judged: UpToDate
    /// is accepted, other statuses only if listed in --accept-tcb; debug
    /// guests and simulated evidence are always rejected unless allowed.
    #[command(
        after_help = "Examples:\n  chrysalis attest verify quote.bin --collateral collateral.json --at 2025-07-19T10:00:34Z\n  chrysalis attest verify report.bin --collateral vcek.der --policy policy.toml --json\n\nExit codes: 0 accepted, 2 malformed input, 3 verification failed (incl. expired/revoked collateral), 4 rejected by policy/TCB."
    )]
    Verify(VerifyArgs),
    /// Produce evidence from a provider: `tsm` (Linux configfs-tsm, kernel ≥ 6.7,
    /// inside a TDX or SNP guest), `ioctl` (/dev/tdx_guest, /dev/sev-guest),
    /// `sim` (simulated, signed by roots generated now; writes the matching
    /// collateral beside --out).
    Generate(GenerateArgs),
    /// Collateral: fetch from Intel PCS/PCCS or AMD KDS into a cache directory.
    Collateral {
        #[command(subcommand)]
        command: CollateralCommand,
    },
}

#[derive(Args)]
struct VerifyArgs {
    /// Evidence file (any encoding `show` accepts).
    file: PathBuf,
    /// TDX: a QuoteCollateralV3 JSON or a PCS response directory.
    /// SNP: the VCEK/VLEK certificate (DER or PEM), optionally also the
    /// ASK/ARK chain (the AMD roots are pinned). Repeatable.
    #[arg(long, required = true)]
    collateral: Vec<PathBuf>,
    /// Verify as of this time (RFC 3339, e.g. 2025-07-19T10:00:34Z). Default: now.
    #[arg(long)]
    at: Option<String>,
    /// Policy file (TOML; see README "Policy file").
    #[arg(long)]
    policy: Option<PathBuf>,
    /// Also accept these TCB statuses, comma-separated (e.g. SWHardeningNeeded,OutOfDate).
    #[arg(long, value_delimiter = ',')]
    accept_tcb: Vec<String>,
    /// Accept SIMULATED evidence (development only; proves nothing).
    #[arg(long)]
    allow_sim: bool,
    /// Expected report_data (hex, zero-padded to 64 bytes); overrides the policy's.
    #[arg(long)]
    report_data: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum ProviderName {
    /// Linux configfs-tsm (/sys/kernel/config/tsm/report).
    Tsm,
    /// Legacy guest device ioctls.
    Ioctl,
    /// Simulated TEE (development).
    Sim,
}

#[derive(Clone, Copy, ValueEnum)]
enum TeeArg {
    Tdx,
    Snp,
}

#[derive(Args)]
struct GenerateArgs {
    /// Where the evidence comes from.
    #[arg(long, value_enum)]
    provider: ProviderName,
    /// The 64 bytes to bind (hex, up to 64 bytes, zero-padded).
    #[arg(long)]
    report_data: String,
    /// TEE to simulate (sim only; real providers report their own). Default
    /// tdx, or the TEE of --sim-configuration.
    #[arg(long, value_enum)]
    tee: Option<TeeArg>,
    /// Sim only: play a node of this published release (compiled in, e.g.
    /// chrysalis-0.2.0-cpu); needs --sim-configuration. TDX takes MRTD and
    /// RTMR0-2 from it (a null register keeps the simulator's value, with a
    /// warning), and RTMR3 is the replay of the image's boot events for the
    /// runtime configuration; SNP takes MEASUREMENT, and HOST_DATA is the
    /// SHA-256 of the runtime configuration.
    #[arg(long, value_name = "NAME", requires = "sim_configuration")]
    sim_release: Option<String>,
    /// Sim only: the configuration of --sim-release (e.g. snp-2cpu-EPYC-v4).
    #[arg(long, value_name = "NAME", requires = "sim_release")]
    sim_configuration: Option<String>,
    /// Sim only: the runtime configuration (JSON object) the node measured
    /// at boot, as the agent does (TDX: RTMR3 `config` and `boot-done`
    /// events; SNP: HOST_DATA = SHA-256 of its canonical form). Default
    /// with --sim-release: `{}`, what the image measures when the host
    /// passes none.
    #[arg(long, value_name = "FILE")]
    sim_runtime_config: Option<PathBuf>,
    /// Sim only: set one report field, re-signed by the simulated hardware
    /// (repeatable, applied last). Byte fields as hex in report byte order,
    /// integer fields as decimal or 0x-hex: rtmr0=<96 hex>, vmpl=1,
    /// td_attributes=0x10000001, policy=0xb0000 (README lists every field).
    #[arg(long = "sim-set", value_name = "FIELD=VALUE")]
    sim_set: Vec<String>,
    /// Output file (binary evidence). Written atomically.
    #[arg(long)]
    out: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum CollateralCommand {
    /// Fetch the collateral for a piece of evidence into DIR (a cache that
    /// `verify --collateral DIR` reads offline). Collateral servers are
    /// untrusted: everything fetched is verified by signature at use.
    Fetch {
        /// Evidence file the collateral is for.
        file: PathBuf,
        /// TDX: base URL of an Intel PCS or PCCS (e.g. https://api.trustedservices.intel.com).
        #[arg(long)]
        pccs: Option<String>,
        /// SNP: base URL of the AMD KDS.
        #[arg(long, default_value = "https://kdsintf.amd.com")]
        kds: String,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
    },
}

pub fn run(args: AttestArgs) -> i32 {
    match args.command {
        AttestCommand::Show { file, json } => show(&file, json),
        AttestCommand::Verify(v) => verify(v),
        AttestCommand::Generate(g) => generate(g),
        AttestCommand::Collateral { command } => match command {
            CollateralCommand::Fetch {
                file,
                pccs,
                kds,
                out,
            } => fetch(&file, pccs.as_deref(), &kds, &out),
        },
    }
}

fn fail(e: &Error, json_out: bool) -> i32 {
    if json_out {
        println!(
            "{}",
            json!({"accepted": false, "error": {"category": exit::category_name(e), "message": e.to_string()}})
        );
    } else {
        eprintln!("error: {e}");
    }
    exit::code_for(e)
}

fn show(file: &Path, json_out: bool) -> i32 {
    let decoded = match att::verifier::read_evidence(file) {
        Ok(d) => d,
        Err(e) => return fail(&e, json_out),
    };
    let simulated_hint = match &decoded.evidence {
        Evidence::Tdx(q) => q.claims_simulated(),
        Evidence::Snp(r) => r.chip_id.starts_with(att::simulated::SIM_MARKER),
    };
    if json_out {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "tee": decoded.evidence.tee(),
                "encoding": decoded.encoding,
                "length": decoded.bytes.len(),
                "trailing_bytes_ignored": decoded.trailing,
                "claims_simulated": simulated_hint,
                "verified": false,
                "evidence": decoded.evidence,
            }))
            .unwrap_or_default()
        );
        return exit::OK;
    }
    println!(
        "{} evidence, {} bytes ({:?} input){}",
        decoded.evidence.tee().to_string().to_uppercase(),
        decoded.bytes.len(),
        decoded.encoding,
        if decoded.trailing > 0 {
            format!(", {} trailing bytes ignored", decoded.trailing)
        } else {
            String::new()
        }
    );
    if simulated_hint {
        println!("!!! marked SIMULATED (Chrysalis sim provider): not from real hardware !!!");
    }
    println!("NOT VERIFIED: this only decodes; use `chrysalis attest verify` to check it.");
    match &decoded.evidence {
        Evidence::Tdx(q) => print_tdx_quote(q),
        Evidence::Snp(r) => print_snp_report(r),
    }
    exit::OK
}

fn print_tdx_quote(q: &att::tdx::TdxQuote) {
    let h = &q.header;
    let b = q.td_report();
    println!("header:");
    println!("  version             {}", h.version);
    println!(
        "  attestation key     {} (ECDSA-P256)",
        h.attestation_key_type
    );
    println!("  tee type            {:#x}", h.tee_type);
    println!("  qe svn / pce svn    {} / {}", h.qe_svn, h.pce_svn);
    println!("  qe vendor id        {}", hex::encode(h.qe_vendor_id));
    println!("  user data           {}", hex::encode(h.user_data));
    println!(
        "body: TD report {}",
        match q.body {
            att::tdx::TdReportBody::Td10(_) => "1.0",
            att::tdx::TdReportBody::Td15(_) => "1.5",
        }
    );
    println!("  tee_tcb_svn         {}", hex::encode(b.tee_tcb_svn));
    println!("  mrseam              {}", hex::encode(b.mrseam));
    println!("  mrsignerseam        {}", hex::encode(b.mrsignerseam));
    println!("  seam attributes     {}", hex::encode(b.seam_attributes));
    println!(
        "  td attributes       {}{}",
        hex::encode(b.td_attributes),
        if b.is_debug() {
            "  (DEBUG)"
        } else if b.is_under_debug() {
            "  (TD UNDER DEBUG: TUD bits set)"
        } else {
            ""
        }
    );
    println!("  xfam                {}", hex::encode(b.xfam));
    println!("  mrtd                {}", hex::encode(b.mrtd));
    println!("  mrconfigid          {}", hex::encode(b.mrconfigid));
    println!("  mrowner             {}", hex::encode(b.mrowner));
    println!("  mrownerconfig       {}", hex::encode(b.mrownerconfig));
    for (i, r) in b.rtmr.iter().enumerate() {
        println!("  rtmr{i}               {}", hex::encode(r));
    }
    println!("  report data         {}", hex::encode(b.report_data));
    if let att::tdx::TdReportBody::Td15(t) = &q.body {
        println!("  tee_tcb_svn2        {}", hex::encode(t.tee_tcb_svn2));
        println!("  mrservicetd         {}", hex::encode(t.mrservicetd));
    }
    println!("signature:");
    println!(
        "  ecdsa signature     {}",
        hex::encode(q.signature.signature)
    );
    println!(
        "  attestation key     {}",
        hex::encode(q.signature.attestation_key)
    );
    if let Some(qe) = q.qe_report_data() {
        println!(
            "  qe report mrenclave {}",
            hex::encode(qe.qe_report.mr_enclave)
        );
        println!(
            "  qe report mrsigner  {}",
            hex::encode(qe.qe_report.mr_signer)
        );
        println!(
            "  qe isvprodid/isvsvn {} / {}",
            qe.qe_report.isv_prod_id, qe.qe_report.isv_svn
        );
        println!("  qe auth data        {} bytes", qe.qe_auth_data.len());
    }
    if let Some(pem) = q.pck_chain_pem() {
        let n = String::from_utf8_lossy(pem)
            .matches("BEGIN CERTIFICATE")
            .count();
        println!(
            "  pck chain           {n} certificates (PEM, {} bytes)",
            pem.len()
        );
    }
}

fn print_snp_report(r: &att::snp::SnpReport) {
    let j = serde_json::to_value(r).unwrap_or_default();
    println!("SNP attestation report:");
    if let serde_json::Value::Object(map) = j {
        for (k, v) in map {
            let v = match v {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            println!("  {k:<22}{v}");
        }
    }
    if r.policy.debug() {
        println!("  !!! guest policy allows DEBUG: the host can read guest memory !!!");
    }
}

fn parse_at(at: Option<&str>) -> Result<time::OffsetDateTime, Error> {
    match at {
        Some(s) => att::timefmt::parse_rfc3339(s),
        None => Ok(time::OffsetDateTime::now_utc()),
    }
}

fn verify(a: VerifyArgs) -> i32 {
    let json_out = a.json;
    let outcome = (|| -> Result<(VerifiedEvidence, att::Decision), Error> {
        let now = parse_at(a.at.as_deref())?;
        let mut policy = match &a.policy {
            Some(p) => Policy::load(p)?,
            None => Policy::default(),
        };
        let statuses = a
            .accept_tcb
            .iter()
            .map(|s| s.parse::<TcbStatus>())
            .collect::<Result<Vec<_>, _>>()?;
        policy = policy.accept_tcb(statuses);
        if a.allow_sim {
            policy = policy.allow_simulated(true);
        }
        if let Some(rd) = &a.report_data {
            policy.report_data = Some(rd.clone());
            policy.validate()?;
        }
        let decoded = att::verifier::read_evidence(&a.file)?;
        let collateral = Collateral::load(decoded.evidence.tee(), &a.collateral)?;
        let verified = att::verifier::verify(&decoded, &collateral, &Anchors::production(), now)?;
        let decision = policy.check(
            &verified,
            &CheckContext {
                now: Some(now),
                ..Default::default()
            },
        );
        Ok((verified, decision))
    })();
    match outcome {
        Err(e) => fail(&e, json_out),
        Ok((ev, decision)) => {
            if json_out {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&json!({
                        "accepted": decision.accepted,
                        "simulated": decision.simulated,
                        "warning": decision.simulated.then_some(SIMULATED_WARNING),
                        "decision": decision,
                        "evidence": ev,
                    }))
                    .unwrap_or_default()
                );
            } else {
                print_decision(&ev, &decision);
            }
            if decision.accepted {
                exit::OK
            } else {
                exit::REJECTED
            }
        }
    }
}

fn print_decision(ev: &VerifiedEvidence, d: &att::Decision) {
    let banner = "!".repeat(78);
    if d.simulated {
        println!("{banner}\n!!! {SIMULATED_WARNING}\n{banner}");
    }
    println!(
        "decision: {}",
        if d.accepted { "ACCEPTED" } else { "REJECTED" }
    );
    println!(
        "tee: {}   anchor: {}   tcb status: {}",
        ev.tee(),
        match ev.anchor() {
            att::TrustAnchor::Production => "production vendor root",
            att::TrustAnchor::Simulated => "SIMULATED root",
            att::TrustAnchor::Custom => "custom root",
        },
        ev.tcb_status()
    );
    if !ev.advisory_ids().is_empty() {
        println!("advisories: {}", ev.advisory_ids().join(", "));
    }
    for n in ev.tcb_notes() {
        println!("tcb: {n}");
    }
    match ev.identity() {
        Identity::Tdx(id) => {
            println!("mrtd:        {}", hex::encode(id.mrtd));
            for (i, r) in id.rtmr.iter().enumerate() {
                println!("rtmr{i}:       {}", hex::encode(r));
            }
            println!("mrseam:      {}", hex::encode(id.mrseam));
            println!("fmspc:       {}", hex::encode(id.fmspc));
        }
        Identity::Snp(id) => {
            println!(
                "product:     {:?} ({})",
                id.product,
                if id.vlek { "VLEK" } else { "VCEK" }
            );
            println!("measurement: {}", hex::encode(id.measurement));
            println!("host_data:   {}", hex::encode(id.host_data));
            println!("policy:      {:#x}   vmpl: {}", id.policy, id.vmpl);
            println!(
                "tcb:         bootloader {} tee {} snp {} microcode {}{}",
                id.reported_tcb.bootloader(),
                id.reported_tcb.tee(),
                id.reported_tcb.snp(),
                id.reported_tcb.microcode(),
                id.reported_tcb
                    .fmc()
                    .map(|f| format!(" fmc {f}"))
                    .unwrap_or_default()
            );
        }
    }
    println!("report_data: {}", hex::encode(ev.report_data()));
    if ev.debug() {
        println!("debug:       YES (the host can read guest memory)");
    }
    if let Some(exp) = ev.collateral_expires() {
        println!(
            "collateral valid until {}",
            att::timefmt::format_rfc3339(exp)
        );
    }
    for w in &d.warnings {
        println!("warning: {w}");
    }
    for r in &d.reasons {
        println!("rejected: {r}");
    }
    if d.simulated {
        println!("{banner}");
    }
}

fn generate(g: GenerateArgs) -> i32 {
    let json_out = g.json;
    let mut notes: Vec<String> = Vec::new();
    let result = (|| -> Result<serde_json::Value, Failure> {
        let rd = parse_report_data(&g.report_data).map_err(Failure::io)?;
        if !matches!(g.provider, ProviderName::Sim)
            && (g.sim_release.is_some() || g.sim_runtime_config.is_some() || !g.sim_set.is_empty())
        {
            return Err(Failure::io(anyhow::anyhow!(
                "--sim-release/--sim-configuration/--sim-runtime-config/--sim-set are for --provider sim only"
            )));
        }
        let (provider, sim): (
            Box<dyn att::provider::EvidenceProvider>,
            Option<chrysalis_sim::SimProvider>,
        ) = match g.provider {
            ProviderName::Tsm => (
                Box::new(chrysalis_provider::tsm::TsmProvider::system()?),
                None,
            ),
            ProviderName::Ioctl => {
                use chrysalis_provider::ioctl::{SevGuestProvider, TdxGuestProvider};
                let sev = SevGuestProvider::system();
                let p: Box<dyn att::provider::EvidenceProvider> = if sev.probe().is_ok() {
                    Box::new(sev)
                } else {
                    Box::new(TdxGuestProvider::system())
                };
                (p, None)
            }
            ProviderName::Sim => {
                let sim = sim_provider(&g, &mut notes)?;
                (Box::new(sim.clone()), Some(sim))
            }
        };

        if let (Some(tee), None) = (g.tee, &sim) {
            let want = match tee {
                TeeArg::Tdx => Tee::Tdx,
                TeeArg::Snp => Tee::Snp,
            };
            if provider.tee() != want {
                return Err(Failure::io(anyhow::anyhow!(
                    "--tee {want} requested but the {} provider produces {} evidence",
                    provider.name(),
                    provider.tee()
                )));
            }
        }
        let raw = provider.evidence(&rd)?;
        att::fsutil::write_atomic(&g.out, &raw.bytes)?;
        let mut written = vec![g.out.display().to_string()];
        if let Some(aux) = &raw.aux {
            let p = sidecar(&g.out, "aux.bin");
            att::fsutil::write_atomic(&p, aux)?;
            written.push(p.display().to_string());
        }
        let mut collateral = None;
        if let Some(sim) = &sim {
            let p = sim.write_collateral(&g.out)?;
            written.push(p.display().to_string());
            collateral = Some(p);
        }
        Ok(json!({
            "tee": raw.tee,
            "provider": raw.provider,
            "simulated": sim.is_some(),
            "plays": g.sim_release.as_ref().zip(g.sim_configuration.as_ref())
                .map(|(r, c)| format!("{r} / {c}")),
            "sim_set": sim.as_ref().map(|s| s.overrides().iter().map(|o| o.to_string()).collect::<Vec<_>>()),
            "warnings": notes,
            "bytes": raw.bytes.len(),
            "written": written,
            "verify_with": collateral.map(|c| format!(
                "chrysalis attest verify {} --collateral {}{}",
                g.out.display(), c.display(), " --allow-sim"
            )),
        }))
    })();
    match result {
        Ok(v) => {
            if json_out {
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            } else {
                if v["simulated"] == true {
                    println!("!!! SIMULATED evidence: signed by a root generated just now, not by hardware !!!");
                }
                if let Some(p) = v["plays"].as_str() {
                    println!("plays the published configuration {p}");
                }
                for o in v["sim_set"].as_array().into_iter().flatten() {
                    println!("differs in (--sim-set): {}", o.as_str().unwrap_or_default());
                }
                for w in v["warnings"].as_array().into_iter().flatten() {
                    println!("warning: {}", w.as_str().unwrap_or_default());
                }
                println!(
                    "wrote {} bytes of {} evidence from the {} provider:",
                    v["bytes"],
                    v["tee"].as_str().unwrap_or("?"),
                    v["provider"].as_str().unwrap_or("?")
                );
                for w in v["written"].as_array().into_iter().flatten() {
                    println!("  {}", w.as_str().unwrap_or_default());
                }
                if let Some(cmd) = v["verify_with"].as_str() {
                    println!("verify with:\n  {cmd}");
                }
            }
            exit::OK
        }
        Err(f) => {
            if json_out {
                println!(
                    "{}",
                    json!({"error": {"category": f.category.name(), "message": format!("{:#}", f.error)}})
                );
            } else {
                eprintln!("error: {:#}", f.error);
            }
            f.code()
        }
    }
}

/// The simulated TEE `generate --provider sim` asks for: its TEE, the
/// published configuration it plays, the boot measurements of its runtime
/// configuration (as the agent makes them), and the `--sim-set` overrides.
/// Warnings (registers the configuration does not predict) go to `notes`.
fn sim_provider(
    g: &GenerateArgs,
    notes: &mut Vec<String>,
) -> Result<chrysalis_sim::SimProvider, Failure> {
    use att::provider::EvidenceProvider;
    use chrysalis_sim::{SimOverrides, SimProvider, SimRelease};
    let sim_err = |e: chrysalis_sim::Error| Failure::new(e.category(), e);
    let explicit_tee = g.tee.map(|t| match t {
        TeeArg::Tdx => Tee::Tdx,
        TeeArg::Snp => Tee::Snp,
    });
    let release = match (&g.sim_release, &g.sim_configuration) {
        (Some(r), Some(c)) => Some(SimRelease::builtin(r, c, explicit_tee).map_err(sim_err)?),
        _ => None,
    };
    let tee = release
        .as_ref()
        .map(SimRelease::tee)
        .or(explicit_tee)
        .unwrap_or(Tee::Tdx);
    if let Some(r) = &release {
        notes.extend(r.warnings().iter().cloned());
    }
    let overrides = SimOverrides::parse_all(&g.sim_set).map_err(sim_err)?;
    let canonical = match &g.sim_runtime_config {
        Some(p) => Some(read_runtime_config(p)?),
        None if release.is_some() => {
            Some(chrysalis_sim::release::DEFAULT_HOST_CONFIGURATION.to_vec())
        }
        None => None,
    };
    let mut sim = SimProvider::configured(tee, release.as_ref(), overrides).map_err(sim_err)?;
    if let Some(c) = &canonical {
        match tee {
            Tee::Tdx => {
                for e in att::runtime_events::rtmr3_boot_events(Some(c), None) {
                    sim.extend_rtmr3(&e.digest)?;
                }
            }
            Tee::Snp => sim = sim.with_host_data(SimRelease::host_data(c)),
        }
    }
    Ok(sim)
}

/// The canonical bytes of a runtime configuration file (one JSON object),
/// as the agent measures them.
fn read_runtime_config(path: &Path) -> Result<Vec<u8>, Failure> {
    let text = std::fs::read(path)
        .with_context(|| format!("reading the runtime configuration {}", path.display()))
        .map_err(Failure::io)?;
    let value: serde_json::Value = serde_json::from_slice(&text).map_err(|e| {
        Failure::new(
            att::ErrorCategory::Malformed,
            anyhow::anyhow!("{}: runtime configuration is not JSON: {e}", path.display()),
        )
    })?;
    if !value.is_object() {
        return Err(Failure::new(
            att::ErrorCategory::Malformed,
            anyhow::anyhow!(
                "{}: runtime configuration must be a JSON object",
                path.display()
            ),
        ));
    }
    Ok(att::runtime_events::canonical_json(&value))
}

/// `FILE` → `FILE.<suffix>` next to it.
pub fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".");
    s.push(suffix);
    PathBuf::from(s)
}

fn parse_report_data(s: &str) -> anyhow::Result<[u8; 64]> {
    let s = s.trim();
    let s = s.strip_prefix("0x").unwrap_or(s);
    let v = hex::decode(s).context("--report-data must be hex")?;
    anyhow::ensure!(
        v.len() <= 64,
        "--report-data is {} bytes; at most 64",
        v.len()
    );
    let mut out = [0u8; 64];
    out[..v.len()].copy_from_slice(&v);
    Ok(out)
}

fn fetch(file: &Path, pccs: Option<&str>, kds: &str, out: &Path) -> i32 {
    let result = (|| -> Result<Vec<PathBuf>, Error> {
        let decoded = att::verifier::read_evidence(file)?;
        match &decoded.evidence {
            Evidence::Tdx(q) => {
                let pccs = pccs.ok_or_else(|| {
                    Error::Encoding("TDX collateral needs --pccs URL (Intel PCS or a PCCS)".into())
                })?;
                chrysalis_fetch::fetch_tdx_collateral(q, pccs, out)
            }
            Evidence::Snp(r) => chrysalis_fetch::fetch_snp_certificates(r, kds, out),
        }
    })();
    match result {
        Ok(paths) => {
            println!(
                "collateral cached in {} (verified by signature at every use):",
                out.display()
            );
            for p in paths {
                println!("  {}", p.display());
            }
            exit::OK
        }
        Err(e) => fail(&e, false),
    }
}
