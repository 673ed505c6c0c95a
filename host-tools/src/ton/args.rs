//! The arguments of `chrysalis ton ...` (clap): flags, defaults and help.

use std::path::PathBuf;

use chrysalis_ton::api::{ApiVersion, TonApi};
use clap::{Args, Subcommand};

use crate::client::PolicyOpts;

/// `chrysalis ton ...`
#[derive(Args)]
#[command(
    after_help = "Exit codes: 0 ok, 1 I/O or usage (e.g. key file readable by others), 2 malformed input, 3 agent evidence failed verification, 4 rejected (by the policy, or by the registry on chain: its exit code is named), 5 connection (agent or TON API unreachable, HTTP 429 after retries, transaction not confirmed).\nStart with `chrysalis ton wallet new --out operator.key`."
)]
pub struct TonArgs {
    #[command(subcommand)]
    pub(super) command: TonCommand,
}

#[derive(Subcommand)]
#[allow(clippy::large_enum_variant)]
pub(super) enum TonCommand {
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
    /// Payment channels: `open` (client), `claim` (operator), `close` (client).
    #[command(subcommand)]
    Channel(ChannelCommand),
}

#[derive(Subcommand)]
pub(super) enum WalletCommand {
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
pub(super) struct ApiOpts {
    /// TON HTTP API base URL (ends before /v2 or /v3).
    #[arg(long, env = "TON_API", default_value = "https://toncenter.com/api")]
    pub(super) api: String,
    /// API key, sent as X-API-Key (raises the rate limit).
    #[arg(long, env = "TON_API_KEY", hide_env_values = true)]
    pub(super) api_key: Option<String>,
    /// Send with v2 sendBoc or v3 message (v3 also reports the registry's
    /// exit code).
    #[arg(long, default_value = "v3", value_parser = ["v2", "v3"])]
    pub(super) api_version: String,
    /// Seconds to wait for the transaction.
    #[arg(long, default_value_t = 90)]
    pub(super) wait: u64,
}

impl ApiOpts {
    pub(super) fn client(&self) -> TonApi {
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
pub(super) struct SendOpts {
    /// Operator key file (from `chrysalis ton wallet new`).
    #[arg(long)]
    pub(super) wallet: PathBuf,
    /// The registry's address.
    #[arg(long)]
    pub(super) registry: String,
    /// Wallet seqno to sign for (default: read from the chain). With
    /// --dry-run this makes the command work offline; 0 includes the
    /// wallet's StateInit.
    #[arg(long)]
    pub(super) seqno: Option<u32>,
    /// Message expiry, unix seconds (default: now + 300). Resending with the
    /// same --seqno and --valid-until resends the identical message.
    #[arg(long)]
    pub(super) valid_until: Option<u32>,
    /// Print the signed message and what it would do; send nothing.
    #[arg(long)]
    pub(super) dry_run: bool,
    /// Print one JSON object.
    #[arg(long)]
    pub(super) json: bool,
    #[command(flatten)]
    pub(super) api: ApiOpts,
}

#[derive(Args)]
pub(super) struct RegisterArgs {
    /// The machine's agent, https://HOST:PORT.
    #[arg(long)]
    pub(super) agent: String,
    #[command(flatten)]
    pub(super) send: SendOpts,
    #[command(flatten)]
    pub(super) policy: PolicyOpts,
    /// Endpoint clients use, host:port (default: the --agent URL's).
    #[arg(long)]
    pub(super) endpoint: Option<String>,
    /// Model identifier (default: the first of the agent's GET /v1/models).
    #[arg(long)]
    pub(super) model: Option<String>,
    /// Price per million tokens, in TON.
    #[arg(long, default_value = "1")]
    pub(super) price: String,
    /// Stake, in TON (at least the registry's minimum).
    #[arg(long, default_value = "10")]
    pub(super) stake: String,
}

#[derive(Args)]
pub(super) struct UpdateArgs {
    /// The machine id (hex, from `list`).
    #[arg(long)]
    pub(super) id: String,
    /// The machine's agent, https://HOST:PORT.
    #[arg(long)]
    pub(super) agent: String,
    #[command(flatten)]
    pub(super) send: SendOpts,
    #[command(flatten)]
    pub(super) policy: PolicyOpts,
    /// Endpoint, host:port (default: the --agent URL's).
    #[arg(long)]
    pub(super) endpoint: Option<String>,
    /// Model identifier (default: the agent's first model).
    #[arg(long)]
    pub(super) model: Option<String>,
    /// Price per million tokens, in TON.
    #[arg(long, default_value = "1")]
    pub(super) price: String,
}

#[derive(Args)]
pub(super) struct MachineArgs {
    /// The machine id (hex, from `list` or `register`).
    #[arg(long)]
    pub(super) id: String,
    #[command(flatten)]
    pub(super) send: SendOpts,
}

#[derive(Args)]
pub(super) struct ListArgs {
    /// The registry's address.
    #[arg(long)]
    pub(super) registry: String,
    /// Connect to each machine and check its evidence against the chain.
    #[arg(long)]
    pub(super) verify: bool,
    #[command(flatten)]
    pub(super) policy: PolicyOpts,
    #[command(flatten)]
    pub(super) api: ApiOpts,
    /// Print JSON.
    #[arg(long)]
    pub(super) json: bool,
}

#[derive(Args)]
pub(super) struct DeployArgs {
    /// Admin key file (pays for the deployment and becomes the admin).
    #[arg(long)]
    pub(super) wallet: PathBuf,
    /// Compiled contract: contract/build/registry.json (`node compile.js`).
    #[arg(long)]
    pub(super) code: PathBuf,
    /// Minimum stake, in TON.
    #[arg(long, default_value = "10")]
    pub(super) min_stake: String,
    /// Seconds between unregister and withdraw.
    #[arg(long, default_value_t = 7 * 24 * 3600)]
    pub(super) unstake_delay: u32,
    /// Wallet seqno (default: from the chain).
    #[arg(long)]
    pub(super) seqno: Option<u32>,
    /// Message expiry, unix seconds.
    #[arg(long)]
    pub(super) valid_until: Option<u32>,
    /// Print what would be sent; send nothing.
    #[arg(long)]
    pub(super) dry_run: bool,
    /// Print JSON.
    #[arg(long)]
    pub(super) json: bool,
    #[command(flatten)]
    pub(super) api: ApiOpts,
}

#[derive(Args)]
pub(super) struct AllowArgs {
    #[command(flatten)]
    pub(super) send: SendOpts,
    /// A measurements.json (schema 1) to take the values from.
    #[arg(long, conflicts_with = "measurement")]
    pub(super) measurements: Option<PathBuf>,
    /// Which configuration of --measurements (required when it has several).
    #[arg(long)]
    pub(super) config: Option<String>,
    /// The 256-bit image measurement, hex (see README).
    #[arg(long, requires = "tee")]
    pub(super) measurement: Option<String>,
    /// TEE of --measurement.
    #[arg(long, value_parser = ["tdx", "snp"])]
    pub(super) tee: Option<String>,
    /// Release name (default: the measurements.json `image`).
    #[arg(long)]
    pub(super) release: Option<String>,
}

#[derive(Args)]
pub(super) struct DisallowArgs {
    #[command(flatten)]
    pub(super) send: SendOpts,
    /// The image measurement, hex.
    #[arg(long)]
    pub(super) measurement: String,
}

/// `chrysalis ton channel ...`
#[derive(Subcommand)]
pub(super) enum ChannelCommand {
    /// Client: open a channel to a registered machine with a deposit; writes
    /// the channel file (mode 0600, holds the voucher key) that `chrysalis
    /// chat --channel FILE` pays through.
    Open(OpenArgs),
    /// Operator: fetch the latest vouchers from the machine's agent
    /// (GET /v1/chrysalis/vouchers over verified RA-TLS) and claim each
    /// channel's new amount on chain.
    Claim(ClaimArgs),
    /// Client: start the close (the operator can still claim for the
    /// channel's close delay); run again after the delay to take the rest
    /// of the deposit back.
    Close(CloseArgs),
}

#[derive(Args)]
pub(super) struct OpenArgs {
    /// The machine id (hex, from `chrysalis ton list`).
    #[arg(long)]
    pub(super) machine: String,
    /// Deposit, in TON.
    #[arg(long)]
    pub(super) deposit: String,
    /// The client's key file (pays the deposit, receives the rest at close).
    #[arg(long)]
    pub(super) wallet: PathBuf,
    /// The registry the machine is registered in.
    #[arg(long)]
    pub(super) registry: String,
    /// Compiled channel contract: contract/build/channel.json (`node compile.js`).
    #[arg(long)]
    pub(super) code: PathBuf,
    /// The channel file to create.
    #[arg(long)]
    pub(super) out: PathBuf,
    /// Print JSON.
    #[arg(long)]
    pub(super) json: bool,
    #[command(flatten)]
    pub(super) api: ApiOpts,
}

#[derive(Args)]
pub(super) struct ClaimArgs {
    /// The machine's agent, https://HOST:PORT.
    #[arg(long)]
    pub(super) agent: String,
    /// The operator's key file (the machine's operator in the registry).
    #[arg(long)]
    pub(super) wallet: PathBuf,
    #[command(flatten)]
    pub(super) policy: PolicyOpts,
    /// Print JSON.
    #[arg(long)]
    pub(super) json: bool,
    #[command(flatten)]
    pub(super) api: ApiOpts,
}

#[derive(Args)]
pub(super) struct CloseArgs {
    /// The channel file.
    #[arg(long)]
    pub(super) channel: PathBuf,
    /// The client's key file.
    #[arg(long)]
    pub(super) wallet: PathBuf,
    /// Print JSON.
    #[arg(long)]
    pub(super) json: bool,
    #[command(flatten)]
    pub(super) api: ApiOpts,
}
