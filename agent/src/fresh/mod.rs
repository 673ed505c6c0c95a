//! Fresh evidence without a quote per client: one quote per *window*.
//!
//! A TDX quote or SNP report can take about a second and is serialised per
//! host, so the agent never takes one per client. Instead each identity
//! (certificate key) has a [`Batcher`] that takes one quote per window,
//! over the root of a hash tree whose leaves are the nonces of every client
//! that asked during the window:
//!
//! * `GET /attestation/batch?nonce=HEX` — the client's nonce joins the
//!   next window; the answer is that window's evidence plus the inclusion
//!   proof of the nonce. Client-chosen freshness (the quote was taken after
//!   the client chose its nonce), one quote per window however many clients
//!   ask; a client waits at most one quote in flight plus its own.
//! * `GET /attestation/latest` — the most recent window's evidence at
//!   once, never older than [`FreshSettings::max_age`] (N = 2 × the
//!   refresh interval): while clients ask, a window is quoted every
//!   interval even without nonces. Freshness by the TEE's clock (the
//!   claims' `createdAt`), for clients that cannot wait for a quote.
//!
//! The legacy `GET /attestation?nonce=HEX` (one quote per request, verified
//! by `chrysalis_ratls::verify_fresh` with the client's own nonce) stays for
//! existing clients, bounded separately (see [`crate::attestation`]).
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
//! `chrysalis_ratls::FreshEvidence` JSON) whose claims nonce is the root:
//! `chrysalis_ratls::verify_fresh(fresh, spki, gpu, root, …)` checks it.
//! [`verify_batched`] does that plus the inclusion proof and the age.

pub mod answer;
pub mod batcher;
pub mod tree;

pub use answer::{verify_batched, BatchedEvidence, VerifyError, WindowInfo, MAX_BATCHED_JSON_LEN};
pub use batcher::{Batcher, FreshHub, FreshSettings, Refusal};
pub use tree::{header_leaf, nonce_leaf, root_from_proof, Hash, ProofStep, Side, FORMAT};
