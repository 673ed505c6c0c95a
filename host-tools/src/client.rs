//! `chrysalis verify` and `chrysalis chat`: thin users of
//! [`chrysalis_client`], the node-verification library.
//!
//! By default a node is accepted only when it runs a configuration of a
//! published release compiled into this binary (every register pinned),
//! with evidence bound to a fresh nonce and, for a gpu release, verified
//! GPU evidence. `verify` prints who the node is and exits 0 only when it is
//! accepted; `chat` sends an OpenAI-compatible chat completion over the
//! verified connection and streams the answer.

use std::path::PathBuf;

use anyhow::{anyhow, Context};
use chrysalis_attestation as att;
use chrysalis_client::explain;
use chrysalis_client::{ImagePin, NodeConfig, NodeIdentity, VerifiedNode};
use clap::Args;
use http_body_util::BodyExt;
use serde_json::json;

use att::verifier::Collateral;
use att::{ErrorCategory, Identity, TcbStatus};

use crate::exit;
pub(crate) use crate::failure::Failure;

/// Which nodes are accepted: options shared by `verify`, `chat` and the
/// registry commands.
#[derive(Args, Clone)]
pub struct PolicyOpts {
    /// Accept only this published release (default: every release compiled
    /// into this binary; `chrysalis verify --list-releases` lists them).
    #[arg(long, value_name = "NAME", conflicts_with_all = ["policy", "any_image"])]
    release: Option<String>,
    /// Replace the published releases with this policy file (TOML; see
    /// README "Policy file"). A file without measurement sets pins no image
    /// and every output says so.
    #[arg(long, value_name = "FILE", conflicts_with = "any_image")]
    policy: Option<PathBuf>,
    /// Accept ANY image on an authentic TEE (authenticity, TCB and debug
    /// only). Every output says NO IMAGE PINNED.
    #[arg(long)]
    any_image: bool,
    /// Accept SIMULATED evidence (development only; proves nothing).
    #[arg(long)]
    allow_sim: bool,
    /// Also accept these TCB statuses, comma-separated.
    #[arg(long, value_delimiter = ',')]
    accept_tcb: Vec<String>,
    /// Use this collateral instead of the one embedded in the certificate
    /// (TDX: QuoteCollateralV3 JSON or PCS directory; SNP: VCEK [+ chain]).
    #[arg(long)]
    collateral: Vec<PathBuf>,
}

/// GPU options shared by `verify` and `chat`.
#[derive(Args, Clone, Default)]
pub struct GpuOpts {
    /// Require verified GPU evidence meeting this policy file's [gpu]
    /// section (see README "GPU verification"), whatever the release. A gpu
    /// release's configurations require GPU evidence (CC on, dev tools off)
    /// without this flag.
    #[arg(long, value_name = "FILE")]
    gpu_policy: Option<PathBuf>,
    /// GPU reference integrity manifest (driver, VBIOS); repeatable. When
    /// given, the GPU measurements are compared with them.
    #[arg(long, value_name = "FILE")]
    gpu_rim: Vec<PathBuf>,
    /// GPU check: use only cached OCSP responses (--gpu-ocsp-cache).
    #[arg(long)]
    gpu_offline: bool,
    /// GPU check: OCSP response cache directory.
    #[arg(long, value_name = "DIR")]
    gpu_ocsp_cache: Option<PathBuf>,
    /// GPU check: fetch the driver and VBIOS RIMs the --gpu-rim files lack,
    /// by the ids the GPU's signed report gives, from this RIM service
    /// (NVIDIA's: https://rim.attestation.nvidia.com), and compare the
    /// measurements with them. Untrusted: a fetched RIM is checked like a
    /// --gpu-rim file (XML signature, chain to the pinned NVIDIA root,
    /// version). Off by default (no third-party request).
    #[arg(long, value_name = "URL")]
    gpu_rim_service: Option<String>,
    /// GPU check: keep fetched RIMs here (`ID.xml`); alone, implies
    /// NVIDIA's RIM service; with --gpu-offline only this cache answers.
    #[arg(long, value_name = "DIR")]
    gpu_rim_cache: Option<PathBuf>,
}

impl GpuOpts {
    fn any(&self) -> bool {
        self.gpu_policy.is_some()
            || !self.gpu_rim.is_empty()
            || self.gpu_offline
            || self.gpu_ocsp_cache.is_some()
            || self.gpu_rim_service.is_some()
            || self.gpu_rim_cache.is_some()
    }

    fn requirement(&self) -> Result<chrysalis_client::GpuRequirement, Failure> {
        let mut collateral = chrysalis_gpu::verify::Collateral::from_rim_files(
            &self.gpu_rim,
            chrysalis_gpu::ocsp::OcspClient::new(self.gpu_ocsp_cache.clone(), self.gpu_offline),
        )?;
        if self.gpu_rim_service.is_some() || self.gpu_rim_cache.is_some() {
            let url = self
                .gpu_rim_service
                .as_deref()
                .unwrap_or(chrysalis_gpu::rim_service::NVIDIA_RIM_SERVICE);
            collateral = collateral.with_rim_service(chrysalis_gpu::RimServiceClient::new(
                url,
                self.gpu_rim_cache.clone(),
                self.gpu_offline,
            )?);
        }
        let mut req = chrysalis_client::GpuRequirement::default()
            .with_collateral(collateral, self.gpu_rim.len());
        if let Some(p) = &self.gpu_policy {
            req = req.with_policy(
                chrysalis_gpu::GpuPolicy::from_file(p)?,
                format!("policy {}", p.display()),
            );
        }
        Ok(req)
    }
}

/// `--registry ADDR`: take the allowed images from a registry contract.
#[derive(Args, Clone, Default)]
pub struct RegistryOpts {
    /// Accept the images a TON registry contract allows (its
    /// `is_measurement_allowed`, over the node's complete identity) instead
    /// of the published releases compiled in.
    #[arg(long, value_name = "ADDR", conflicts_with_all = ["release", "policy", "any_image"])]
    registry: Option<String>,
    /// TON HTTP API the registry is read through (with --registry).
    #[arg(
        long = "ton-api",
        env = "TON_API",
        default_value = "https://toncenter.com/api",
        requires = "registry"
    )]
    ton_api: String,
}

impl RegistryOpts {
    fn pin(&self) -> Option<crate::ton::RegistryPin> {
        self.registry
            .as_ref()
            .map(|address| crate::ton::RegistryPin {
                address: address.clone(),
                api: self.ton_api.clone(),
            })
    }
}

#[derive(Args)]
pub struct VerifyArgs {
    /// The node, https://HOST:PORT.
    url: Option<String>,
    /// Verify a certificate file (DER or PEM) offline instead of connecting.
    #[arg(long, conflicts_with = "url")]
    cert: Option<PathBuf>,
    /// With --cert: judge the certificate as of this time (RFC 3339)
    /// instead of now.
    #[arg(long, value_name = "RFC3339", requires = "cert")]
    at: Option<String>,
    #[command(flatten)]
    policy: PolicyOpts,
    #[command(flatten)]
    registry: RegistryOpts,
    /// Fresh evidence bound to a random nonce is asked for by default; kept
    /// so that older scripts keep working.
    #[arg(long, hide = true)]
    nonce: bool,
    /// Judge the node on its certificate's evidence alone (no nonce round
    /// trip; a leaked key could replay it). Not allowed when GPU evidence
    /// is required.
    #[arg(long, conflicts_with = "nonce")]
    no_fresh: bool,
    #[command(flatten)]
    gpu: GpuOpts,
    /// List the published releases compiled into this binary and exit.
    #[arg(long, exclusive = true)]
    list_releases: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct ChatArgs {
    /// The node, https://HOST:PORT.
    url: String,
    #[command(flatten)]
    policy: PolicyOpts,
    #[command(flatten)]
    gpu: GpuOpts,
    /// Model name (default: the first of GET /v1/models).
    #[arg(long)]
    model: Option<String>,
    /// The user message (default: read standard input).
    #[arg(long, short)]
    message: Option<String>,
    /// Maximum tokens to generate.
    #[arg(long, default_value_t = 256)]
    max_tokens: u32,
    /// Pay through this channel (from `chrysalis ton channel open`):
    /// a voucher with the request, every receipt verified (see `pay`).
    #[arg(long)]
    channel: Option<std::path::PathBuf>,
}

/// The node configuration the options ask for.
pub(crate) fn node_config(p: &PolicyOpts, gpu: &GpuOpts) -> Result<NodeConfig, Failure> {
    node_config_with(p, gpu, false)
}

/// Like [`node_config`]; `registry` = the images come from a registry
/// contract, checked after verification (the policy then pins none).
fn node_config_with(p: &PolicyOpts, gpu: &GpuOpts, registry: bool) -> Result<NodeConfig, Failure> {
    let pin = if p.any_image || registry {
        ImagePin::AnyImage
    } else if let Some(f) = &p.policy {
        ImagePin::policy_file(f)?
    } else if let Some(name) = &p.release {
        ImagePin::release(name)?
    } else {
        ImagePin::published()
    };
    let statuses = p
        .accept_tcb
        .iter()
        .map(|s| s.parse::<TcbStatus>())
        .collect::<Result<Vec<_>, _>>()?;
    let mut cfg = NodeConfig::new(pin)
        .allow_simulated(p.allow_sim)
        .accept_tcb(statuses)
        .with_gpu(gpu.requirement()?);
    if !p.collateral.is_empty() {
        // The TEE is not known before the handshake: TDX takes one path
        // (JSON or directory), SNP takes certificate files.
        let tee = if p.collateral.len() == 1
            && (p.collateral[0].is_dir()
                || p.collateral[0].extension().is_some_and(|e| e == "json"))
        {
            att::Tee::Tdx
        } else {
            att::Tee::Snp
        };
        cfg = cfg.with_collateral(Collateral::load(tee, &p.collateral)?);
    }
    Ok(cfg)
}

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// `--cert FILE` is checked offline: refuse the flags whose checks need the
/// live server, rather than accept without doing them (usage error, exit 1).
fn refuse_offline_flags(a: &VerifyArgs) -> Result<(), Failure> {
    let usage = |msg: &str| Failure::io(anyhow!("{msg}"));
    if a.nonce {
        return Err(usage(
            "--nonce cannot be used with --cert: an offline certificate cannot prove freshness (only a live server can answer a new nonce); verify https://HOST:PORT instead",
        ));
    }
    if a.gpu.any() {
        return Err(usage(
            "GPU flags (--gpu-policy, --gpu-rim, --gpu-offline, --gpu-ocsp-cache, --gpu-rim-service, --gpu-rim-cache) cannot be used with --cert: a certificate carries only the digest of the GPU evidence, not the GPU bundle; verify https://HOST:PORT --gpu-policy FILE instead",
        ));
    }
    Ok(())
}

fn list_releases(json_out: bool) -> i32 {
    let cat = chrysalis_releases::Catalogue::builtin();
    let policy = cat.policy();
    let rows: Vec<_> = cat
        .configurations()
        .map(|c| {
            let why = policy
                .not_verifiable
                .iter()
                .find(|(l, _)| *l == c.label())
                .map(|(_, w)| w.to_string());
            (c.label(), c.requires_gpu(), why)
        })
        .collect();
    if json_out {
        let v: Vec<_> = rows
            .iter()
            .map(|(l, g, w)| json!({"configuration": l, "requires_gpu": g, "verifiable": w.is_none(), "not_verifiable_because": w}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        for (label, gpu, why) in rows {
            let gpu = if gpu { "  (requires GPU evidence)" } else { "" };
            match why {
                None => println!("{label}{gpu}"),
                Some(w) => println!("{label}{gpu}  NOT VERIFIABLE: {w}"),
            }
        }
    }
    exit::OK
}

pub fn run_verify(a: VerifyArgs) -> i32 {
    if a.list_releases {
        return list_releases(a.json);
    }
    let json_out = a.json;
    let mut cfg_for_output: Option<NodeConfig> = None;
    let result: Result<VerifiedNode, Failure> = (|| {
        if a.cert.is_some() {
            refuse_offline_flags(&a)?;
        }
        let mut cfg =
            node_config_with(&a.policy, &a.gpu, a.registry.registry.is_some())?.fresh(!a.no_fresh);
        if a.no_fresh && cfg.gpu().forced() {
            return Err(Failure::io(anyhow!(
                "--no-fresh cannot be used with --gpu-policy: GPU evidence is served only with fresh evidence"
            )));
        }
        cfg_for_output = Some(cfg.clone());
        if let Some(path) = &a.cert {
            let now = match &a.at {
                Some(t) => att::timefmt::parse_rfc3339(t)?,
                None => time::OffsetDateTime::now_utc(),
            };
            cfg = cfg.at_time(now);
            cfg_for_output = Some(cfg.clone());
            let bytes = std::fs::read(path)
                .with_context(|| path.display().to_string())
                .map_err(Failure::io)?;
            let der = chrysalis_ratls::cert::certificate_der_from_file_bytes(&bytes)?;
            let peer = chrysalis_ratls::verify_certificate_der(&der, cfg.verifier(), now)?;
            return Ok(chrysalis_client::node::judge(peer, None, &cfg, now)?);
        }
        let url = a
            .url
            .as_deref()
            .ok_or_else(|| Failure::io(anyhow!("give https://HOST:PORT or --cert FILE")))?;
        let node = runtime().block_on(chrysalis_client::verify_node(url, &cfg))?;
        Ok(node)
    })();
    // --registry: the node's complete identity must be on the contract's
    // allow-list.
    let registry = a.registry.pin();
    let result = result.and_then(|node| match &registry {
        Some(r) => {
            let ev = node.fresh().unwrap_or(node.peer()).evidence();
            r.check(ev).map(|m| (node, Some(m)))
        }
        None => Ok((node, None)),
    });
    match result {
        Ok((node, allowed)) => {
            print_node(&node, allowed.as_deref().zip(registry.as_ref()), json_out);
            exit::OK
        }
        Err(f) => {
            print_failure(&f, cfg_for_output.as_ref(), json_out);
            f.code()
        }
    }
}

/// The failure's message: the RA-TLS error's own words when the chain
/// holds one (rustls wraps it as `InvalidCertificate(Other(..))`, whose
/// display is a debug dump), prefixed by the context that led to it.
fn describe(e: &anyhow::Error) -> String {
    for cause in e.chain() {
        if let Some(r) = chrysalis_ratls::Error::find_in(cause) {
            return format!("error: {r}");
        }
    }
    format!("error: {e:#}")
}

/// The rejected node and why, when the failure is a policy rejection.
fn rejection(f: &Failure) -> Option<(&[String], Option<&chrysalis_ratls::RejectedNode>)> {
    f.error
        .chain()
        .find_map(|c| c.downcast_ref::<chrysalis_client::Error>())
        .and_then(|e| e.rejected_node())
        .or_else(|| {
            f.error
                .chain()
                .find_map(|c| chrysalis_ratls::Error::find_in(c))
                .and_then(chrysalis_ratls::Error::rejection)
        })
}

fn tee_line(identity: &Identity, tcb: TcbStatus, simulated: bool) -> String {
    let tee = match identity {
        Identity::Tdx(_) => "Intel TDX",
        Identity::Snp(_) => "AMD SEV-SNP",
    };
    let sim = if simulated { " (SIMULATED)" } else { "" };
    format!("{tee}{sim}, TCB {tcb}")
}

fn print_failure(f: &Failure, cfg: Option<&NodeConfig>, json_out: bool) {
    let banner = "!".repeat(78);
    let Some((reasons, node)) = rejection(f) else {
        if json_out {
            println!(
                "{}",
                json!({"accepted": false, "error": {"exit_code": f.code(), "category": f.category.name(), "message": describe(&f.error)}})
            );
        } else {
            eprintln!("{}", describe(&f.error));
        }
        return;
    };
    let closest = match (cfg, node) {
        (Some(cfg), Some(n)) => explain::closest(cfg.verifier().policy(), &n.identity),
        _ => None,
    };
    let not_verifiable: Vec<String> = cfg
        .map(|c| {
            c.not_verifiable()
                .iter()
                .map(|(l, w)| format!("{l}: {w}"))
                .collect()
        })
        .unwrap_or_default();
    if json_out {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "accepted": false,
                "node": node.map(|n| json!({
                    "tee": match n.identity { Identity::Tdx(_) => "TDX", Identity::Snp(_) => "SNP" },
                    "tcb_status": n.tcb_status.to_string(),
                    "simulated": n.simulated,
                    "registers": chrysalis_client::node::registers_json(&n.identity),
                })),
                "accepted_images": cfg.map(|c| c.pin().describe()),
                "closest": closest.as_ref().map(|(l, rows)| json!({"configuration": l, "registers": rows})),
                "not_verifiable": not_verifiable,
                "reasons": reasons,
                "error": {"exit_code": f.code(), "category": f.category.name(), "message": describe(&f.error)},
            }))
            .unwrap_or_default()
        );
        return;
    }
    if node.is_some_and(|n| n.simulated) {
        println!("{banner}\n!!! {}\n{banner}", att::policy::SIMULATED_WARNING);
    }
    println!("decision: REJECTED");
    // The registers may match a configuration while another rule (TCB,
    // debug, simulated evidence) rejects the node: say which.
    let matching = closest
        .as_ref()
        .filter(|(_, rows)| rows.iter().all(explain::RegisterRow::matches))
        .map(|(label, _)| label.clone());
    if let Some(n) = node {
        let what = match &matching {
            Some(label) => format!("registers match {label}, but other rules reject it"),
            None => "not an accepted configuration".into(),
        };
        println!(
            "node:     {} — {what}",
            tee_line(&n.identity, n.tcb_status, n.simulated)
        );
    }
    if let Some(c) = cfg {
        println!("accepts:  {}", c.pin().describe());
    }
    if let (Some((label, rows)), None) = (&closest, &matching) {
        println!("closest:  {label}");
        print!("{}", explain::render(rows));
    }
    for r in reasons {
        println!("rejected: {r}");
    }
    for nv in &not_verifiable {
        println!("note:     not verifiable by default: {nv}");
    }
}

fn print_node(
    node: &VerifiedNode,
    registry: Option<(&str, &crate::ton::RegistryPin)>,
    json_out: bool,
) {
    // Under --registry the image is pinned by the contract, not the policy.
    let warnings: Vec<String> = node
        .warnings()
        .into_iter()
        .filter(|w| registry.is_none() || w != att::policy::NO_IMAGE_PINNED_WARNING)
        .collect();
    if json_out {
        let mut v = node.to_json();
        if let Some((m, r)) = registry {
            v["node"] = json!({"kind": "registry", "registry": r.address, "image_measurement": m});
            v["accepted_images"] = json!(format!("registry {}", r.address));
            v["warnings"] = json!(warnings);
        }
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return;
    }
    let peer = node.peer();
    let ev = peer.evidence();
    let banner = "!".repeat(78);
    if node.is_simulated() {
        println!("{banner}\n!!! {}\n{banner}", att::policy::SIMULATED_WARNING);
    }
    if matches!(node.identity(), NodeIdentity::Unpinned) && registry.is_none() {
        println!(
            "{banner}\n!!! {}\n{banner}",
            att::policy::NO_IMAGE_PINNED_WARNING
        );
    }
    let gpu_state = match node.gpus() {
        Some(set) => {
            let all_cc = set.gpus().iter().all(|g| {
                g.cc()
                    .is_some_and(|c| c.system_cc_enabled && !c.devtools_mode)
            });
            format!(
                "{} GPU(s) verified{}",
                set.gpus().len(),
                if all_cc { ", CC on, dev tools off" } else { "" }
            )
        }
        None => "no GPU evidence".into(),
    };
    println!("decision: ACCEPTED");
    let who = match registry {
        Some((m, r)) => format!("allowed by registry {} (image measurement {m})", r.address),
        None => node.identity().to_string(),
    };
    println!(
        "node:     {who}  ({}, {gpu_state})",
        tee_line(ev.identity(), ev.tcb_status(), node.is_simulated())
    );
    match registry {
        Some((_, r)) => println!(
            "accepts:  images allowed by registry {} (read via {})",
            r.address, r.api
        ),
        None => println!("accepts:  {}", node.pin()),
    }
    if let Some(img) = node.claimed_image() {
        println!(
            "claims:   image {} measurements.json sha256 {} (a hint; the registers decide)",
            img.release.as_deref().unwrap_or("?"),
            img.measurements_sha256
                .map(hex::encode)
                .unwrap_or_else(|| "?".into())
        );
    }
    println!(
        "server:   {} evidence in a {:?} certificate, anchor {:?}",
        ev.tee(),
        peer.format(),
        ev.anchor()
    );
    match ev.identity() {
        Identity::Tdx(id) => {
            println!("mrtd:        {}", hex::encode(id.mrtd));
            for (i, r) in id.rtmr.iter().enumerate() {
                println!("rtmr{i}:       {}", hex::encode(r));
            }
        }
        Identity::Snp(id) => {
            println!("measurement: {}", hex::encode(id.measurement));
            println!("host_data:   {}", hex::encode(id.host_data));
        }
    }
    let gpu = match (peer.gpu_evidence_digest(), node.gpus()) {
        (Some(dg), Some(_)) => format!(
            "GPU evidence SHA-384 {} bound and verified ({})",
            hex::encode(dg),
            node.gpu_policy()
        ),
        (Some(dg), None) => format!(
            "GPU evidence SHA-384 {} bound (not verified: fresh evidence was not asked for)",
            hex::encode(dg)
        ),
        (None, _) => "no GPU evidence bound".to_string(),
    };
    println!("gpu:         {gpu}");
    for g in node.gpus().map(|s| s.gpus()).unwrap_or_default() {
        let cc = match g.cc() {
            Some(c) => format!(
                "CC {} / dev tools {}",
                if c.system_cc_enabled { "on" } else { "OFF" },
                if c.devtools_mode { "ON" } else { "off" }
            ),
            None => "CC state not reported".into(),
        };
        let rim = match g.rim() {
            Some(r) if r.mismatched.is_empty() => {
                format!("RIMs match ({} measurements)", r.compared)
            }
            Some(r) => format!("RIM mismatch at {:?}", r.mismatched),
            None => "RIMs not compared".into(),
        };
        let ocsp = match &g.ocsp().not_checked {
            Some(why) => format!("OCSP not checked ({why})"),
            None => format!("OCSP good ({} certificates)", g.ocsp().checks.len()),
        };
        println!(
            "  gpu {}: {}  driver {}  vbios {}  {cc}  {rim}  {ocsp}",
            g.index(),
            g.model(),
            g.driver_version().unwrap_or("?"),
            g.vbios_version().unwrap_or("?")
        );
    }
    if let Some(c) = peer.certificate() {
        println!(
            "certificate: sha256 {} valid {} .. {}",
            hex::encode(c.sha256),
            att::timefmt::format_rfc3339(c.not_before),
            att::timefmt::format_rfc3339(c.not_after)
        );
    }
    if let Some(t) = peer.created_at() {
        println!("evidence created {}", att::timefmt::format_rfc3339(t));
    }
    if node.fresh().is_some() {
        println!("fresh evidence: verified (bound to our nonce and the same key)");
    } else {
        println!("fresh evidence: NOT asked for (certificate evidence only)");
    }
    for w in warnings {
        println!("warning: {w}");
    }
}

pub fn run_chat(a: ChatArgs) -> i32 {
    let result: Result<(), Failure> = (|| {
        let message = match &a.message {
            Some(m) => m.clone(),
            None => {
                let mut s = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
                    .context("reading the message from standard input")
                    .map_err(Failure::io)?;
                s
            }
        };
        let cfg = node_config(&a.policy, &a.gpu)?;
        runtime().block_on(chat(&a, &cfg, message))
    })();
    match result {
        Ok(()) => exit::OK,
        Err(f) => {
            eprintln!("{}", describe(&f.error));
            f.code()
        }
    }
}

async fn chat(a: &ChatArgs, cfg: &NodeConfig, message: String) -> Result<(), Failure> {
    let (node, mut conn) = chrysalis_client::node::connect_node(&a.url, cfg).await?;
    if node.is_simulated() {
        eprintln!("!!! {} !!!", att::policy::SIMULATED_WARNING);
    }
    eprintln!("chatting with {} ({})", node.identity(), node.peer().tee());
    for w in node.warnings() {
        eprintln!("warning: {w}");
    }
    let mut payer = a
        .channel
        .as_deref()
        .map(|p| crate::pay::Payer::open(p, node.peer().spki_der()))
        .transpose()?;
    let model = match &a.model {
        Some(m) => m.clone(),
        None => {
            let (_, body) = conn.get("/v1/models").await?;
            let v: serde_json::Value = serde_json::from_slice(&body)
                .context("GET /v1/models: not JSON")
                .map_err(Failure::io)?;
            v["data"][0]["id"]
                .as_str()
                .ok_or_else(|| Failure::io(anyhow!("GET /v1/models lists no model; pass --model")))?
                .to_string()
        }
    };
    let body = json!({
        "model": model,
        "stream": true,
        "max_tokens": a.max_tokens,
        "messages": [{"role": "user", "content": message}],
    });
    let request = body.to_string();
    let mut post = hyper::Request::post("/v1/chat/completions")
        .header("host", "chrysalis")
        .header("content-type", "application/json")
        .header("accept", "text/event-stream");
    if let Some(p) = payer.as_mut() {
        post = post.header(crate::pay::VOUCHER_HEADER, p.voucher_header()?);
    }
    let resp = conn
        .send(
            post.body(http_body_util::Full::new(hyper::body::Bytes::from(
                request.clone(),
            )))
            .map_err(|e| Failure::new(ErrorCategory::Malformed, e))?,
        )
        .await?;
    let conn_err = |e: hyper::Error| Failure::new(ErrorCategory::Connection, e);
    let status = resp.status();
    let mut body = resp.into_body();
    if !status.is_success() {
        let b = body.collect().await.map_err(conn_err)?.to_bytes();
        return Err(Failure::io(anyhow!(
            "POST /v1/chat/completions answered {status}: {}",
            String::from_utf8_lossy(&b)
        )));
    }
    use std::io::Write;
    let mut pending = String::new();
    let mut out = std::io::stdout();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(conn_err)?;
        let Some(chunk) = frame.data_ref() else {
            continue;
        };
        if let Some(p) = payer.as_mut() {
            p.feed(chunk)?;
        }
        pending.push_str(&String::from_utf8_lossy(chunk));
        while let Some(end) = pending.find('\n') {
            let line: String = pending.drain(..=end).collect();
            let Some(data) = line.trim().strip_prefix("data:") else {
                continue;
            };
            let data = data.trim();
            if data == "[DONE]" {
                continue;
            }
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(data) {
                if let Some(t) = v["choices"][0]["delta"]["content"].as_str() {
                    let _ = write!(out, "{t}");
                    let _ = out.flush();
                }
            }
        }
    }
    let _ = writeln!(out);
    if let Some(p) = payer {
        crate::pay::settle(p, request.as_bytes(), &mut conn).await?;
    }
    Ok(())
}
