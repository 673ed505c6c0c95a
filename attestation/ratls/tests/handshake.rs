//! RA-TLS end to end over 127.0.0.1: a server with simulated evidence, a
//! client with the verifier, in the same test; and every way a certificate
//! must be rejected, each with its own error.

mod common;

use std::sync::Arc;
use std::time::Duration;

use chrysalis_attestation::policy::TdxMeasurementSet;
use chrysalis_attestation::{Policy, Tee};
use chrysalis_ratls::x509::{build_certificate, ratls_extensions, CertificateParams};
use chrysalis_ratls::{
    client_config, client_config_with, server_config, server_config_with, CertKey, ClientOptions,
    CollateralSource, Error, ErrorCategory, IdentityOptions, KeyType, PeerFormat,
    RaTlsClientVerifier, RaTlsIdentity, RaTlsServerVerifier, ReloadableResolver,
};
use common::*;
use time::OffsetDateTime;

fn client(policy: Policy) -> (Arc<RaTlsServerVerifier>, Arc<rustls::ClientConfig>) {
    let v = Arc::new(RaTlsServerVerifier::new(config(policy)));
    let c = Arc::new(client_config(v.clone()).unwrap());
    (v, c)
}

fn server(id: &RaTlsIdentity) -> Arc<rustls::ServerConfig> {
    Arc::new(server_config(id, None).unwrap())
}

/// A certificate for a new key whose RA-TLS extensions are copied (or
/// taken) from other identities: what an attacker without the TEE can do.
fn forged(key: CertKey, evidence: &[u8], claims_der: &[u8], from: &RaTlsIdentity) -> RaTlsIdentity {
    let now = OffsetDateTime::now_utc();
    let der = build_certificate(
        &key,
        &CertificateParams {
            common_name: "forged".into(),
            subject_alt_names: vec![],
            not_before: now - time::Duration::minutes(1),
            not_after: now + time::Duration::hours(1),
            critical_ext_key_usage: false,
            extensions: ratls_extensions(evidence, claims_der, None, from.collateral()).unwrap(),
        },
    )
    .unwrap();
    RaTlsIdentity::assemble(key, der).unwrap()
}

#[tokio::test]
async fn simulated_server_is_accepted_only_when_simulation_is_allowed() {
    let sim = sim(Tee::Tdx);
    let id = identity(&sim);

    let (v, c) = client(dev_policy());
    let out = exchange(server(&id), c).await;
    out.client.expect("accepted with allow_simulated");
    out.server.expect("server side");
    let peer = v.peer().expect("the verifier keeps the peer");
    assert_eq!(peer.format(), PeerFormat::Chrysalis);
    assert_eq!(peer.tee(), Tee::Tdx);
    assert!(peer.is_simulated());
    assert!(peer
        .decision()
        .warnings
        .iter()
        .any(|w| w.contains("SIMULATED")));
    assert_eq!(peer.spki_der(), id.spki_der());
    assert_eq!(peer.collateral_source(), CollateralSource::Embedded);
    assert_eq!(
        peer.created_at(),
        id.claims().map(|c| c.created_at),
        "creation time comes from the claims"
    );
    let cert = peer.certificate().unwrap();
    assert_eq!(cert.not_after, id.not_after());
    assert_eq!(
        (cert.not_after - cert.not_before).whole_seconds(),
        24 * 3600 + 60,
        "24 h validity, notBefore one minute early"
    );

    let (v, c) = client(Policy::default());
    let out = exchange(server(&id), c).await;
    let err = out
        .client
        .expect_err("default policy rejects simulated evidence");
    let e = ratls_error(&err);
    assert!(matches!(e, Error::Rejected { .. }), "{e:?}");
    assert_eq!(e.category(), ErrorCategory::Rejected);
    assert_eq!(e.category(), chrysalis_ratls::ErrorCategory::Rejected);
    assert!(e.to_string().contains("SIMULATED"), "{e}");
    assert!(out.server.is_err(), "the server sees the client's alert");
    assert!(v.peer().is_none());
}

#[tokio::test]
async fn key_not_bound_in_evidence_is_rejected() {
    let sim = sim(Tee::Tdx);
    let genuine = identity(&sim);
    // Another key, carrying the genuine identity's evidence *and* claims:
    // report_data matches the claims, but the claims name another key.
    let thief = forged(
        CertKey::generate(KeyType::EcdsaP256).unwrap(),
        genuine.evidence(),
        genuine.claims_bytes(),
        &genuine,
    );
    let (_, c) = client(dev_policy());
    let err = exchange(server(&thief), c).await.client.unwrap_err();
    let e = ratls_error(&err);
    assert!(matches!(e, Error::KeyNotBound(_)), "{e:?}");
    assert!(e.to_string().contains("key not bound in evidence"), "{e}");
    assert_eq!(e.category(), ErrorCategory::Verification);
}

#[tokio::test]
async fn swapped_evidence_extension_is_rejected() {
    let sim = sim(Tee::Tdx);
    let a = identity(&sim);
    let b = identity(&sim);
    // B's own claims (naming B's key), but A's evidence: report_data is
    // SHA-512 of A's claims, not of these.
    let key = CertKey::generate(KeyType::EcdsaP256).unwrap();
    let claims_b = chrysalis_ratls::Claims {
        spki_der: key.spki_der(),
        ..b.claims().unwrap().clone()
    };
    let swapped = forged(key, a.evidence(), &claims_b.to_der().unwrap(), &a);
    let (_, c) = client(dev_policy());
    let err = exchange(server(&swapped), c).await.client.unwrap_err();
    let e = ratls_error(&err);
    assert!(matches!(e, Error::EvidenceNotBound { .. }), "{e:?}");
    assert_eq!(e.category(), ErrorCategory::Verification);
}

#[tokio::test]
async fn expired_and_not_yet_valid_certificates_are_rejected() {
    let sim = sim(Tee::Tdx);
    let now = OffsetDateTime::now_utc();
    let expired = RaTlsIdentity::generate(
        &sim,
        &IdentityOptions {
            created_at: Some(now - time::Duration::days(3)),
            ..opts_with_collateral(&sim)
        },
    )
    .unwrap();
    let (_, c) = client(dev_policy());
    let err = exchange(server(&expired), c).await.client.unwrap_err();
    assert!(
        matches!(ratls_error(&err), Error::Expired { .. }),
        "{err:?}"
    );

    let future = RaTlsIdentity::generate(
        &sim,
        &IdentityOptions {
            created_at: Some(now + time::Duration::days(2)),
            ..opts_with_collateral(&sim)
        },
    )
    .unwrap();
    let (_, c) = client(dev_policy());
    let err = exchange(server(&future), c).await.client.unwrap_err();
    let e = ratls_error(&err);
    assert!(matches!(e, Error::NotYetValid { .. }), "{e:?}");
    assert_eq!(e.category(), ErrorCategory::Verification);
}

#[tokio::test]
async fn tls12_only_client_fails_the_handshake() {
    let sim = sim(Tee::Tdx);
    let id = identity(&sim);
    let v = Arc::new(RaTlsServerVerifier::new(config(dev_policy())));
    let tls12 = rustls::ClientConfig::builder_with_provider(chrysalis_ratls::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(v.clone())
        .with_no_client_auth();
    let out = exchange(server(&id), Arc::new(tls12)).await;
    let err = out
        .client
        .expect_err("a TLS 1.2-only client cannot connect");
    let inner = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
        .expect("a rustls error");
    assert!(
        matches!(
            inner,
            rustls::Error::AlertReceived(rustls::AlertDescription::ProtocolVersion)
        ),
        "{inner:?}"
    );
    assert!(out.server.is_err());
    assert!(v.peer().is_none(), "no certificate was verified");
}

#[tokio::test]
async fn a_policy_with_report_data_is_refused_not_ignored() {
    // RA-TLS binds report_data to the claims itself; a policy that pins
    // report_data could never apply, so it must be an error, not a no-op.
    let sim = sim(Tee::Tdx);
    let id = identity(&sim);
    let mut policy = dev_policy();
    policy.report_data = Some("0102".into());
    let (v, c) = client(policy);
    let err = exchange(server(&id), c).await.client.unwrap_err();
    let e = ratls_error(&err);
    assert_eq!(e.category(), ErrorCategory::Malformed, "{e}");
    assert!(
        e.to_string().contains("report_data") && e.to_string().contains("RA-TLS"),
        "{e}"
    );
    assert!(v.peer().is_none());
}

#[tokio::test]
async fn measurement_not_in_policy_is_rejected() {
    let sim = sim(Tee::Tdx);
    let id = identity(&sim);
    let mut policy = dev_policy();
    policy.tdx.measurements = vec![TdxMeasurementSet {
        name: Some("release-x".into()),
        mrtd: Some(hex::encode([0x11u8; 48])),
        ..Default::default()
    }];
    let (_, c) = client(policy.clone());
    let err = exchange(server(&id), c).await.client.unwrap_err();
    let e = ratls_error(&err);
    match e {
        Error::Rejected { reasons, .. } => {
            assert!(
                reasons
                    .iter()
                    .any(|r| r.contains("MRTD") && r.contains("release-x")),
                "{reasons:?}"
            );
            assert!(
                !reasons.iter().any(|r| r.contains("SIMULATED")),
                "simulation is allowed here: {reasons:?}"
            );
        }
        other => panic!("expected a policy rejection, got {other:?}"),
    }

    // The same policy with the simulator's real MRTD accepts.
    policy.tdx.measurements[0].mrtd = Some(hex::encode(chrysalis_sim::sim_measurement("MRTD")));
    let (_, c) = client(policy);
    exchange(server(&id), c).await.client.unwrap();
}

#[tokio::test]
async fn mutual_ra_tls() {
    let sim_server = sim(Tee::Tdx);
    let sim_client = sim(Tee::Tdx);
    let server_id = identity(&sim_server);
    let client_id = identity(&sim_client);

    let client_verifier = Arc::new(RaTlsClientVerifier::new(config(dev_policy())));
    let scfg = Arc::new(server_config(&server_id, Some(client_verifier.clone())).unwrap());
    let sv = Arc::new(RaTlsServerVerifier::new(config(dev_policy())));
    let ccfg = Arc::new(
        client_config_with(
            sv.clone(),
            &ClientOptions {
                client_identity: Some(Arc::new(ReloadableResolver::new(&client_id))),
                ..ClientOptions::default()
            },
        )
        .unwrap(),
    );
    let out = exchange(scfg.clone(), ccfg).await;
    out.client.unwrap();
    let certs = out
        .server
        .unwrap()
        .expect("the client presented a certificate");
    let peer = client_verifier.peer_of(Some(&certs)).unwrap();
    assert_eq!(peer.spki_der(), client_id.spki_der());
    assert!(
        peer.from_cache(),
        "read back from the handshake's verification"
    );
    assert_eq!(sv.peer().unwrap().spki_der(), server_id.spki_der());

    // A client without an RA-TLS certificate is refused by the server.
    let (_, plain) = client(dev_policy());
    let out = exchange(scfg.clone(), plain).await;
    assert!(out.server.is_err(), "client certificate is mandatory");
    assert!(out.client.is_err());

    // A client whose certificate the server's policy rejects.
    let strict_server = Arc::new(
        server_config(
            &server_id,
            Some(Arc::new(RaTlsClientVerifier::new(
                config(Policy::default()),
            ))),
        )
        .unwrap(),
    );
    let ccfg = Arc::new(
        client_config_with(
            Arc::new(RaTlsServerVerifier::new(config(dev_policy()))),
            &ClientOptions {
                client_identity: Some(Arc::new(ReloadableResolver::new(&client_id))),
                ..ClientOptions::default()
            },
        )
        .unwrap(),
    );
    let out = exchange(strict_server, ccfg).await;
    let err = out
        .server
        .expect_err("the server rejects the simulated client");
    assert!(
        matches!(ratls_error(&err), Error::Rejected { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn second_handshake_hits_the_cache() {
    let sim = sim(Tee::Tdx);
    let id = identity(&sim);
    let cfg = config(dev_policy());
    assert_eq!(cfg.cache_stats().unwrap().hits, 0);
    for round in 0..2 {
        let v = Arc::new(RaTlsServerVerifier::new(cfg.clone()));
        let c = Arc::new(client_config(v.clone()).unwrap());
        exchange(server(&id), c).await.client.unwrap();
        assert_eq!(v.peer().unwrap().from_cache(), round == 1);
    }
    let stats = cfg.cache_stats().unwrap();
    assert_eq!((stats.hits, stats.misses, stats.entries), (1, 1, 1));

    // The policy still runs on a hit: the same cache with a strict policy rejects.
    let strict = Arc::new((*cfg).clone().with_policy(Policy::default()));
    let v = Arc::new(RaTlsServerVerifier::new(strict.clone()));
    let err = exchange(server(&id), Arc::new(client_config(v).unwrap()))
        .await
        .client
        .unwrap_err();
    assert!(matches!(ratls_error(&err), Error::Rejected { .. }));
    assert_eq!(
        strict.cache_stats().unwrap().hits,
        2,
        "answered from the shared cache"
    );

    // And validity is re-checked: the cached certificate at a time after notAfter.
    let later = id.not_after() + time::Duration::hours(1);
    let e = chrysalis_ratls::verify_certificate_der(id.cert_der(), &cfg, later).unwrap_err();
    assert!(matches!(e, Error::Expired { .. }), "{e:?}");

    // Without a cache every handshake verifies in full.
    let nocache = Arc::new(chrysalis_ratls::VerifierConfig::new(dev_policy()).without_cache());
    let v = Arc::new(RaTlsServerVerifier::new(nocache.clone()));
    exchange(server(&id), Arc::new(client_config(v.clone()).unwrap()))
        .await
        .client
        .unwrap();
    assert!(!v.peer().unwrap().from_cache());
    assert!(nocache.cache_stats().is_none());
}

#[tokio::test]
async fn renewal_swaps_identity_without_dropping_connections() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let sim = sim(Tee::Tdx);
    let first = identity(&sim);
    let second = identity(&sim);
    let resolver = Arc::new(ReloadableResolver::new(&first));
    let scfg =
        Arc::new(server_config_with(resolver.clone(), None, &[b"http/1.1".to_vec()]).unwrap());

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(scfg);
    let srv = tokio::spawn(async move {
        // Echo server for two connections at once.
        let mut tasks = Vec::new();
        for _ in 0..2 {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tasks.push(tokio::spawn(async move {
                let mut tls = acceptor.accept(tcp).await.unwrap();
                let mut buf = [0u8; 1];
                while tls.read_exact(&mut buf).await.is_ok() {
                    tls.write_all(&buf).await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    let connect = |v: Arc<RaTlsServerVerifier>| async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let cfg = Arc::new(client_config(v).unwrap());
        tokio_rustls::TlsConnector::from(cfg)
            .connect(rustls::pki_types::ServerName::try_from("x").unwrap(), tcp)
            .await
            .unwrap()
    };
    let cfg = config(dev_policy());
    let v1 = Arc::new(RaTlsServerVerifier::new(cfg.clone()));
    let mut c1 = connect(v1.clone()).await;
    assert_eq!(v1.peer().unwrap().spki_der(), first.spki_der());

    resolver.swap(&second);
    let v2 = Arc::new(RaTlsServerVerifier::new(cfg.clone()));
    let mut c2 = connect(v2.clone()).await;
    assert_eq!(v2.peer().unwrap().spki_der(), second.spki_der());

    // The first connection still works after the swap.
    for (c, b) in [(&mut c1, b'a'), (&mut c2, b'b')] {
        c.write_all(&[b]).await.unwrap();
        let mut r = [0u8; 1];
        c.read_exact(&mut r).await.unwrap();
        assert_eq!(r[0], b);
    }
    drop(c1);
    drop(c2);
    srv.await.unwrap();
    assert!(second.renewal_due(
        second.not_after() - time::Duration::minutes(5),
        Duration::from_secs(3600)
    ));
    assert!(!second.renewal_due(OffsetDateTime::now_utc(), Duration::from_secs(3600)));
}

#[tokio::test]
async fn snp_and_ed25519_identities_work_end_to_end() {
    let snp = sim(Tee::Snp);
    let id = identity(&snp);
    let (v, c) = client(dev_policy());
    exchange(server(&id), c).await.client.unwrap();
    assert_eq!(v.peer().unwrap().tee(), Tee::Snp);

    let tdx = sim(Tee::Tdx);
    let ed = RaTlsIdentity::generate(
        &tdx,
        &IdentityOptions {
            key_type: KeyType::Ed25519,
            image: Some(chrysalis_ratls::ImageId {
                release: Some("chrysalis-0.1.0".into()),
                measurements_sha256: Some([7; 32]),
            }),
            gpu_evidence_digest: Some([0x5a; 48]),
            ..opts_with_collateral(&tdx)
        },
    )
    .unwrap();
    let (v, c) = client(dev_policy());
    exchange(server(&ed), c).await.client.unwrap();
    let peer = v.peer().unwrap();
    assert_eq!(peer.gpu_evidence_digest(), Some(&[0x5a; 48]));
    assert_eq!(
        peer.claims()
            .unwrap()
            .image
            .as_ref()
            .unwrap()
            .release
            .as_deref(),
        Some("chrysalis-0.1.0")
    );
}

#[tokio::test]
async fn verifier_collateral_overrides_embedded_and_none_is_an_error() {
    let sim = sim(Tee::Tdx);
    // No collateral embedded.
    let bare = RaTlsIdentity::generate(&sim, &IdentityOptions::default()).unwrap();
    let now = OffsetDateTime::now_utc();
    let e = chrysalis_ratls::verify_certificate_der(bare.cert_der(), &config(dev_policy()), now)
        .unwrap_err();
    assert!(matches!(e, Error::NoCollateral { tee: Tee::Tdx }), "{e:?}");
    assert_eq!(e.category(), ErrorCategory::Malformed);

    let with_own =
        chrysalis_ratls::VerifierConfig::new(dev_policy()).with_collateral(sim_collateral(&sim));
    let peer = chrysalis_ratls::verify_certificate_der(bare.cert_der(), &with_own, now).unwrap();
    assert_eq!(peer.collateral_source(), CollateralSource::Verifier);

    // Embedded collateral from another simulator: authentic-looking, but
    // the verifier's own collateral wins and the evidence still verifies.
    let other = common::sim(Tee::Tdx);
    let misleading = RaTlsIdentity::generate(&sim, &opts_with_collateral(&other)).unwrap();
    let e =
        chrysalis_ratls::verify_certificate_der(misleading.cert_der(), &config(dev_policy()), now)
            .unwrap_err();
    assert_eq!(e.category(), ErrorCategory::Verification, "{e}");
    let peer =
        chrysalis_ratls::verify_certificate_der(misleading.cert_der(), &with_own, now).unwrap();
    assert_eq!(peer.collateral_source(), CollateralSource::Verifier);
}

#[test]
fn tampered_certificate_bytes_fail_the_self_signature() {
    let sim = sim(Tee::Tdx);
    let id = identity(&sim);
    let mut der = id.cert_der().to_vec();
    // A byte inside the quote carried by the evidence extension: the
    // structure still parses, the self-signature no longer verifies.
    let ev = id.evidence();
    let start = der
        .windows(ev.len())
        .position(|w| w == ev)
        .expect("the quote is in the DER");
    der[start + 100] ^= 0x01;
    let e = chrysalis_ratls::verify_certificate_der(
        &der,
        &config(dev_policy()),
        OffsetDateTime::now_utc(),
    )
    .unwrap_err();
    assert!(matches!(e, Error::BadSignature(_)), "{e:?}");
    assert_eq!(e.category(), ErrorCategory::Verification);
}

#[test]
fn offline_verification_reads_der_and_pem_files() {
    use base64::Engine;
    let sim = sim(Tee::Snp);
    let id = identity(&sim);
    let der = id.cert_der().to_vec();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&der);
    let pem = format!("-----BEGIN CERTIFICATE-----\n{b64}\n-----END CERTIFICATE-----\n");
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in [("c.der", der.clone()), ("c.pem", pem.into_bytes())] {
        let path = dir.path().join(name);
        std::fs::write(&path, &bytes).unwrap();
        let read = std::fs::read(&path).unwrap();
        let cert = chrysalis_ratls::cert::certificate_der_from_file_bytes(&read).unwrap();
        assert_eq!(cert, der, "{name}");
        let peer = chrysalis_ratls::verify_certificate_der(
            &cert,
            &chrysalis_ratls::VerifierConfig::new(dev_policy()),
            OffsetDateTime::now_utc(),
        )
        .unwrap();
        assert_eq!(peer.tee(), Tee::Snp);
        // The JSON the CLI prints.
        let json = serde_json::to_value(&peer).unwrap();
        assert_eq!(json["format"], "chrysalis");
        assert_eq!(json["decision"]["accepted"], true);
    }
    let e = chrysalis_ratls::cert::certificate_der_from_file_bytes(b"hello").unwrap_err();
    assert_eq!(e.category(), ErrorCategory::Malformed);
}
