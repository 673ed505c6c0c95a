//! `chrysalis ton`: operator wallets and the on-chain machine registry.
//!
//! `register` connects to the machine's agent and verifies its RA-TLS
//! evidence with the policy first (the same code path as `chrysalis
//! verify`); only the attested public key and image measurement go on chain.
//! Exit codes: 0 ok, 1 I/O or usage, 2 malformed input, 3 evidence failed
//! verification, 4 rejected (by the policy, or by the registry on chain),
//! 5 connection (agent or TON API unreachable, rate limited, or the
//! transaction did not appear in time).
//!
//! Rooms: [`args`] (the clap arguments), [`wallet`] (operator keys),
//! [`machine`] (register, update, heartbeat, unregister, withdraw),
//! [`admin`] (deploy-registry, allow-/disallow-measurement), [`list`];
//! beneath them [`attested`] (verifying an agent), [`send`] (signing,
//! sending and confirming a message), [`input`] (parsing flags) and
//! [`outcome`] (exit codes and how a result is printed).

mod admin;
mod args;
mod attested;
mod channel;
mod input;
mod list;
mod machine;
mod outcome;
mod send;
mod wallet;

pub use args::TonArgs;
pub(crate) use registry_pin::RegistryPin;

mod registry_pin;
use args::TonCommand;
use outcome::report;

/// Runs `chrysalis ton`.
pub fn run(a: TonArgs) -> i32 {
    match a.command {
        TonCommand::Wallet(w) => wallet::run(w),
        TonCommand::Register(r) => {
            let j = r.send.json;
            report(machine::register(r), j)
        }
        TonCommand::Update(u) => {
            let j = u.send.json;
            report(machine::update(u), j)
        }
        TonCommand::Heartbeat(m) => machine::machine_op(m, "heartbeat"),
        TonCommand::Unregister(m) => machine::machine_op(m, "unregister"),
        TonCommand::Withdraw(m) => machine::machine_op(m, "withdraw"),
        TonCommand::List(l) => list::list(l),
        TonCommand::DeployRegistry(d) => {
            let j = d.json;
            report(admin::deploy(d), j)
        }
        TonCommand::AllowMeasurement(a) => {
            let j = a.send.json;
            report(admin::allow(a), j)
        }
        TonCommand::Channel(c) => channel::run(c),
        TonCommand::DisallowMeasurement(d) => {
            let j = d.send.json;
            report(admin::disallow(d), j)
        }
    }
}
