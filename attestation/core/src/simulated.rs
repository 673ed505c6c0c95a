//! How the verifier recognises evidence from the Chrysalis simulated TEE,
//! without linking the simulator.
//!
//! The simulator (crate `chrysalis-sim`) builds its PKI and evidence from
//! these names; the verifier only *recognises* them, to label output and to
//! pick [`crate::TrustAnchor::Simulated`] for a root the caller supplied.
//! Trust never rests on them: a simulated root is accepted only when a
//! caller passed it explicitly, and the default policy rejects it.

/// Marker placed at the start of simulated evidence's free-form fields (TDX
/// header user data, SNP chip id) so humans can spot it.
pub const SIM_MARKER: &[u8] = b"CHRYSALIS-SIM";

/// Common name of the simulated AMD root key (ARK) certificate.
pub const SIM_ARK_CN: &str = "ARK-Chrysalis-SIMULATED";

/// Common name of the simulated AMD signing key (ASK) certificate.
pub const SIM_ASK_CN: &str = "SEV-Chrysalis-SIMULATED";
