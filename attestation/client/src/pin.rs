//! What image a client accepts, and who an accepted node is.

use std::path::Path;

use chrysalis_attestation::{Decision, Policy};
use chrysalis_releases::{Catalogue, NotVerifiable};
use serde::Serialize;

use crate::error::Result;

/// Which images a client accepts.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ImagePin {
    /// Exactly the configurations of these published releases, every
    /// register pinned (the default: [`ImagePin::published`]).
    Releases(Catalogue),
    /// A policy file's measurement sets (`--policy FILE`); a file without
    /// sets pins no image and every output says so.
    Policy {
        /// The policy.
        policy: Box<Policy>,
        /// Where it came from (for output).
        source: String,
    },
    /// Any authentic TEE, any image (`--any-image`): authenticity, TCB and
    /// debug only. Every output says NO IMAGE PINNED.
    AnyImage,
}

impl ImagePin {
    /// Every release compiled into this build.
    pub fn published() -> ImagePin {
        ImagePin::Releases(Catalogue::builtin().clone())
    }

    /// One release compiled into this build (`--release NAME`).
    pub fn release(name: &str) -> Result<ImagePin> {
        Ok(ImagePin::Releases(Catalogue::builtin().only(name)?))
    }

    /// A policy file (`--policy FILE`).
    pub fn policy_file(path: &Path) -> Result<ImagePin> {
        Ok(ImagePin::Policy {
            policy: Box::new(Policy::load(path)?),
            source: path.display().to_string(),
        })
    }

    /// The policy to verify with, and the published configurations left
    /// out because they cannot be verified.
    pub(crate) fn base_policy(&self) -> (Policy, Vec<(String, NotVerifiable)>) {
        match self {
            ImagePin::Releases(c) => {
                let p = c.policy();
                (p.policy, p.not_verifiable)
            }
            ImagePin::Policy { policy, .. } => ((**policy).clone(), Vec::new()),
            ImagePin::AnyImage => (Policy::default(), Vec::new()),
        }
    }

    /// One line for output: what is accepted.
    pub fn describe(&self) -> String {
        match self {
            ImagePin::Releases(c) => format!("published releases ({})", c.names()),
            ImagePin::Policy { source, .. } => format!("policy {source}"),
            ImagePin::AnyImage => "ANY IMAGE (--any-image: no measurement pinned)".into(),
        }
    }

    /// Who the node is, from the decision the verifier made.
    pub fn identify(&self, decision: &Decision) -> NodeIdentity {
        let Some(name) = decision.matched.as_deref() else {
            return NodeIdentity::Unpinned;
        };
        match self {
            ImagePin::Releases(c) => match c.find(name) {
                Some(cfg) => NodeIdentity::Release {
                    label: cfg.label(),
                    release: cfg.release.name().to_owned(),
                    configuration: cfg.configuration.name.clone(),
                    requires_gpu: cfg.requires_gpu(),
                    rtmr3_by_event_log: cfg.rtmr3_by_event_log(),
                },
                None => NodeIdentity::PolicySet {
                    name: name.to_owned(),
                },
            },
            _ => NodeIdentity::PolicySet {
                name: name.to_owned(),
            },
        }
    }
}

/// Who an accepted node is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum NodeIdentity {
    /// A published release's configuration: every register matched.
    Release {
        /// `release / configuration`.
        label: String,
        /// The release name, e.g. `chrysalis-0.2.0-cpu`.
        release: String,
        /// The configuration name, e.g. `snp-2cpu-EPYC-v4`.
        configuration: String,
        /// Whether the configuration requires verified GPU evidence.
        requires_gpu: bool,
        /// Whether RTMR3 is judged by the node's event log (not pinned):
        /// the log is then required.
        rtmr3_by_event_log: bool,
    },
    /// A measurement set of a policy file.
    PolicySet {
        /// The set's name (or position).
        name: String,
    },
    /// No image pinned (`--any-image`, or a policy without sets).
    Unpinned,
}

impl NodeIdentity {
    /// Whether this identity requires GPU evidence.
    pub fn requires_gpu(&self) -> bool {
        matches!(
            self,
            NodeIdentity::Release {
                requires_gpu: true,
                ..
            }
        )
    }
}

impl std::fmt::Display for NodeIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NodeIdentity::Release { label, .. } => f.write_str(label),
            NodeIdentity::PolicySet { name } => write!(f, "policy set {name}"),
            NodeIdentity::Unpinned => f.write_str("UNKNOWN IMAGE (no image pinned)"),
        }
    }
}
