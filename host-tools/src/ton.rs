//! `chrysalis ton`: operator wallets and the on-chain machine registry.
//!
//! `register` connects to the machine's agent and verifies its RA-TLS
//! evidence with the policy first (the same code path as `chrysalis
//! verify`); only the attested public key and image measurement go on chain.
//! Exit codes: 0 ok, 1 I/O or usage, 2 malformed input, 3 evidence failed
//! verification, 4 rejected (by the policy, or by the registry on chain),
//! 5 connection (agent or TON API unreachable, rate limited, or the
//! transaction did not appear in time).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use chrysalis_attestation as att;
use chrysalis_ton::api::{ApiVersion, Outcome, StackArg, StackValue, TonApi, WaitOptions};
use chrysalis_ton::registry::{
    self, describe_exit_code, Endpoint, ImageMeasurement, Label, Machine, MachineId, Register,
    RegistryMessage, TeeType,
};
use chrysalis_ton::wallet::{KeyFile, OperatorWallet, Secret, Transfer, WalletKind};
use chrysalis_ton::TonAddress;
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use crate::client::{self, Failure, PolicyOpts};
use crate::exit;

const NANOTON: u64 = 1_000_000_000;

/// `chrysalis ton ...`
#[derive(Args)]
#[command(
    after_help = "Exit codes: 0 ok, 1 I/O or usage (e.g. key file readable by others), 2 malformed input, 3 agent evidence failed verification, 4 rejected (by the policy, or by the registry on chain: its exit code is named), 5 connection (agent or TON API unreachable, HTTP 429 after retries, transaction not confirmed).\nStart with `chrysalis ton wallet new --out operator.key`."
)]
pub struct TonArgs {
    #[command(subcommand)]
    command: TonCommand,
}

#[derive(Subcommand)]
#[allow(clippy::large_enum_variant)]
enum TonCommand {
    /// Operator keys: `new --out FILE`, `import --out FILE`, `address`, `balance`.
    #[command(subcommand)]
    Wallet(WalletCommand),
    /// Verify a machine's agent over RA-TLS, then register its attested key
    /// and measurement in the registry with a stake.
    ///
    /// `chrysalis ton register --agent https://HOST:PORT --wallet FILE --registry ADDR [--policy FILE] [--allow-sim] [--seqno N] [--dry-run] [--json]`
    Register(RegisterArgs),
    /// Re-verify a registered machine and update its key, measurement,
    /// endpoint, model and price.
    Update(UpdateArgs),
    /// Tell the registry the machine is alive.
    Heartbeat(MachineArgs),
    /// Leave the market; the stake can be withdrawn after the registry's
    /// unstake delay.
    Unregister(MachineArgs),
    /// Take the stake back after `unregister` and the delay.
    Withdraw(MachineArgs),
    /// List the registered machines; with --verify, connect to each and
    /// check that its RA-TLS evidence matches what is on chain.
    List(ListArgs),
    /// Admin: deploy a registry (code from `contract/build/registry.json`).
    DeployRegistry(DeployArgs),
    /// Admin: allow an image measurement (from a measurements.json or hex).
    AllowMeasurement(AllowArgs),
    /// Admin: remove an allowed image measurement.
    DisallowMeasurement(DisallowArgs),
}

#[derive(Subcommand)]
enum WalletCommand {
    /// Create a new key (24-word TON mnemonic) in a new file with mode 0600.
    /// The mnemonic is never printed.
    New {
        /// The key file to create (refused if it exists).
        #[arg(long)]
        out: PathBuf,
        /// Wallet contract version.
        #[arg(long, default_value = "v4r2", value_parser = ["v4r2", "v5r1"])]
        wallet_version: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Import a 24-word TON mnemonic (from --mnemonic-file or standard input)
    /// into a new key file with mode 0600.
    Import {
        /// The key file to create.
        #[arg(long)]
        out: PathBuf,
        /// Read the mnemonic from this file instead of standard input.
        #[arg(long)]
        mnemonic_file: Option<PathBuf>,
        /// Wallet contract version.
        #[arg(long, default_value = "v4r2", value_parser = ["v4r2", "v5r1"])]
        wallet_version: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the wallet's address.
    Address {
        /// Key file.
        #[arg(long)]
        wallet: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the wallet's balance and state (TON HTTP API).
    Balance {
        /// Key file.
        #[arg(long)]
        wallet: PathBuf,
        #[command(flatten)]
        api: ApiOpts,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Where the TON HTTP API is.
#[derive(Args, Clone)]
struct ApiOpts {
    /// TON HTTP API base URL (ends before /v2 or /v3).
    #[arg(long, env = "TON_API", default_value = "https://toncenter.com/api")]
    api: String,
    /// API key, sent as X-API-Key (raises the rate limit).
    #[arg(long, env = "TON_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Send with v2 sendBoc or v3 message (v3 also reports the registry's
    /// exit code).
    #[arg(long, default_value = "v3", value_parser = ["v2", "v3"])]
    api_version: String,
    /// Seconds to wait for the transaction.
    #[arg(long, default_value_t = 90)]
    wait: u64,
}

impl ApiOpts {
    fn client(&self) -> TonApi {
        let v = if self.api_version == "v2" {
            ApiVersion::V2
        } else {
            ApiVersion::V3
        };
        TonApi::new(&self.api, self.api_key.clone(), v)
    }
}

/// How a message is signed and sent.
#[derive(Args, Clone)]
struct SendOpts {
    /// Operator key file (from `chrysalis ton wallet new`).
    #[arg(long)]
    wallet: PathBuf,
    /// The registry's address.
    #[arg(long)]
    registry: String,
    /// Wallet seqno to sign for (default: read from the chain). With
    /// --dry-run this makes the command work offline; 0 includes the
    /// wallet's StateInit.
    #[arg(long)]
    seqno: Option<u32>,
    /// Message expiry, unix seconds (default: now + 300). Resending with the
    /// same --seqno and --valid-until resends the identical message.
    #[arg(long)]
    valid_until: Option<u32>,
    /// Print the signed message and what it would do; send nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    api: ApiOpts,
}

#[derive(Args)]
struct RegisterArgs {
    /// The machine's agent, https://HOST:PORT.
    #[arg(long)]
    agent: String,
    #[command(flatten)]
    send: SendOpts,
    #[command(flatten)]
    policy: PolicyOpts,
    /// Endpoint clients use, host:port (default: the --agent URL's).
    #[arg(long)]
    endpoint: Option<String>,
    /// Model identifier (default: the first of the agent's GET /v1/models).
    #[arg(long)]
    model: Option<String>,
    /// Price per million tokens, in TON.
    #[arg(long, default_value = "1")]
    price: String,
    /// Stake, in TON (at least the registry's minimum).
    #[arg(long, default_value = "10")]
    stake: String,
}

#[derive(Args)]
struct UpdateArgs {
    /// The machine id (hex, from `list`).
    #[arg(long)]
    id: String,
    /// The machine's agent, https://HOST:PORT.
    #[arg(long)]
    agent: String,
    #[command(flatten)]
    send: SendOpts,
    #[command(flatten)]
    policy: PolicyOpts,
    /// Endpoint, host:port (default: the --agent URL's).
    #[arg(long)]
    endpoint: Option<String>,
    /// Model identifier (default: the agent's first model).
    #[arg(long)]
    model: Option<String>,
    /// Price per million tokens, in TON.
    #[arg(long, default_value = "1")]
    price: String,
}

#[derive(Args)]
struct MachineArgs {
    /// The machine id (hex, from `list` or `register`).
    #[arg(long)]
    id: String,
    #[command(flatten)]
    send: SendOpts,
}

#[derive(Args)]
struct ListArgs {
    /// The registry's address.
    #[arg(long)]
    registry: String,
    /// Connect to each machine and check its evidence against the chain.
    #[arg(long)]
    verify: bool,
    #[command(flatten)]
    policy: PolicyOpts,
    #[command(flatten)]
    api: ApiOpts,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct DeployArgs {
    /// Admin key file (pays for the deployment and becomes the admin).
    #[arg(long)]
    wallet: PathBuf,
    /// Compiled contract: contract/build/registry.json (`node compile.js`).
    #[arg(long)]
    code: PathBuf,
    /// Minimum stake, in TON.
    #[arg(long, default_value = "10")]
    min_stake: String,
    /// Seconds between unregister and withdraw.
    #[arg(long, default_value_t = 7 * 24 * 3600)]
    unstake_delay: u32,
    /// Wallet seqno (default: from the chain).
    #[arg(long)]
    seqno: Option<u32>,
    /// Message expiry, unix seconds.
    #[arg(long)]
    valid_until: Option<u32>,
    /// Print what would be sent; send nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    api: ApiOpts,
}

#[derive(Args)]
struct AllowArgs {
    #[command(flatten)]
    send: SendOpts,
    /// A measurements.json (schema 1) to take the values from.
    #[arg(long, conflicts_with = "measurement")]
    measurements: Option<PathBuf>,
    /// Which configuration of --measurements (required when it has several).
    #[arg(long)]
    config: Option<String>,
    /// The 256-bit image measurement, hex (see README).
    #[arg(long, requires = "tee")]
    measurement: Option<String>,
    /// TEE of --measurement.
    #[arg(long, value_parser = ["tdx", "snp"])]
    tee: Option<String>,
    /// Release name (default: the measurements.json `image`).
    #[arg(long)]
    release: Option<String>,
}

#[derive(Args)]
struct DisallowArgs {
    #[command(flatten)]
    send: SendOpts,
    /// The image measurement, hex.
    #[arg(long)]
    measurement: String,
}

fn fail(code: i32, error: anyhow::Error) -> Failure {
    Failure { code, error }
}

fn ton_code(e: &chrysalis_ton::Error) -> i32 {
    use chrysalis_ton::Error as E;
    match e {
        E::Network { .. }
        | E::RateLimited { .. }
        | E::Api { .. }
        | E::BadResponse { .. }
        | E::NotConfirmed { .. }
        | E::GetMethod { .. } => client::CONNECTION,
        E::KeyFile { .. } | E::Io { .. } => exit::IO,
        _ => exit::MALFORMED,
    }
}

fn tf(e: chrysalis_ton::Error) -> Failure {
    fail(ton_code(&e), e.into())
}

/// "1.5" TON -> nanotons.
fn parse_ton(field: &str, s: &str) -> Result<u64, Failure> {
    let bad = || {
        fail(
            exit::MALFORMED,
            anyhow!("--{field} {s:?}: expected TON like 10 or 0.5"),
        )
    };
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty() && frac.is_empty() || frac.len() > 9 {
        return Err(bad());
    }
    if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let i: u64 = if int.is_empty() {
        0
    } else {
        int.parse().map_err(|_| bad())?
    };
    let f: u64 = format!("{frac:0<9}").parse().map_err(|_| bad())?;
    i.checked_mul(NANOTON)
        .and_then(|v| v.checked_add(f))
        .ok_or_else(bad)
}

fn fmt_ton(n: u64) -> String {
    format!("{}.{:09}", n / NANOTON, n % NANOTON)
        .trim_end_matches('0')
        .trim_end_matches('.')
        .to_string()
}

fn parse_addr(s: &str) -> Result<TonAddress, Failure> {
    s.parse::<TonAddress>()
        .map_err(|e| fail(exit::MALFORMED, anyhow!("address {s:?}: {e}")))
}

fn load_wallet(path: &std::path::Path) -> Result<OperatorWallet, Failure> {
    KeyFile::load(path).and_then(|k| k.wallet()).map_err(tf)
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The message expiry: --valid-until, else now + 300 s. It is also the
/// query id, so one (seqno, valid_until) always gives the identical message.
fn expiry(given: Option<u32>) -> u32 {
    given.unwrap_or_else(|| (now_unix() + 300) as u32)
}

fn addr_text(a: &TonAddress) -> String {
    a.to_base64_url()
}

/// Signs `body` to `to` and either prints it (dry run) or sends it and waits.
struct Prepared {
    wallet: OperatorWallet,
    to: TonAddress,
    ext: chrysalis_ton::wallet::SignedExternal,
    value: u64,
}

#[allow(clippy::too_many_arguments)]
fn prepare(
    wallet: OperatorWallet,
    to: TonAddress,
    body: tonlib_core::cell::Cell,
    value: u64,
    bounce: bool,
    state_init: Option<(tonlib_core::cell::Cell, tonlib_core::cell::Cell)>,
    seqno: Option<u32>,
    valid_until: Option<u32>,
    api: &ApiOpts,
) -> Result<Prepared, Failure> {
    let seqno = match seqno {
        Some(s) => s,
        None => api.client().seqno(wallet.address()).map_err(tf)?,
    };
    let valid_until = expiry(valid_until);
    let t = Transfer {
        to: to.clone(),
        value,
        bounce,
        body,
        state_init,
    };
    let ext = wallet.sign(&t, seqno, valid_until).map_err(tf)?;
    Ok(Prepared {
        wallet,
        to,
        ext,
        value,
    })
}

impl Prepared {
    fn describe(&self, action: &str, extra: &Value) -> Result<Value, Failure> {
        let mut v = json!({
            "action": action,
            "boc": self.ext.boc_base64().map_err(tf)?,
            "message_hash": self.ext.hash_hex(),
            "wallet": addr_text(self.wallet.address()),
            "wallet_version": self.wallet.kind().as_str(),
            "registry": addr_text(&self.to),
            "seqno": self.ext.seqno,
            "valid_until": self.ext.valid_until,
            "value_nanoton": self.value.to_string(),
            "state_init_included": self.ext.seqno == 0,
        });
        if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            for (k, x) in e {
                o.insert(k.clone(), x.clone());
            }
        }
        Ok(v)
    }

    /// Prints the dry run, or sends and waits with a spinner.
    fn run(
        &self,
        action: &str,
        extra: Value,
        dry_run: bool,
        json_out: bool,
        api: &ApiOpts,
    ) -> Result<Option<Outcome>, Failure> {
        let mut v = self.describe(action, &extra)?;
        if dry_run {
            v["dry_run"] = json!(true);
            if json_out {
                println!("{v}");
            } else {
                println!("DRY RUN: nothing sent. Would {action}:");
                print_fields(&v);
            }
            return Ok(None);
        }
        let pb = if json_out {
            indicatif::ProgressBar::hidden()
        } else {
            let pb = indicatif::ProgressBar::new_spinner();
            pb.enable_steady_tick(Duration::from_millis(120));
            pb
        };
        let opts = WaitOptions {
            timeout: Duration::from_secs(api.wait),
            interval: Duration::from_millis(if api.wait <= 10 { 250 } else { 2000 }),
            send_attempts: 4,
        };
        let res = api
            .client()
            .send_and_wait(&self.ext, self.wallet.address(), opts, |m| {
                pb.set_message(m.to_string())
            });
        pb.finish_and_clear();
        let outcome = res.map_err(tf)?;
        Ok(Some(outcome))
    }
}

fn print_fields(v: &Value) {
    if let Some(o) = v.as_object() {
        for (k, x) in o {
            let s = match x {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            println!("  {k:<20} {s}");
        }
    }
}

/// A registry exit code as a Failure (exit 4), naming what it means.
fn refused(code: i64) -> Failure {
    let what = describe_exit_code(code)
        .map(|(n, m)| format!("{n}: {m}"))
        .unwrap_or_else(|| "not a registry exit code (see README)".into());
    fail(
        exit::REJECTED,
        anyhow!("the registry refused the message with exit code {code} ({what}); the value bounced back to your wallet minus fees"),
    )
}

fn check_outcome(o: &Outcome) -> Result<(), Failure> {
    match o.destination_exit_code {
        Some(0) | None => Ok(()),
        Some(c) => Err(refused(c)),
    }
}

fn report(result: Result<Value, Failure>, json_out: bool) -> i32 {
    match result {
        Ok(v) => {
            // Null: the command printed its own output (dry runs).
            if json_out && !v.is_null() {
                println!("{v}");
            }
            exit::OK
        }
        Err(f) => {
            if json_out {
                println!(
                    "{}",
                    json!({"ok": false, "error": {"exit_code": f.code, "message": format!("{:#}", f.error)}})
                );
            } else {
                eprintln!("error: {:#}", f.error);
            }
            f.code
        }
    }
}

/// Runs `chrysalis ton`.
pub fn run(a: TonArgs) -> i32 {
    match a.command {
        TonCommand::Wallet(w) => run_wallet(w),
        TonCommand::Register(r) => {
            let j = r.send.json;
            report(register(r), j)
        }
        TonCommand::Update(u) => {
            let j = u.send.json;
            report(update(u), j)
        }
        TonCommand::Heartbeat(m) => machine_op(m, "heartbeat"),
        TonCommand::Unregister(m) => machine_op(m, "unregister"),
        TonCommand::Withdraw(m) => machine_op(m, "withdraw"),
        TonCommand::List(l) => list(l),
        TonCommand::DeployRegistry(d) => {
            let j = d.json;
            report(deploy(d), j)
        }
        TonCommand::AllowMeasurement(a) => {
            let j = a.send.json;
            report(allow(a), j)
        }
        TonCommand::DisallowMeasurement(d) => {
            let j = d.send.json;
            report(disallow(d), j)
        }
    }
}

fn run_wallet(w: WalletCommand) -> i32 {
    let (json_out, result) = match w {
        WalletCommand::New {
            out,
            wallet_version,
            json,
        } => (
            json,
            (|| {
                let kind: WalletKind = wallet_version.parse().map_err(tf)?;
                let kf = KeyFile {
                    kind,
                    secret: Secret::generate().map_err(tf)?,
                };
                kf.create(&out).map_err(tf)?;
                wallet_written(&kf, &out, json)
            })(),
        ),
        WalletCommand::Import {
            out,
            mnemonic_file,
            wallet_version,
            json,
        } => (
            json,
            (|| {
                let kind: WalletKind = wallet_version.parse().map_err(tf)?;
                let text = match &mnemonic_file {
                    Some(p) => {
                        std::fs::read_to_string(p).with_context(|| p.display().to_string())?
                    }
                    None => {
                        let mut s = String::new();
                        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
                        s
                    }
                };
                let kf = KeyFile {
                    kind,
                    secret: Secret::from_words(&text).map_err(tf)?,
                };
                kf.create(&out).map_err(tf)?;
                wallet_written(&kf, &out, json)
            })(),
        ),
        WalletCommand::Address { wallet, json } => (
            json,
            (|| {
                let w = load_wallet(&wallet)?;
                let v = json!({"wallet": addr_text(w.address()), "version": w.kind().as_str(),
                "raw": w.address().to_hex(), "public_key": hex::encode(w.public_key())});
                if !json {
                    println!("{}", addr_text(w.address()));
                }
                Ok(v)
            })(),
        ),
        WalletCommand::Balance { wallet, api, json } => (
            json,
            (|| {
                let w = load_wallet(&wallet)?;
                let st = api.client().account(w.address()).map_err(tf)?;
                if !json {
                    println!(
                        "{} TON ({}) at {}",
                        fmt_ton(st.balance),
                        st.state,
                        addr_text(w.address())
                    );
                }
                Ok(
                    json!({"wallet": addr_text(w.address()), "balance_nanoton": st.balance.to_string(), "state": st.state}),
                )
            })(),
        ),
    };
    report(result, json_out)
}

fn wallet_written(kf: &KeyFile, out: &std::path::Path, json_out: bool) -> Result<Value, Failure> {
    let w = kf.wallet().map_err(tf)?;
    if !json_out {
        println!(
            "wrote {} (mode 0600; it holds the mnemonic: back it up, never share it)",
            out.display()
        );
        println!("wallet {} {}", w.kind().as_str(), addr_text(w.address()));
        println!("fund this address, then run `chrysalis ton register`");
    }
    Ok(
        json!({"file": out.display().to_string(), "wallet": addr_text(w.address()),
        "version": w.kind().as_str(), "public_key": hex::encode(w.public_key())}),
    )
}

/// What `register`/`update`/`list --verify` learned from a verified agent.
struct Attested {
    peer: chrysalis_ratls::VerifiedPeer,
    measurement: ImageMeasurement,
    tee: TeeType,
    model: Option<String>,
}

fn image_measurement(ev: &att::VerifiedEvidence) -> (ImageMeasurement, TeeType) {
    match ev.identity() {
        att::Identity::Tdx(id) => (
            ImageMeasurement::tdx(&id.mrtd, &id.rtmr[1], &id.rtmr[2]),
            TeeType::Tdx,
        ),
        att::Identity::Snp(id) => (ImageMeasurement::snp(&id.measurement), TeeType::Snp),
    }
}

/// Connects, verifies the evidence with the policy (exit 3/4 on failure)
/// and, when asked, reads the first model of GET /v1/models.
fn attest(url: &str, policy: &PolicyOpts, want_model: bool) -> Result<Attested, Failure> {
    let cfg = Arc::new(client::verifier_config(policy)?);
    let (peer, model) = client::runtime().block_on(async {
        let (stream, peer) = client::connect(url, cfg).await?;
        let model = if want_model && peer.decision().accepted {
            let req = hyper::Request::get("/v1/models")
                .header("host", "chrysalis")
                .body(http_body_util::Full::new(hyper::body::Bytes::new()))
                .map_err(anyhow::Error::from)?;
            match tokio::time::timeout(Duration::from_secs(10), client::http_request(stream, req))
                .await
            {
                Ok(Ok((200, body))) => serde_json::from_slice::<Value>(&body)
                    .ok()
                    .and_then(|v| v["data"][0]["id"].as_str().map(str::to_string)),
                _ => None,
            }
        } else {
            None
        };
        Ok::<_, Failure>((peer, model))
    })?;
    if !peer.decision().accepted {
        let reasons = peer.decision().reasons.join("; ");
        return Err(fail(
            exit::REJECTED,
            anyhow!("the agent's evidence is authentic but the policy rejects it ({reasons}); nothing was sent"),
        ));
    }
    if peer.is_simulated() {
        eprintln!("{}", "!".repeat(78));
        eprintln!("!!! {}", att::policy::SIMULATED_WARNING);
        eprintln!("!!! registering a SIMULATED machine (--allow-sim): it proves nothing");
        eprintln!("{}", "!".repeat(78));
    }
    let (measurement, tee) = image_measurement(peer.evidence());
    Ok(Attested {
        peer,
        measurement,
        tee,
        model,
    })
}

fn endpoint_of(agent: &str, given: Option<&str>) -> Result<Endpoint, Failure> {
    let text = match given {
        Some(e) => e.to_string(),
        None => agent
            .strip_prefix("https://")
            .and_then(|r| r.split('/').next())
            .unwrap_or(agent)
            .to_string(),
    };
    Endpoint::parse(&text).map_err(|e| fail(exit::MALFORMED, e.into()))
}

fn attested_json(a: &Attested) -> Value {
    json!({
        "machine_id": MachineId::of_key(a.peer.spki_der()).to_hex(),
        "measurement": a.measurement.to_hex(),
        "tee": a.tee,
        "simulated": a.peer.is_simulated(),
        "warning": a.peer.is_simulated().then_some(att::policy::SIMULATED_WARNING),
    })
}

fn register(r: RegisterArgs) -> Result<Value, Failure> {
    // Everything offline is checked before the network is touched.
    let wallet = load_wallet(&r.send.wallet)?;
    let registry_addr = parse_addr(&r.send.registry)?;
    let endpoint = endpoint_of(&r.agent, r.endpoint.as_deref())?;
    let price = parse_ton("price", &r.price)?;
    let stake = parse_ton("stake", &r.stake)?;
    if let Some(m) = &r.model {
        Label::parse("model", m).map_err(|e| fail(exit::MALFORMED, e.into()))?;
    }
    let a = attest(&r.agent, &r.policy, r.model.is_none())?;
    let model_text = match (&r.model, &a.model) {
        (Some(m), _) => m.clone(),
        (None, Some(m)) => m.clone(),
        (None, None) => {
            eprintln!("warning: the agent did not list a model (GET /v1/models); registering \"unspecified\" (use --model)");
            "unspecified".into()
        }
    };
    let model = Label::parse("model", &model_text).map_err(|e| fail(exit::MALFORMED, e.into()))?;
    let id = MachineId::of_key(a.peer.spki_der());
    if !r.send.dry_run {
        check_min_stake(&r.send.api, &registry_addr, stake)?;
        if get_machine(&r.send.api.client(), &registry_addr, id)?.is_some() {
            return Err(fail(exit::REJECTED, anyhow!("machine {} (this agent's key) is already registered (already_registered); use `chrysalis ton update`; nothing was sent", id.to_hex())));
        }
    }
    let vu = expiry(r.send.valid_until);
    let msg = RegistryMessage::Register(Register {
        query_id: u64::from(vu),
        measurement: a.measurement,
        public_key: a.peer.spki_der().to_vec(),
        endpoint: endpoint.clone(),
        model: model.clone(),
        price_per_million: price,
        stake,
    });
    let body = msg.to_cell().map_err(tf)?;
    let p = prepare(
        wallet,
        registry_addr.clone(),
        body,
        stake + registry::FEE_RESERVE,
        true,
        None,
        r.send.seqno,
        Some(vu),
        &r.send.api,
    )?;
    let mut extra = attested_json(&a);
    extra["endpoint"] = json!(endpoint.as_str());
    extra["model"] = json!(model.as_str());
    extra["price_per_million_nanoton"] = json!(price.to_string());
    extra["stake_nanoton"] = json!(stake.to_string());
    let Some(outcome) = p.run(
        "register a machine",
        extra.clone(),
        r.send.dry_run,
        r.send.json,
        &r.send.api,
    )?
    else {
        return Ok(Value::Null);
    };
    check_outcome(&outcome)?;
    // Confirm from the chain that the attested key and measurement are there.
    let m = get_machine(&r.send.api.client(), &registry_addr, id)?.ok_or_else(|| {
        fail(exit::REJECTED, anyhow!("the transaction landed but machine {} is not in the registry: the registry refused it (measurement not allowed, stake too low, or already registered); the stake bounced back", id.to_hex()))
    })?;
    let sent_matches = m.operator == *p.wallet.address()
        && m.endpoint == endpoint.as_str()
        && m.model == model.as_str()
        && m.price_per_million == price
        && m.stake == stake;
    if !sent_matches {
        return Err(fail(
            exit::REJECTED,
            anyhow!(
                "machine {} on chain is not the registration just sent: the registry refused it",
                id.to_hex()
            ),
        ));
    }
    if m.measurement != a.measurement || m.public_key != a.peer.spki_der() {
        return Err(fail(
            exit::VERIFICATION,
            anyhow!(
                "machine {} on chain does not hold the attested key and measurement",
                id.to_hex()
            ),
        ));
    }
    let mut v = p.describe("register a machine", &extra)?;
    v["confirmed"] = json!(true);
    v["waited_s"] = json!(outcome.waited_s);
    v["machine"] = serde_json::to_value(&m).unwrap_or(Value::Null);
    if !r.send.json {
        println!(
            "registered machine {} ({} {}) at {} in registry {}",
            id.to_hex(),
            model.as_str(),
            a.measurement.to_hex(),
            endpoint.as_str(),
            addr_text(&registry_addr)
        );
        if a.peer.is_simulated() {
            println!("WARNING: SIMULATED evidence; this registration proves nothing");
        }
    }
    Ok(v)
}

fn check_min_stake(api: &ApiOpts, registry_addr: &TonAddress, stake: u64) -> Result<(), Failure> {
    let cfg = api
        .client()
        .run_get_method(registry_addr, "get_config", &[])
        .map_err(tf)?;
    if let Some(min) = cfg.get(1).and_then(StackValue::as_i64) {
        if (stake as i128) < min as i128 {
            return Err(fail(
                exit::REJECTED,
                anyhow!(
                    "--stake {} TON is below the registry's minimum {} TON; nothing was sent",
                    fmt_ton(stake),
                    fmt_ton(min as u64)
                ),
            ));
        }
    }
    Ok(())
}

fn get_machine(
    api: &TonApi,
    registry_addr: &TonAddress,
    id: MachineId,
) -> Result<Option<Machine>, Failure> {
    let st = api
        .run_get_method(
            registry_addr,
            "get_machine",
            &[StackArg::Uint(id.0.to_vec())],
        )
        .map_err(tf)?;
    match st.first() {
        Some(StackValue::Cell(c)) => Ok(Some(Machine::from_cell(id, c).map_err(tf)?)),
        _ => Ok(None),
    }
}

fn update(u: UpdateArgs) -> Result<Value, Failure> {
    let wallet = load_wallet(&u.send.wallet)?;
    let registry_addr = parse_addr(&u.send.registry)?;
    let id = MachineId::from_hex(&u.id).map_err(|e| fail(exit::MALFORMED, e.into()))?;
    let endpoint = endpoint_of(&u.agent, u.endpoint.as_deref())?;
    let price = parse_ton("price", &u.price)?;
    let a = attest(&u.agent, &u.policy, u.model.is_none())?;
    let model_text = u
        .model
        .clone()
        .or(a.model.clone())
        .unwrap_or_else(|| "unspecified".into());
    let model = Label::parse("model", &model_text).map_err(|e| fail(exit::MALFORMED, e.into()))?;
    let vu = expiry(u.send.valid_until);
    let msg = RegistryMessage::Update(chrysalis_ton::registry::Update {
        query_id: u64::from(vu),
        id,
        measurement: a.measurement,
        public_key: a.peer.spki_der().to_vec(),
        endpoint,
        model,
        price_per_million: price,
    });
    let body = msg.to_cell().map_err(tf)?;
    let p = prepare(
        wallet,
        registry_addr,
        body,
        registry::MESSAGE_VALUE,
        true,
        None,
        u.send.seqno,
        Some(vu),
        &u.send.api,
    )?;
    let extra = attested_json(&a);
    if let Some(o) = p.run(
        "update a machine",
        extra.clone(),
        u.send.dry_run,
        u.send.json,
        &u.send.api,
    )? {
        check_outcome(&o)?;
        if !u.send.json {
            println!("updated machine {}", id.to_hex());
        }
        let mut v = p.describe("update a machine", &extra)?;
        v["confirmed"] = json!(true);
        return Ok(v);
    }
    Ok(Value::Null)
}

fn machine_op(m: MachineArgs, what: &str) -> i32 {
    let j = m.send.json;
    let r = (|| {
        let wallet = load_wallet(&m.send.wallet)?;
        let registry_addr = parse_addr(&m.send.registry)?;
        let id = MachineId::from_hex(&m.id).map_err(|e| fail(exit::MALFORMED, e.into()))?;
        let vu = expiry(m.send.valid_until);
        let q = u64::from(vu);
        let msg = match what {
            "heartbeat" => RegistryMessage::Heartbeat { query_id: q, id },
            "unregister" => RegistryMessage::Unregister { query_id: q, id },
            _ => RegistryMessage::WithdrawStake { query_id: q, id },
        };
        let body = msg.to_cell().map_err(tf)?;
        let p = prepare(
            wallet,
            registry_addr,
            body,
            registry::MESSAGE_VALUE,
            true,
            None,
            m.send.seqno,
            Some(vu),
            &m.send.api,
        )?;
        let extra = json!({"machine_id": id.to_hex()});
        if let Some(o) = p.run(what, extra.clone(), m.send.dry_run, j, &m.send.api)? {
            check_outcome(&o)?;
            if !j {
                println!("{what}: done for machine {}", id.to_hex());
            }
            let mut v = p.describe(what, &extra)?;
            v["confirmed"] = json!(true);
            return Ok(v);
        }
        Ok(Value::Null)
    })();
    report(r, j)
}

fn deploy(d: DeployArgs) -> Result<Value, Failure> {
    let wallet = load_wallet(&d.wallet)?;
    let text = std::fs::read_to_string(&d.code).with_context(|| d.code.display().to_string())?;
    let j: Value = serde_json::from_str(&text)
        .map_err(|e| fail(exit::MALFORMED, anyhow!("{}: {e}", d.code.display())))?;
    let b64 = j["codeBoc64"].as_str().ok_or_else(|| {
        fail(
            exit::MALFORMED,
            anyhow!(
                "{}: no codeBoc64 (the output of contract/compile.js)",
                d.code.display()
            ),
        )
    })?;
    let code = tonlib_core::cell::BagOfCells::parse_base64(b64)
        .and_then(|b| b.single_root())
        .map_err(|e| fail(exit::MALFORMED, anyhow!("{}: {e}", d.code.display())))?;
    let code = (*code).clone();
    let min_stake = parse_ton("min-stake", &d.min_stake)?;
    let data = registry::initial_data(wallet.address(), min_stake, d.unstake_delay).map_err(tf)?;
    let addr = registry::registry_address(&code, &data).map_err(tf)?;
    let body = chrysalis_ton::wallet::empty_body().map_err(tf)?;
    let p = prepare(
        wallet,
        addr.clone(),
        body,
        NANOTON / 2,
        false,
        Some((code, data)),
        d.seqno,
        d.valid_until,
        &d.api,
    )?;
    let extra =
        json!({"min_stake_nanoton": min_stake.to_string(), "unstake_delay_s": d.unstake_delay});
    if let Some(o) = p.run(
        "deploy the registry",
        extra.clone(),
        d.dry_run,
        d.json,
        &d.api,
    )? {
        check_outcome(&o)?;
        if !d.json {
            println!("registry deployed at {}", addr_text(&addr));
        }
        let mut v = p.describe("deploy the registry", &extra)?;
        v["confirmed"] = json!(true);
        return Ok(v);
    }
    Ok(Value::Null)
}

fn allow(a: AllowArgs) -> Result<Value, Failure> {
    let wallet = load_wallet(&a.send.wallet)?;
    let registry_addr = parse_addr(&a.send.registry)?;
    let bad = |e: String| fail(exit::MALFORMED, anyhow!(e));
    let (measurement, tee, release) = if let Some(path) = &a.measurements {
        let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
        let m = chrysalis_measurements::manifest::MeasurementsManifest::from_json(&text)
            .map_err(|e| bad(format!("{}: {e}", path.display())))?;
        let cfg = match (&a.config, m.configurations.len()) {
            (Some(n), _) => m
                .configurations
                .iter()
                .find(|c| &c.name == n)
                .ok_or_else(|| bad(format!("{}: no configuration {n:?}", path.display())))?,
            (None, 1) => &m.configurations[0],
            (None, _) => {
                let names: Vec<_> = m.configurations.iter().map(|c| c.name.as_str()).collect();
                return Err(bad(format!(
                    "{} has {} configurations; pick one with --config ({})",
                    path.display(),
                    names.len(),
                    names.join(", ")
                )));
            }
        };
        let h48 = |field: &str, v: Option<&String>| -> Result<[u8; 48], Failure> {
            let v = v.ok_or_else(|| {
                bad(format!(
                    "configuration {}: {field} is null; it cannot identify the image",
                    cfg.name
                ))
            })?;
            hex::decode(v)
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| {
                    bad(format!(
                        "configuration {}: {field} is not 48 bytes of hex",
                        cfg.name
                    ))
                })
        };
        let (meas, tee) = if let Some(t) = &cfg.tdx {
            (
                ImageMeasurement::tdx(
                    &h48("mrtd", Some(&t.mrtd))?,
                    &h48("rtmr1", t.rtmr1.as_ref())?,
                    &h48("rtmr2", t.rtmr2.as_ref())?,
                ),
                TeeType::Tdx,
            )
        } else if let Some(s) = &cfg.snp {
            (
                ImageMeasurement::snp(&h48("measurement", Some(&s.measurement))?),
                TeeType::Snp,
            )
        } else {
            return Err(bad(format!(
                "configuration {} has neither tdx nor snp values",
                cfg.name
            )));
        };
        let release = a
            .release
            .clone()
            .or(m.image.clone())
            .unwrap_or_else(|| cfg.name.clone());
        (meas, tee, release)
    } else {
        let hexm = a.measurement.as_deref().ok_or_else(|| {
            fail(
                exit::IO,
                anyhow!("give --measurements FILE or --measurement HEX --tee tdx|snp"),
            )
        })?;
        let meas = ImageMeasurement::from_hex(hexm).map_err(|e| fail(exit::MALFORMED, e.into()))?;
        let tee = if a.tee.as_deref() == Some("snp") {
            TeeType::Snp
        } else {
            TeeType::Tdx
        };
        (
            meas,
            tee,
            a.release.clone().unwrap_or_else(|| "unnamed".into()),
        )
    };
    let release = Label::parse("release", &release).map_err(|e| fail(exit::MALFORMED, e.into()))?;
    let vu = expiry(a.send.valid_until);
    let msg = RegistryMessage::AddMeasurement {
        query_id: u64::from(vu),
        measurement,
        tee,
        release: release.clone(),
    };
    let body = msg.to_cell().map_err(tf)?;
    let p = prepare(
        wallet,
        registry_addr,
        body,
        registry::MESSAGE_VALUE,
        true,
        None,
        a.send.seqno,
        Some(vu),
        &a.send.api,
    )?;
    let extra =
        json!({"measurement": measurement.to_hex(), "tee": tee, "release": release.as_str()});
    if let Some(o) = p.run(
        "allow a measurement",
        extra.clone(),
        a.send.dry_run,
        a.send.json,
        &a.send.api,
    )? {
        check_outcome(&o)?;
        if !a.send.json {
            println!(
                "allowed {} ({:?}, {})",
                measurement.to_hex(),
                tee,
                release.as_str()
            );
        }
        let mut v = p.describe("allow a measurement", &extra)?;
        v["confirmed"] = json!(true);
        return Ok(v);
    }
    Ok(Value::Null)
}

fn disallow(d: DisallowArgs) -> Result<Value, Failure> {
    let wallet = load_wallet(&d.send.wallet)?;
    let registry_addr = parse_addr(&d.send.registry)?;
    let measurement =
        ImageMeasurement::from_hex(&d.measurement).map_err(|e| fail(exit::MALFORMED, e.into()))?;
    let vu = expiry(d.send.valid_until);
    let msg = RegistryMessage::RemoveMeasurement {
        query_id: u64::from(vu),
        measurement,
    };
    let body = msg.to_cell().map_err(tf)?;
    let p = prepare(
        wallet,
        registry_addr,
        body,
        registry::MESSAGE_VALUE,
        true,
        None,
        d.send.seqno,
        Some(vu),
        &d.send.api,
    )?;
    let extra = json!({"measurement": measurement.to_hex()});
    if let Some(o) = p.run(
        "disallow a measurement",
        extra.clone(),
        d.send.dry_run,
        d.send.json,
        &d.send.api,
    )? {
        check_outcome(&o)?;
        if !d.send.json {
            println!("disallowed {}", measurement.to_hex());
        }
        let mut v = p.describe("disallow a measurement", &extra)?;
        v["confirmed"] = json!(true);
        return Ok(v);
    }
    Ok(Value::Null)
}

fn list(l: ListArgs) -> i32 {
    let j = l.json;
    let r = (|| {
        let registry_addr = parse_addr(&l.registry)?;
        let api = l.api.client();
        let st = api
            .run_get_method(&registry_addr, "get_machines", &[])
            .map_err(tf)?;
        let root = match st.first() {
            Some(StackValue::Cell(c)) => Some(c.clone()),
            _ => None,
        };
        let machines = Machine::list_from_dict(root.as_ref()).map_err(tf)?;
        let mut out = Vec::new();
        let mut all_ok = true;
        for m in &machines {
            let mut v = serde_json::to_value(m).unwrap_or(Value::Null);
            if l.verify {
                let url = format!("https://{}", m.endpoint);
                let verdict = match attest(&url, &l.policy, false) {
                    Ok(a)
                        if a.peer.spki_der() == m.public_key.as_slice()
                            && a.measurement == m.measurement =>
                    {
                        if a.peer.is_simulated() {
                            "verified (SIMULATED evidence)".to_string()
                        } else {
                            "verified".to_string()
                        }
                    }
                    Ok(_) => {
                        "MISMATCH: the machine's evidence does not match the chain".to_string()
                    }
                    Err(f) => format!("FAILED: {:#}", f.error),
                };
                all_ok &= verdict.starts_with("verified");
                v["verify"] = json!(verdict);
            }
            if !j {
                println!(
                    "{}  {}  {:?}  {}  {} TON/M tokens  stake {} TON{}{}",
                    m.id.to_hex(),
                    m.endpoint,
                    m.tee,
                    m.model,
                    fmt_ton(m.price_per_million),
                    fmt_ton(m.stake),
                    if m.leaving_since != 0 {
                        "  (leaving)"
                    } else {
                        ""
                    },
                    v.get("verify")
                        .and_then(|x| x.as_str())
                        .map(|s| format!("  {s}"))
                        .unwrap_or_default()
                );
            }
            out.push(v);
        }
        if !j && machines.is_empty() {
            println!("no machines registered in {}", addr_text(&registry_addr));
        }
        if !all_ok {
            if j {
                println!(
                    "{}",
                    json!({"registry": addr_text(&registry_addr), "machines": out})
                );
            }
            return Err(fail(
                exit::REJECTED,
                anyhow!("some machines did not verify"),
            ));
        }
        Ok(json!({"registry": addr_text(&registry_addr), "machines": out}))
    })();
    report(r, j)
}
