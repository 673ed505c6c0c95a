//! `chrysalis-agent`: see the library documentation and `--help`.
//!
//! Exit codes: 0 after a drain on SIGTERM/SIGINT, 1 when start-up fails
//! (no TEE interface, port in use, evidence failure), 2 for an invalid
//! command line or configuration.
#![forbid(unsafe_code)]

// mimalloc: per-thread free lists suit the worker-thread model (each
// connection allocates and frees on one thread); measured in
// benches/proxy.rs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;

use anyhow::Context;
use chrysalis_agent::config::{format_duration, LogFormat, ProviderKind};
use chrysalis_agent::identity::open_provider_with;
use chrysalis_agent::model_volume::ModelVolume;
use chrysalis_agent::runtime_config::{self, RuntimeConfig};
use chrysalis_agent::{Agent, IdentitySource, RaTlsManager};
use clap::Parser;

fn main() {
    let cli = chrysalis_agent::cli::Cli::parse();
    let config = match cli.into_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("chrysalis-agent: {e}");
            std::process::exit(2);
        }
    };
    // The host configuration is configuration: unreadable or malformed is
    // exit 2, before anything starts (a malformed model volume section too:
    // the agent never serves a configuration that names an unusable model).
    let mut config = config;
    let runtime_config = match config.runtime_config.as_deref().map(|p| {
        let c = RuntimeConfig::load(p)?;
        ModelVolume::from_config(&c)?;
        let payments = chrysalis_agent::payment::PaymentSettings::from_config(&c)?;
        Ok::<_, chrysalis_agent::Error>((c, payments))
    }) {
        None => None,
        Some(Ok((c, payments))) => {
            config.payments = payments;
            Some(c)
        }
        Some(Err(e)) => {
            eprintln!("chrysalis-agent: {e}");
            std::process::exit(2);
        }
    };
    // A simulator playing a published release measures what the image
    // measures when the host passes no configuration: `{}`.
    let runtime_config = match (runtime_config, &config.sim.release) {
        (None, Some(_)) => match RuntimeConfig::parse(
            chrysalis_sim::release::DEFAULT_HOST_CONFIGURATION,
            "the default host configuration",
        ) {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("chrysalis-agent: {e}");
                std::process::exit(2);
            }
        },
        (c, _) => c,
    };
    init_logging(config.log_format);
    if config.provider == ProviderKind::Sim {
        simulated_warning();
        sim_settings_notice(&config.sim);
    }
    raise_fd_limit();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("chrysalis-agent: starting the runtime: {e}");
            std::process::exit(1);
        }
    };
    let log_format = config.log_format;
    if let Err(e) = runtime.block_on(run(config, runtime_config)) {
        // One line, the cause once: a JSON log line for log collectors, or
        // a plain line for people.
        let line = one_line(&e);
        match log_format {
            LogFormat::Json => tracing::error!("{line}"),
            LogFormat::Text => eprintln!("chrysalis-agent: {line}"),
        }
        std::process::exit(1);
    }
}

async fn run(
    config: chrysalis_agent::Config,
    runtime_config: Option<RuntimeConfig>,
) -> anyhow::Result<()> {
    // Installed first: a SIGTERM during start-up is then answered by a
    // drain once the agent is up, not by the default action.
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let (kind, tee, sim) = (config.provider, config.sim_tee, config.sim.clone());
    let sim_host_data = runtime_config.as_ref().map(RuntimeConfig::sha256);
    let (provider, collateral) =
        tokio::task::spawn_blocking(move || open_provider_with(kind, tee, &sim, sim_host_data))
            .await
            .context("opening the evidence provider")??;
    let provider: Arc<dyn chrysalis_attestation::provider::EvidenceProvider> =
        if config.sim_quote_latency.is_zero() {
            provider
        } else {
            tracing::info!(
                latency = %format_duration(config.sim_quote_latency),
                "simulated quotes take extra time, one at a time"
            );
            Arc::new(chrysalis_agent::quote_latency::SlowQuotes::new(
                provider,
                config.sim_quote_latency,
            ))
        };
    tracing::info!(provider = provider.name(), tee = %provider.tee(), "evidence provider opened");
    // GPU attestation, then the boot measurements, both before the first
    // certificate: all served evidence carries them.
    let gpu = match config.gpu.clone() {
        Some(settings) => Some(
            tokio::task::spawn_blocking({
                let rim_service = config.gpu_rim_service.clone();
                move || settings.check_using(time::OffsetDateTime::now_utc(), rim_service.as_ref())
            })
            .await
            .context("checking the GPUs")??,
        ),
        None => None,
    };
    let gpu_state = match &gpu {
        Some(Ok(g)) => {
            tracing::info!("GPU attestation passed: {}", g.summary);
            Some(g.state_digest)
        }
        _ => None,
    };
    let p = provider.clone();
    let log_path = config.rtmr3_log.clone();
    let (done, runtime_events) = tokio::task::spawn_blocking(move || {
        runtime_config::measure_boot(
            p.as_ref(),
            runtime_config.as_ref(),
            gpu_state.as_ref(),
            log_path.as_deref(),
        )
    })
    .await
    .context("measuring the runtime configuration")??;
    tracing::info!("{done}");
    let mut manager =
        RaTlsManager::new(provider, collateral, &config.tls).with_runtime_events(runtime_events);
    if let Some(image) = chrysalis_agent::image_id::image_id(&config)? {
        tracing::info!(
            release = image.release.as_deref().unwrap_or("?"),
            "certificates name the image"
        );
        manager = manager.with_image(image);
    }
    if let Some(outcome) = gpu {
        manager = manager.with_gpu(outcome);
    }
    let manager = Arc::new(manager);
    let drain = config.drain_timeout;
    let agent = Agent::start(config, IdentitySource::RaTls(manager)).await?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!(
        deadline = %format_duration(drain),
        open_connections = agent.open_connections(),
        "shutdown signal received; draining"
    );
    let report = agent.shutdown(drain).await;
    tracing::info!(
        open_at_start = report.open_at_start,
        closed_at_deadline = report.aborted,
        "drained; exiting"
    );
    Ok(())
}

/// The error and its causes on one line, each cause once (errors that
/// already quote their cause are not followed by it again).
fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.with_ansi(false).init(),
    }
}

fn simulated_warning() {
    eprintln!(
        "\n\
         !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
         !!  SIMULATED TEE (--provider sim): this agent's evidence is SIMULATED   !!\n\
         !!  and proves NOTHING. Its roots were generated a moment ago; clients   !!\n\
         !!  with a production policy reject it. Never serve real prompts.        !!\n\
         !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n"
    );
    tracing::warn!("SIMULATED evidence provider in use: evidence proves nothing");
}

/// Says which node the simulator plays, and warns about what a default
/// client cannot verify.
fn sim_settings_notice(sim: &chrysalis_agent::config::SimSettings) {
    if let Some(r) = &sim.release {
        tracing::info!(
            configuration = r.label(),
            "the simulated TEE plays a published configuration"
        );
        for w in r.warnings() {
            tracing::warn!("{w}");
        }
    }
    if !sim.overrides.is_empty() {
        tracing::warn!(overrides = %sim.overrides, "simulated reports differ from the node played (--sim-set)");
    }
}

/// Many idle client connections need many file descriptors: lift the soft
/// limit to the hard one.
fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                tracing::warn!("raising the open-file limit from {soft} to {hard}: {e}");
            }
        }
    }
}
