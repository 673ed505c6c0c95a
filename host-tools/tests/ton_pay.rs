//! Paying per token end to end: the loopback TON HTTP API backed by
//! @ton/sandbox (registry + channel contracts in the sandbox's TVM), the
//! real `chrysalis-agent` (simulated TDX identity, payments in its runtime
//! settings) in front of a small OpenAI-shaped engine on loopback, and the
//! `chrysalis` command as operator and client:
//!
//! register → channel open → chat --channel (receipts verified against the
//! attested key) → channel claim → the channel on chain holds exactly
//! tokens × price claimed; a second claim finds nothing new; an agent that
//! overcharges is refused (exit 4), and the client, no longer paying it,
//! gets 402;
//! close starts the delay, during which the operator can still claim.
//!
//! Skips with a message when node or the npm packages are missing; fails
//! instead when CHRYSALIS_REQUIRE_TON=1 (CI).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;

use chrysalis_agent::config::{Config, ProviderKind, TlsSettings, Upstream};
use chrysalis_agent::identity::open_provider;
use chrysalis_agent::payment::PaymentSettings;
use chrysalis_agent::{Agent, IdentitySource, RaTlsManager};
use chrysalis_attestation::Tee;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde_json::{json, Value};

const TON: u64 = 1_000_000_000;
/// Registered price: 1 TON per million tokens.
const PRICE: u64 = TON;
/// Tokens of every answer of the engine below.
const PROMPT_TOKENS: u64 = 7;
const COMPLETION_TOKENS: u64 = 5;

mod common;
use common::{contract_dir, ton_available, Api};

/// An OpenAI-shaped engine: `/v1/models`, and chat completions that
/// always use PROMPT_TOKENS + COMPLETION_TOKENS (streamed with a final
/// usage chunk and `[DONE]`, or as one JSON answer).
async fn engine() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(300);
        while let Ok(Ok((tcp, _))) = tokio::time::timeout_at(deadline, listener.accept()).await {
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    |req: hyper::Request<hyper::body::Incoming>| async move {
                        let path = req.uri().path().to_string();
                        let body = req
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let stream = serde_json::from_slice::<Value>(&body)
                            .ok()
                            .and_then(|v| v["stream"].as_bool())
                            .unwrap_or(false);
                        let usage = json!({"prompt_tokens": PROMPT_TOKENS, "completion_tokens": COMPLETION_TOKENS,
                        "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS});
                        let (ct, text) = match (path.as_str(), stream) {
                        ("/v1/models", _) => ("application/json", json!({"object":"list","data":[{"id":"tiny","object":"model"}]}).to_string()),
                        ("/v1/chat/completions", true) => {
                            let mut s = String::new();
                            for t in ["Hello", " world"] {
                                let c = json!({"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":t}}]});
                                s.push_str(&format!("data: {c}\n\n"));
                            }
                            let u = json!({"object":"chat.completion.chunk","choices":[],"usage":usage});
                            s.push_str(&format!("data: {u}\n\ndata: [DONE]\n\n"));
                            ("text/event-stream", s)
                        }
                        ("/v1/chat/completions", false) => ("application/json", json!({"object":"chat.completion",
                            "choices":[{"index":0,"message":{"role":"assistant","content":"Hello world"}}],"usage":usage}).to_string()),
                        _ => ("application/json", "{}".to_string()),
                    };
                        let mut r = hyper::Response::new(Full::new(Bytes::from(text)));
                        r.headers_mut().insert("content-type", ct.parse().unwrap());
                        Ok::<_, Infallible>(r)
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    addr
}

/// The real agent with a simulated TDX identity, charging `price` per
/// million tokens, no unpaid credit.
async fn paid_agent(engine: SocketAddr, price: u64) -> Agent {
    let mut c = Config::with_provider(ProviderKind::Sim);
    c.listen = "127.0.0.1:0".parse().unwrap();
    c.metrics_listen = "127.0.0.1:0".parse().unwrap();
    c.upstream = Upstream::parse(&format!("http://{engine}")).unwrap();
    c.payments = Some(PaymentSettings {
        required: true,
        price_per_million: price,
        unpaid_credit: 0,
        max_in_flight_per_channel: 1,
    });
    let (provider, collateral) = open_provider(ProviderKind::Sim, Tee::Tdx, None).unwrap();
    let m = Arc::new(RaTlsManager::new(
        provider,
        collateral,
        &TlsSettings::default(),
    ));
    let agent = Agent::start(c, IdentitySource::RaTls(m)).await.unwrap();
    tokio::time::timeout(
        std::time::Duration::from_secs(30),
        agent.readiness().wait_ready(),
    )
    .await
    .expect("agent ready");
    agent
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

fn ok(o: Output) -> Output {
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    o
}

fn new_wallet(dir: &Path, name: &str) -> (String, String) {
    let p = dir.join(name);
    let ps = p.to_str().unwrap().to_string();
    let v = json_out(&ok(chrysalis(&[
        "ton", "wallet", "new", "--out", &ps, "--json",
    ])));
    (ps, v["wallet"].as_str().unwrap().to_string())
}

#[test]
fn pay_per_token_end_to_end() {
    if !ton_available("pay_per_token_end_to_end") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let engine_addr = rt.block_on(engine());
    // The honest agent charges the registered price; the other one twice it.
    let honest = rt.block_on(paid_agent(engine_addr, PRICE));
    let greedy = rt.block_on(paid_agent(engine_addr, 2 * PRICE));
    let honest_url = format!("https://{}", honest.https_addr());
    let greedy_url = format!("https://{}", greedy.https_addr());

    let dir = tempfile::tempdir().unwrap();
    let mut api = Api::start();
    let url = api.url.clone();
    let (admin_key, admin_addr) = new_wallet(dir.path(), "admin.key");
    let (op_key, op_addr) = new_wallet(dir.path(), "operator.key");
    let (client_key, client_addr) = new_wallet(dir.path(), "client.key");
    for a in [&admin_addr, &op_addr, &client_addr] {
        api.call(json!({"cmd":"fund","address":a,"amount":(100 * TON).to_string()}));
    }
    let api_args = ["--api", url.as_str(), "--wait", "5"];
    let with_api = |args: &[&str]| -> Output {
        let mut v: Vec<&str> = args.to_vec();
        v.extend_from_slice(&api_args);
        chrysalis(&v)
    };

    // The registry, its allowed (simulated) measurement, both machines.
    let code = contract_dir().join("build/registry.json");
    let o = ok(with_api(&[
        "ton",
        "deploy-registry",
        "--wallet",
        &admin_key,
        "--code",
        code.to_str().unwrap(),
        "--min-stake",
        "1",
        "--unstake-delay",
        "3600",
        "--json",
    ]));
    let registry = json_out(&o)["registry"].as_str().unwrap().to_string();
    let dry = ok(chrysalis(&[
        "ton",
        "register",
        "--agent",
        &honest_url,
        "--wallet",
        &op_key,
        "--registry",
        &registry,
        "--allow-sim",
        "--any-image",
        "--seqno",
        "1",
        "--dry-run",
        "--json",
        "--api",
        "http://127.0.0.1:9/api",
    ]));
    let measurement = json_out(&dry)["measurement"].as_str().unwrap().to_string();
    ok(with_api(&[
        "ton",
        "allow-measurement",
        "--wallet",
        &admin_key,
        "--registry",
        &registry,
        "--measurement",
        &measurement,
        "--tee",
        "tdx",
        "--release",
        "chrysalis-sim",
    ]));
    let machine = |agent: &str| -> String {
        let o = ok(with_api(&[
            "ton",
            "register",
            "--agent",
            agent,
            "--wallet",
            &op_key,
            "--registry",
            &registry,
            "--allow-sim",
            "--any-image",
            "--price",
            "1",
            "--stake",
            "1",
            "--json",
        ]));
        json_out(&o)["machine_id"].as_str().unwrap().to_string()
    };
    let honest_id = machine(&honest_url);
    let greedy_id = machine(&greedy_url);

    // The client opens a channel with 2 TON.
    let ch_code = contract_dir().join("build/channel.json");
    let ch_file = dir.path().join("honest.channel");
    let o = ok(with_api(&[
        "ton",
        "channel",
        "open",
        "--machine",
        &honest_id,
        "--deposit",
        "2",
        "--wallet",
        &client_key,
        "--registry",
        &registry,
        "--code",
        ch_code.to_str().unwrap(),
        "--out",
        ch_file.to_str().unwrap(),
        "--json",
    ]));
    let opened = json_out(&o);
    let channel = opened["channel"].as_str().unwrap().to_string();
    assert_eq!(opened["terms"]["price_per_million"], PRICE);
    assert_eq!(opened["terms"]["operator"], op_addr);
    assert_eq!(api.channel(&channel), (2, 2 * TON, 0));
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&ch_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // Two chats; each answer's receipt is verified and paid.
    let chat = |url: &str, file: &Path| {
        chrysalis(&[
            "chat",
            url,
            "--allow-sim",
            "--any-image",
            "--model",
            "tiny",
            "-m",
            "hi",
            "--channel",
            file.to_str().unwrap(),
        ])
    };
    let per_answer = (PROMPT_TOKENS + COMPLETION_TOKENS) * PRICE / 1_000_000;
    for i in 1..=2u64 {
        let o = ok(chat(&honest_url, &ch_file));
        let out = text(&o);
        assert!(out.contains("Hello world"), "{out}");
        assert!(
            out.contains(&format!("paid {per_answer} nanotons")),
            "{out}"
        );
        assert!(
            out.contains(&format!("{} nanotons in total", i * per_answer)),
            "{out}"
        );
    }
    let file: Value = serde_json::from_str(&std::fs::read_to_string(&ch_file).unwrap()).unwrap();
    assert_eq!(file["seq"], 2);
    assert_eq!(file["charged"], 2 * per_answer);
    assert_eq!(file["paid"], 2 * per_answer);

    // The operator claims: exactly tokens × price moves on chain.
    let o = ok(with_api(&[
        "ton",
        "channel",
        "claim",
        "--agent",
        &honest_url,
        "--wallet",
        &op_key,
        "--allow-sim",
        "--any-image",
        "--json",
    ]));
    let claimed = json_out(&o);
    assert_eq!(claimed["claimed"][0]["paid"], 2 * per_answer, "{claimed}");
    assert_eq!(
        api.channel(&channel),
        (
            2,
            2 * TON,
            2 * (PROMPT_TOKENS + COMPLETION_TOKENS) * PRICE / 1_000_000
        )
    );
    let txs = api.call(json!({"cmd":"transactions"}));
    let paid_to_operator: Vec<&Value> = txs["txs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| {
            t["address"] == channel.as_str() || t["address"].as_str().is_some_and(|a| a == channel)
        })
        .flat_map(|t| t["out"].as_array().unwrap().iter())
        .filter(|m| m["op"] == chrysalis_ton::channel::op::PAID)
        .collect();
    assert_eq!(paid_to_operator.len(), 1);
    assert_eq!(paid_to_operator[0]["to"], op_addr);
    // The claim carried 0.05 TON; 0.01 TON stays for gas, the rest returns.
    assert_eq!(
        paid_to_operator[0]["value"],
        (2 * per_answer + 40_000_000).to_string()
    );
    // A second claim (the same voucher again) finds nothing new.
    let o = ok(with_api(&[
        "ton",
        "channel",
        "claim",
        "--agent",
        &honest_url,
        "--wallet",
        &op_key,
        "--allow-sim",
        "--any-image",
        "--json",
    ]));
    assert_eq!(json_out(&o)["claimed"].as_array().unwrap().len(), 0);
    assert_eq!(api.channel(&channel).2, 2 * per_answer);

    // An agent that charges more than its registered price: the receipt
    // is refused (exit 4) and nothing is paid for that answer.
    let greedy_file = dir.path().join("greedy.channel");
    ok(with_api(&[
        "ton",
        "channel",
        "open",
        "--machine",
        &greedy_id,
        "--deposit",
        "1",
        "--wallet",
        &client_key,
        "--registry",
        &registry,
        "--code",
        ch_code.to_str().unwrap(),
        "--out",
        greedy_file.to_str().unwrap(),
    ]));
    let o = chat(&greedy_url, &greedy_file);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(text(&o).contains("overcharge"), "{}", text(&o));
    let g: Value = serde_json::from_str(&std::fs::read_to_string(&greedy_file).unwrap()).unwrap();
    assert_eq!(
        (g["charged"].as_u64(), g["paid"].as_u64()),
        (Some(0), Some(0))
    );
    // That client has stopped paying this agent: with no unpaid credit,
    // its next request is answered 402 until a voucher covers the charge.
    let o = chat(&greedy_url, &greedy_file);
    assert_ne!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains("402") && text(&o).contains("payment_required"),
        "{}",
        text(&o)
    );
    // The agent of one machine is not the channel of another: refused before anything is sent.
    let o = chat(&greedy_url, &ch_file);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(text(&o).contains("not the key"), "{}", text(&o));

    // The client starts the close; the operator can still claim during the delay.
    let o = ok(with_api(&[
        "ton",
        "channel",
        "close",
        "--channel",
        ch_file.to_str().unwrap(),
        "--wallet",
        &client_key,
        "--json",
    ]));
    assert_eq!(json_out(&o)["state"]["status"], "closing");
    ok(chat(&honest_url, &ch_file));
    let o = ok(with_api(&[
        "ton",
        "channel",
        "claim",
        "--agent",
        &honest_url,
        "--wallet",
        &op_key,
        "--allow-sim",
        "--any-image",
        "--json",
    ]));
    assert_eq!(json_out(&o)["claimed"][0]["claimed"], 3 * per_answer);
    assert_eq!(api.channel(&channel), (3, 2 * TON, 3 * per_answer));
    // Finishing before the delay is refused by the CLI (exit 4, nothing sent).
    let o = with_api(&[
        "ton",
        "channel",
        "close",
        "--channel",
        ch_file.to_str().unwrap(),
        "--wallet",
        &client_key,
    ]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(text(&o).contains("close delay"), "{}", text(&o));
    drop(honest);
    drop(greedy);
}

/// llama.cpp's OpenAI server (llama-cpp-python) on the tiny model of
/// `bash ci/engine.sh`, killed on drop.
struct RealEngine(Child);

impl Drop for RealEngine {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn real_engine() -> Option<(RealEngine, SocketAddr)> {
    let venv = match std::env::var_os("CHRYSALIS_ENGINE_VENV") {
        Some(v) => PathBuf::from(v),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/enginevenv"),
    };
    let (python, model) = (venv.join("bin/python"), venv.join("tiny.gguf"));
    if !python.exists() || !model.exists() {
        assert!(
            std::env::var_os("CHRYSALIS_REQUIRE_ENGINE").is_none(),
            "CHRYSALIS_REQUIRE_ENGINE is set but the real engine is missing; run `bash ci/engine.sh`"
        );
        eprintln!("SKIPPED the real-engine payment test: run `bash ci/engine.sh`");
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let child = Command::new(python)
        .args(["-m", "llama_cpp.server", "--model"])
        .arg(&model)
        .args([
            "--n_ctx",
            "256",
            "--host",
            "127.0.0.1",
            "--port",
            &port.port().to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start llama_cpp.server");
    let engine = RealEngine(child);
    for _ in 0..240 {
        if std::net::TcpStream::connect(port).is_ok() {
            return Some((engine, port));
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    panic!("llama_cpp.server did not listen within 120 s");
}

/// The same flow with the real CPU engine, which reports no `usage` in
/// streams: agent and client count its content chunks by the shared rule,
/// and what the operator claims on chain is exactly what the verified
/// receipts charged.
#[test]
fn pay_per_token_with_the_real_cpu_engine() {
    if !ton_available("pay_per_token_with_the_real_cpu_engine") {
        return;
    }
    let Some((_engine, engine_addr)) = real_engine() else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let agent = rt.block_on(paid_agent(engine_addr, PRICE));
    let agent_url = format!("https://{}", agent.https_addr());
    let dir = tempfile::tempdir().unwrap();
    let mut api = Api::start();
    let url = api.url.clone();
    let (admin_key, admin_addr) = new_wallet(dir.path(), "admin.key");
    let (op_key, op_addr) = new_wallet(dir.path(), "operator.key");
    let (client_key, client_addr) = new_wallet(dir.path(), "client.key");
    for a in [&admin_addr, &op_addr, &client_addr] {
        api.call(json!({"cmd":"fund","address":a,"amount":(100 * TON).to_string()}));
    }
    let with_api = |args: &[&str]| -> Output {
        let mut v: Vec<&str> = args.to_vec();
        v.extend_from_slice(&["--api", url.as_str(), "--wait", "5"]);
        chrysalis(&v)
    };
    let code = contract_dir().join("build/registry.json");
    let o = ok(with_api(&[
        "ton",
        "deploy-registry",
        "--wallet",
        &admin_key,
        "--code",
        code.to_str().unwrap(),
        "--min-stake",
        "1",
        "--json",
    ]));
    let registry = json_out(&o)["registry"].as_str().unwrap().to_string();
    let dry = ok(chrysalis(&[
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
        "--model",
        "tiny",
        "--seqno",
        "1",
        "--dry-run",
        "--json",
        "--api",
        "http://127.0.0.1:9/api",
    ]));
    let measurement = json_out(&dry)["measurement"].as_str().unwrap().to_string();
    ok(with_api(&[
        "ton",
        "allow-measurement",
        "--wallet",
        &admin_key,
        "--registry",
        &registry,
        "--measurement",
        &measurement,
        "--tee",
        "tdx",
        "--release",
        "chrysalis-sim",
    ]));
    let o = ok(with_api(&[
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
        "--model",
        "tiny",
        "--price",
        "1",
        "--stake",
        "1",
        "--json",
    ]));
    let machine = json_out(&o)["machine_id"].as_str().unwrap().to_string();
    let ch_file = dir.path().join("real.channel");
    let ch_code = contract_dir().join("build/channel.json");
    let o = ok(with_api(&[
        "ton",
        "channel",
        "open",
        "--machine",
        &machine,
        "--deposit",
        "1",
        "--wallet",
        &client_key,
        "--registry",
        &registry,
        "--code",
        ch_code.to_str().unwrap(),
        "--out",
        ch_file.to_str().unwrap(),
        "--json",
    ]));
    let channel = json_out(&o)["channel"].as_str().unwrap().to_string();
    let o = ok(chrysalis(&[
        "chat",
        &agent_url,
        "--allow-sim",
        "--any-image",
        "--model",
        "tiny",
        "-m",
        "hi",
        "--max-tokens",
        "8",
        "--channel",
        ch_file.to_str().unwrap(),
    ]));
    assert!(
        text(&o).contains("receipt verified against the attested key"),
        "{}",
        text(&o)
    );
    let file: Value = serde_json::from_str(&std::fs::read_to_string(&ch_file).unwrap()).unwrap();
    let charged = file["charged"].as_u64().unwrap();
    assert_eq!(file["seq"], 1);
    assert!(
        charged > 0 && charged <= 8 * PRICE / 1_000_000,
        "charged {charged}"
    );
    ok(with_api(&[
        "ton",
        "channel",
        "claim",
        "--agent",
        &agent_url,
        "--wallet",
        &op_key,
        "--allow-sim",
        "--any-image",
        "--json",
    ]));
    assert_eq!(api.channel(&channel), (2, TON, charged));
    drop(agent);
}
