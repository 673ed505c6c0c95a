//! The RTMR3 event log a TDX node serves with its fresh evidence, replayed
//! against the verified RTMR3 and judged event by event.
//!
//! The log is unsigned; it proves something only because replaying it
//! ([`replay_log`], every digest recomputed from name and payload) gives
//! the RTMR3 of evidence we verified. Then each event is judged:
//!
//! * shape: `config`, `gpu`, `boot-done`, in that order, each at most once,
//!   `boot-done` last (nothing extended after it; an agent that extended
//!   twice, or a host that added an event, fails here or in the replay);
//! * for a published configuration: `config` is the default host
//!   configuration; `gpu` is present exactly when the configuration
//!   requires GPU evidence, and its payload equals the state
//!   (`VerifiedGpuSet::event_state`: count, driver, CC, dev tools) of the
//!   GPU evidence this client verified itself. A release that pins RTMR3
//!   pins this state too; the comparison names the difference in words.

use chrysalis_attestation::runtime_events::{
    check_log_shape, replay_log, LoggedEvent, RTMR3_CONFIG_EVENT, RTMR3_GPU_EVENT,
};
use chrysalis_attestation::Identity;
use chrysalis_gpu::verify::VerifiedGpuSet;
use chrysalis_ratls::VerifiedPeer;
use chrysalis_releases::DEFAULT_HOST_CONFIGURATION;
use sha2::{Digest, Sha384};

use crate::error::{Error, Result};
use crate::pin::NodeIdentity;

/// Judges the log served with `fresh` (TDX only; SNP has no runtime
/// register). Required when the configuration leaves RTMR3 to the log.
pub fn judge(
    fresh: &VerifiedPeer,
    log: Option<&[LoggedEvent]>,
    identity: &NodeIdentity,
    gpus: Option<&VerifiedGpuSet>,
) -> Result<()> {
    let Identity::Tdx(id) = fresh.evidence().identity() else {
        return Ok(());
    };
    let required = matches!(
        identity,
        NodeIdentity::Release {
            rtmr3_by_event_log: true,
            ..
        }
    );
    let Some(log) = log else {
        if required {
            return Err(Error::RuntimeLog(format!(
                "{identity} leaves RTMR3 to the node's event log, but the node served none"
            )));
        }
        return Ok(());
    };
    check_log_shape(log).map_err(Error::RuntimeLog)?;
    let replayed = replay_log(log);
    if replayed != id.rtmr[3] {
        return Err(Error::RuntimeLog(format!(
            "the served log replays to {} but the verified RTMR3 is {}",
            hex::encode(replayed),
            hex::encode(id.rtmr[3])
        )));
    }
    let NodeIdentity::Release { requires_gpu, .. } = identity else {
        return Ok(());
    };
    let default_config: [u8; 48] = Sha384::digest(DEFAULT_HOST_CONFIGURATION).into();
    for e in log {
        if e.name == RTMR3_CONFIG_EVENT && e.payload != default_config {
            return Err(Error::RuntimeLog(format!(
                "the config event measures {} but {identity} allows only the default host configuration (SHA-384 {})",
                hex::encode(&e.payload),
                hex::encode(default_config)
            )));
        }
    }
    if !log.iter().any(|e| e.name == RTMR3_CONFIG_EVENT) {
        return Err(Error::RuntimeLog(
            "no config event: the node measured no runtime configuration".into(),
        ));
    }
    let gpu_event = log.iter().find(|e| e.name == RTMR3_GPU_EVENT);
    match (gpu_event, *requires_gpu, gpus) {
        (None, false, _) => Ok(()),
        (Some(_), false, _) => Err(Error::RuntimeLog(format!(
            "a gpu event, but {identity} has no GPU"
        ))),
        (None, true, _) => Err(Error::RuntimeLog(format!(
            "no gpu event, but {identity} requires verified GPUs"
        ))),
        (Some(_), true, None) => Err(Error::RuntimeLog(
            "a gpu event, but no GPU evidence was verified to judge it".into(),
        )),
        (Some(e), true, Some(set)) => {
            let state = set.event_state();
            let want = state.payload();
            if e.payload != want {
                return Err(Error::RuntimeLog(format!(
                    "the gpu event measures GPU state {} but the GPU evidence served now has state {} ({}): the GPUs changed since boot, or the boot gate saw others",
                    hex::encode(&e.payload),
                    hex::encode(want),
                    String::from_utf8_lossy(&state.canonical_json())
                )));
            }
            Ok(())
        }
    }
}
