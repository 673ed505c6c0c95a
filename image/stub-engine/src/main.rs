//! `chrysalis-stub-engine --listen 127.0.0.1:8000`: a deterministic
//! OpenAI-compatible engine for the `cpu` image profile and its boot test.
//!
//! It answers `GET /v1/models` (one model, `chrysalis-stub`) and
//! `POST /v1/chat/completions` (plain JSON, or server-sent events with
//! `"stream": true`). The answer is a fixed function of the last user
//! message: `echo: <message>`, one word per streamed chunk. No model, no
//! randomness, no clock in the output: the same request always gets the same
//! bytes, so a boot test can compare them exactly.
#![forbid(unsafe_code)]

mod api;

use std::net::SocketAddr;

use anyhow::{bail, Context, Result};
use clap::Parser;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

/// Deterministic OpenAI-compatible stub engine (loopback only).
#[derive(Parser)]
#[command(name = "chrysalis-stub-engine", version)]
struct Cli {
    /// Listen address; must be loopback (the engine is never exposed; the
    /// agent is the only front door).
    #[arg(long, default_value = "127.0.0.1:8000", value_name = "ADDR:PORT")]
    listen: SocketAddr,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    if !cli.listen.ip().is_loopback() {
        bail!(
            "--listen {}: the engine listens on loopback only",
            cli.listen
        );
    }
    let listener = TcpListener::bind(cli.listen)
        .await
        .with_context(|| format!("bind {}", cli.listen))?;
    println!(
        "chrysalis-stub-engine listening on http://{} (deterministic stub, no model)",
        listener.local_addr()?
    );
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let _ = builder
                .serve_connection(TokioIo::new(stream), service_fn(api::handle))
                .await;
        });
    }
}
