//! Fresh evidence on demand (directly and over an RA-TLS connection) and
//! Telegram Cocoon certificates.

mod common;

use std::sync::Arc;
use std::time::Duration;

use chrysalis_attestation::Tee;
use chrysalis_ratls::{
    client_config, cocoon, fresh_evidence, fresh_evidence_at, parse_nonce_query, server_config,
    verify_certificate_der, verify_fresh, CertFormat, CertKey, CollateralSource, Error,
    ErrorCategory, FreshEvidence, KeyType, PeerFormat, RaTlsIdentity, RaTlsServerVerifier,
    VerifierConfig,
};
use common::*;
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[test]
fn fresh_evidence_round_trip_and_mismatches() {
    let sim = sim(Tee::Tdx);
    let id = identity(&sim);
    let cfg = config(dev_policy());
    let now = OffsetDateTime::now_utc();
    let nonce = [0x42u8; 32];

    let fresh = fresh_evidence(&sim, &id, &nonce).unwrap();
    let json = fresh.to_json().unwrap();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    for field in ["evidence", "claims", "collateral", "tee"] {
        assert!(v.get(field).is_some(), "{field} missing in {json:.200}");
    }
    assert_eq!(v["tee"], "tdx");
    assert!(
        v["collateral"]["tdx"].is_object(),
        "TDX collateral as a JSON object"
    );
    let back = FreshEvidence::from_json(&json).unwrap();
    assert_eq!(back, fresh);

    let peer = verify_fresh(&back, id.spki_der(), None, &nonce, &cfg, now).unwrap();
    assert_eq!(peer.format(), PeerFormat::FreshEvidence);
    assert_eq!(peer.claims().unwrap().nonce.as_deref(), Some(&nonce[..]));
    assert_eq!(peer.collateral_source(), CollateralSource::Embedded);
    assert!(peer.certificate().is_none());

    // Another nonce than the one asked for.
    let e = verify_fresh(&back, id.spki_der(), None, &[0x43; 32], &cfg, now).unwrap_err();
    assert!(matches!(e, Error::NonceMismatch { .. }), "{e:?}");
    assert_eq!(e.category(), ErrorCategory::Verification);

    // Bound to another key than the connection's certificate.
    let other = CertKey::generate(KeyType::EcdsaP256).unwrap();
    let e = verify_fresh(&back, &other.spki_der(), None, &nonce, &cfg, now).unwrap_err();
    assert!(matches!(e, Error::KeyMismatch(_)), "{e:?}");

    // Claims swapped for other claims: the evidence no longer binds them.
    let other_fresh = fresh_evidence(&sim, &id, &[0x44; 8]).unwrap();
    let spliced = FreshEvidence {
        claims: other_fresh.claims.clone(),
        ..fresh.clone()
    };
    let e = verify_fresh(&spliced, id.spki_der(), None, &[0x44; 8], &cfg, now).unwrap_err();
    assert!(matches!(e, Error::EvidenceNotBound { .. }), "{e:?}");

    // A certificate's evidence is not fresh evidence.
    let cert_as_fresh = FreshEvidence {
        evidence: id.evidence().to_vec(),
        claims: id.claims_bytes().to_vec(),
        collateral: id.collateral().cloned(),
        tee: Tee::Tdx,
        gpu_evidence: None,
        runtime_events: None,
    };
    let e = verify_fresh(&cert_as_fresh, id.spki_der(), None, &nonce, &cfg, now).unwrap_err();
    assert!(matches!(e, Error::ClaimsMismatch(_)), "{e:?}");

    // The default policy still rejects simulated fresh evidence.
    let strict = VerifierConfig::new(chrysalis_attestation::Policy::default());
    let e = verify_fresh(&back, id.spki_der(), None, &nonce, &strict, now).unwrap_err();
    assert!(matches!(e, Error::Rejected { .. }), "{e:?}");

    // Too old for a policy with max_evidence_age.
    let mut aged = dev_policy();
    aged.max_evidence_age = Some(Duration::from_secs(60));
    let old = fresh_evidence_at(&sim, &id, &nonce, now - time::Duration::hours(1)).unwrap();
    let e = verify_fresh(
        &old,
        id.spki_der(),
        None,
        &nonce,
        &VerifierConfig::new(aged),
        now,
    )
    .unwrap_err();
    match e {
        Error::Rejected { reasons, .. } => {
            assert!(reasons.iter().any(|r| r.contains("old")), "{reasons:?}")
        }
        other => panic!("{other:?}"),
    }

    // Bad nonces are refused before anything is generated.
    assert!(matches!(
        fresh_evidence(&sim, &id, &[]).unwrap_err(),
        Error::InvalidNonce(_)
    ));
    assert!(matches!(
        fresh_evidence(&sim, &id, &[0; 65]).unwrap_err(),
        Error::InvalidNonce(_)
    ));
    assert!(matches!(
        FreshEvidence::from_json("{\"evidence\":\"zz\"}").unwrap_err(),
        Error::FreshEvidence(_)
    ));
}

/// `GET /attestation?nonce=HEX` over the RA-TLS connection itself: the
/// client checks the fresh evidence against the key of the certificate it
/// just verified.
#[tokio::test]
async fn fresh_evidence_over_the_ra_tls_connection() {
    let sim = sim(Tee::Tdx);
    let id = Arc::new(identity(&sim));
    let scfg = Arc::new(server_config(&id, None).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();

    let (sim2, id2) = (sim.clone(), id.clone());
    let srv = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut tls = tokio_rustls::TlsAcceptor::from(scfg)
            .accept(tcp)
            .await
            .unwrap();
        let mut req = Vec::new();
        let mut buf = [0u8; 512];
        while !req.ends_with(b"\r\n\r\n") {
            let n = tls.read(&mut buf).await.unwrap();
            assert!(n > 0, "request truncated");
            req.extend_from_slice(&buf[..n]);
        }
        let line = String::from_utf8(req).unwrap();
        let target = line.split(' ').nth(1).unwrap().to_string();
        let (status, body) = match target.strip_prefix("/attestation?").map(parse_nonce_query) {
            Some(Ok(nonce)) => (
                "200 OK",
                fresh_evidence(&sim2, &id2, &nonce)
                    .unwrap()
                    .to_json()
                    .unwrap(),
            ),
            Some(Err(e)) => ("400 Bad Request", e.to_string()),
            None => ("404 Not Found", String::new()),
        };
        let resp = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        tls.write_all(resp.as_bytes()).await.unwrap();
        tls.shutdown().await.unwrap();
    });

    let cfg = config(dev_policy());
    let v = Arc::new(RaTlsServerVerifier::new(cfg.clone()));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(client_config(v.clone()).unwrap()))
        .connect(
            rustls::pki_types::ServerName::try_from("node").unwrap(),
            tcp,
        )
        .await
        .unwrap();
    let cert_peer = v.peer().unwrap();
    let nonce = [0x5eu8; 24];
    tls.write_all(
        format!(
            "GET /attestation?nonce={} HTTP/1.1\r\nhost: node\r\n\r\n",
            hex::encode(nonce)
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut resp = Vec::new();
    tls.read_to_end(&mut resp).await.unwrap();
    srv.await.unwrap();
    let resp = String::from_utf8(resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200 OK"), "{resp:.200}");
    let body = resp.split("\r\n\r\n").nth(1).unwrap();
    let fresh = FreshEvidence::from_json(body).unwrap();
    let peer = verify_fresh(
        &fresh,
        cert_peer.spki_der(),
        None,
        &nonce,
        &cfg,
        OffsetDateTime::now_utc(),
    )
    .unwrap();
    assert_eq!(peer.spki_der(), id.spki_der());
}

#[tokio::test]
async fn cocoon_certificate_with_simulated_evidence_verifies() {
    let sim = sim(Tee::Tdx);
    let id = cocoon::build_test_certificate(&sim, cocoon::COCOON_VALIDITY).unwrap();
    assert_eq!(id.format(), CertFormat::Cocoon);
    assert_eq!(id.key_type(), KeyType::Ed25519);
    assert_eq!(id.claims_bytes().len(), 32);

    // Cocoon certificates carry no collateral: the client brings its own.
    let cfg = Arc::new(VerifierConfig::new(dev_policy()).with_collateral(sim_collateral(&sim)));
    let v = Arc::new(RaTlsServerVerifier::new(cfg));
    let out = exchange(
        Arc::new(server_config(&id, None).unwrap()),
        Arc::new(client_config(v.clone()).unwrap()),
    )
    .await;
    out.client.unwrap();
    let peer = v.peer().unwrap();
    assert_eq!(peer.format(), PeerFormat::Cocoon);
    assert!(peer.claims().is_none() && peer.created_at().is_none());
    assert_eq!(peer.spki_der(), id.spki_der());

    // Without collateral of its own the verifier cannot check it.
    let e = verify_certificate_der(
        id.cert_der(),
        &VerifierConfig::new(dev_policy()),
        OffsetDateTime::now_utc(),
    )
    .unwrap_err();
    assert!(matches!(e, Error::NoCollateral { .. }), "{e:?}");
}

#[test]
fn tampered_cocoon_certificates_do_not_verify() {
    let sim = sim(Tee::Tdx);
    let genuine = cocoon::build_test_certificate(&sim, cocoon::COCOON_VALIDITY).unwrap();
    let cfg = VerifierConfig::new(dev_policy()).with_collateral(sim_collateral(&sim));
    let now = OffsetDateTime::now_utc();
    let (nb, na) = (genuine.not_before(), genuine.not_after());

    // Another key, with the genuine quote and claims (the genuine key).
    let key = CertKey::generate(KeyType::Ed25519).unwrap();
    let der = cocoon::build_certificate(&key, genuine.evidence(), genuine.claims_bytes(), nb, na)
        .unwrap();
    let e = verify_certificate_der(&der, &cfg, now).unwrap_err();
    assert!(matches!(e, Error::KeyNotBound(_)), "{e:?}");

    // Another key with claims naming it, but the genuine quote.
    let key = CertKey::generate(KeyType::Ed25519).unwrap();
    let claims = cocoon::user_claims(&key);
    let der = cocoon::build_certificate(&key, genuine.evidence(), &claims, nb, na).unwrap();
    let e = verify_certificate_der(&der, &cfg, now).unwrap_err();
    assert!(matches!(e, Error::EvidenceNotBound { .. }), "{e:?}");

    // Cocoon certificates must use Ed25519.
    let key = CertKey::generate(KeyType::EcdsaP256).unwrap();
    let claims = key.public_key_raw().to_vec();
    let der = cocoon::build_certificate(&key, genuine.evidence(), &claims, nb, na).unwrap();
    let e = verify_certificate_der(&der, &cfg, now).unwrap_err();
    assert!(matches!(e, Error::UnsupportedKey(_)), "{e:?}");

    // A flipped bit in the quote: the self-signature fails.
    let mut der = genuine.cert_der().to_vec();
    let q = genuine.evidence();
    let start = der.windows(q.len()).position(|w| w == q).unwrap();
    der[start + 640] ^= 0x80; // inside the quote's ECDSA signature (offset 636..700)
    let e = verify_certificate_der(&der, &cfg, now).unwrap_err();
    assert_eq!(e.category(), ErrorCategory::Verification, "{e:?}");

    // The genuine one verifies offline too.
    let peer = verify_certificate_der(genuine.cert_der(), &cfg, now).unwrap();
    assert_eq!(peer.format(), PeerFormat::Cocoon);
}

#[test]
fn cocoon_quote_with_trailing_padding_is_accepted() {
    // Real Cocoon quote buffers can be longer than the quote (the vector
    // cocoon_tee_test_quote.dat carries 70 trailing bytes).
    let sim = sim(Tee::Tdx);
    let key = CertKey::generate(KeyType::Ed25519).unwrap();
    let claims = cocoon::user_claims(&key);
    let rd = chrysalis_ratls::Claims::report_data(&claims);
    let mut quote = chrysalis_attestation::provider::EvidenceProvider::evidence(&sim, &rd)
        .unwrap()
        .bytes;
    quote.extend_from_slice(&[0u8; 70]);
    let now = OffsetDateTime::now_utc();
    let der = cocoon::build_certificate(
        &key,
        &quote,
        &claims,
        now - time::Duration::minutes(1),
        now + time::Duration::hours(1),
    )
    .unwrap();
    let cfg = VerifierConfig::new(dev_policy()).with_collateral(sim_collateral(&sim));
    let peer = verify_certificate_der(&der, &cfg, now).unwrap();
    assert_eq!(peer.format(), PeerFormat::Cocoon);
    let id = RaTlsIdentity::assemble(key, der).unwrap();
    assert_eq!(id.certificate().evidence.trailing, 70);
}

#[test]
fn real_cocoon_quote_parses_when_vectors_are_present() {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/vectors/tdx/cocoon_tee_test_quote.dat");
    let Ok(bytes) = std::fs::read(&path) else {
        eprintln!("skipping: ../shared/vectors not found");
        return;
    };
    let d = chrysalis_ratls::cert::decode_evidence(&bytes, true).unwrap();
    assert_eq!(
        d.trailing, 70,
        "MANIFEST: 4940-byte quote + 70 trailing bytes"
    );
    assert_eq!(d.bytes.len(), 4940);
    assert!(chrysalis_ratls::cert::decode_evidence(&bytes, false).is_err());
}
