//! `chrysalis gpu verify --rim-service URL --rim-cache DIR`: NVIDIA's 2025
//! hopper sample verified with the RIMs fetched by the ids its report gives
//! from a loopback RIM service (NVIDIA's JSON shape, the RIMs
//! go-nvattest-tools publishes for it; ../shared/vectors/nvidia, skipped
//! when absent), then offline from the cache. Network: loopback only
//! (the policy turns OCSP off).

use std::path::PathBuf;
use std::process::{Command, Output};

use base64::Engine;

const NONCE: &str = "931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb";
const DRIVER_ID: &str = "NV_GPU_DRIVER_GH100_550.90.07";
const VBIOS_ID: &str = "NV_GPU_VBIOS_1010_0200_882_96009F0001";
/// Inside both RIM signer chains' validity.
const AT: &str = "2025-09-21T00:00:00Z";

fn vectors() -> Option<PathBuf> {
    let d = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors/nvidia");
    if d.join(format!("gonvattest_{DRIVER_ID}.xml")).is_file() {
        Some(d)
    } else {
        eprintln!("skipping: ../shared/vectors/nvidia not found");
        None
    }
}

fn chrysalis(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chrysalis"))
        .args(args)
        .output()
        .expect("run chrysalis")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Loopback RIM service: answers `GET /v1/rim/{id}` for the vector RIMs
/// (404 otherwise), at most `max` connections.
fn serve(d: PathBuf, max: usize) -> String {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for _ in 0..max {
            let Ok((stream, _)) = listener.accept() else {
                return;
            };
            let mut r = BufReader::new(stream.try_clone().unwrap());
            let mut first = String::new();
            let _ = r.read_line(&mut first);
            for _ in 0..100 {
                let mut line = String::new();
                if r.read_line(&mut line).is_err() || line == "\r\n" || line.is_empty() {
                    break;
                }
            }
            let id = first
                .split_whitespace()
                .nth(1)
                .and_then(|p| p.strip_prefix("/v1/rim/"))
                .unwrap_or_default()
                .to_string();
            let (status, body) = match std::fs::read(d.join(format!("gonvattest_{id}.xml"))) {
                Ok(rim) if id == DRIVER_ID || id == VBIOS_ID => (
                    200,
                    serde_json::json!({
                        "id": id,
                        "rim": base64::engine::general_purpose::STANDARD.encode(&rim),
                        "rim_format": "TCG",
                    })
                    .to_string(),
                ),
                _ => (404, "{}".to_string()),
            };
            let mut s = stream;
            let _ = write!(
                s,
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    base
}

#[test]
fn gpu_verify_fetches_the_rims_by_id_then_works_offline_from_the_cache() {
    let Some(d) = vectors() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let policy = tmp.path().join("policy.toml");
    std::fs::write(
        &policy,
        "[gpu]\nrequire_cc_mode = false\nrequire_devtools_off = false\nocsp = \"off\"\n\
         require_rims = true\nrequire_rim_version_match = true\n",
    )
    .unwrap();
    let cache = tmp.path().join("rims");
    let base = serve(d.clone(), 2);
    let report = d.join("nvtrust_hopperAttestationReport.txt");
    let chain = d.join("nvtrust_hopperCertChain.txt");
    let common = [
        "gpu",
        "verify",
        "--evidence",
        report.to_str().unwrap(),
        "--certs",
        chain.to_str().unwrap(),
        "--nonce",
        NONCE,
        "--at",
        AT,
        "--policy",
        policy.to_str().unwrap(),
        "--rim-cache",
        cache.to_str().unwrap(),
        "--json",
    ];
    let mut online = common.to_vec();
    online.extend(["--rim-service", &base]);
    let o = chrysalis(&online);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains(DRIVER_ID) && out.contains("550.90.07"),
        "{out}"
    );
    for id in [DRIVER_ID, VBIOS_ID] {
        assert!(cache.join(format!("{id}.xml")).is_file(), "{id} cached");
    }

    // Offline: the cache answers; the server has nothing more to give.
    let mut offline = common.to_vec();
    offline.extend(["--rim-service", &base, "--offline"]);
    let o = chrysalis(&offline);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    // A service without the RIM: I/O failure (exit 1) naming the id.
    let empty = tempfile::tempdir().unwrap();
    let base404 = serve(PathBuf::from("/nonexistent"), 1);
    let o = chrysalis(&[
        "gpu",
        "verify",
        "--evidence",
        report.to_str().unwrap(),
        "--certs",
        chain.to_str().unwrap(),
        "--nonce",
        NONCE,
        "--at",
        AT,
        "--policy",
        policy.to_str().unwrap(),
        "--rim-service",
        &base404,
        "--rim-cache",
        empty.path().to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains(DRIVER_ID) && text(&o).contains("404"),
        "{}",
        text(&o)
    );
}
