//! RA-TLS (placeholder)
