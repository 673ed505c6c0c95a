//! RIMs fetched by id from a RIM service: a loopback server answering
//! NVIDIA's JSON shape with the RIMs of NVIDIA's 2025 hopper sample
//! (go-nvattest-tools' `NV_GPU_DRIVER_GH100_550.90.07` and
//! `NV_GPU_VBIOS_1010_0200_882_96009F0001`, ../shared/vectors/nvidia;
//! skipped when absent). The service is untrusted: what it answers is
//! checked like a RIM file.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use base64::Engine;
use chrysalis_gpu::policy::{GpuPolicy, OcspRequirement};
use chrysalis_gpu::rim_service::{RimServiceProblem, NVIDIA_RIM_SERVICE};
use chrysalis_gpu::{
    verify_gpu, AttestationReport, Collateral, Error, ErrorCategory, GpuEvidence, Rim, RimIds,
    RimServiceClient,
};
use common::*;
use sha2::Digest;

const DRIVER_ID: &str = "NV_GPU_DRIVER_GH100_550.90.07";
const VBIOS_ID: &str = "NV_GPU_VBIOS_1010_0200_882_96009F0001";

/// Inside both RIM signer chains (driver 2024-06-01..2026-06-01, VBIOS
/// 2024-02-23..2026-02-22) and the device chain; go-nvattest-tools' own
/// test verifies these RIMs at 2025-09-21.
fn at_2025() -> time::OffsetDateTime {
    time::macros::datetime!(2025-09-21 00:00 UTC)
}

/// Authenticity + the RIM comparison (RIMs required), no OCSP.
fn rim_policy() -> GpuPolicy {
    GpuPolicy {
        ocsp: OcspRequirement::Off,
        require_rims: true,
        require_rim_version_match: true,
        ..GpuPolicy::authenticity_only()
    }
}

fn sample(d: &std::path::Path) -> GpuEvidence {
    GpuEvidence {
        index: 0,
        name: None,
        report: String::from_utf8(read(d, REPORT))
            .unwrap()
            .trim()
            .to_string(),
        cert_chain: String::from_utf8(read(d, CHAIN)).unwrap(),
        cc: None,
    }
}

fn vector_rim(d: &std::path::Path, id: &str) -> Vec<u8> {
    read(d, &format!("gonvattest_{id}.xml"))
}

/// NVIDIA's JSON answer for `id` carrying `rim`.
fn answer(id: &str, rim: &[u8]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "id": id,
        "rim": base64::engine::general_purpose::STANDARD.encode(rim),
        "sha256": hex::encode(sha2::Sha256::digest(rim)),
        "last_updated": "2024-06-01T00:00:00.000000",
        "rim_format": "TCG",
        "request_id": "00000000-0000-0000-0000-000000000000",
    }))
    .unwrap()
}

/// A loopback HTTP server answering `GET /v1/rim/{id}` from `routes`
/// (status, body; 404 for anything else), at most `max` connections.
/// Returns the base URL and the log of paths requested. The thread ends
/// after `max` connections or with the test process.
fn serve(
    routes: BTreeMap<String, (u16, Vec<u8>)>,
    max: usize,
) -> (String, Arc<Mutex<Vec<String>>>) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let log = Arc::new(Mutex::new(Vec::new()));
    let seen = log.clone();
    std::thread::spawn(move || {
        for _ in 0..max {
            let Ok((stream, _)) = listener.accept() else {
                return;
            };
            let mut r = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            if r.read_line(&mut request_line).is_err() {
                continue;
            }
            for _ in 0..100 {
                let mut line = String::new();
                if r.read_line(&mut line).is_err() || line == "\r\n" || line.is_empty() {
                    break;
                }
            }
            let path = request_line
                .split_whitespace()
                .nth(1)
                .unwrap_or_default()
                .to_string();
            seen.lock().unwrap().push(path.clone());
            let (status, body) = path
                .strip_prefix("/v1/rim/")
                .and_then(|id| routes.get(id).cloned())
                .unwrap_or((404, br#"{"message":"not found"}"#.to_vec()));
            let mut s = stream;
            let _ = write!(
                s,
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(&body);
        }
    });
    (base, log)
}

fn routes(pairs: Vec<(&str, u16, Vec<u8>)>) -> BTreeMap<String, (u16, Vec<u8>)> {
    pairs
        .into_iter()
        .map(|(id, s, b)| (id.to_string(), (s, b)))
        .collect()
}

#[test]
fn ids_from_the_hopper_report_name_the_vector_files() {
    let Some(d) = vectors() else { return };
    let r = AttestationReport::parse_hex(std::str::from_utf8(&read(&d, REPORT)).unwrap()).unwrap();
    let ids = RimIds::for_report(&r, "GH100").unwrap();
    assert_eq!(ids.driver.as_str(), DRIVER_ID);
    assert_eq!(ids.vbios.as_str(), VBIOS_ID);
    // The vectors are named by these ids, and they are those versions.
    for id in [&ids.driver, &ids.vbios] {
        let rim = Rim::parse(id.as_str(), &vector_rim(&d, id.as_str())).unwrap();
        id.check(&rim).unwrap();
    }
    // A RIM of the other kind is not the one the id names.
    let vbios = Rim::parse("v", &vector_rim(&d, VBIOS_ID)).unwrap();
    assert!(ids.driver.check(&vbios).is_err());
}

#[test]
fn the_hopper_report_verifies_with_rims_fetched_by_id_then_offline_from_the_cache() {
    let Some(d) = vectors() else { return };
    let (base, log) = serve(
        routes(vec![
            (
                DRIVER_ID,
                200,
                answer(DRIVER_ID, &vector_rim(&d, DRIVER_ID)),
            ),
            (VBIOS_ID, 200, answer(VBIOS_ID, &vector_rim(&d, VBIOS_ID))),
        ]),
        2,
    );
    let cache = tempfile::tempdir().unwrap();
    let online = RimServiceClient::new(&base, Some(cache.path().into()), false).unwrap();
    let c = Collateral::new(vec![]).with_rim_service(online);
    let v = verify_gpu(&sample(&d), &c, &rim_policy(), &nonce(), at_2025()).unwrap();
    let m = v.rim().expect("RIMs compared");
    // 33 active golden measurements; index 35 is skipped because the
    // report says NVDEC0 is disabled.
    assert_eq!(m.compared, 32);
    assert!(m.mismatched.is_empty(), "{:?}", m.mismatched);
    assert!(m.versions_match);
    let dr = m.driver_rim.as_ref().unwrap();
    assert_eq!(dr.version, "550.90.07");
    assert!(
        dr.name.contains(DRIVER_ID) && dr.name.contains(&base),
        "{}",
        dr.name
    );
    assert_eq!(m.vbios_rim.as_ref().unwrap().version, "96.00.9F.00.01");
    assert_eq!(
        *log.lock().unwrap(),
        vec![
            format!("/v1/rim/{DRIVER_ID}"),
            format!("/v1/rim/{VBIOS_ID}")
        ]
    );
    // Cached under the id, byte for byte what NVIDIA signed.
    for id in [DRIVER_ID, VBIOS_ID] {
        let cached = std::fs::read(cache.path().join(format!("{id}.xml"))).unwrap();
        assert_eq!(cached, vector_rim(&d, id));
    }

    // Offline: the cache answers (and is checked again); nothing is asked.
    let offline = RimServiceClient::new(&base, Some(cache.path().into()), true).unwrap();
    let c = Collateral::new(vec![]).with_rim_service(offline);
    let v = verify_gpu(&sample(&d), &c, &rim_policy(), &nonce(), at_2025()).unwrap();
    assert_eq!(v.rim().unwrap().compared, 32);
    assert_eq!(log.lock().unwrap().len(), 2);

    // The cache directory is also a plain RIM directory.
    let files: Vec<_> = [DRIVER_ID, VBIOS_ID]
        .iter()
        .map(|id| cache.path().join(format!("{id}.xml")))
        .collect();
    let c = Collateral::from_rim_files(&files, chrysalis_gpu::ocsp::OcspClient::new(None, true))
        .unwrap();
    verify_gpu(&sample(&d), &c, &rim_policy(), &nonce(), at_2025()).unwrap();

    // Outside the RIM signer chains' validity the fetched RIMs do not verify.
    let late = time::macros::datetime!(2026-03-01 00:00 UTC);
    let offline = RimServiceClient::new(&base, Some(cache.path().into()), true).unwrap();
    let c = Collateral::new(vec![]).with_rim_service(offline);
    let e = verify_gpu(&sample(&d), &c, &rim_policy(), &nonce(), late).unwrap_err();
    assert!(e.to_string().contains(VBIOS_ID), "{e}");
}

#[test]
fn a_local_rim_of_the_reports_version_is_not_fetched() {
    let Some(d) = vectors() else { return };
    let (base, log) = serve(
        routes(vec![(
            VBIOS_ID,
            200,
            answer(VBIOS_ID, &vector_rim(&d, VBIOS_ID)),
        )]),
        1,
    );
    let driver = Rim::parse("driver.xml", &vector_rim(&d, DRIVER_ID)).unwrap();
    let c = Collateral::new(vec![driver])
        .with_rim_service(RimServiceClient::new(&base, None, false).unwrap());
    let v = verify_gpu(&sample(&d), &c, &rim_policy(), &nonce(), at_2025()).unwrap();
    assert_eq!(
        v.rim().unwrap().driver_rim.as_ref().unwrap().name,
        "driver.xml"
    );
    assert_eq!(*log.lock().unwrap(), vec![format!("/v1/rim/{VBIOS_ID}")]);
}

#[test]
fn a_tampered_rim_from_the_service_is_refused_and_not_cached() {
    let Some(d) = vectors() else { return };
    // One golden measurement changed; the JSON is self-consistent (its
    // sha256 is of the tampered bytes): only the XML signature can tell.
    let text = String::from_utf8(vector_rim(&d, DRIVER_ID)).unwrap();
    let i = text.find("Hash0=\"").unwrap() + "Hash0=\"".len();
    let mut tampered = text.into_bytes();
    tampered[i] = if tampered[i] == b'0' { b'1' } else { b'0' };
    let (base, _log) = serve(
        routes(vec![
            (DRIVER_ID, 200, answer(DRIVER_ID, &tampered)),
            (VBIOS_ID, 200, answer(VBIOS_ID, &vector_rim(&d, VBIOS_ID))),
        ]),
        2,
    );
    let cache = tempfile::tempdir().unwrap();
    let c = Collateral::new(vec![])
        .with_rim_service(RimServiceClient::new(&base, Some(cache.path().into()), false).unwrap());
    let e = verify_gpu(&sample(&d), &c, &rim_policy(), &nonce(), at_2025()).unwrap_err();
    match &e {
        Error::RimSignature { name, reason } => {
            assert!(name.contains(DRIVER_ID) && name.contains(&base), "{name}");
            assert!(reason.contains("modified"), "{reason}");
        }
        other => panic!("expected a RIM signature failure, got {other}"),
    }
    assert_eq!(e.category(), ErrorCategory::Verification);
    assert!(!cache.path().join(format!("{DRIVER_ID}.xml")).exists());
}

/// The error verification gives when the service answers `status`/`body`
/// for the driver id.
fn driver_answer_error(status: u16, body: Vec<u8>) -> Option<Error> {
    let d = vectors()?;
    let (base, _log) = serve(routes(vec![(DRIVER_ID, status, body)]), 1);
    let c = Collateral::new(vec![])
        .with_rim_service(RimServiceClient::new(&base, None, false).unwrap());
    let e = verify_gpu(&sample(&d), &c, &rim_policy(), &nonce(), at_2025()).unwrap_err();
    let s = e.to_string();
    assert!(
        s.contains(DRIVER_ID) && s.contains(&format!("{base}/v1/rim/{DRIVER_ID}")),
        "{s}"
    );
    Some(e)
}

fn problem(e: Error) -> RimServiceProblem {
    match e {
        Error::RimService { id, problem, .. } => {
            assert_eq!(id, DRIVER_ID);
            problem
        }
        other => panic!("expected a RIM service error, got {other}"),
    }
}

#[test]
fn not_found_malformed_json_and_wrong_id_are_typed_errors_naming_the_id() {
    let Some(d) = vectors() else { return };
    let e = driver_answer_error(404, b"{}".to_vec()).unwrap();
    assert_eq!(e.category(), ErrorCategory::Io);
    assert_eq!(problem(e), RimServiceProblem::NotFound);

    let e = driver_answer_error(503, b"busy".to_vec()).unwrap();
    assert_eq!(problem(e), RimServiceProblem::Status(503));

    let e = driver_answer_error(200, b"{\"id\": \"NV_GPU".to_vec()).unwrap();
    assert_eq!(e.category(), ErrorCategory::Malformed);
    assert!(matches!(problem(e), RimServiceProblem::NotJson(_)));

    let e = driver_answer_error(200, format!(r#"{{"id":"{DRIVER_ID}"}}"#).into_bytes()).unwrap();
    assert!(matches!(problem(e), RimServiceProblem::NotJson(m) if m.contains("rim")));

    let e = driver_answer_error(
        200,
        format!(r#"{{"id":"{DRIVER_ID}","rim":"not base64!"}}"#).into_bytes(),
    )
    .unwrap();
    assert_eq!(problem(e), RimServiceProblem::BadBase64);

    let other = "NV_GPU_DRIVER_GH100_535.104.05";
    let e = driver_answer_error(200, answer(other, &vector_rim(&d, DRIVER_ID))).unwrap();
    assert_eq!(problem(e), RimServiceProblem::IdMismatch(other.into()));

    // A genuine, signed RIM, but not the one asked for (the VBIOS RIM
    // served under the driver id).
    let e = driver_answer_error(200, answer(DRIVER_ID, &vector_rim(&d, VBIOS_ID))).unwrap();
    assert_eq!(e.category(), ErrorCategory::Verification);
    assert!(matches!(problem(e), RimServiceProblem::WrongRim(_)));

    let mut big = answer(DRIVER_ID, &vector_rim(&d, DRIVER_ID));
    big.resize(chrysalis_gpu::rim_service::MAX_RESPONSE_LEN + 10, b' ');
    let e = driver_answer_error(200, big).unwrap();
    assert_eq!(problem(e), RimServiceProblem::TooLarge);
}

#[test]
fn an_unreachable_service_and_an_empty_offline_cache_name_the_id() {
    let Some(d) = vectors() else { return };
    // A port nothing listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let base = format!("http://127.0.0.1:{port}");
    let c = Collateral::new(vec![])
        .with_rim_service(RimServiceClient::new(&base, None, false).unwrap());
    let e = verify_gpu(&sample(&d), &c, &rim_policy(), &nonce(), at_2025()).unwrap_err();
    assert!(matches!(problem(e), RimServiceProblem::Transport(_)));

    let cache = tempfile::tempdir().unwrap();
    let c = Collateral::new(vec![]).with_rim_service(
        RimServiceClient::new(NVIDIA_RIM_SERVICE, Some(cache.path().into()), true).unwrap(),
    );
    let e = verify_gpu(&sample(&d), &c, &rim_policy(), &nonce(), at_2025()).unwrap_err();
    assert!(
        e.to_string()
            .contains("https://rim.attestation.nvidia.com/v1/rim/NV_GPU_DRIVER_GH100_550.90.07"),
        "{e}"
    );
    assert!(matches!(problem(e), RimServiceProblem::Offline(_)));

    // A cached file that is not the RIM (planted by someone): offline it
    // is refused, naming why.
    std::fs::write(
        cache.path().join(format!("{DRIVER_ID}.xml")),
        vector_rim(&d, VBIOS_ID),
    )
    .unwrap();
    let e = verify_gpu(&sample(&d), &c, &rim_policy(), &nonce(), at_2025()).unwrap_err();
    assert!(
        matches!(problem(e), RimServiceProblem::Offline(m) if m.contains("cached copy unusable"))
    );
}
