//! Verify a Chrysalis node, the way every client does it.
//!
//! [`verify_node`]`(url, &config)` connects, runs the RA-TLS handshake (TLS
//! 1.3; the server's certificate evidence is verified before anything is
//! sent), asks for evidence bound to a fresh random nonce over the same
//! connection, verifies it against the same key, names the published
//! release and configuration the node matched, and verifies the GPU
//! evidence the node committed to — required for a gpu release. `chrysalis
//! verify`, `chrysalis chat`, `chrysalis ton register`, `chrysalis ton list
//! --verify` and the Python binding are thin users of it.
//!
//! By default ([`ImagePin::published`]) a node is accepted only when it
//! runs a configuration of a release compiled into this build
//! (`measurements/releases/*`, see `chrysalis-releases`), every register
//! pinned. [`ImagePin::Policy`] replaces that with a policy file;
//! [`ImagePin::AnyImage`] accepts any authentic TEE and every output says
//! so ([`VerifiedNode::warnings`]).
//!
//! Rooms: [`pin`] (what image is accepted, who the node is), [`config`]
//! ([`NodeConfig`]), [`connect`] (URL, TCP, handshake), [`fresh`] (the
//! nonce round trip, I/O-free verification for other transports),
//! [`gpu`] (the GPU requirement), [`node`] ([`VerifiedNode`],
//! [`verify_node`], [`NodeConnection`]), [`runtime_log`] (the RTMR3
//! event log replayed and judged), [`explain`] (a rejection's
//! got/want table against the closest published configuration), [`error`].

#![forbid(unsafe_code)]

pub mod config;
pub mod connect;
pub mod error;
pub mod explain;
pub mod fresh;
pub mod gpu;
pub mod node;
pub mod pin;
pub mod runtime_log;

pub use config::NodeConfig;
pub use error::{Error, Result};
pub use gpu::GpuRequirement;
pub use node::{verify_node, NodeConnection, VerifiedNode};
pub use pin::{ImagePin, NodeIdentity};
