//! `chrysalis verify` and `chrysalis chat` against a live RA-TLS server with
//! simulated evidence on 127.0.0.1 (contracts of the RA-TLS issue).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::Output;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use chrysalis_attestation::verifier::Collateral;
use chrysalis_attestation::Tee;
use chrysalis_ratls::{EmbeddedCollateral, IdentityOptions, RaTlsIdentity};
use chrysalis_sim::SimProvider;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;

struct Server {
    addr: SocketAddr,
    identity: Arc<RaTlsIdentity>,
    chat_requests: Arc<AtomicUsize>,
    _rt: tokio::runtime::Runtime,
}

/// An RA-TLS server answering /attestation, /v1/models and a streamed
/// /v1/chat/completions, for at most 60 s.
fn server(tee: Tee) -> Server {
    server_with_gpu(tee, None, None)
}

/// Like [`server`]; the certificate commits to `committed` GPU evidence
/// (its SHA-384) and /attestation serves `served`.
fn server_with_gpu(tee: Tee, committed: Option<String>, served: Option<String>) -> Server {
    let sim = SimProvider::new(tee).unwrap();
    let collateral = match (sim.tdx_collateral(), sim.snp_certificates()) {
        (Some(t), _) => Collateral::Tdx(t),
        (None, Some(s)) => Collateral::Snp(s),
        _ => unreachable!(),
    };
    let opts = IdentityOptions {
        collateral: Some(EmbeddedCollateral::from_collateral(&collateral)),
        gpu_evidence_digest: committed.map(|b| chrysalis_gpu::evidence_digest(b.as_bytes())),
        ..Default::default()
    };
    let served = Arc::new(served);
    let identity = Arc::new(RaTlsIdentity::generate(&sim, &opts).unwrap());
    let tls = Arc::new(chrysalis_ratls::server_config(&identity, None).unwrap());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let chat_requests = Arc::new(AtomicUsize::new(0));
    let (id2, chats) = (identity.clone(), chat_requests.clone());
    rt.spawn(async move {
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
        while let Ok(Ok((tcp, _))) = tokio::time::timeout_at(deadline, listener.accept()).await {
            let (acceptor, id, sim, chats) = (acceptor.clone(), id2.clone(), sim.clone(), chats.clone());
            let served = served.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let (id, sim, chats) = (id.clone(), sim.clone(), chats.clone());
                    let served = served.clone();
                    async move {
                        let path = req.uri().path().to_string();
                        let query = req.uri().query().unwrap_or("").to_string();
                        let body = match path.as_str() {
                            "/attestation" => {
                                let nonce = chrysalis_ratls::parse_nonce_query(&query).unwrap();
                                let mut f = chrysalis_ratls::fresh_evidence(&sim, &id, &nonce).unwrap();
                                f.gpu_evidence = (*served).clone();
                                f.to_json().unwrap()
                            }
                            "/v1/models" => r#"{"object":"list","data":[{"id":"tiny","object":"model"}]}"#.into(),
                            "/v1/chat/completions" => {
                                chats.fetch_add(1, Ordering::SeqCst);
                                let _ = req.into_body().collect().await;
                                let mut s = String::new();
                                for t in ["Hel", "lo", " there"] {
                                    s.push_str(&format!("data: {{\"choices\":[{{\"delta\":{{\"content\":\"{t}\"}}}}]}}\n\n"));
                                }
                                s.push_str("data: [DONE]\n\n");
                                s
                            }
                            _ => "{}".into(),
                        };
                        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from(body))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    Server {
        addr,
        identity,
        chat_requests,
        _rt: rt,
    }
}

fn chrysalis(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_chrysalis"))
        .args(args)
        .output()
        .expect("run chrysalis")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn verify_accepts_simulated_servers_only_with_allow_sim() {
    for tee in [Tee::Tdx, Tee::Snp] {
        let s = server(tee);
        let url = format!("https://{}", s.addr);
        let o = chrysalis(&["verify", &url, "--allow-sim", "--any-image", "--json"]);
        assert_eq!(o.status.code(), Some(0), "{tee}: {}", text(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["accepted"], true);
        assert_eq!(v["simulated"], true);
        assert_eq!(v["fresh_evidence"], true, "fresh evidence is the default");
        assert_eq!(v["node"]["kind"], "unpinned");
        // Registers under measurements.json's keys.
        let key = if tee == Tee::Tdx {
            "rtmr0"
        } else {
            "host_data"
        };
        assert!(v["registers"][key].as_str().is_some(), "{v}");
        assert!(
            v["warnings"].to_string().contains("NO IMAGE PINNED"),
            "--any-image says so on every output: {v}"
        );
        let o = chrysalis(&["verify", &url, "--allow-sim", "--any-image"]);
        assert_eq!(o.status.code(), Some(0), "{tee}: {}", text(&o));
        assert!(text(&o).contains("NO IMAGE PINNED"), "{}", text(&o));
        // Without --allow-sim: rejected as simulated (and as no published image).
        let o = chrysalis(&["verify", &url]);
        assert_eq!(o.status.code(), Some(4), "{tee}: {}", text(&o));
        assert!(text(&o).contains("SIMULATED"), "{}", text(&o));
        // The default accepts only published releases: the simulator's own
        // registers are no published configuration. The node is named
        // first, then the closest published configuration, register by
        // register.
        let o = chrysalis(&["verify", &url, "--allow-sim"]);
        assert_eq!(o.status.code(), Some(4), "{tee}: {}", text(&o));
        let out = text(&o);
        assert!(out.contains("decision: REJECTED"), "{out}");
        assert!(out.contains("not an accepted configuration"), "{out}");
        assert!(out.contains("accepts:  published releases ("), "{out}");
        if tee == Tee::Snp {
            assert!(
                out.contains("closest:  chrysalis-0.2.0-cpu / snp-"),
                "{out}"
            );
            assert!(out.contains("<- differs"), "{out}");
        }
        let o = chrysalis(&["verify", &url, "--allow-sim", "--json"]);
        assert_eq!(o.status.code(), Some(4), "{tee}: {}", text(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["accepted"], false);
        assert_eq!(v["error"]["category"], "rejected");
        assert_eq!(v["node"]["simulated"], true);
        assert!(v["node"]["registers"].is_object(), "{v}");
    }
}

#[test]
fn a_policy_report_data_is_refused_for_ra_tls() {
    let s = server(Tee::Tdx);
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("p.toml");
    std::fs::write(&policy, "report_data = \"01\"\n").unwrap();
    let url = format!("https://{}", s.addr);
    let o = chrysalis(&[
        "verify",
        &url,
        "--allow-sim",
        "--policy",
        policy.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("RA-TLS binds report_data itself"),
        "{}",
        text(&o)
    );
}

#[test]
fn verify_cert_refuses_flags_it_cannot_check_offline() {
    let s = server(Tee::Tdx);
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("server.der");
    std::fs::write(&cert, s.identity.cert_der()).unwrap();
    let c = cert.to_str().unwrap();
    let gpu_policy = dir.path().join("gpu.toml");
    std::fs::write(&gpu_policy, "[gpu]\n").unwrap();
    let g = gpu_policy.to_str().unwrap();
    for (args, why) in [
        (vec!["--nonce"], "cannot prove freshness"),
        (vec!["--gpu-policy", g], "not the GPU bundle"),
        (vec!["--gpu-offline"], "not the GPU bundle"),
    ] {
        let mut all = vec!["verify", "--cert", c, "--allow-sim"];
        all.extend(args.iter().copied());
        let o = chrysalis(&all);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", text(&o));
        assert!(text(&o).contains(why), "{args:?}: {}", text(&o));
        assert!(!String::from_utf8_lossy(&o.stdout).contains("ACCEPTED"));
    }
}

#[test]
fn verify_cert_offline_and_errors_have_their_exit_codes() {
    let s = server(Tee::Tdx);
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("server.der");
    std::fs::write(&cert, s.identity.cert_der()).unwrap();
    let c = cert.to_str().unwrap();
    let o = chrysalis(&["verify", "--cert", c, "--allow-sim", "--any-image"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("ACCEPTED"));
    // A flipped byte inside the evidence: verification failure (3) or malformed (2), never accepted.
    let mut bad = s.identity.cert_der().to_vec();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x01;
    std::fs::write(&cert, &bad).unwrap();
    let o = chrysalis(&["verify", "--cert", c, "--allow-sim", "--any-image"]);
    assert!(matches!(o.status.code(), Some(2) | Some(3)), "{}", text(&o));
    std::fs::write(&cert, b"not a certificate").unwrap();
    let o = chrysalis(&["verify", "--cert", c]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    // Nothing listens on this port: connection failure is 5.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let o = chrysalis(&[
        "verify",
        &format!("https://127.0.0.1:{port}"),
        "--allow-sim",
    ]);
    assert_eq!(o.status.code(), Some(5), "{}", text(&o));
    let o = chrysalis(&["verify", "http://127.0.0.1:1"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

#[test]
fn chat_streams_over_a_verified_connection_and_sends_nothing_to_a_rejected_server() {
    let s = server(Tee::Tdx);
    let url = format!("https://{}", s.addr);
    let o = chrysalis(&["chat", &url, "--allow-sim", "--any-image", "-m", "hi"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "Hello there");
    assert_eq!(s.chat_requests.load(Ordering::SeqCst), 1);
    let o = chrysalis(&["chat", &url, "-m", "secret prompt"]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    // Simulated, but not a published image: the default still refuses.
    let o = chrysalis(&["chat", &url, "--allow-sim", "-m", "secret prompt"]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert_eq!(
        s.chat_requests.load(Ordering::SeqCst),
        1,
        "a rejected server received the prompt"
    );
}

/// NVIDIA's sample H100 evidence as a bundle (skipped without ../shared).
fn sample_gpu_bundle() -> Option<String> {
    let d =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors/nvidia");
    let report = std::fs::read_to_string(d.join("nvtrust_hopperAttestationReport.txt")).ok();
    let Some(report) = report else {
        eprintln!(
            "skipping: {} is absent (shared NVIDIA vectors)",
            d.display()
        );
        return None;
    };
    let chain = std::fs::read_to_string(d.join("nvtrust_hopperCertChain.txt")).unwrap();
    let nonce: [u8; 32] =
        hex::decode("931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb")
            .unwrap()
            .try_into()
            .unwrap();
    let ev = chrysalis_gpu::GpuEvidence {
        index: 0,
        name: None,
        report: report.split_whitespace().collect(),
        cert_chain: chain,
        cc: None,
    };
    Some(
        String::from_utf8(chrysalis_gpu::GpuEvidenceBundle::new(&nonce, vec![ev]).to_json())
            .unwrap(),
    )
}

#[test]
fn verify_checks_the_gpu_evidence_the_certificate_commits_to() {
    // Without GPU evidence, a GPU policy refuses (4).
    let plain = server(Tee::Tdx);
    let dir = tempfile::tempdir().unwrap();
    let strict = dir.path().join("gpu.toml");
    std::fs::write(&strict, "[gpu]\nocsp = \"off\"\nrequire_rims = false\n").unwrap();
    let url = format!("https://{}", plain.addr);
    let o = chrysalis(&[
        "verify",
        &url,
        "--allow-sim",
        "--any-image",
        "--gpu-policy",
        strict.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(text(&o).contains("commits to none"), "{}", text(&o));

    let Some(bundle) = sample_gpu_bundle() else {
        return;
    };
    // Committed and served: authenticity verified and shown.
    let good = server_with_gpu(Tee::Tdx, Some(bundle.clone()), Some(bundle.clone()));
    let url = format!("https://{}", good.addr);
    let o = chrysalis(&["verify", &url, "--allow-sim", "--any-image", "--nonce"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = text(&o);
    assert!(
        out.contains("bound and verified") && out.contains("driver 550.90.07"),
        "{out}"
    );
    // The sample carries no CC state: a policy requiring CC mode rejects it.
    std::fs::write(
        &strict,
        "[gpu]\nocsp = \"off\"\nrequire_rims = false\nrequire_cc_mode = true\n",
    )
    .unwrap();
    let o = chrysalis(&[
        "verify",
        &url,
        "--allow-sim",
        "--any-image",
        "--gpu-policy",
        strict.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));

    // Served evidence other than the committed one: verification failure (3).
    let swapped = bundle.replacen("\"index\":0", "\"index\":1", 1);
    assert_ne!(swapped, bundle);
    let bad = server_with_gpu(Tee::Tdx, Some(bundle), Some(swapped));
    let url = format!("https://{}", bad.addr);
    let o = chrysalis(&["verify", &url, "--allow-sim", "--any-image", "--nonce"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
}
