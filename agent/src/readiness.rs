//! Readiness: the agent is ready only when each input is — CPU evidence
//! (an RA-TLS identity exists), the engine (answers `GET /v1/models`), and
//! the GPU check when one is configured — and it is not draining.
//!
//! `/readyz` shows each input's state; the first time all are ready the
//! agent logs one line containing `ready` (the start-up contract). No other
//! log line contains that word.

use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::watch;

use crate::metrics::Metrics;

/// One readiness input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Input {
    /// CPU TEE evidence and the RA-TLS identity built on it.
    Evidence,
    /// The inference engine.
    Engine,
    /// GPU attestation (a later component; not configured by default).
    Gpu,
}

/// State of one input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InputState {
    /// Not used by this agent; counts as ready.
    NotConfigured,
    /// Not checked yet, or on its way.
    Pending,
    /// Ready.
    Ready,
    /// Checked and failing.
    Failed,
}

impl InputState {
    fn ok(self) -> bool {
        matches!(self, Self::Ready | Self::NotConfigured)
    }

    /// The word used in log lines, which keep the word "ready" for the
    /// one start-up line.
    fn log_word(self) -> &'static str {
        match self {
            Self::NotConfigured => "not configured",
            Self::Pending => "pending",
            Self::Ready => "up",
            Self::Failed => "failed",
        }
    }
}

/// An input's state with a short explanation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InputStatus {
    /// The state.
    pub state: InputState,
    /// What it means now (never request data).
    pub detail: String,
}

/// The `/readyz` document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReadinessReport {
    /// True when every input is ready and the agent is not draining.
    pub ready: bool,
    /// True once SIGTERM was received.
    pub draining: bool,
    /// Each input.
    pub inputs: Inputs,
}

/// The inputs of [`ReadinessReport`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Inputs {
    /// CPU evidence / RA-TLS identity.
    pub evidence: InputStatus,
    /// The engine.
    pub engine: InputStatus,
    /// The GPU check.
    pub gpu: InputStatus,
}

#[derive(Debug)]
struct State {
    inputs: Inputs,
    draining: bool,
    announced: bool,
}

/// Shared readiness state.
#[derive(Debug)]
pub struct Readiness {
    state: Mutex<State>,
    tx: watch::Sender<bool>,
    metrics: Arc<Metrics>,
    /// Text of the one `ready` log line.
    banner: Mutex<String>,
}

impl Readiness {
    /// Evidence and engine pending; the GPU check not configured.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        let (tx, _) = watch::channel(false);
        let pending = |d: &str| InputStatus {
            state: InputState::Pending,
            detail: d.into(),
        };
        Self {
            state: Mutex::new(State {
                inputs: Inputs {
                    evidence: pending("no RA-TLS identity yet"),
                    engine: pending("not probed yet"),
                    gpu: InputStatus {
                        state: InputState::NotConfigured,
                        detail: "no GPU check configured".into(),
                    },
                },
                draining: false,
                announced: false,
            }),
            tx,
            metrics,
            banner: Mutex::new(String::from("chrysalis-agent ready")),
        }
    }

    /// The text of the line logged when the agent first becomes ready.
    pub fn set_banner(&self, text: String) {
        *self.banner.lock().unwrap_or_else(|p| p.into_inner()) = text;
    }

    /// Sets one input.
    pub fn set(&self, input: Input, state: InputState, detail: impl Into<String>) {
        let detail = detail.into();
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let slot = match input {
            Input::Evidence => &mut s.inputs.evidence,
            Input::Engine => &mut s.inputs.engine,
            Input::Gpu => &mut s.inputs.gpu,
        };
        if slot.state == state && slot.detail == detail {
            return;
        }
        let was = slot.state;
        *slot = InputStatus { state, detail };
        if was != state {
            tracing::info!(
                input = ?input,
                state = state.log_word(),
                detail = %slot.detail,
                "readiness input changed"
            );
        }
        self.publish(&mut s);
    }

    /// Marks the agent as draining: not ready from now on.
    pub fn set_draining(&self) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.draining = true;
        self.publish(&mut s);
    }

    fn publish(&self, s: &mut State) {
        let ready = Self::compute(s);
        self.metrics.set_ready(ready);
        if ready && !s.announced {
            s.announced = true;
            let banner = self
                .banner
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            tracing::info!("{banner}");
        }
        self.tx.send_if_modified(|v| {
            let changed = *v != ready;
            *v = ready;
            changed
        });
    }

    fn compute(s: &State) -> bool {
        !s.draining
            && s.inputs.evidence.state.ok()
            && s.inputs.engine.state.ok()
            && s.inputs.gpu.state.ok()
    }

    /// True when ready.
    pub fn is_ready(&self) -> bool {
        Self::compute(&self.state.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// True once draining.
    pub fn is_draining(&self) -> bool {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .draining
    }

    /// The `/readyz` document.
    pub fn report(&self) -> ReadinessReport {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        ReadinessReport {
            ready: Self::compute(&s),
            draining: s.draining,
            inputs: s.inputs.clone(),
        }
    }

    /// Watches overall readiness.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.tx.subscribe()
    }

    /// Waits until ready.
    pub async fn wait_ready(&self) {
        let mut rx = self.subscribe();
        // The sender lives as long as `self`.
        let _ = rx.wait_for(|r| *r).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_needs_every_input_and_no_drain() {
        let r = Readiness::new(Arc::new(Metrics::new()));
        assert!(!r.is_ready());
        r.set(Input::Evidence, InputState::Ready, "tdx");
        assert!(!r.is_ready());
        r.set(Input::Engine, InputState::Ready, "ok");
        assert!(r.is_ready(), "{:?}", r.report());
        r.set(Input::Gpu, InputState::Pending, "checking");
        assert!(!r.is_ready());
        r.set(Input::Gpu, InputState::Ready, "ok");
        assert!(r.is_ready());
        r.set(Input::Engine, InputState::Failed, "down");
        let rep = r.report();
        assert!(!rep.ready);
        assert_eq!(rep.inputs.engine.state, InputState::Failed);
        r.set(Input::Engine, InputState::Ready, "ok");
        r.set_draining();
        let v = serde_json::to_value(r.report()).unwrap();
        assert_eq!(v["ready"], false);
        assert_eq!(v["draining"], true);
        assert_eq!(v["inputs"]["gpu"]["state"], "ready");
        assert_eq!(v["inputs"]["evidence"]["state"], "ready");
    }
}
