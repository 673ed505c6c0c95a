//! PEM certificate chains as TDX quotes and collateral carry them.

use crate::error::{Error, Result};

/// Splits PEM text into DER certificates.
pub fn pem_certificates(pem: &[u8]) -> Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    for item in x509_parser::pem::Pem::iter_from_buffer(pem) {
        match item {
            Ok(p) if p.label == "CERTIFICATE" => out.push(p.contents),
            Ok(_) => {}
            Err(x509_parser::error::PEMError::MissingHeader) if !out.is_empty() => break,
            Err(e) => {
                return Err(Error::verification(
                    "PCK chain",
                    format!("certification data is not a PEM chain: {e}"),
                ))
            }
        }
    }
    Ok(out)
}
