//! `chrysalis ton wallet`: create, import and show operator keys.

use std::path::Path;

use anyhow::Context;
use chrysalis_ton::wallet::{KeyFile, Secret, WalletKind};
use chrysalis_ton::Coins;
use serde_json::{json, Value};

use super::args::WalletCommand;
use super::input::{addr_text, load_wallet};
use super::outcome::{report, tf};
use crate::client::Failure;

/// `chrysalis ton wallet ...`, with the exit code.
pub(super) fn run(w: WalletCommand) -> i32 {
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
                    Some(p) => std::fs::read_to_string(p)
                        .with_context(|| p.display().to_string())
                        .map_err(Failure::io)?,
                    None => {
                        let mut s = String::new();
                        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
                            .context("reading standard input")
                            .map_err(Failure::io)?;
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
                        Coins::from_nanotons(st.balance),
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

fn wallet_written(kf: &KeyFile, out: &Path, json_out: bool) -> Result<Value, Failure> {
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
