//! `chrysalis verify` and `chrysalis chat`: the client side of RA-TLS.
//!
//! `verify` connects, verifies the server's evidence during the TLS 1.3
//! handshake (nothing is sent before that succeeds), prints who the server
//! is and exits 0 only when the policy accepts it. `chat` sends an
//! OpenAI-compatible chat completion over such a verified connection and
//! streams the answer.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use chrysalis_attestation as att;
use chrysalis_ratls as ratls;
use clap::Args;
use http_body_util::BodyExt;
use serde_json::json;

use att::verifier::{Anchors, Collateral};
use att::{ErrorCategory, Identity, Policy, TcbStatus};
use ratls::{RaTlsServerVerifier, VerifiedPeer, VerifierConfig};

use crate::exit;
pub(crate) use crate::failure::Failure;

/// Connect + handshake timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// Policy options shared by `verify` and `chat`.
#[derive(Args, Clone)]
pub struct PolicyOpts {
    /// Policy file (TOML; see README "Policy file"). Default: UpToDate TCB,
    /// no debug, no simulated evidence.
    #[arg(long)]
    policy: Option<PathBuf>,
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

#[derive(Args)]
pub struct VerifyArgs {
    /// The server, https://HOST:PORT.
    url: Option<String>,
    /// Verify a certificate file (DER or PEM) offline instead of connecting.
    #[arg(long, conflicts_with = "url")]
    cert: Option<PathBuf>,
    #[command(flatten)]
    policy: PolicyOpts,
    /// After the handshake, ask for fresh evidence bound to a random nonce
    /// (GET /attestation?nonce=HEX) and verify it too. GPU evidence served
    /// with it is checked against the certificate's commitment and verified
    /// (authenticity only, unless --gpu-policy).
    #[arg(long)]
    nonce: bool,
    /// Require verified GPU evidence meeting this policy file's [gpu]
    /// section (see README "GPU verification"); implies --nonce.
    #[arg(long, value_name = "FILE")]
    gpu_policy: Option<PathBuf>,
    /// GPU reference integrity manifest (driver, VBIOS); repeatable.
    #[arg(long, value_name = "FILE")]
    gpu_rim: Vec<PathBuf>,
    /// GPU check: use only cached OCSP responses (--gpu-ocsp-cache).
    #[arg(long)]
    gpu_offline: bool,
    /// GPU check: OCSP response cache directory.
    #[arg(long, value_name = "DIR")]
    gpu_ocsp_cache: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// The client's GPU check: policy and collateral.
struct GpuCheck {
    policy: chrysalis_gpu::GpuPolicy,
    policy_label: String,
    required: bool,
    collateral: chrysalis_gpu::verify::Collateral,
}

impl GpuCheck {
    fn from_args(a: &VerifyArgs) -> Result<Self, Failure> {
        let (policy, policy_label, required) = match &a.gpu_policy {
            Some(p) => (
                chrysalis_gpu::GpuPolicy::from_file(p)?,
                format!("policy {}", p.display()),
                true,
            ),
            None => (
                chrysalis_gpu::GpuPolicy::authenticity_only(),
                "authenticity only (no --gpu-policy)".to_string(),
                false,
            ),
        };
        let collateral = chrysalis_gpu::verify::Collateral::from_rim_files(
            &a.gpu_rim,
            chrysalis_gpu::ocsp::OcspClient::new(a.gpu_ocsp_cache.clone(), a.gpu_offline),
        )?;
        Ok(Self {
            policy,
            policy_label,
            required,
            collateral,
        })
    }

    /// Verifies the bundle the node served against the digest its
    /// certificate commits to.
    fn check(
        &self,
        peer: &VerifiedPeer,
        fresh: &ratls::FreshEvidence,
    ) -> Result<Option<chrysalis_gpu::verify::VerifiedGpuSet>, Failure> {
        let (Some(digest), Some(bundle)) = (peer.gpu_evidence_digest(), &fresh.gpu_evidence) else {
            if self.required {
                return Err(Failure::new(
                    ErrorCategory::Rejected,
                    anyhow!(
                        "the GPU policy requires GPU evidence, but the node's certificate commits to none"
                    ),
                ));
            }
            return Ok(None);
        };
        chrysalis_gpu::verify::verify_bound_bundle(
            bundle.as_bytes(),
            digest,
            &self.collateral,
            &self.policy,
            time::OffsetDateTime::now_utc(),
        )
        .map(Some)
        .map_err(|e| Failure::new(e.category(), anyhow!("GPU evidence: {e}")))
    }
}

#[derive(Args)]
pub struct ChatArgs {
    /// The server, https://HOST:PORT.
    url: String,
    #[command(flatten)]
    policy: PolicyOpts,
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

/// The message for a failure: the RA-TLS error's own words when the chain
/// holds one (rustls wraps it as `InvalidCertificate(Other(..))`, whose
/// display is a debug dump), prefixed by the context that led to it.
fn describe(e: &anyhow::Error) -> String {
    for cause in e.chain() {
        if let Some(r) = ratls::Error::find_in(cause) {
            return format!("error: {r}");
        }
    }
    format!("error: {e:#}")
}

pub(crate) fn verifier_config(p: &PolicyOpts) -> Result<VerifierConfig, Failure> {
    let mut policy = match &p.policy {
        Some(f) => Policy::load(f)?,
        None => Policy::default(),
    };
    let statuses = p
        .accept_tcb
        .iter()
        .map(|s| s.parse::<TcbStatus>())
        .collect::<Result<Vec<_>, _>>()?;
    let allow_sim = p.allow_sim || policy.allow_simulated;
    policy = policy.accept_tcb(statuses).allow_simulated(allow_sim);
    let mut cfg = VerifierConfig::new(policy).with_anchors(Anchors::production());
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

/// `https://HOST:PORT[/…]` → (host, port).
fn parse_url(url: &str) -> anyhow::Result<(String, u16)> {
    let rest = url
        .strip_prefix("https://")
        .ok_or_else(|| anyhow!("{url}: expected https://HOST:PORT (RA-TLS needs TLS)"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, p) = v6
            .split_once("]:")
            .ok_or_else(|| anyhow!("{url}: expected https://[IPv6]:PORT"))?;
        (h.to_string(), p)
    } else {
        authority
            .rsplit_once(':')
            .map(|(h, p)| (h.to_string(), p))
            .ok_or_else(|| anyhow!("{url}: missing :PORT"))?
    };
    let port = port
        .parse()
        .with_context(|| format!("{url}: bad port {port:?}"))?;
    if host.is_empty() {
        bail!("{url}: missing host");
    }
    Ok((host, port))
}

pub(crate) type TlsStream = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// Connects and completes a verified TLS 1.3 handshake.
pub(crate) async fn connect(
    url: &str,
    cfg: Arc<VerifierConfig>,
) -> Result<(TlsStream, VerifiedPeer), Failure> {
    let (host, port) = parse_url(url).map_err(|e| Failure::new(ErrorCategory::Malformed, e))?;
    let verifier = Arc::new(RaTlsServerVerifier::new(cfg));
    let tls = ratls::client_config_with(
        verifier.clone(),
        &ratls::ClientOptions {
            alpn: vec![b"http/1.1".to_vec()],
            ..Default::default()
        },
    )?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls));
    let name = rustls::pki_types::ServerName::try_from(host.clone()).map_err(|e| {
        Failure::new(
            ErrorCategory::Malformed,
            anyhow!("{host}: not a valid server name: {e}"),
        )
    })?;
    let fut = async {
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| {
                Failure::new(
                    ErrorCategory::Connection,
                    anyhow::Error::new(e).context(format!("connect to {host}:{port}")),
                )
            })?;
        let _ = tcp.set_nodelay(true);
        connector
            .connect(name, tcp)
            .await
            .map_err(Failure::handshake)
    };
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, fut).await {
        Ok(r) => r?,
        Err(_) => {
            return Err(Failure::new(
                ErrorCategory::Connection,
                anyhow!("{host}:{port}: no TLS handshake within {CONNECT_TIMEOUT:?}"),
            ))
        }
    };
    let peer = verifier.peer().ok_or_else(|| {
        Failure::new(
            ErrorCategory::Verification,
            anyhow!("handshake completed without a verified peer"),
        )
    })?;
    Ok((stream, peer))
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
            "--nonce cannot be used with --cert: an offline certificate cannot prove freshness (only a live server can answer a new nonce); verify https://HOST:PORT --nonce instead",
        ));
    }
    if a.gpu_policy.is_some()
        || !a.gpu_rim.is_empty()
        || a.gpu_offline
        || a.gpu_ocsp_cache.is_some()
    {
        return Err(usage(
            "GPU flags (--gpu-policy, --gpu-rim, --gpu-offline, --gpu-ocsp-cache) cannot be used with --cert: a certificate carries only the digest of the GPU evidence, not the GPU bundle; verify https://HOST:PORT --gpu-policy FILE instead",
        ));
    }
    Ok(())
}

pub fn run_verify(a: VerifyArgs) -> i32 {
    let json_out = a.json;
    type Fresh = (VerifiedPeer, Option<chrysalis_gpu::verify::VerifiedGpuSet>);
    let result: Result<(VerifiedPeer, Option<Fresh>, String), Failure> = (|| {
        if a.cert.is_some() {
            refuse_offline_flags(&a)?;
        }
        let cfg = Arc::new(verifier_config(&a.policy)?);
        let gpu = GpuCheck::from_args(&a)?;
        if let Some(path) = &a.cert {
            let bytes = std::fs::read(path)
                .with_context(|| path.display().to_string())
                .map_err(Failure::io)?;
            let der = ratls::cert::certificate_der_from_file_bytes(&bytes)?;
            let now = time::OffsetDateTime::now_utc();
            return Ok((
                ratls::verify_certificate_der(&der, &cfg, now)?,
                None,
                gpu.policy_label,
            ));
        }
        let url = a
            .url
            .as_deref()
            .ok_or_else(|| Failure::io(anyhow!("give https://HOST:PORT or --cert FILE")))?;
        runtime().block_on(async {
            let (stream, peer) = connect(url, cfg.clone()).await?;
            let fresh = if a.nonce || a.gpu_policy.is_some() {
                Some(fresh_check(stream, &peer, &cfg, &gpu).await?)
            } else {
                None
            };
            Ok((peer, fresh, gpu.policy_label))
        })
    })();
    match result {
        Ok((peer, fresh, gpu_label)) => {
            print_peer(&peer, fresh.as_ref(), &gpu_label, json_out);
            if peer.decision().accepted {
                exit::OK
            } else {
                exit::REJECTED
            }
        }
        Err(f) => {
            if json_out {
                println!(
                    "{}",
                    json!({"accepted": false, "error": {"exit_code": f.code(), "category": f.category.name(), "message": describe(&f.error)}})
                );
            } else {
                eprintln!("{}", describe(&f.error));
            }
            f.code()
        }
    }
}

/// Asks for fresh evidence over the verified connection and verifies that it
/// binds our nonce and the same key.
async fn fresh_check(
    stream: TlsStream,
    peer: &VerifiedPeer,
    cfg: &VerifierConfig,
    gpu: &GpuCheck,
) -> Result<(VerifiedPeer, Option<chrysalis_gpu::verify::VerifiedGpuSet>), Failure> {
    let mut nonce = [0u8; 32];
    getrandom_fill(&mut nonce).map_err(Failure::io)?;
    let (status, body) = http_request(
        stream,
        get_request(&format!("/attestation?nonce={}", hex::encode(nonce)))?,
    )
    .await?;
    if status != 200 {
        return Err(Failure::new(
            ErrorCategory::Verification,
            anyhow!(
                "fresh evidence request answered {status}: {}",
                String::from_utf8_lossy(&body)
            ),
        ));
    }
    let fresh = ratls::FreshEvidence::from_json(&String::from_utf8_lossy(&body))?;
    let verified = ratls::verify_fresh(
        &fresh,
        peer.spki_der(),
        peer.gpu_evidence_digest(),
        &nonce,
        cfg,
        time::OffsetDateTime::now_utc(),
    )?;
    let gpus = gpu.check(peer, &fresh)?;
    Ok((verified, gpus))
}

fn getrandom_fill(buf: &mut [u8]) -> anyhow::Result<()> {
    use rustls::crypto::ring::default_provider;
    default_provider()
        .secure_random
        .fill(buf)
        .map_err(|_| anyhow!("no secure random source"))
}

/// A GET request for `path` with an empty body.
pub(crate) fn get_request(
    path: &str,
) -> Result<hyper::Request<http_body_util::Full<hyper::body::Bytes>>, Failure> {
    hyper::Request::get(path)
        .header("host", "chrysalis")
        .body(http_body_util::Full::new(hyper::body::Bytes::new()))
        .map_err(|e| Failure::new(ErrorCategory::Malformed, e))
}

/// One HTTP/1.1 request over the verified stream; returns status and body.
/// Any HTTP failure is a connection failure.
pub(crate) async fn http_request(
    stream: TlsStream,
    req: hyper::Request<http_body_util::Full<hyper::body::Bytes>>,
) -> Result<(u16, Vec<u8>), Failure> {
    let conn_err = |e: hyper::Error| Failure::new(ErrorCategory::Connection, e);
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(conn_err)?;
    tokio::spawn(conn);
    let resp = sender.send_request(req).await.map_err(conn_err)?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(conn_err)?
        .to_bytes()
        .to_vec();
    Ok((status, body))
}

fn print_peer(
    peer: &VerifiedPeer,
    fresh: Option<&(VerifiedPeer, Option<chrysalis_gpu::verify::VerifiedGpuSet>)>,
    gpu_label: &str,
    json_out: bool,
) {
    let ev = peer.evidence();
    let d = peer.decision();
    let gpu_set = fresh.and_then(|(_, g)| g.as_ref());
    let gpu = match (peer.gpu_evidence_digest(), gpu_set) {
        (Some(dg), Some(_)) => format!(
            "GPU evidence SHA-384 {} bound and verified ({gpu_label})",
            hex::encode(dg)
        ),
        (Some(dg), None) => format!(
            "GPU evidence SHA-384 {} bound (not verified: use --nonce or --gpu-policy)",
            hex::encode(dg)
        ),
        (None, _) => "no GPU evidence bound".to_string(),
    };
    let fresh = fresh.map(|(f, _)| f);
    if json_out {
        let v = json!({
            "accepted": d.accepted,
            "simulated": peer.is_simulated(),
            "warning": peer.is_simulated().then_some(att::policy::SIMULATED_WARNING),
            "gpu": gpu,
            "gpus": gpu_set.map(|s| s.gpus()),
            "peer": peer,
            "fresh_evidence": fresh.map(|f| json!({"verified": true, "tcb_status": f.evidence().tcb_status()})),
        });
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return;
    }
    let banner = "!".repeat(78);
    if peer.is_simulated() {
        println!("{banner}\n!!! {}\n{banner}", att::policy::SIMULATED_WARNING);
    }
    println!(
        "decision: {}",
        if d.accepted { "ACCEPTED" } else { "REJECTED" }
    );
    println!(
        "server: {} evidence in a {:?} certificate, anchor {:?}, TCB {}",
        ev.tee(),
        peer.format(),
        ev.anchor(),
        ev.tcb_status()
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
    println!("gpu:         {gpu}");
    for g in gpu_set.map(|s| s.gpus()).unwrap_or_default() {
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
    if fresh.is_some() {
        println!("fresh evidence: verified (bound to our nonce and the same key)");
    }
    for w in &d.warnings {
        println!("warning: {w}");
    }
    for r in &d.reasons {
        println!("rejected: {r}");
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
        let cfg = Arc::new(verifier_config(&a.policy)?);
        runtime().block_on(chat(&a, cfg, message))
    })();
    match result {
        Ok(()) => exit::OK,
        Err(f) => {
            eprintln!("{}", describe(&f.error));
            f.code()
        }
    }
}

async fn chat(a: &ChatArgs, cfg: Arc<VerifierConfig>, message: String) -> Result<(), Failure> {
    let (stream, peer) = connect(&a.url, cfg.clone()).await?;
    if !peer.decision().accepted {
        return Err(Failure::new(
            ErrorCategory::Rejected,
            anyhow!(
                "server rejected by policy: {}",
                peer.decision().reasons.join("; ")
            ),
        ));
    }
    if peer.is_simulated() {
        eprintln!("!!! {} !!!", att::policy::SIMULATED_WARNING);
    }
    let mut payer = a
        .channel
        .as_deref()
        .map(|p| crate::pay::Payer::open(p, peer.spki_der()))
        .transpose()?;
    let conn_err = |e: hyper::Error| Failure::new(ErrorCategory::Connection, e);
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(conn_err)?;
    tokio::spawn(conn);
    let model = match &a.model {
        Some(m) => m.clone(),
        None => {
            let resp = sender
                .send_request(get_request("/v1/models")?)
                .await
                .map_err(conn_err)?;
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(conn_err)?
                .to_bytes();
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
    let resp = sender
        .send_request(
            post.body(http_body_util::Full::new(hyper::body::Bytes::from(
                request.clone(),
            )))
            .map_err(|e| Failure::new(ErrorCategory::Malformed, e))?,
        )
        .await
        .map_err(conn_err)?;
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
        crate::pay::settle(p, request.as_bytes(), &mut sender).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("https://127.0.0.1:8443").unwrap(),
            ("127.0.0.1".into(), 8443)
        );
        assert_eq!(
            parse_url("https://[::1]:443/v1").unwrap(),
            ("::1".into(), 443)
        );
        assert!(parse_url("http://x:1").is_err());
        assert!(parse_url("https://x").is_err());
        assert!(parse_url("https://:80").is_err());
    }
}
