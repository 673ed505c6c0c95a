//! The key usage receipts are signed with: the connection's RA-TLS
//! certificate key, through rustls's signing interface (the private key
//! never leaves rustls / rcgen).

use std::sync::Arc;

use rustls::sign::SigningKey;
use rustls::SignatureScheme;
use sha2::{Digest, Sha256};

/// Signs receipts with an identity's TLS key.
#[derive(Clone)]
pub struct ReceiptSigner {
    spki: Arc<[u8]>,
    key: Arc<dyn SigningKey>,
}

impl std::fmt::Debug for ReceiptSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceiptSigner")
            .field("spki_sha256", &hex::encode(Sha256::digest(&self.spki)))
            .finish_non_exhaustive()
    }
}

impl ReceiptSigner {
    /// A signer for the certificate key `key` whose SubjectPublicKeyInfo is `spki`.
    pub fn new(spki: &[u8], key: Arc<dyn SigningKey>) -> Self {
        Self {
            spki: spki.into(),
            key,
        }
    }

    /// The key's SubjectPublicKeyInfo (DER).
    pub fn spki(&self) -> &[u8] {
        &self.spki
    }

    /// Signs `msg`: ECDSA P-256 with SHA-256 (DER) or Ed25519.
    pub fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, String> {
        let signer = self
            .key
            .choose_scheme(&[
                SignatureScheme::ECDSA_NISTP256_SHA256,
                SignatureScheme::ED25519,
            ])
            .ok_or_else(|| "the TLS key is neither P-256 nor Ed25519".to_string())?;
        signer.sign(msg).map_err(|e| e.to_string())
    }
}
