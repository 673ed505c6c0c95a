//! The certificate parser and the verifier never panic, whatever the
//! bytes: random input, and every kind of damage to real certificates
//! (bit flips, truncation, byte insertion).

mod common;

use std::sync::OnceLock;

use chrysalis_attestation::Tee;
use chrysalis_ratls::{cocoon, verify_certificate_der, RaTlsCertificate, VerifierConfig};
use common::*;
use proptest::prelude::*;
use time::OffsetDateTime;

struct Fixture {
    certs: Vec<Vec<u8>>,
    config: VerifierConfig,
    now: OffsetDateTime,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let tdx = sim(Tee::Tdx);
        let chrysalis = identity(&tdx);
        let cocoon = cocoon::build_test_certificate(&tdx, cocoon::COCOON_VALIDITY).unwrap();
        Fixture {
            certs: vec![chrysalis.cert_der().to_vec(), cocoon.cert_der().to_vec()],
            // No cache: every case goes through the full path.
            config: VerifierConfig::new(dev_policy())
                .with_collateral(sim_collateral(&tdx))
                .without_cache(),
            now: OffsetDateTime::now_utc(),
        }
    })
}

#[test]
fn fixtures_verify_undamaged() {
    let f = fixture();
    for c in &f.certs {
        RaTlsCertificate::parse(c).unwrap();
        verify_certificate_der(c, &f.config, f.now).unwrap();
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let f = fixture();
        let _ = RaTlsCertificate::parse(&bytes);
        let _ = verify_certificate_der(&bytes, &f.config, f.now);
    }

    #[test]
    fn random_der_like_prefix_never_panics(tail in proptest::collection::vec(any::<u8>(), 0..2048)) {
        // Starts like a certificate SEQUENCE so the parser goes deeper.
        let mut b = vec![0x30, 0x82, (tail.len() >> 8) as u8, tail.len() as u8];
        b.extend_from_slice(&tail);
        let _ = RaTlsCertificate::parse(&b);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn bit_flips_never_panic_and_never_verify(which in 0usize..2, idx in any::<usize>(), bit in 0u8..8) {
        let f = fixture();
        let mut der = f.certs[which].clone();
        let i = idx % der.len();
        der[i] ^= 1 << bit;
        let parsed = RaTlsCertificate::parse(&der);
        let verified = verify_certificate_der(&der, &f.config, f.now);
        // A flipped bit anywhere is caught: by the parser, the
        // self-signature, the bindings, or the evidence verification.
        prop_assert!(verified.is_err(), "flip at {} bit {} verified", i, bit);
        if parsed.is_err() {
            prop_assert!(verified.is_err());
        }
    }

    #[test]
    fn truncations_and_insertions_never_panic(which in 0usize..2, idx in any::<usize>(), byte in any::<u8>(), cut in any::<bool>()) {
        let f = fixture();
        let mut der = f.certs[which].clone();
        let i = idx % der.len();
        if cut {
            der.truncate(i);
        } else {
            der.insert(i, byte);
        }
        let _ = RaTlsCertificate::parse(&der);
        prop_assert!(verify_certificate_der(&der, &f.config, f.now).is_err());
    }
}

/// Regression (found by the bit-flip property in CI): the outer SEQUENCE
/// tag is outside the signed TBS; a primitive-SEQUENCE tag must not verify.
#[test]
fn non_canonical_outer_tag_is_rejected() {
    let f = fixture();
    for c in &f.certs {
        let mut der = c.clone();
        der[0] ^= 1 << 5;
        assert!(RaTlsCertificate::parse(&der).is_err());
        assert!(verify_certificate_der(&der, &f.config, f.now).is_err());
    }
}

/// Regression (found by the bit-flip property in CI): the signatureAlgorithm
/// and signatureValue after the TBS are unsigned; every bit flip there must
/// fail (a flipped OID or BIT STRING tag once verified).
#[test]
fn every_flip_in_the_unsigned_tail_is_rejected() {
    let f = fixture();
    for c in &f.certs {
        for i in c.len().saturating_sub(96)..c.len() {
            for bit in 0..8 {
                let mut der = c.clone();
                der[i] ^= 1 << bit;
                assert!(
                    verify_certificate_der(&der, &f.config, f.now).is_err(),
                    "flip at {i} bit {bit} of {} verified",
                    c.len()
                );
            }
        }
    }
}
