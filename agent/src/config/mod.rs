//! Agent configuration: defaults, the TOML file, and validation.
//!
//! Precedence is defaults < `--config FILE` < command-line flags; the flags
//! are merged by the binary ([`crate::cli`]). Everything is validated once
//! ([`Config::validate`]), so the rest of the agent works with typed,
//! checked values: socket addresses, a loopback upstream, durations.
//!
//! * [`settings`]: [`Config`] and its sections ([`Limits`],
//!   [`TlsSettings`], [`EngineSettings`], [`SimSettings`]) with their
//!   defaults;
//! * [`values`]: small typed values and their text forms (provider, log
//!   format, addresses, TEEs, durations);
//! * [`upstream`]: the engine's loopback address;
//! * [`file`](mod@file): the TOML file and how it overrides the defaults;
//! * [`validate`]: the cross-field rules.

pub mod file;
pub mod settings;
pub mod upstream;
pub mod validate;
pub mod values;

pub use file::{FileConfig, FileEngine, FileGpu, FileLimits, FileTls};
pub use settings::{
    Config, EngineSettings, Limits, SimSettings, TlsSettings, DEFAULT_LISTEN,
    DEFAULT_METRICS_LISTEN, DEFAULT_UPSTREAM,
};
pub use upstream::Upstream;
pub use values::{
    format_duration, parse_addr, parse_duration, parse_sim, parse_sim_sets, parse_tee, LogFormat,
    ProviderKind,
};
