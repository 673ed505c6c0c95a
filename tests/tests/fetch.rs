//! `collateral fetch` against a PCCS-shaped server on loopback: what it
//! stores verifies offline, and what a hostile server serves is caught by
//! the signature checks at use.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::thread;
use std::time::{Duration, Instant};

use att::tdx::{TdxCollateral, TdxQuote, TdxRoots};
use chrysalis_attestation as att;
use chrysalis_sim::tdx::{SimTdInput, SimTdx, SimTdxOptions};
use time::OffsetDateTime;

/// One canned HTTP response: served when the request path starts with `prefix`.
struct Route {
    prefix: String,
    header: Option<(&'static str, String)>,
    body: Vec<u8>,
}

/// Percent-encodes a PEM chain as PCS puts it in a response header.
fn enc(pem: &str) -> String {
    pem.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// PCS v4 endpoints serving `c`.
fn pcs_routes(c: &TdxCollateral) -> Vec<Route> {
    let v = &c.v3;
    let route = |prefix: &str, header: Option<(&'static str, String)>, body: Vec<u8>| Route {
        prefix: prefix.to_string(),
        header,
        body,
    };
    vec![
        route(
            "/sgx/certification/v4/pckcrl",
            Some(("SGX-PCK-CRL-Issuer-Chain", enc(&v.pck_crl_issuer_chain))),
            v.pck_crl.clone(),
        ),
        route(
            "/tdx/certification/v4/tcb",
            Some(("TCB-Info-Issuer-Chain", enc(&v.tcb_info_issuer_chain))),
            format!(
                "{{\"tcbInfo\":{},\"signature\":\"{}\"}}",
                v.tcb_info,
                hex::encode(&v.tcb_info_signature)
            )
            .into_bytes(),
        ),
        route(
            "/tdx/certification/v4/qe/identity",
            Some((
                "SGX-Enclave-Identity-Issuer-Chain",
                enc(&v.qe_identity_issuer_chain),
            )),
            format!(
                "{{\"enclaveIdentity\":{},\"signature\":\"{}\"}}",
                v.qe_identity,
                hex::encode(&v.qe_identity_signature)
            )
            .into_bytes(),
        ),
        route(
            "/sgx/certification/v4/rootcacrl",
            None,
            hex::encode(&v.root_ca_crl).into_bytes(),
        ),
    ]
}

/// Serves `routes` on loopback for at most `max_requests` requests or 20 s;
/// unknown paths get 404.
fn serve(routes: Vec<Route>, max_requests: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut served = 0;
        while served < max_requests && Instant::now() < deadline {
            let Ok((stream, _)) = listener.accept() else {
                thread::sleep(Duration::from_millis(10));
                continue;
            };
            stream.set_nonblocking(false).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap() == 0 || h == "\r\n" {
                    break;
                }
            }
            let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
            let hit = routes.iter().find(|r| path.starts_with(&r.prefix));
            let mut head = format!(
                "HTTP/1.1 {}\r\nContent-Length: {}\r\nConnection: close\r\n",
                if hit.is_some() {
                    "200 OK"
                } else {
                    "404 Not Found"
                },
                hit.map_or(0, |r| r.body.len())
            );
            if let Some((k, val)) = hit.and_then(|r| r.header.as_ref()) {
                head.push_str(&format!("{k}: {val}\r\n"));
            }
            head.push_str("\r\n");
            let mut out = stream;
            let _ = out.write_all(head.as_bytes());
            let _ = out.write_all(hit.map_or(&[][..], |r| &r.body));
            served += 1;
        }
    });
    format!("http://{addr}")
}

fn sim() -> (SimTdx, TdxCollateral, Vec<u8>) {
    let sim = SimTdx::new(OffsetDateTime::now_utc(), &SimTdxOptions::default()).unwrap();
    let c = TdxCollateral {
        v3: sim.collateral(),
        simulated_root_ca: None,
    };
    let q = sim.quote(&SimTdInput::default());
    (sim, c, q)
}

#[test]
fn fetched_collateral_verifies_offline_from_the_cache() {
    let (sim, c, q) = sim();
    let url = serve(pcs_routes(&c), 4);
    let dir = tempfile::tempdir().unwrap();
    let quote = TdxQuote::parse(&q).unwrap();
    let written = chrysalis_fetch::fetch_tdx_collateral(&quote, &url, dir.path()).unwrap();
    assert_eq!(written.len(), 7);
    let cached = TdxCollateral::load(dir.path()).unwrap();
    assert_eq!(cached.v3.tcb_info, c.v3.tcb_info);
    let roots =
        TdxRoots::empty().with_root(att::TrustAnchor::Custom, sim.pki().root_ca_der().to_vec());
    let ev = att::tdx::verify(
        &att::tdx::TdxQuote::parse(&q).unwrap(),
        &cached,
        &roots,
        OffsetDateTime::now_utc(),
    )
    .unwrap();
    assert_eq!(ev.tcb_status(), att::TcbStatus::UpToDate);
}

#[test]
fn a_hostile_collateral_server_is_caught_at_verification() {
    let (sim, c, q) = sim();
    let mut forged = c.clone();
    // The server claims a better TCB than it signed.
    forged.v3.tcb_info = forged.v3.tcb_info.replacen(
        "\"tcbEvaluationDataNumber\":17",
        "\"tcbEvaluationDataNumber\":99",
        1,
    );
    let url = serve(pcs_routes(&forged), 4);
    let dir = tempfile::tempdir().unwrap();
    chrysalis_fetch::fetch_tdx_collateral(&TdxQuote::parse(&q).unwrap(), &url, dir.path()).unwrap();
    let cached = TdxCollateral::load(dir.path()).unwrap();
    let roots =
        TdxRoots::empty().with_root(att::TrustAnchor::Custom, sim.pki().root_ca_der().to_vec());
    let e = att::tdx::verify(
        &att::tdx::TdxQuote::parse(&q).unwrap(),
        &cached,
        &roots,
        OffsetDateTime::now_utc(),
    )
    .unwrap_err();
    assert_eq!(e.category(), att::ErrorCategory::Verification, "{e}");
    assert!(e.to_string().contains("TCB info"), "{e}");
}

#[test]
fn an_unreachable_server_is_a_fetch_error_naming_the_url() {
    let (_, _, q) = sim();
    // Bind and drop to get a closed loopback port.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let e = chrysalis_fetch::fetch_tdx_collateral(
        &TdxQuote::parse(&q).unwrap(),
        &format!("http://127.0.0.1:{port}"),
        dir.path(),
    )
    .unwrap_err();
    assert!(matches!(e, att::Error::Fetch { .. }), "{e:?}");
    assert!(e.to_string().contains("127.0.0.1"), "{e}");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing half-written"
    );
}

#[test]
fn snp_certificates_come_from_the_kds_url_format_and_verify_offline() {
    let sim = chrysalis_sim::snp::SimSnpAuthority::generate().unwrap();
    let report_bytes = sim.report([3; 64], [4; 48], [5; 32]);
    let report = att::snp::SnpReport::parse(&report_bytes).unwrap();
    let vcek_path = att::snp::kds_vcek_url(
        att::snp::Product::Milan,
        &report.chip_id,
        &report.reported_tcb,
    )
    .replacen(att::snp::kds::KDS_BASE, "", 1);
    let chain_pem = sim.chain_pem();
    let ask_ark = chain_pem
        .split_inclusive("-----END CERTIFICATE-----\n")
        .skip(1)
        .collect::<String>();
    let url = serve(
        vec![
            Route {
                prefix: vcek_path,
                header: None,
                body: sim.vcek_der().to_vec(),
            },
            Route {
                prefix: "/vcek/v1/Milan/cert_chain".into(),
                header: None,
                body: ask_ark.into_bytes(),
            },
            Route {
                prefix: "/vcek/v1/Milan/crl".into(),
                header: None,
                body: sim
                    .crl_der(
                        false,
                        OffsetDateTime::now_utc() - time::Duration::hours(1),
                        OffsetDateTime::now_utc() + time::Duration::days(7),
                    )
                    .unwrap(),
            },
        ],
        3,
    );
    let dir = tempfile::tempdir().unwrap();
    let files = chrysalis_fetch::fetch_snp_certificates(&report, &url, dir.path()).unwrap();
    let blobs = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    let certs = att::snp::SnpCertificates::from_files_bytes(blobs).unwrap();
    assert!(
        certs.crl.is_some(),
        "the fetched CRL is sorted into the collateral"
    );
    let ev = att::snp::verify(&report, &certs, &sim.roots(), OffsetDateTime::now_utc()).unwrap();
    assert_eq!(ev.anchor(), att::TrustAnchor::Simulated);
    assert_eq!(ev.report_data(), &[3; 64]);
}
