//! The P-256 keys of the simulated PKI, usable for both encodings it needs:
//! raw `r ‖ s` DCAP signatures and, through rcgen's traits, DER-signed
//! certificates and CRLs.

use p256::ecdsa::signature::Signer;
use p256::ecdsa::{DerSignature, Signature, SigningKey};
use rand_core::OsRng;

/// A P-256 key usable both for raw DCAP signatures and, through rcgen's
/// traits, for signing certificates and CRLs.
pub(super) struct SimKey {
    key: SigningKey,
    /// SEC1 uncompressed public point, `0x04 ‖ x ‖ y` (65 bytes).
    public_sec1: Vec<u8>,
}

impl SimKey {
    pub(super) fn generate() -> Self {
        let key = SigningKey::random(&mut OsRng);
        let public_sec1 = key
            .verifying_key()
            .to_encoded_point(false)
            .as_bytes()
            .to_vec();
        SimKey { key, public_sec1 }
    }

    /// ECDSA-P256-SHA256 over `msg`, raw `r ‖ s` big-endian.
    pub(super) fn sign_raw(&self, msg: &[u8]) -> [u8; 64] {
        let sig: Signature = self.key.sign(msg);
        sig.to_bytes().into()
    }

    /// Public key `x ‖ y` big-endian (no `0x04` prefix).
    pub(super) fn public_xy(&self) -> [u8; 64] {
        let mut out = [0u8; 64];
        out.copy_from_slice(&self.public_sec1[1..65]);
        out
    }
}

impl rcgen::PublicKeyData for SimKey {
    fn der_bytes(&self) -> &[u8] {
        &self.public_sec1
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

impl rcgen::SigningKey for SimKey {
    fn sign(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, rcgen::Error> {
        // X.509 wants the DER Ecdsa-Sig-Value, unlike the raw DCAP encoding.
        let sig: DerSignature = self.key.sign(msg);
        Ok(sig.as_bytes().to_vec())
    }
}
