//! Early errors reach real clients over HTTP/2 and HTTP/1.1 (413 while the
//! client is still sending, with and without `Expect: 100-continue`; an
//! over-limit head; invalid JSON), and the front door's path and query
//! rules.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const NINE_MIB: usize = 9 << 20;

fn big_json(len: usize) -> Bytes {
    let mut v = Vec::with_capacity(len);
    v.extend_from_slice(b"{\"prompt\":\"");
    v.resize(len - 2, b'x');
    v.extend_from_slice(b"\"}");
    Bytes::from(v)
}

fn post(path: &str, body: Bytes, expect: bool, length: bool) -> http::Request<ReqBody> {
    let mut b = http::Request::builder()
        .method("POST")
        .uri(format!("https://localhost{path}"))
        .header("x-test", "1")
        .header("content-type", "application/json");
    if expect {
        b = b.header("expect", "100-continue");
    }
    if length {
        b = b.header("content-length", body.len().to_string());
        b.body(Full::new(body).map_err(|e| match e {}).boxed())
            .unwrap()
    } else {
        // Streamed in 64 KiB chunks without a length.
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            for c in body.chunks(64 << 10) {
                let f = http_body::Frame::data(Bytes::copy_from_slice(c));
                if tx.send(Ok(f)).await.is_err() {
                    return;
                }
            }
        });
        b.body(ChannelBody(rx).boxed()).unwrap()
    }
}

/// A 9 MiB body (limit 8 MiB) is answered 413 with the JSON error on both
/// protocols, announced or streamed, with or without `Expect:
/// 100-continue`; the connection is not left hanging and nothing reaches
/// the engine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_limit_body_413_on_h2_and_h1_with_a_real_client() {
    let stub = Stub::start().await;
    let agent = start_agent(stub.addr, |_| {}).await;
    wait_ready(&agent).await;
    let body = big_json(NINE_MIB);
    for h2 in [true, false] {
        for (expect, length) in [(false, true), (true, true), (false, false), (true, false)] {
            let what = format!("h2={h2} expect={expect} length={length}");
            let mut c = if h2 {
                Client::h2(agent.https_addr()).await
            } else {
                Client::h1(agent.https_addr()).await
            };
            let resp = within(
                &what,
                c.send(post("/v1/chat/completions", body.clone(), expect, length)),
            )
            .await
            .unwrap_or_else(|e| panic!("{what}: no response: {e}"));
            assert_eq!(resp.status(), 413, "{what}");
            assert_eq!(resp.headers()["content-type"], "application/json", "{what}");
            assert_eq!(error_code(&text(resp).await), "request_too_large", "{what}");
        }
    }
    assert_eq!(stub.requests_seen(), 0, "nothing reached the engine");
    // The agent still serves.
    let mut c = Client::h2(agent.https_addr()).await;
    let resp = c
        .send(req("POST", "/v1/chat/completions", "{}"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    text(resp).await;
    agent.shutdown(Duration::from_secs(5)).await;
}

/// One HTTP/1.1 response (head and `content-length` body), or what came
/// before the connection ended.
async fn read_response<R: tokio::io::AsyncRead + Unpin>(rd: &mut R) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = out.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&out[..end]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if out.len() >= end + 4 + len {
                break;
            }
        }
        match rd.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// HTTP/1.1, raw: the client keeps writing its 9 MiB body while reading;
/// it reads the complete 413 (lingering close), not a reset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h1_client_still_sending_reads_the_413() {
    let stub = Stub::start().await;
    let agent = start_agent(stub.addr, |_| {}).await;
    wait_ready(&agent).await;
    for announced in [true, false] {
        let s = tls(agent.https_addr(), &[b"http/1.1"]).await.unwrap();
        let (mut rd, mut wr) = tokio::io::split(s);
        let writer = tokio::spawn(async move {
            let head = if announced {
                format!(
                    "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {NINE_MIB}\r\n\r\n"
                )
            } else {
                "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n".to_string()
            };
            if wr.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let chunk = vec![b'x'; 64 << 10];
            for _ in 0..(NINE_MIB / chunk.len()) {
                let r = if announced {
                    wr.write_all(&chunk).await
                } else {
                    let mut c = format!("{:x}\r\n", chunk.len()).into_bytes();
                    c.extend_from_slice(&chunk);
                    c.extend_from_slice(b"\r\n");
                    wr.write_all(&c).await
                };
                if r.is_err() {
                    return;
                }
            }
        });
        let raw = within("the 413", read_response(&mut rd)).await;
        assert!(
            raw.starts_with("HTTP/1.1 413 "),
            "announced={announced}: {raw:?}"
        );
        let body = raw.split_once("\r\n\r\n").map(|x| x.1).unwrap_or_default();
        assert_eq!(error_code(body), "request_too_large");
        // The body goes on being read (and discarded) for a while, so the
        // client finishes sending without a reset.
        within("the upload", writer).await.unwrap();
    }
    agent.shutdown(Duration::from_secs(5)).await;
}

/// An over-limit head: 431 with JSON on HTTP/1.1 even while the client
/// goes on sending; 431 on HTTP/2. Invalid JSON: 400 on both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_limit_head_and_invalid_json_on_both_protocols() {
    let stub = Stub::start().await;
    let agent = start_agent(stub.addr, |c| c.limits.max_header_bytes = 8192).await;
    wait_ready(&agent).await;
    let addr = agent.https_addr();
    // HTTP/1.1: a head over the limit, then a body the client keeps sending.
    let s = tls(addr, &[b"http/1.1"]).await.unwrap();
    let (mut rd, mut wr) = tokio::io::split(s);
    let writer = tokio::spawn(async move {
        let head = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: {NINE_MIB}\r\nx-big: {}\r\n\r\n",
            "a".repeat(9000)
        );
        if wr.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        let chunk = vec![b'x'; 64 << 10];
        for _ in 0..(NINE_MIB / chunk.len()) {
            if wr.write_all(&chunk).await.is_err() {
                return;
            }
        }
    });
    let mut out = Vec::new();
    let _ = within("the 431", rd.read_to_end(&mut out)).await;
    let raw = String::from_utf8_lossy(&out);
    assert!(raw.starts_with("HTTP/1.1 431 "), "{raw:?}");
    assert_eq!(
        error_code(raw.split_once("\r\n\r\n").unwrap().1),
        "headers_too_large"
    );
    writer.abort();
    // HTTP/2: the header list over the limit, with a body.
    let mut c = Client::h2(addr).await;
    let mut r = post("/v1/chat/completions", big_json(1 << 20), false, true);
    r.headers_mut()
        .insert("x-big", "a".repeat(9000).parse().unwrap());
    let resp = within("h2 431", c.send(r)).await.unwrap();
    assert_eq!(resp.status(), 431);
    // Invalid JSON, 1 MiB of it, on both.
    for h2 in [true, false] {
        let mut c = if h2 {
            Client::h2(addr).await
        } else {
            Client::h1(addr).await
        };
        let mut bad = big_json(1 << 20).to_vec();
        bad[0] = b'[';
        let resp = c
            .send(post("/v1/chat/completions", Bytes::from(bad), false, true))
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "h2={h2}");
        assert_eq!(error_code(&text(resp).await), "malformed_request");
    }
    assert_eq!(stub.requests_seen(), 0);
    agent.shutdown(Duration::from_secs(5)).await;
}

/// curl (when installed), the client from the issue: 9 MiB over HTTP/2
/// and HTTP/1.1, with and without `Expect: 100-continue`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_reads_the_413_over_h2_and_h1() {
    if std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("curl not installed: skipped");
        return;
    }
    let stub = Stub::start().await;
    let agent = start_agent(stub.addr, |_| {}).await;
    wait_ready(&agent).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.json");
    std::fs::write(&file, big_json(NINE_MIB)).unwrap();
    let url = format!("https://{}/v1/chat/completions", agent.https_addr());
    for proto in ["--http2", "--http1.1"] {
        for expect in ["Expect: 100-continue", "Expect:"] {
            let args = [
                "-sS",
                "-k",
                proto,
                "-H",
                "content-type: application/json",
                "-H",
                expect,
                "--data-binary",
                &format!("@{}", file.display()),
                "-w",
                "\n%{http_code} %{http_version}",
                &url,
            ];
            let out = tokio::process::Command::new("curl")
                .args(args)
                .output()
                .await
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            let (body, status) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
            assert!(
                status.starts_with("413 "),
                "{proto} {expect}: {stdout:?} {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let want = if proto == "--http2" {
                "413 2"
            } else {
                "413 1.1"
            };
            assert_eq!(status, want, "{proto} {expect}");
            assert_eq!(error_code(body), "request_too_large", "{proto} {expect}");
        }
    }
    agent.shutdown(Duration::from_secs(5)).await;
}

/// `/v1/models/{id}`: one plain segment; dot segments and encoded slashes
/// are 400 and never reach the engine. Query strings are not forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_ids_are_one_segment_and_queries_stay_here() {
    let stub = Stub::start().await;
    let agent = start_agent(stub.addr, |_| {}).await;
    wait_ready(&agent).await;
    for h2 in [false, true] {
        let mut c = if h2 {
            Client::h2(agent.https_addr()).await
        } else {
            Client::h1(agent.https_addr()).await
        };
        for bad in [
            "/v1/models/..",
            "/v1/models/.",
            "/v1/models/../../admin",
            "/v1/models/a/../b",
            "/v1/models/a%2fb",
            "/v1/models/a%2Fb",
            "/v1/models/a%5cb",
            "/v1/models/a%5Cb",
            "/v1/models/%2e%2e",
            "/v1/models/org/model",
        ] {
            let resp = c.send(req("GET", bad, "")).await.unwrap();
            assert_eq!(resp.status(), 400, "{bad}");
            assert_eq!(error_code(&text(resp).await), "invalid_model_id", "{bad}");
        }
        assert_eq!(stub.requests_seen(), 0, "no bad path reached the engine");
        for (method, path, body, forwarded) in [
            ("GET", "/v1/models/some-id?x=1", "", "/v1/models/some-id"),
            ("GET", "/v1/models?limit=3", "", "/v1/models"),
            (
                "POST",
                "/v1/chat/completions?api-version=1&x=../y",
                "{}",
                "/v1/chat/completions",
            ),
            ("POST", "/v1/embeddings?x", "{}", "/v1/embeddings"),
        ] {
            let resp = c.send(req(method, path, body)).await.unwrap();
            assert_eq!(resp.status(), 200, "{path}");
            text(resp).await;
            let (m, p, _, _) = stub.next_request().await;
            assert_eq!((m.as_str(), p.as_str()), (method, forwarded));
        }
    }
    agent.shutdown(Duration::from_secs(5)).await;
}
