//! AMD SEV-SNP: attestation reports, certificates and verification.
//! (placeholder types; the SNP module replaces this file)

use serde::Serialize;

/// Decoded TCB version (placeholder).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TcbVersion {
    /// Raw 64-bit value.
    pub raw: u64,
}

/// AMD product generation (placeholder).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Product {
    /// Milan.
    Milan,
}
