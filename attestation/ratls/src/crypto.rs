//! The one crypto provider of this crate, ring (no aws-lc anywhere): for
//! the TLS configurations and for checking certificate signatures.

use std::sync::Arc;

use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};

/// The ring crypto provider (no aws-lc anywhere).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The signature algorithms of the ring provider.
pub(crate) fn algorithms() -> &'static WebPkiSupportedAlgorithms {
    static ALGS: std::sync::OnceLock<WebPkiSupportedAlgorithms> = std::sync::OnceLock::new();
    ALGS.get_or_init(|| rustls::crypto::ring::default_provider().signature_verification_algorithms)
}
