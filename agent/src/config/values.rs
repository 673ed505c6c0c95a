//! Small typed values of the configuration and their text forms:
//! the evidence provider, the log format, addresses, TEEs and durations.
use std::net::SocketAddr;
use std::time::Duration;

use chrysalis_attestation::Tee;

use crate::error::{Error, Result};

/// Where CPU evidence comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    /// Linux configfs-tsm (`/sys/kernel/config/tsm/report`, kernel ≥ 6.7).
    Tsm,
    /// `/dev/sev-guest` or `/dev/tdx_guest` ioctls (older kernels).
    Ioctl,
    /// The simulated TEE: evidence that proves nothing (development only).
    Sim,
}

impl std::str::FromStr for ProviderKind {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "tsm" => Ok(Self::Tsm),
            "ioctl" => Ok(Self::Ioctl),
            "sim" => Ok(Self::Sim),
            other => Err(format!(
                "unknown provider `{other}`: expected tsm, ioctl or sim"
            )),
        }
    }
}

impl std::fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Tsm => "tsm",
            Self::Ioctl => "ioctl",
            Self::Sim => "sim",
        })
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!(
                "unknown log format `{other}`: expected text or json"
            )),
        }
    }
}

/// Parses a listen address `ADDR:PORT` (IPv6 in brackets).
pub fn parse_addr(name: &str, s: &str) -> Result<SocketAddr> {
    s.parse().map_err(|_| {
        Error::Config(format!(
            "{name} `{s}` is not ADDR:PORT with an IP address (e.g. 127.0.0.1:8443 or [::1]:8443)"
        ))
    })
}

/// Parses `tdx` / `snp`.
pub fn parse_tee(s: &str) -> std::result::Result<Tee, String> {
    match s {
        "tdx" => Ok(Tee::Tdx),
        "snp" => Ok(Tee::Snp),
        other => Err(format!("unknown TEE `{other}`: expected tdx or snp")),
    }
}

/// The node the simulator plays: `release` and `configuration` (both or
/// neither; `origin` names the flags or keys in errors) with the TEE chosen
/// explicitly, if any (the configuration's must agree), and `sets`
/// (`FIELD=VALUE` each).
pub fn parse_sim(
    release: Option<&str>,
    configuration: Option<&str>,
    explicit_tee: Option<Tee>,
    origin: &str,
) -> Result<Option<chrysalis_sim::SimRelease>> {
    match (release, configuration) {
        (None, None) => Ok(None),
        (Some(r), Some(c)) => chrysalis_sim::SimRelease::builtin(r, c, explicit_tee)
            .map(Some)
            .map_err(|e| Error::Config(format!("{origin}: {e}"))),
        _ => Err(Error::Config(format!(
            "{origin}: a release and a configuration go together (e.g. chrysalis-0.2.0-cpu and snp-2cpu-EPYC-v4)"
        ))),
    }
}

/// Parses `--sim-set` / `sim_set` assignments.
pub fn parse_sim_sets(sets: &[String]) -> Result<chrysalis_sim::SimOverrides> {
    chrysalis_sim::SimOverrides::parse_all(sets).map_err(|e| Error::Config(e.to_string()))
}

/// Parses a duration: a non-negative number with a unit `ms`, `s`, `m` or
/// `h` (`250ms`, `30s`, `1.5h`), or a bare number of seconds.
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration like 250ms, 30s, 5m or 1h"))?;
    let scale = match unit.trim() {
        "ms" => 1e-3,
        "" | "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        u => return Err(format!("`{s}`: unknown unit `{u}` (ms, s, m or h)")),
    };
    Duration::try_from_secs_f64(n * scale).map_err(|_| format!("`{s}` is out of range"))
}

/// Formats a duration the way [`parse_duration`] reads it.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1000) {
        format!("{ms}ms")
    } else {
        format!("{}s", d.as_secs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("7").unwrap(), Duration::from_secs(7));
        assert_eq!(parse_duration("1.5h").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        for bad in ["", "s", "-1s", "3d", "1e9999s", "x"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        for d in [Duration::from_millis(1500), Duration::from_secs(30)] {
            assert_eq!(parse_duration(&format_duration(d)).unwrap(), d);
        }
    }
}
