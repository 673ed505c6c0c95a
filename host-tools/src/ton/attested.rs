//! Connecting to a machine's agent and verifying its RA-TLS evidence with
//! the policy: what `register`, `update` and `list --verify` put on or
//! compare with the chain.

use chrysalis_attestation::ErrorCategory;
use std::time::Duration;

use anyhow::anyhow;
use chrysalis_attestation as att;
use chrysalis_ton::registry::{ImageMeasurement, MachineId, TdxRegisters, TeeType};
use serde_json::{json, Value};

use super::outcome::fail;
use crate::client::{self, Failure, PolicyOpts};

/// What `register`/`update`/`list --verify` learned from a verified agent.
pub(super) struct Attested {
    pub(super) peer: chrysalis_ratls::VerifiedPeer,
    pub(super) measurement: ImageMeasurement,
    pub(super) tee: TeeType,
    pub(super) model: Option<String>,
}

pub(super) fn image_measurement(ev: &att::VerifiedEvidence) -> (ImageMeasurement, TeeType) {
    match ev.identity() {
        att::Identity::Tdx(id) => (
            ImageMeasurement::tdx(&TdxRegisters {
                mrtd: id.mrtd,
                rtmr: id.rtmr,
                mrconfigid: id.mrconfigid,
                mrowner: id.mrowner,
                mrownerconfig: id.mrownerconfig,
            }),
            TeeType::Tdx,
        ),
        att::Identity::Snp(id) => (
            ImageMeasurement::snp(&id.measurement, &id.host_data),
            TeeType::Snp,
        ),
    }
}

/// Connects to a machine's agent and verifies it as any client verifies a
/// node; a policy rejection is said in words (exit 4: nothing was sent).
pub(super) async fn connect_agent(
    url: &str,
    cfg: &chrysalis_client::NodeConfig,
) -> Result<
    (
        chrysalis_client::VerifiedNode,
        chrysalis_client::NodeConnection,
    ),
    Failure,
> {
    chrysalis_client::node::connect_node(url, cfg)
        .await
        .map_err(|e| match e.rejected_node() {
            Some((reasons, _)) => fail(
                ErrorCategory::Rejected,
                anyhow!(
                    "the agent's evidence is authentic but the policy rejects it: {}; nothing was sent",
                    reasons.join("; ")
                ),
            ),
            None => Failure::from(e),
        })
}

/// Connects and verifies the node as `chrysalis verify` does (published
/// releases by default, fresh evidence, GPU evidence for gpu releases; exit
/// 3/4 on failure) and, when asked, reads the first model of GET
/// /v1/models over the same verified connection.
pub(super) fn attest(
    url: &str,
    policy: &PolicyOpts,
    want_model: bool,
) -> Result<Attested, Failure> {
    let cfg = client::node_config(policy, &client::GpuOpts::default())?;
    let (node, model) = client::runtime().block_on(async {
        let (node, mut conn) = connect_agent(url, &cfg).await?;
        let model = if want_model {
            match tokio::time::timeout(Duration::from_secs(10), conn.get("/v1/models")).await {
                Ok(Ok((200, body))) => serde_json::from_slice::<Value>(&body)
                    .ok()
                    .and_then(|v| v["data"][0]["id"].as_str().map(str::to_string)),
                _ => None,
            }
        } else {
            None
        };
        Ok::<_, Failure>((node, model))
    })?;
    if node.is_simulated() {
        eprintln!("{}", "!".repeat(78));
        eprintln!("!!! {}", att::policy::SIMULATED_WARNING);
        eprintln!("!!! registering a SIMULATED machine (--allow-sim): it proves nothing");
        eprintln!("{}", "!".repeat(78));
    }
    eprintln!("verified: {}", node.identity());
    let peer = node.peer().clone();
    let (measurement, tee) = image_measurement(peer.evidence());
    Ok(Attested {
        peer,
        measurement,
        tee,
        model,
    })
}

/// The attested facts as JSON fields of a command's output.
pub(super) fn attested_json(a: &Attested) -> Value {
    json!({
        "machine_id": MachineId::of_key(a.peer.spki_der()).to_hex(),
        "measurement": a.measurement.to_hex(),
        "tee": a.tee,
        "simulated": a.peer.is_simulated(),
        "warning": a.peer.is_simulated().then_some(att::policy::SIMULATED_WARNING),
    })
}
