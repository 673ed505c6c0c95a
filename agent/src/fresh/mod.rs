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
//! The tree and the answer are a wire format clients check, so they live
//! with the client side: `chrysalis_ratls::batch` (format
//! `chrysalis-fresh-batch-v1`, [`verify_batched`]).

pub mod batcher;

pub use batcher::{Batcher, FreshHub, FreshSettings, Refusal};
pub use chrysalis_ratls::batch::{
    header_leaf, nonce_leaf, root_from_proof, tree, verify_batched, BatchedEvidence, Hash,
    ProofStep, Side, WindowInfo, FORMAT, MAX_BATCHED_JSON_LEN,
};
