//! OCSP: responses generated with a test CA (there are no offline NVIDIA
//! OCSP responses for the vectors) — good, revoked, stale, forged, and
//! the on-disk cache used offline through the full verifier.

mod common;

use chrysalis_gpu::ocsp::{self, CertRevocation, OcspClient, OcspSourceKind};
use chrysalis_gpu::policy::{GpuPolicy, OcspRequirement};
use chrysalis_gpu::{verify_gpu, Collateral, Error, GpuEvidence};
use common::*;
use time::Duration;

fn window() -> (time::OffsetDateTime, time::OffsetDateTime) {
    (at() - Duration::days(1), at() + Duration::days(6))
}

#[test]
fn good_and_revoked_responses_verify() {
    let pki = TestPki::new("GH100 test leaf");
    let (tu, nu) = window();
    let good = ocsp_response(
        &pki.leaf_der,
        &pki.inter_der,
        &pki.inter_key,
        TestStatus::Good,
        tu,
        nu,
    );
    let c = ocsp::verify_response(
        &good,
        &pki.leaf_der,
        &pki.inter_der,
        at(),
        OcspSourceKind::Supplied,
    )
    .unwrap();
    assert_eq!(c.status, CertRevocation::Good);
    let revoked = ocsp_response(
        &pki.leaf_der,
        &pki.inter_der,
        &pki.inter_key,
        TestStatus::Revoked,
        tu,
        nu,
    );
    let c = ocsp::verify_response(
        &revoked,
        &pki.leaf_der,
        &pki.inter_der,
        at(),
        OcspSourceKind::Supplied,
    )
    .unwrap();
    assert!(matches!(c.status, CertRevocation::Revoked { .. }), "{c:?}");
}

#[test]
fn stale_forged_and_foreign_responses_fail() {
    let pki = TestPki::new("GH100 test leaf");
    let (tu, nu) = window();
    let good = ocsp_response(
        &pki.leaf_der,
        &pki.inter_der,
        &pki.inter_key,
        TestStatus::Good,
        tu,
        nu,
    );
    // Stale: verification time after nextUpdate.
    let e = ocsp::verify_response(
        &good,
        &pki.leaf_der,
        &pki.inter_der,
        nu + Duration::hours(1),
        OcspSourceKind::Cache,
    )
    .unwrap_err();
    assert!(e.to_string().contains("stale"), "{e}");
    // Signed by the wrong key (the leaf's, not the issuer's).
    let forged = ocsp_response(
        &pki.leaf_der,
        &pki.inter_der,
        &pki.leaf_key,
        TestStatus::Good,
        tu,
        nu,
    );
    let e = ocsp::verify_response(
        &forged,
        &pki.leaf_der,
        &pki.inter_der,
        at(),
        OcspSourceKind::Cache,
    )
    .unwrap_err();
    assert!(e.to_string().contains("does not verify"), "{e}");
    // A response about another certificate.
    let e = ocsp::verify_response(
        &good,
        &pki.inter_der,
        &pki.root_der,
        at(),
        OcspSourceKind::Cache,
    )
    .unwrap_err();
    assert!(matches!(e, Error::Ocsp(_)), "{e}");
    // Garbage.
    let e = ocsp::verify_response(
        b"\x30\x03\x0a\x01\x00junk",
        &pki.leaf_der,
        &pki.inter_der,
        at(),
        OcspSourceKind::Cache,
    )
    .unwrap_err();
    assert!(matches!(e, Error::MalformedOcsp(_)), "{e}");
}

#[test]
fn request_encodes_and_names_the_certificate() {
    let pki = TestPki::new("GH100 test leaf");
    let req = ocsp::build_request(&pki.leaf_der, &pki.inter_der).unwrap();
    use der::Decode;
    let parsed = x509_ocsp::OcspRequest::from_der(&req).unwrap();
    assert_eq!(parsed.tbs_request.request_list.len(), 1);
}

fn evidence(pki: &TestPki) -> Option<GpuEvidence> {
    let d = vectors()?;
    let raw = hex::decode(String::from_utf8(read(&d, REPORT)).unwrap().trim()).unwrap();
    Some(GpuEvidence {
        index: 0,
        name: None,
        report: hex::encode(pki.sign_report(&raw)),
        cert_chain: pki.chain_pem(),
        cc: None,
    })
}

#[test]
fn revoked_device_certificate_fails_verification_offline_from_cache() {
    let pki = TestPki::new("GH100 test leaf");
    let Some(ev) = evidence(&pki) else { return };
    let tmp = tempfile::tempdir().unwrap();
    let client = OcspClient::new(Some(tmp.path().into()), true);
    let (tu, nu) = window();
    let required = GpuPolicy {
        ocsp: OcspRequirement::Required,
        ..GpuPolicy::authenticity_only()
    };
    let c = Collateral::new(vec![])
        .with_device_root(pki.root_der.clone())
        .with_ocsp(client.clone());
    // All good in the cache: verifies offline, answers come from the cache.
    client
        .store(
            &pki.leaf_der,
            &ocsp_response(
                &pki.leaf_der,
                &pki.inter_der,
                &pki.inter_key,
                TestStatus::Good,
                tu,
                nu,
            ),
        )
        .unwrap();
    // Only the leaf has a cached response; the intermediate has none.
    let lenient = GpuPolicy {
        ocsp: OcspRequirement::IfAvailable,
        ..GpuPolicy::authenticity_only()
    };
    let v = verify_gpu(&ev, &c, &lenient, &nonce(), at()).unwrap();
    assert_eq!(v.ocsp().checks.len(), 1);
    assert_eq!(v.ocsp().checks[0].source, OcspSourceKind::Cache);
    assert!(v
        .ocsp()
        .not_checked
        .as_deref()
        .unwrap()
        .contains("no cached OCSP response"));
    // Required: the intermediate has no response -> fails.
    let e = verify_gpu(&ev, &c, &required, &nonce(), at()).unwrap_err();
    assert!(e.to_string().contains("no cached OCSP response"), "{e}");
    // Revoked leaf in the cache: fails under every OCSP policy but off.
    client
        .store(
            &pki.leaf_der,
            &ocsp_response(
                &pki.leaf_der,
                &pki.inter_der,
                &pki.inter_key,
                TestStatus::Revoked,
                tu,
                nu,
            ),
        )
        .unwrap();
    for p in [&required, &lenient] {
        let e = verify_gpu(&ev, &c, p, &nonce(), at()).unwrap_err();
        assert!(e.to_string().contains("revoked"), "{e}");
        assert_eq!(e.category(), chrysalis_gpu::ErrorCategory::Verification);
    }
    // A stale cached response is not used.
    let later = nu + Duration::days(1);
    let e = verify_gpu(&ev, &c, &required, &nonce(), later).unwrap_err();
    assert!(e.to_string().contains("stale"), "{e}");
}

/// A leaf whose AIA names `url` as its OCSP responder, issued by `pki`'s
/// intermediate.
fn leaf_with_ocsp_url(pki: &TestPki, url: &str) -> Vec<u8> {
    use der::Encode;
    use x509_cert::ext::pkix::name::GeneralName;
    use x509_cert::ext::pkix::{AccessDescription, AuthorityInfoAccessSyntax};
    let aia = AuthorityInfoAccessSyntax(vec![AccessDescription {
        access_method: der::oid::ObjectIdentifier::new("1.3.6.1.5.5.7.48.1").unwrap(),
        access_location: GeneralName::UniformResourceIdentifier(
            der::asn1::Ia5String::new(url).unwrap(),
        ),
    }])
    .to_der()
    .unwrap();
    let inter_kp = rcgen::KeyPair::try_from(pki.inter_pkcs8.as_slice()).unwrap();
    let issuer = rcgen::Issuer::new(pki.inter_params.clone(), inter_kp);
    let leaf_kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let mut lp = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    lp.distinguished_name
        .push(rcgen::DnType::CommonName, "GH100 leaf with OCSP URL");
    lp.custom_extensions
        .push(rcgen::CustomExtension::from_oid_content(
            &[1, 3, 6, 1, 5, 5, 7, 1, 1],
            aia,
        ));
    lp.signed_by(&leaf_kp, &issuer).unwrap().der().to_vec()
}

/// One-shot loopback HTTP responder: waits for the response body on
/// `body`, answers one POST with it, hands back the request body received.
fn serve_once(
    body: std::sync::mpsc::Receiver<Vec<u8>>,
) -> (String, std::thread::JoinHandle<Vec<u8>>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/ocsp", listener.local_addr().unwrap());
    let h = std::thread::spawn(move || {
        let body = body.recv().unwrap();
        let (stream, _) = listener.accept().unwrap();
        let mut r = BufReader::new(stream.try_clone().unwrap());
        let mut len = 0usize;
        for _ in 0..100 {
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap();
            }
            if line == "\r\n" || line.is_empty() {
                break;
            }
        }
        let mut req = vec![0u8; len];
        r.read_exact(&mut req).unwrap();
        let mut s = stream;
        write!(
            s,
            "HTTP/1.1 200 OK\r\nContent-Type: application/ocsp-response\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .unwrap();
        s.write_all(&body).unwrap();
        req
    });
    (url, h)
}

#[test]
fn fetches_over_http_then_answers_offline_from_cache() {
    let pki = TestPki::new("GH100 test leaf");
    let (tu, nu) = window();
    // The leaf names the loopback responder; the response names the leaf.
    let (tx, rx) = std::sync::mpsc::channel();
    let (url, server) = serve_once(rx);
    let leaf = leaf_with_ocsp_url(&pki, &url);
    assert_eq!(ocsp::ocsp_url(&leaf).as_deref(), Some(url.as_str()));
    tx.send(ocsp_response(
        &leaf,
        &pki.inter_der,
        &pki.inter_key,
        TestStatus::Good,
        tu,
        nu,
    ))
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let online = OcspClient::new(Some(tmp.path().into()), false);
    let c = online.status(&leaf, &pki.inter_der, at()).unwrap();
    assert_eq!(c.status, CertRevocation::Good);
    assert_eq!(c.source, OcspSourceKind::Network);
    let req = server.join().unwrap();
    use der::Decode;
    let parsed = x509_ocsp::OcspRequest::from_der(&req).unwrap();
    assert_eq!(parsed.tbs_request.request_list.len(), 1);
    // The response was cached; offline, it is answered (and re-verified) from disk.
    let offline = OcspClient::new(Some(tmp.path().into()), true);
    let c = offline.status(&leaf, &pki.inter_der, at()).unwrap();
    assert_eq!(c.source, OcspSourceKind::Cache);
}
