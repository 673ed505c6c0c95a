//! The engine's readiness (`GET /v1/models` answers 200) and, with
//! `--engine-cmd`, its supervision: start, wait until it answers, restart
//! with exponential backoff when it exits or never answers, stop on
//! shutdown (SIGTERM to its process group, SIGKILL after a grace period).

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::StatusCode;
use http_body_util::BodyExt;
use tokio::process::{Child, Command};
use tokio::sync::watch;

use crate::config::{format_duration, EngineSettings};
use crate::metrics::Metrics;
use crate::readiness::{Input, InputState};
use crate::shared::Shared;
use crate::upstream::UpstreamError;

/// How often a not-yet-answering engine is probed.
pub const FAST_PROBE: Duration = Duration::from_millis(250);
/// Bound on one probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// A supervised engine that ran this long resets the backoff.
const STABLE_AFTER: Duration = Duration::from_secs(60);

/// One probe: `GET /v1/models` must answer 200 within 3 s.
pub async fn probe(shared: &Shared) -> Result<(), String> {
    let req = shared.upstream_request(
        http::Method::GET,
        http::uri::PathAndQuery::from_static("/v1/models"),
        http::HeaderMap::new(),
        Bytes::new(),
    );
    let fut = async {
        let (resp, conn) = shared.pool.send(req).await.map_err(|e| match e {
            UpstreamError::Connect(d) | UpstreamError::Response(d) => {
                format!("GET /v1/models: {d}")
            }
        })?;
        let status = resp.status();
        // Read the (small) answer so the connection returns to the pool.
        if resp.into_body().collect().await.is_ok() {
            conn.release();
        }
        if status == StatusCode::OK {
            Ok(())
        } else {
            Err(format!("GET /v1/models answered {status}"))
        }
    };
    tokio::time::timeout(PROBE_TIMEOUT, fut)
        .await
        .unwrap_or_else(|_| Err("GET /v1/models did not answer within 3 s".into()))
}

/// Probes an engine started by someone else until `stop`: every 250 ms
/// while it does not answer, every `interval` once it does.
pub async fn probe_loop(shared: Arc<Shared>, interval: Duration, mut stop: watch::Receiver<bool>) {
    loop {
        let ok = match probe(&shared).await {
            Ok(()) => {
                shared.readiness.set(
                    Input::Engine,
                    InputState::Ready,
                    format!("{} answers GET /v1/models", shared.upstream.base_url()),
                );
                true
            }
            Err(e) => {
                shared.readiness.set(Input::Engine, InputState::Failed, e);
                false
            }
        };
        let wait = if ok { interval } else { FAST_PROBE };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shared.engine_wake.notified() => {}
            _ = stop.changed() => return,
        }
    }
}

enum StartOutcome {
    Answering,
    Exited(String),
    NeverAnswered,
    Stopped,
}

/// Runs `settings.cmd` under supervision until `stop` fires, then stops
/// the engine.
pub async fn supervise(
    shared: Arc<Shared>,
    settings: EngineSettings,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    let Some(cmd) = settings.cmd.clone() else {
        return;
    };
    let readiness = shared.readiness.clone();
    let mut backoff = settings.backoff_initial;
    let mut attempt: u64 = 0;
    loop {
        attempt += 1;
        if attempt > 1 {
            metrics.engine_restarted();
        }
        readiness.set(
            Input::Engine,
            InputState::Pending,
            format!("engine starting (attempt {attempt})"),
        );
        let started = Instant::now();
        let why = match spawn(&cmd) {
            Err(e) => format!("could not start the engine command: {e}"),
            Ok(mut child) => {
                let pid = child.id();
                tracing::info!(pid, attempt, "engine process started");
                let outcome = wait_answering(&shared, &mut child, &settings, &mut stop).await;
                // However it ends (even if this task is dropped), nothing
                // of its process group may outlive it: the shell can die
                // and leave its children behind.
                let _group = GroupGuard(pid);
                let why = match outcome {
                    StartOutcome::Stopped => {
                        stop_child(&mut child, settings.stop_timeout).await;
                        return;
                    }
                    StartOutcome::Exited(s) => format!("engine exited during start-up ({s})"),
                    StartOutcome::NeverAnswered => {
                        stop_child(&mut child, settings.stop_timeout).await;
                        format!(
                            "engine did not answer GET /v1/models within {}",
                            format_duration(settings.ready_timeout)
                        )
                    }
                    StartOutcome::Answering => {
                        tracing::info!(
                            pid,
                            secs = started.elapsed().as_secs_f64(),
                            "engine answers GET /v1/models"
                        );
                        match run(&shared, &mut child, &settings, &mut stop, pid).await {
                            None => {
                                stop_child(&mut child, settings.stop_timeout).await;
                                return;
                            }
                            Some(s) => format!("engine exited ({s})"),
                        }
                    }
                };
                why
            }
        };
        if started.elapsed() >= STABLE_AFTER {
            backoff = settings.backoff_initial;
        }
        tracing::warn!(
            restart_in = %format_duration(backoff),
            "{why}"
        );
        readiness.set(
            Input::Engine,
            InputState::Failed,
            format!("{why}; restarting in {}", format_duration(backoff)),
        );
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => return,
        }
        backoff = (backoff * 2).min(settings.backoff_max);
    }
}

fn spawn(cmd: &str) -> std::io::Result<Child> {
    Command::new("/bin/sh")
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::null())
        // Its own process group, so that stopping it reaches the
        // processes the shell started too.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
}

async fn wait_answering(
    shared: &Shared,
    child: &mut Child,
    settings: &EngineSettings,
    stop: &mut watch::Receiver<bool>,
) -> StartOutcome {
    let deadline = tokio::time::Instant::now() + settings.ready_timeout;
    loop {
        tokio::select! {
            st = child.wait() => {
                return StartOutcome::Exited(match st {
                    Ok(s) => s.to_string(),
                    Err(e) => e.to_string(),
                });
            }
            _ = stop.changed() => return StartOutcome::Stopped,
            _ = tokio::time::sleep(FAST_PROBE) => {
                if probe(shared).await.is_ok() {
                    return StartOutcome::Answering;
                }
                if tokio::time::Instant::now() >= deadline {
                    return StartOutcome::NeverAnswered;
                }
            }
        }
    }
}

/// Watches a started engine; `Some(status)` when it exits, `None` on stop.
async fn run(
    shared: &Shared,
    child: &mut Child,
    settings: &EngineSettings,
    stop: &mut watch::Receiver<bool>,
    pid: Option<u32>,
) -> Option<String> {
    let pid_text = pid.map(|p| p.to_string()).unwrap_or_default();
    loop {
        let answering = match probe(shared).await {
            Ok(()) => {
                shared.readiness.set(
                    Input::Engine,
                    InputState::Ready,
                    format!("supervised engine (pid {pid_text}) answers GET /v1/models"),
                );
                true
            }
            Err(e) => {
                shared.readiness.set(
                    Input::Engine,
                    InputState::Failed,
                    format!("supervised engine (pid {pid_text}) runs but: {e}"),
                );
                false
            }
        };
        let wait = if answering {
            settings.probe_interval
        } else {
            FAST_PROBE
        };
        tokio::select! {
            st = child.wait() => {
                return Some(match st {
                    Ok(s) => s.to_string(),
                    Err(e) => e.to_string(),
                });
            }
            _ = stop.changed() => return None,
            _ = shared.engine_wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Sends SIGKILL to what is left of the engine's process group when
/// dropped.
struct GroupGuard(Option<u32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        use nix::sys::signal::{killpg, Signal};
        if let Some(pid) = self.0.and_then(|p| i32::try_from(p).ok()) {
            // ESRCH (nothing left) is the normal case.
            let _ = killpg(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

/// SIGTERM to the engine's process group, SIGKILL after `grace`.
async fn stop_child(child: &mut Child, grace: Duration) {
    use nix::sys::signal::{killpg, Signal};
    use nix::unistd::Pid;
    let Some(pid) = child.id() else {
        return; // already reaped
    };
    let Ok(pid) = i32::try_from(pid) else {
        let _ = child.kill().await;
        return;
    };
    let group = Pid::from_raw(pid);
    let _ = killpg(group, Signal::SIGTERM);
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        tracing::warn!(pid, "engine ignored SIGTERM; sending SIGKILL");
        let _ = killpg(group, Signal::SIGKILL);
        let _ = child.wait().await;
    } else {
        // The shell is gone; make sure nothing it started lingers.
        let _ = killpg(group, Signal::SIGKILL);
    }
    tracing::info!(pid, "engine stopped");
}
