//! Batched fresh evidence: the wire format a client checks when a node
//! answers many clients' nonces with one quote per *window* (RA-TLS spec,
//! section 7a). The agent builds the tree and serves the answers
//! (`chrysalis_agent::fresh`); [`verify_batched`] is the client's check.
//!
//! ## The tree (format `chrysalis-fresh-batch-v1`)
//!
//! SHA-256 with domain separation:
//! * leaf 0, the window header: `H(0x02 ‖ "chrysalis-fresh-batch-v1" ‖
//!   sequence (u64, big-endian) ‖ previous root (32 bytes, zeros first))`,
//!   which chains the windows;
//! * leaf i ≥ 1, a client nonce: `H(0x00 ‖ nonce)`, in arrival order;
//! * inner node: `H(0x01 ‖ left ‖ right)`; the last node of an odd level
//!   moves up unchanged.
//!
//! The window's evidence is ordinary fresh evidence (the
//! [`crate::FreshEvidence`] JSON) whose claims nonce is the root:
//! [`crate::fresh::verify_fresh`]`(fresh, spki, gpu, root, …)` checks it.
//! [`verify_batched`] does that plus the inclusion proof and the age.

pub mod answer;
pub mod tree;

pub use answer::{verify_batched, BatchedEvidence, WindowInfo, MAX_BATCHED_JSON_LEN};
pub use tree::{header_leaf, nonce_leaf, root_from_proof, Hash, ProofStep, Side, FORMAT};
