//! The rules that span several fields of a [`Config`], checked once
//! before the agent starts.
use super::settings::Config;
use super::values::{format_duration, ProviderKind};
use crate::error::{Error, Result};

impl Config {
    /// Checks the rules that span several fields.
    pub fn validate(&self) -> Result<()> {
        if !self.metrics_listen.ip().is_loopback() && !self.allow_remote_metrics {
            return Err(Error::Config(format!(
                "metrics_listen {} is not a loopback address; metrics reveal traffic patterns, \
                 so they stay on loopback unless --allow-remote-metrics \
                 (allow_remote_metrics = true) is given",
                self.metrics_listen
            )));
        }
        let l = &self.limits;
        for (name, v) in [
            ("limits.max_body_bytes", l.max_body_bytes),
            ("limits.max_concurrent_requests", l.max_concurrent_requests),
            ("limits.max_connections", l.max_connections),
            ("limits.max_headers", l.max_headers),
            (
                "limits.max_attestation_requests",
                l.max_attestation_requests,
            ),
            ("limits.max_fresh_quotes", l.max_fresh_quotes),
            ("limits.max_batch_nonces", l.max_batch_nonces),
        ] {
            if v == 0 {
                return Err(Error::Config(format!("{name} must be at least 1")));
            }
        }
        // hyper's HTTP/1 reader needs at least 8 KiB of buffer.
        if l.max_header_bytes < 8192 {
            return Err(Error::Config(format!(
                "limits.max_header_bytes is {}; at least 8192 is needed",
                l.max_header_bytes
            )));
        }
        for (name, d) in [
            ("limits.idle_timeout", l.idle_timeout),
            ("limits.request_timeout", l.request_timeout),
            ("limits.handshake_timeout", l.handshake_timeout),
            (
                "limits.upstream_connect_timeout",
                l.upstream_connect_timeout,
            ),
            ("limits.fresh_interval", l.fresh_interval),
            ("tls.cert_validity", self.tls.cert_validity),
            ("engine.probe_interval", self.engine.probe_interval),
            ("engine.ready_timeout", self.engine.ready_timeout),
            ("engine.backoff_initial", self.engine.backoff_initial),
        ] {
            if d.is_zero() {
                return Err(Error::Config(format!("{name} must be longer than 0")));
            }
        }
        if self.tls.renew_before >= self.tls.cert_validity {
            return Err(Error::Config(format!(
                "tls.renew_before ({}) must be shorter than tls.cert_validity ({})",
                format_duration(self.tls.renew_before),
                format_duration(self.tls.cert_validity)
            )));
        }
        if self.engine.backoff_max < self.engine.backoff_initial {
            return Err(Error::Config(
                "engine.backoff_max must be at least engine.backoff_initial".into(),
            ));
        }
        if !self.sim_quote_latency.is_zero() && self.provider != ProviderKind::Sim {
            return Err(Error::Config(
                "sim_quote_latency (--sim-quote-latency) is for --provider sim only".into(),
            ));
        }
        if !self.sim.is_default() {
            if self.provider != ProviderKind::Sim {
                return Err(Error::Config(
                    "--sim-release/--sim-configuration/--sim-set (sim_release, sim_configuration, sim_set) are for --provider sim only".into(),
                ));
            }
            if let Some(r) = &self.sim.release {
                if r.tee() != self.sim_tee {
                    return Err(Error::Config(format!(
                        "--sim-tee {} but {} is a {} configuration",
                        self.sim_tee,
                        r.label(),
                        r.tee()
                    )));
                }
            }
            self.sim
                .overrides
                .check_tee(self.sim_tee)
                .map_err(|e| Error::Config(e.to_string()))?;
        }
        if let Some(cmd) = &self.engine.cmd {
            if cmd.trim().is_empty() {
                return Err(Error::Config("engine.cmd is empty".into()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, ProviderKind};

    #[test]
    fn remote_metrics_need_the_flag() {
        let mut c = Config::with_provider(ProviderKind::Sim);
        c.metrics_listen = "0.0.0.0:9464".parse().unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("--allow-remote-metrics"), "{e}");
        c.allow_remote_metrics = true;
        c.validate().unwrap();
    }

    #[test]
    fn cross_field_rules() {
        let mut c = Config::with_provider(ProviderKind::Sim);
        c.tls.renew_before = c.tls.cert_validity;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("renew_before"));
        let mut c = Config::with_provider(ProviderKind::Sim);
        c.limits.max_header_bytes = 100;
        assert!(c.validate().unwrap_err().to_string().contains("8192"));
        let mut c = Config::with_provider(ProviderKind::Sim);
        c.limits.max_concurrent_requests = 0;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("max_concurrent_requests"));
    }
}
