//! `chrysalis ton` end to end over HTTP: a loopback TON HTTP API backed by
//! @ton/sandbox (host-tools/ton/contract/api-server.js) and an in-process
//! RA-TLS server with simulated evidence. The real wallet contracts and the
//! registry run in the sandbox's TVM.
//!
//! Skips with a message when node or the npm packages are missing; fails
//! instead when CHRYSALIS_REQUIRE_TON=1 (CI).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use chrysalis_attestation::verifier::Collateral;
use chrysalis_attestation::Tee;
use chrysalis_ratls::{EmbeddedCollateral, IdentityOptions, RaTlsIdentity};
use chrysalis_sim::SimProvider;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde_json::{json, Value};

mod common;
use common::{contract_dir, ton_available, Api};

/// An RA-TLS server with simulated TDX evidence answering /v1/models, for
/// at most 120 s.
fn agent() -> (SocketAddr, tokio::runtime::Runtime) {
    let sim = SimProvider::new(Tee::Tdx).unwrap();
    let collateral = Collateral::Tdx(sim.tdx_collateral().unwrap());
    let opts = IdentityOptions {
        collateral: Some(EmbeddedCollateral::from_collateral(&collateral)),
        ..Default::default()
    };
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
    rt.spawn(async move {
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(120);
        while let Ok(Ok((tcp, _))) = tokio::time::timeout_at(deadline, listener.accept()).await {
            let (acceptor, sim, identity) = (acceptor.clone(), sim.clone(), identity.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let (sim, identity) = (sim.clone(), identity.clone());
                        async move {
                            // Fresh evidence for the nonce (what every client asks
                            // for after the handshake), the model list, else `{}`.
                            let body = match req.uri().path() {
                                "/attestation" => {
                                    let q = req.uri().query().unwrap_or("").to_string();
                                    let nonce = chrysalis_ratls::parse_nonce_query(&q).unwrap();
                                    chrysalis_ratls::fresh_evidence(&sim, &identity, &nonce)
                                        .unwrap()
                                        .to_json()
                                        .unwrap()
                                }
                                "/v1/models" => {
                                    r#"{"object":"list","data":[{"id":"tiny-llama","object":"model"}]}"#
                                        .to_string()
                                }
                                _ => "{}".to_string(),
                            };
                            let _ = req.into_body().collect().await;
                            Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from(body))))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    (addr, rt)
}

fn chrysalis(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chrysalis"))
        .args(args)
        .env_remove("TON_API")
        .env_remove("TON_API_KEY")
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

fn json_out(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(o)))
}

fn new_wallet(dir: &Path, name: &str) -> (String, String) {
    let p = dir.join(name);
    let ps = p.to_str().unwrap().to_string();
    let o = chrysalis(&["ton", "wallet", "new", "--out", &ps, "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v = json_out(&o);
    (ps, v["wallet"].as_str().unwrap().to_string())
}

#[test]
fn wallet_new_is_private_and_never_prints_the_mnemonic() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("op.key");
    let ps = p.to_str().unwrap();
    let o = chrysalis(&["ton", "wallet", "new", "--out", ps]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(
        std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let file: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    let words: Vec<String> = file["mnemonic"]
        .as_str()
        .unwrap()
        .split(' ')
        .map(str::to_string)
        .collect();
    assert_eq!(words.len(), 24);
    let out = text(&o);
    assert!(
        !out.contains(&words[..4].join(" ")),
        "mnemonic printed: {out}"
    );
    // Refuses to overwrite; refuses a group-readable key file.
    let o = chrysalis(&["ton", "wallet", "new", "--out", ps]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = chrysalis(&["ton", "wallet", "address", "--wallet", ps]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("chmod 600"), "{}", text(&o));
    // Import of the same words gives the same address.
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mfile = dir.path().join("words.txt");
    std::fs::write(&mfile, words.join(" ")).unwrap();
    let p2 = dir.path().join("imported.key");
    let o = chrysalis(&[
        "ton",
        "wallet",
        "import",
        "--out",
        p2.to_str().unwrap(),
        "--mnemonic-file",
        mfile.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let a1 = json_out(&chrysalis(&[
        "ton", "wallet", "address", "--wallet", ps, "--json",
    ]));
    assert_eq!(json_out(&o)["wallet"], a1["wallet"]);
}

#[test]
fn register_end_to_end_over_http() {
    if !ton_available("register_end_to_end_over_http") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut api = Api::start();
    let (admin_key, admin_addr) = new_wallet(dir.path(), "admin.key");
    let (op_key, op_addr) = new_wallet(dir.path(), "operator.key");
    let (other_key, other_addr) = new_wallet(dir.path(), "other.key");
    for a in [&admin_addr, &op_addr, &other_addr] {
        api.call(json!({"cmd":"fund","address":a,"amount":"100000000000"}));
    }
    let url = api.url.clone();
    let (agent_addr, _rt) = agent();
    let agent_url = format!("https://{agent_addr}");

    // The admin deploys the registry (its wallet deploys itself: seqno 0).
    let code = contract_dir().join("build/registry.json");
    let o = chrysalis(&[
        "ton",
        "deploy-registry",
        "--wallet",
        &admin_key,
        "--code",
        code.to_str().unwrap(),
        "--min-stake",
        "10",
        "--unstake-delay",
        "3600",
        "--api",
        &url,
        "--wait",
        "5",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let registry = json_out(&o)["registry"].as_str().unwrap().to_string();

    let common = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = vec![
            "ton".into(),
            "register".into(),
            "--agent".into(),
            agent_url.clone(),
            "--registry".into(),
            registry.clone(),
            "--api".into(),
            url.clone(),
            "--wait".into(),
            "5".into(),
        ];
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let run = |args: Vec<String>| chrysalis(&args.iter().map(String::as_str).collect::<Vec<_>>());

    // Dry run, fully offline (--seqno), twice with the same valid_until:
    // the identical message (idempotent retry).
    let dry = |until: &str| {
        chrysalis(&[
            "ton",
            "register",
            "--agent",
            &agent_url,
            "--wallet",
            &op_key,
            "--registry",
            &registry,
            "--allow-sim",
            "--any-image",
            "--seqno",
            "0",
            "--valid-until",
            until,
            "--dry-run",
            "--json",
            "--api",
            "http://127.0.0.1:9/api",
        ])
    };
    let d1 = dry("1900000000");
    assert_eq!(d1.status.code(), Some(0), "{}", text(&d1));
    let v1 = json_out(&d1);
    assert_eq!(v1["wallet"], op_addr);
    assert_eq!(v1["registry"], registry);
    assert_eq!(v1["simulated"], true);
    assert!(v1["boc"].as_str().unwrap().len() > 100);
    assert_eq!(v1["model"], "tiny-llama");
    assert_eq!(v1["endpoint"], agent_addr.to_string());
    assert!(String::from_utf8_lossy(&d1.stderr).contains("SIMULATED"));
    let v2 = json_out(&dry("1900000000"));
    assert_eq!(v1["boc"], v2["boc"]);
    let measurement = v1["measurement"].as_str().unwrap().to_string();

    // Without --allow-sim the policy rejects the agent: exit 4, nothing sent.
    let before = api.sends();
    let o = run(common(&["--wallet", &op_key]));
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert_eq!(api.sends(), before);
    // A malformed endpoint: exit 2, nothing sent.
    let o = run(common(&[
        "--wallet",
        &op_key,
        "--allow-sim",
        "--any-image",
        "--endpoint",
        "bad host:80",
    ]));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert_eq!(api.sends(), before);

    // Measurement not allowed yet: the registry refuses (202), exit 4.
    let o = run(common(&["--wallet", &op_key, "--allow-sim", "--any-image"]));
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(text(&o).contains("202"), "{}", text(&o));
    assert!(text(&o).contains("measurement_not_allowed"), "{}", text(&o));

    // A non-admin cannot change the allowed set (201).
    let allow = |key: &str| {
        chrysalis(&[
            "ton",
            "allow-measurement",
            "--wallet",
            key,
            "--registry",
            &registry,
            "--measurement",
            &measurement,
            "--tee",
            "tdx",
            "--release",
            "chrysalis-sim",
            "--api",
            &url,
            "--wait",
            "5",
        ])
    };
    let o = allow(&other_key);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(text(&o).contains("201"), "{}", text(&o));
    let o = allow(&admin_key);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // A client that takes the allowed images from this registry accepts
    // the agent (its complete identity is on the allow-list).
    let o = chrysalis(&[
        "verify",
        &agent_url,
        "--allow-sim",
        "--registry",
        &registry,
        "--ton-api",
        &url,
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("allowed by registry {registry}")),
        "{}",
        text(&o)
    );
    assert!(!text(&o).contains("NO IMAGE PINNED"), "{}", text(&o));

    // Too little stake: refused before sending (the registry's minimum is read).
    let before = api.sends();
    let o = run(common(&[
        "--wallet",
        &op_key,
        "--allow-sim",
        "--any-image",
        "--stake",
        "1",
    ]));
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert_eq!(api.sends(), before);

    // Register, with one injected HTTP 429 on the send: retried with the same message.
    api.call(json!({"cmd":"fail_next","status":429,"count":1,"path":"/api/v3/message"}));
    let o = run(common(&[
        "--wallet",
        &op_key,
        "--allow-sim",
        "--any-image",
        "--json",
        "--price",
        "0.5",
    ]));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v = json_out(&o);
    assert_eq!(v["confirmed"], true);
    assert_eq!(v["machine"]["measurement"], measurement);
    assert_eq!(v["machine"]["endpoint"], agent_addr.to_string());
    assert_eq!(v["machine"]["price_per_million"], 500_000_000u64);
    let id = v["machine_id"].as_str().unwrap().to_string();
    let reqs = api.call(json!({"cmd":"requests"}));
    let msg_sends = reqs["requests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|q| q["path"] == "/api/v3/message")
        .count();
    assert!(msg_sends >= 2, "the 429 was not retried");

    // Registering the same key again: 207.
    let o = run(common(&["--wallet", &op_key, "--allow-sim", "--any-image"]));
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(text(&o).contains("already_registered"), "{}", text(&o));

    // The client's discovery path: list and verify against the machine.
    let o = chrysalis(&[
        "ton",
        "list",
        "--registry",
        &registry,
        "--api",
        &url,
        "--verify",
        "--allow-sim",
        "--any-image",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let l = json_out(&o);
    assert_eq!(l["machines"][0]["id"], id);
    assert_eq!(l["machines"][0]["verify"], "verified (SIMULATED evidence)");

    // Heartbeat; someone else's heartbeat is refused (209).
    let hb = |key: &str| {
        chrysalis(&[
            "ton",
            "heartbeat",
            "--id",
            &id,
            "--wallet",
            key,
            "--registry",
            &registry,
            "--api",
            &url,
            "--wait",
            "5",
        ])
    };
    assert_eq!(hb(&op_key).status.code(), Some(0));
    let o = hb(&other_key);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(text(&o).contains("not_operator"), "{}", text(&o));

    // Update re-verifies the agent and changes the price.
    let o = chrysalis(&[
        "ton",
        "update",
        "--id",
        &id,
        "--agent",
        &agent_url,
        "--wallet",
        &op_key,
        "--registry",
        &registry,
        "--allow-sim",
        "--any-image",
        "--price",
        "2",
        "--api",
        &url,
        "--wait",
        "5",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let l = json_out(&chrysalis(&[
        "ton",
        "list",
        "--registry",
        &registry,
        "--api",
        &url,
        "--json",
    ]));
    assert_eq!(l["machines"][0]["price_per_million"], 2_000_000_000u64);

    // A transaction that never appears: exit 5, naming how to resend the
    // identical message; resending it with those values lands it once.
    api.call(json!({"cmd":"drop_sends","count":1}));
    let o = chrysalis(&[
        "ton",
        "heartbeat",
        "--id",
        &id,
        "--wallet",
        &op_key,
        "--registry",
        &registry,
        "--api",
        &url,
        "--wait",
        "1",
        "--valid-until",
        "4000000000",
    ]);
    assert_eq!(o.status.code(), Some(5), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("no transaction") && t.contains("--valid-until 4000000000"),
        "{t}"
    );
    let seqno = t
        .split("--seqno ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .unwrap()
        .to_string();
    let o = chrysalis(&[
        "ton",
        "heartbeat",
        "--id",
        &id,
        "--wallet",
        &op_key,
        "--registry",
        &registry,
        "--api",
        &url,
        "--wait",
        "5",
        "--seqno",
        &seqno,
        "--valid-until",
        "4000000000",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    // v2 sendBoc gives no exit code: register reads the registry back. The
    // admin disallows the measurement, a second agent registers over v2,
    // the registry refuses it on chain (202) and the CLI says so (exit 4).
    let o = chrysalis(&[
        "ton",
        "disallow-measurement",
        "--wallet",
        &admin_key,
        "--registry",
        &registry,
        "--measurement",
        &measurement,
        "--api",
        &url,
        "--wait",
        "5",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // Disallowed: the registry-pinned client now refuses the same agent.
    let o = chrysalis(&[
        "verify",
        &agent_url,
        "--allow-sim",
        "--registry",
        &registry,
        "--ton-api",
        &url,
    ]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(
        text(&o).contains("is not allowed by registry"),
        "{}",
        text(&o)
    );
    let (agent2, _rt2) = agent();
    let o = chrysalis(&[
        "ton",
        "register",
        "--agent",
        &format!("https://{agent2}"),
        "--wallet",
        &op_key,
        "--registry",
        &registry,
        "--api",
        &url,
        "--wait",
        "5",
        "--allow-sim",
        "--any-image",
        "--api-version",
        "v2",
    ]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(text(&o).contains("is not in the registry"), "{}", text(&o));

    // Unregister, then an early withdraw is refused (211: the delay is 3600 s).
    let op_cmd = |what: &str| {
        chrysalis(&[
            "ton",
            what,
            "--id",
            &id,
            "--wallet",
            &op_key,
            "--registry",
            &registry,
            "--api",
            &url,
            "--wait",
            "5",
        ])
    };
    assert_eq!(op_cmd("unregister").status.code(), Some(0));
    let o = op_cmd("withdraw");
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(text(&o).contains("delay_not_over"), "{}", text(&o));

    // The API key travels in X-API-Key.
    let o = chrysalis(&[
        "ton",
        "wallet",
        "balance",
        "--wallet",
        &op_key,
        "--api",
        &url,
        "--api-key",
        "k123",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let reqs = api.call(json!({"cmd":"requests"}));
    assert_eq!(
        reqs["requests"].as_array().unwrap().last().unwrap()["api_key"],
        "k123"
    );

    // An unreachable API: exit 5 with what to do.
    let o = chrysalis(&[
        "ton",
        "wallet",
        "balance",
        "--wallet",
        &op_key,
        "--api",
        "http://127.0.0.1:9/api",
    ]);
    assert_eq!(o.status.code(), Some(5), "{}", text(&o));
    assert!(text(&o).contains("network error"), "{}", text(&o));
}

#[test]
fn allow_measurement_reads_measurements_json() {
    use chrysalis_ton::registry::ImageMeasurement;
    let dir = tempfile::tempdir().unwrap();
    let (admin_key, _) = new_wallet(dir.path(), "admin.key");
    let (mrtd, r0, r1, r2) = ([0x11u8; 48], [0x10u8; 48], [0x22u8; 48], [0x33u8; 48]);
    let manifest = json!({
        "schema": 1, "tool": "chrysalis test", "image": "chrysalis-0.1.0",
        "configurations": [
            {"name": "tdx-small", "vm": {"vcpus": 2, "memory_mib": 2048, "vmm": "qemu"},
             "tdx": {"mrtd": hex::encode(mrtd), "rtmr0": hex::encode(r0), "rtmr1": hex::encode(r1), "rtmr2": hex::encode(r2), "rtmr3": null}},
            {"name": "tdx-no-rtmr0", "vm": {"vcpus": 2, "memory_mib": 2048, "vmm": "qemu"},
             "tdx": {"mrtd": hex::encode(mrtd), "rtmr0": null, "rtmr1": hex::encode(r1), "rtmr2": hex::encode(r2), "rtmr3": null}},
            {"name": "snp-small", "vm": {"vcpus": 2, "memory_mib": 2048, "vmm": "qemu"},
             "snp": {"measurement": hex::encode([0x44u8; 48]), "vcpu_type": "EPYC-v4", "guest_features": "0x1"}}
        ]
    });
    let mpath = dir.path().join("measurements.json");
    std::fs::write(&mpath, manifest.to_string()).unwrap();
    let m = mpath.to_str().unwrap();
    let registry = "EQBHAtqt6uv58MtvYFI5qtWQNgME6LhrxBCUzJ46HzohO6oO";
    let base = [
        "ton",
        "allow-measurement",
        "--wallet",
        &admin_key,
        "--registry",
        registry,
        "--measurements",
        m,
        "--seqno",
        "3",
        "--dry-run",
        "--json",
        "--api",
        "http://127.0.0.1:9/api",
    ];
    // Two configurations and no --config: names them, exit 2.
    let o = chrysalis(&base);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("tdx-small, tdx-no-rtmr0, snp-small"),
        "{}",
        text(&o)
    );
    let mut args = base.to_vec();
    args.extend(["--config", "tdx-small"]);
    let o = chrysalis(&args);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v = json_out(&o);
    // The complete identity: every register, RTMR3 of the default host
    // configuration (a cpu image measures `{}`), MRCONFIGID/MROWNER/
    // MROWNERCONFIG zero.
    let rtmr3 = chrysalis_attestation::runtime_events::rtmr3_expected(b"{}");
    assert_eq!(
        v["measurement"],
        ImageMeasurement::tdx(&chrysalis_ton::registry::TdxRegisters {
            mrtd,
            rtmr: [r0, r1, r2, rtmr3],
            mrconfigid: [0; 48],
            mrowner: [0; 48],
            mrownerconfig: [0; 48],
        })
        .to_hex()
    );
    assert_eq!(v["release"], "chrysalis-0.1.0");
    assert_eq!(v["tee"], "tdx");
    // A configuration that does not predict a register cannot be allowed:
    // a subset would admit machines that differ in it.
    let mut args = base.to_vec();
    args.extend(["--config", "tdx-no-rtmr0"]);
    let o = chrysalis(&args);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("RTMR0"), "{}", text(&o));
    let mut args = base.to_vec();
    args.extend(["--config", "snp-small"]);
    let v = json_out(&chrysalis(&args));
    let host_data: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest(b"{}").into();
    assert_eq!(
        v["measurement"],
        ImageMeasurement::snp(&[0x44; 48], &host_data).to_hex()
    );
}
