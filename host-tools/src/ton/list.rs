//! `chrysalis ton list`: the registered machines, optionally verified
//! against their agents' evidence.

use anyhow::anyhow;
use chrysalis_attestation::ErrorCategory;
use chrysalis_ton::api::StackValue;
use chrysalis_ton::registry::Machine;
use chrysalis_ton::Coins;
use serde_json::{json, Value};

use super::args::ListArgs;
use super::attested::attest;
use super::input::{addr_text, parse_addr};
use super::outcome::{fail, report, tf};

/// `chrysalis ton list`, with the exit code.
pub(super) fn list(l: ListArgs) -> i32 {
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
                    Coins::from_nanotons(m.price_per_million),
                    Coins::from_nanotons(m.stake),
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
                ErrorCategory::Rejected,
                anyhow!("some machines did not verify"),
            ));
        }
        Ok(json!({"registry": addr_text(&registry_addr), "machines": out}))
    })();
    report(r, j)
}
