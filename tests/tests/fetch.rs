//! `collateral fetch` against a PCCS-shaped server on loopback: what it
//! stores verifies offline, and what a hostile server serves is caught by
//! the signature checks at use.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::thread;
use std::time::{Duration, Instant};

use att::sim::tdx::{SimTdInput, SimTdx, SimTdxOptions};
use att::tdx::{TdxCollateral, TdxQuote, TdxRoots};
use chrysalis_attestation as att;
use time::OffsetDateTime;

/// Serves PCS v4 endpoints from `c` for at most `max_requests` requests or 20 s.
fn serve(c: TdxCollateral, max_requests: usize) -> String {
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
            let enc = |pem: &str| {
                pem.bytes()
                    .map(|b| {
                        if b.is_ascii_alphanumeric() {
                            (b as char).to_string()
                        } else {
                            format!("%{b:02X}")
                        }
                    })
                    .collect::<String>()
            };
            let v = &c.v3;
            let (status, header, body): (&str, Option<(&str, String)>, Vec<u8>) =
                if path.starts_with("/sgx/certification/v4/pckcrl") {
                    (
                        "200 OK",
                        Some(("SGX-PCK-CRL-Issuer-Chain", enc(&v.pck_crl_issuer_chain))),
                        v.pck_crl.clone(),
                    )
                } else if path.starts_with("/tdx/certification/v4/tcb") {
                    let body = format!(
                        "{{\"tcbInfo\":{},\"signature\":\"{}\"}}",
                        v.tcb_info,
                        hex::encode(&v.tcb_info_signature)
                    );
                    (
                        "200 OK",
                        Some(("TCB-Info-Issuer-Chain", enc(&v.tcb_info_issuer_chain))),
                        body.into_bytes(),
                    )
                } else if path.starts_with("/tdx/certification/v4/qe/identity") {
                    let body = format!(
                        "{{\"enclaveIdentity\":{},\"signature\":\"{}\"}}",
                        v.qe_identity,
                        hex::encode(&v.qe_identity_signature)
                    );
                    (
                        "200 OK",
                        Some((
                            "SGX-Enclave-Identity-Issuer-Chain",
                            enc(&v.qe_identity_issuer_chain),
                        )),
                        body.into_bytes(),
                    )
                } else if path.starts_with("/sgx/certification/v4/rootcacrl") {
                    ("200 OK", None, hex::encode(&v.root_ca_crl).into_bytes())
                } else {
                    ("404 Not Found", None, Vec::new())
                };
            let mut out = stream;
            let mut head = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
                body.len()
            );
            if let Some((k, val)) = header {
                head.push_str(&format!("{k}: {val}\r\n"));
            }
            head.push_str("\r\n");
            let _ = out.write_all(head.as_bytes());
            let _ = out.write_all(&body);
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
    let url = serve(c.clone(), 4);
    let dir = tempfile::tempdir().unwrap();
    let quote = TdxQuote::parse(&q).unwrap();
    let written = att::fetch::fetch_tdx_collateral(&quote, &url, dir.path()).unwrap();
    assert_eq!(written.len(), 7);
    let cached = TdxCollateral::load(dir.path()).unwrap();
    assert_eq!(cached.v3.tcb_info, c.v3.tcb_info);
    let roots =
        TdxRoots::empty().with_root(att::TrustAnchor::Custom, sim.pki().root_ca_der().to_vec());
    let ev = att::tdx::verify(&q, &cached, &roots, OffsetDateTime::now_utc()).unwrap();
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
    let url = serve(forged, 4);
    let dir = tempfile::tempdir().unwrap();
    att::fetch::fetch_tdx_collateral(&TdxQuote::parse(&q).unwrap(), &url, dir.path()).unwrap();
    let cached = TdxCollateral::load(dir.path()).unwrap();
    let roots =
        TdxRoots::empty().with_root(att::TrustAnchor::Custom, sim.pki().root_ca_der().to_vec());
    let e = att::tdx::verify(&q, &cached, &roots, OffsetDateTime::now_utc()).unwrap_err();
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
    let e = att::fetch::fetch_tdx_collateral(
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
