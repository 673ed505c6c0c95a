//! [`verify_node`]: one function from a URL to a [`VerifiedNode`].

use chrysalis_gpu::verify::VerifiedGpuSet;
use chrysalis_ratls::{FreshEvidence, ImageId, VerifiedPeer};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use serde::Serialize;
use time::OffsetDateTime;

use crate::config::NodeConfig;
use crate::connect::connect;
use crate::error::{Error, Result};
use crate::fresh;
use crate::pin::NodeIdentity;

/// A node that passed every check the [`NodeConfig`] asked for.
#[derive(Debug, Clone)]
pub struct VerifiedNode {
    peer: VerifiedPeer,
    fresh: Option<VerifiedPeer>,
    gpus: Option<VerifiedGpuSet>,
    gpu_policy: String,
    identity: NodeIdentity,
    pin: String,
}

impl VerifiedNode {
    /// The handshake's verified peer (certificate evidence).
    pub fn peer(&self) -> &VerifiedPeer {
        &self.peer
    }

    /// The evidence bound to our nonce, when asked for.
    pub fn fresh(&self) -> Option<&VerifiedPeer> {
        self.fresh.as_ref()
    }

    /// The verified GPUs, when the node committed to GPU evidence.
    pub fn gpus(&self) -> Option<&VerifiedGpuSet> {
        self.gpus.as_ref()
    }

    /// How the GPU evidence was judged (for output).
    pub fn gpu_policy(&self) -> &str {
        &self.gpu_policy
    }

    /// Who the node is: the published configuration it matched.
    pub fn identity(&self) -> &NodeIdentity {
        &self.identity
    }

    /// What image the client accepted (for output).
    pub fn pin(&self) -> &str {
        &self.pin
    }

    /// The image identifiers the node claims in its certificate (release
    /// name, SHA-256 of its measurements.json): a hint for display only —
    /// the registers decide.
    pub fn claimed_image(&self) -> Option<&ImageId> {
        self.peer.claims().and_then(|c| c.image.as_ref())
    }

    /// True when the evidence chained to a simulated root.
    pub fn is_simulated(&self) -> bool {
        self.peer.is_simulated()
    }

    /// Everything a user must be told even though the node was accepted:
    /// simulated evidence, no image pinned, advisories, and a claimed image
    /// that differs from the matched one.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = self.peer.decision().warnings.clone();
        if let (Some(claimed), NodeIdentity::Release { release, .. }) = (
            self.claimed_image().and_then(|i| i.release.as_deref()),
            &self.identity,
        ) {
            if claimed != release {
                w.push(format!(
                    "the node's certificate claims image {claimed}, but its registers match {release} (the registers decide)"
                ));
            }
        }
        w
    }

    /// Machine-readable summary (`--json`).
    pub fn to_json(&self) -> serde_json::Value {
        #[derive(Serialize)]
        struct Out<'a> {
            accepted: bool,
            node: &'a NodeIdentity,
            accepted_images: &'a str,
            tee: String,
            tcb_status: String,
            registers: serde_json::Value,
            simulated: bool,
            warnings: Vec<String>,
            claimed_image: Option<&'a ImageId>,
            fresh_evidence: bool,
            gpu_policy: &'a str,
            gpus: Option<serde_json::Value>,
            peer: &'a VerifiedPeer,
        }
        serde_json::to_value(Out {
            accepted: true,
            node: &self.identity,
            accepted_images: &self.pin,
            tee: self.peer.tee().to_string(),
            tcb_status: self.peer.evidence().tcb_status().to_string(),
            registers: registers_json(self.peer.evidence().identity()),
            simulated: self.is_simulated(),
            warnings: self.warnings(),
            claimed_image: self.claimed_image(),
            fresh_evidence: self.fresh.is_some(),
            gpu_policy: &self.gpu_policy,
            gpus: self
                .gpus
                .as_ref()
                .and_then(|s| serde_json::to_value(s.gpus()).ok()),
            peer: &self.peer,
        })
        .unwrap_or_default()
    }
}

/// The node's registers under `measurements.json`'s keys (lowercase hex,
/// report byte order), so `--json` output and published measurements
/// compare key by key.
pub fn registers_json(identity: &chrysalis_attestation::Identity) -> serde_json::Value {
    match identity {
        chrysalis_attestation::Identity::Tdx(id) => serde_json::json!({
            "mrtd": hex::encode(id.mrtd),
            "rtmr0": hex::encode(id.rtmr[0]),
            "rtmr1": hex::encode(id.rtmr[1]),
            "rtmr2": hex::encode(id.rtmr[2]),
            "rtmr3": hex::encode(id.rtmr[3]),
            "mrconfigid": hex::encode(id.mrconfigid),
            "mrowner": hex::encode(id.mrowner),
            "mrownerconfig": hex::encode(id.mrownerconfig),
            "td_attributes": hex::encode(id.td_attributes),
            "xfam": hex::encode(id.xfam),
        }),
        chrysalis_attestation::Identity::Snp(id) => serde_json::json!({
            "measurement": hex::encode(id.measurement),
            "host_data": hex::encode(id.host_data),
            "family_id": hex::encode(id.family_id),
            "image_id": hex::encode(id.image_id),
            "id_key_digest": hex::encode(id.id_key_digest),
            "author_key_digest": hex::encode(id.author_key_digest),
        }),
    }
}

/// Judges what a transport collected: the handshake's peer and, when
/// fresh evidence was asked for, the node's answer to
/// [`fresh::request_path`]`(nonce)`. I/O-free: the Python binding calls
/// it after doing the HTTP itself; [`verify_node`] after doing it with
/// hyper.
pub fn judge(
    peer: VerifiedPeer,
    answer: Option<(u16, &[u8], &[u8])>,
    config: &NodeConfig,
    now: OffsetDateTime,
) -> Result<VerifiedNode> {
    let mut identity = config.pin().identify(peer.decision());
    let mut fresh_peer = None;
    let mut fresh_evidence: Option<FreshEvidence> = None;
    if let Some((status, body, nonce)) = answer {
        let (verified, ev) =
            fresh::verify_answer(status, body, &peer, nonce, config.verifier(), now)?;
        let fresh_identity = config.pin().identify(verified.decision());
        if fresh_identity != identity {
            return Err(Error::IdentityChanged {
                certificate: identity.to_string(),
                fresh: fresh_identity.to_string(),
            });
        }
        identity = fresh_identity;
        fresh_peer = Some(verified);
        fresh_evidence = Some(ev);
    }
    let (gpus, gpu_policy) = config
        .gpu()
        .check(&peer, fresh_evidence.as_ref(), &identity, now)?;
    if let Some(fresh_peer) = &fresh_peer {
        crate::runtime_log::judge(
            fresh_peer,
            fresh_evidence
                .as_ref()
                .and_then(|f| f.runtime_events.as_deref()),
            &identity,
            gpus.as_ref(),
        )?;
    } else if matches!(
        identity,
        NodeIdentity::Release {
            rtmr3_by_event_log: true,
            ..
        }
    ) {
        return Err(Error::RuntimeLog(format!(
            "{identity}: RTMR3 is judged by the node's event log, which comes only with fresh evidence"
        )));
    }
    Ok(VerifiedNode {
        peer,
        fresh: fresh_peer,
        gpus,
        gpu_policy,
        identity,
        pin: config.pin().describe(),
    })
}

/// An HTTP/1.1 connection to a verified node (the same TLS connection the
/// evidence was verified on).
pub struct NodeConnection {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl NodeConnection {
    /// Sends one request and returns the response head and streaming body.
    pub async fn send(
        &mut self,
        req: hyper::Request<Full<Bytes>>,
    ) -> Result<hyper::Response<Incoming>> {
        self.sender
            .send_request(req)
            .await
            .map_err(http_err("request"))
    }

    /// GET `path`; returns status and the whole body.
    pub async fn get(&mut self, path: &str) -> Result<(u16, Vec<u8>)> {
        let req = hyper::Request::get(path)
            .header("host", "chrysalis")
            .body(Full::new(Bytes::new()))
            .map_err(|e| Error::Connection {
                what: format!("GET {path}"),
                reason: e.to_string(),
            })?;
        let resp = self.send(req).await?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(http_err("reading the response body"))?
            .to_bytes()
            .to_vec();
        Ok((status, body))
    }
}

fn http_err(what: &'static str) -> impl Fn(hyper::Error) -> Error {
    move |e| Error::Connection {
        what: what.to_owned(),
        reason: e.to_string(),
    }
}

/// Connects to `url`, verifies the node as `config` asks, and returns it
/// with the open connection (for `chat` and the registry tools).
pub async fn connect_node(
    url: &str,
    config: &NodeConfig,
) -> Result<(VerifiedNode, NodeConnection)> {
    let (stream, peer) = connect(url, config.verifier().clone(), config.connect_timeout).await?;
    let (sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(http_err("HTTP/1.1 handshake"))?;
    tokio::spawn(conn);
    let mut connection = NodeConnection { sender };
    let now = config
        .verifier()
        .fixed_time()
        .unwrap_or_else(OffsetDateTime::now_utc);
    let node = if config.wants_fresh() {
        let nonce = fresh::new_nonce()?;
        let (status, body) = connection.get(&fresh::request_path(&nonce)).await?;
        judge(peer, Some((status, &body, &nonce)), config, now)?
    } else {
        judge(peer, None, config, now)?
    };
    Ok((node, connection))
}

/// Connects to `url` and verifies the node: RA-TLS handshake, evidence
/// bound to a fresh nonce (unless turned off), the published configuration
/// it runs, and its GPU evidence (required for a gpu release).
pub async fn verify_node(url: &str, config: &NodeConfig) -> Result<VerifiedNode> {
    connect_node(url, config).await.map(|(node, _)| node)
}
