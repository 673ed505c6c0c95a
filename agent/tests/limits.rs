//! Each limit, its status code and its OpenAI-shaped JSON error; TLS
//! version and malformed HTTP.

mod common;

use std::time::Duration;

use common::*;
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CHAT: &str = r#"{"model":"m","messages":[]}"#;
const STREAM: &str = r#"{"model":"m","stream":true,"messages":[]}"#;

/// Writes `bytes` on a fresh HTTP/1.1 TLS connection and reads until the
/// server closes it.
async fn raw_h1(addr: std::net::SocketAddr, bytes: &[u8]) -> String {
    let mut s = tls(addr, &[b"http/1.1"]).await.unwrap();
    s.write_all(bytes).await.unwrap();
    s.flush().await.unwrap();
    let mut out = Vec::new();
    // The server closes after an error answer; a reset after the answer
    // is fine too.
    let _ = within("server closes", s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn split_response(raw: &str) -> (u16, String, String) {
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no complete head in {raw:?}"));
    let status = head[9..12].parse().unwrap();
    (status, head.to_ascii_lowercase(), body.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_size_limit_413() {
    let stub = Stub::start().await;
    let agent = start_agent(stub.addr, |c| c.limits.max_body_bytes = 1024).await;
    wait_ready(&agent).await;
    let big = format!(r#"{{"prompt":"{}"}}"#, "x".repeat(2000));
    for h2 in [false, true] {
        let mut c = if h2 {
            Client::h2(agent.https_addr()).await
        } else {
            Client::h1(agent.https_addr()).await
        };
        // Announced by Content-Length.
        let resp = c.send(req("POST", "/v1/completions", &big)).await.unwrap();
        assert_eq!(resp.status(), 413);
        assert_eq!(error_code(&text(resp).await), "request_too_large");
        // Streamed without a length: noticed while reading.
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        let r = http::Request::builder()
            .method("POST")
            .uri("https://localhost/v1/completions")
            .header("x-test", "1")
            .body(ChannelBody(rx).boxed())
            .unwrap();
        let feeder = tokio::spawn(async move {
            for _ in 0..8 {
                let chunk = bytes::Bytes::from(vec![b'x'; 300]);
                if tx.send(Ok(http_body::Frame::data(chunk))).await.is_err() {
                    break;
                }
            }
        });
        let resp = within("413 answer", c.send(r)).await.unwrap();
        assert_eq!(resp.status(), 413);
        assert_eq!(error_code(&text(resp).await), "request_too_large");
        feeder.abort();
        // Exactly at the limit is fine.
        let ok = format!(r#"{{"prompt":"{}"}}"#, "x".repeat(1024 - 13));
        assert_eq!(ok.len(), 1024);
        let mut c = if h2 {
            Client::h2(agent.https_addr()).await
        } else {
            Client::h1(agent.https_addr()).await
        };
        let resp = c.send(req("POST", "/v1/completions", &ok)).await.unwrap();
        assert_eq!(resp.status(), 200);
        text(resp).await;
        let (_, _, _, body) = stub.next_request().await;
        assert_eq!(
            body.len(),
            1024,
            "only the request within the limit reached the engine"
        );
    }
    agent.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_size_limit_431_and_malformed_http_400() {
    let stub = Stub::start().await;
    let agent = start_agent(stub.addr, |c| c.limits.max_header_bytes = 8192).await;
    wait_ready(&agent).await;
    let addr = agent.https_addr();

    let big = format!(
        "GET /v1/models HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
        "a".repeat(9000)
    );
    let (status, head, body) = split_response(&raw_h1(addr, big.as_bytes()).await);
    assert_eq!(status, 431);
    assert!(head.contains("content-type: application/json"), "{head}");
    assert_eq!(error_code(&body), "headers_too_large");
    // Too many header fields is the same limit.
    let many: String = (0..150).map(|i| format!("x-h{i}: v\r\n")).collect();
    let raw = format!("GET /v1/models HTTP/1.1\r\nhost: x\r\n{many}\r\n");
    let (status, _, body) = split_response(&raw_h1(addr, raw.as_bytes()).await);
    assert_eq!(status, 431);
    assert_eq!(error_code(&body), "headers_too_large");
    // A head that never ends is cut at the limit too.
    let mut endless = b"GET /v1/models HTTP/1.1\r\nx-long: ".to_vec();
    endless.extend(std::iter::repeat_n(b'a', 20_000));
    let (status, _, _) = split_response(&raw_h1(addr, &endless).await);
    assert_eq!(status, 431);

    for garbage in [
        &b"THIS IS NOT HTTP\r\n\r\n"[..],
        b"GET /v1/models HTTP/1.1\r\nbad header\r\n\r\n",
        b"GET /v1/models HTTP/1.1\r\nhost: x\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nab",
    ] {
        let (status, head, body) = split_response(&raw_h1(addr, garbage).await);
        assert_eq!(status, 400, "{}", String::from_utf8_lossy(garbage));
        assert!(head.contains("content-type: application/json"), "{head}");
        assert_eq!(error_code(&body), "malformed_request");
    }

    // HTTP/2: an oversized header list is refused with 431 too (by the
    // HTTP/2 layer, which has no body to carry JSON).
    let mut c = Client::h2(addr).await;
    let mut r = req("GET", "/v1/models", "");
    r.headers_mut()
        .insert("x-big", "a".repeat(9000).parse().unwrap());
    match c.send(r).await {
        Ok(resp) => assert_eq!(resp.status(), 431),
        Err(e) => panic!("expected a 431 answer, got {e}"),
    }
    // The same connection still works.
    let resp = c.send(req("GET", "/v1/models", "")).await.unwrap();
    assert_eq!(resp.status(), 200);
    agent.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_limit_503_with_retry_after() {
    let stub = Stub::start().await;
    let agent = start_agent(stub.addr, |c| {
        c.limits.max_concurrent_requests = 1;
        c.limits.retry_after_secs = 2;
    })
    .await;
    wait_ready(&agent).await;
    let mut a = Client::h1(agent.https_addr()).await;
    let mut r = req("POST", "/v1/chat/completions", STREAM);
    r.headers_mut().insert("x-stub-gated", "1".parse().unwrap());
    r.headers_mut()
        .insert("x-stub-chunks", "1".parse().unwrap());
    let resp = a.send(r).await.unwrap();
    let mut body = resp.into_body();

    let mut b = Client::h2(agent.https_addr()).await;
    let resp = b
        .send(req("POST", "/v1/chat/completions", CHAT))
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "2");
    assert_eq!(error_code(&text(resp).await), "overloaded");
    // Health is never limited.
    let resp = b.send(req("GET", "/healthz", "")).await.unwrap();
    assert_eq!(resp.status(), 200);
    text(resp).await;

    // Once the stream ends, its slot is free again.
    stub.release(1);
    while let Some(c) = next_chunk(&mut body).await {
        c.unwrap();
    }
    within("slot freed", async {
        loop {
            let resp = b
                .send(req("POST", "/v1/chat/completions", CHAT))
                .await
                .unwrap();
            let s = resp.status();
            text(resp).await;
            if s == 200 {
                break;
            }
            assert_eq!(s, 503);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    agent.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_and_slowloris_are_closed_new_clients_served() {
    let stub = Stub::start().await;
    let agent = start_agent(stub.addr, |c| {
        c.limits.idle_timeout = Duration::from_millis(500);
    })
    .await;
    wait_ready(&agent).await;
    let addr = agent.https_addr();

    // HTTP/1.1, nothing sent after the handshake.
    let mut idle = tls(addr, &[b"http/1.1"]).await.unwrap();
    // HTTP/2, one request, then idle.
    let mut h2 = Client::h2(addr).await;
    let resp = h2.send(req("GET", "/healthz", "")).await.unwrap();
    text(resp).await;
    // Slowloris: a request head that never completes, one byte at a time.
    let mut slow = tls(addr, &[b"http/1.1"]).await.unwrap();
    let slow_task = tokio::spawn(async move {
        let head = b"GET /v1/models HTTP/1.1\r\nhost: x\r\nx-slow: ";
        slow.write_all(head).await?;
        loop {
            slow.write_all(b"a").await?;
            slow.flush().await?;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        #[allow(unreachable_code)]
        Ok::<(), std::io::Error>(())
    });
    // Meanwhile new clients are served.
    let mut c = Client::h1(addr).await;
    let resp = c.send(req("GET", "/v1/models", "")).await.unwrap();
    assert_eq!(resp.status(), 200);
    text(resp).await;

    let mut buf = [0u8; 64];
    let n = within("idle HTTP/1.1 closed", idle.read(&mut buf)).await;
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    // The slowloris writer fails once the server has closed.
    let r = within("slowloris closed", slow_task).await.unwrap();
    assert!(r.is_err());
    within("idle HTTP/2 closed", async {
        loop {
            let r = h2.send(req("GET", "/healthz", "")).await;
            if r.is_err() {
                break;
            }
            text(r.unwrap()).await;
            tokio::time::sleep(Duration::from_millis(700)).await;
        }
    })
    .await;
    agent.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_timeout_504_408_and_stream_cut() {
    let stub = Stub::start().await;
    let agent = start_agent(stub.addr, |c| {
        c.limits.request_timeout = Duration::from_millis(500);
    })
    .await;
    wait_ready(&agent).await;
    let mut c = Client::h2(agent.https_addr()).await;
    // The engine never answers: 504.
    let mut r = req("POST", "/v1/chat/completions", CHAT);
    r.headers_mut().insert("x-stub-gated", "1".parse().unwrap());
    let resp = c.send(r).await.unwrap();
    assert_eq!(resp.status(), 504);
    assert_eq!(error_code(&text(resp).await), "upstream_timeout");
    // A stream that stalls: the chunks so far, then an error event.
    let mut r = req("POST", "/v1/chat/completions", STREAM);
    r.headers_mut().insert("x-stub-gated", "1".parse().unwrap());
    stub.release(1);
    let resp = c.send(r).await.unwrap();
    assert_eq!(resp.status(), 200);
    let got = text(resp).await;
    let (first, last) = got.split_once("\n\n").unwrap();
    assert_eq!(format!("{first}\n\n"), chunk_text(0));
    assert_eq!(
        error_code(last.strip_prefix("data: ").unwrap().trim_end()),
        "upstream_timeout"
    );
    // A client that never finishes its upload: 408.
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let r = http::Request::builder()
        .method("POST")
        .uri("https://localhost/v1/chat/completions")
        .header("content-length", "100")
        .body(ChannelBody(rx).boxed())
        .unwrap();
    tx.send(Ok(http_body::Frame::data(bytes::Bytes::from_static(b"{"))))
        .await
        .unwrap();
    let resp = c.send(r).await.unwrap();
    assert_eq!(resp.status(), 408);
    assert_eq!(error_code(&text(resp).await), "request_timeout");
    drop(tx);
    let (_, m) = metrics_get(agent.metrics_addr(), "/metrics").await;
    assert!(
        m.contains(r#"chrysalis_agent_upstream_errors_total{kind="timeout"} 2"#),
        "{m}"
    );
    agent.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_engine_502_not_found_404_wrong_method_405() {
    let agent = start_agent(dead_port(), |_| {}).await;
    let mut c = Client::h1(agent.https_addr()).await;
    for path in ["/v1/chat/completions", "/v1/completions", "/v1/embeddings"] {
        let resp = c.send(req("POST", path, CHAT)).await.unwrap();
        assert_eq!(resp.status(), 502, "{path}");
        assert_eq!(error_code(&text(resp).await), "upstream_unavailable");
    }
    let resp = c.send(req("GET", "/v1/models", "")).await.unwrap();
    assert_eq!(resp.status(), 502);
    text(resp).await;
    let resp = c.send(req("GET", "/v1/files", "")).await.unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(error_code(&text(resp).await), "not_found");
    let resp = c.send(req("GET", "/metrics", "")).await.unwrap();
    assert_eq!(resp.status(), 404, "metrics stay off the public listener");
    text(resp).await;
    let resp = c
        .send(req("GET", "/v1/chat/completions", ""))
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    assert_eq!(resp.headers()["allow"], "POST");
    assert_eq!(error_code(&text(resp).await), "method_not_allowed");
    let resp = c.send(req("DELETE", "/v1/models", "")).await.unwrap();
    assert_eq!(resp.status(), 405);
    text(resp).await;
    // Without evidence (static test certificate) there is no attestation;
    // a bad nonce is refused first.
    let resp = c
        .send(req("GET", "/attestation?nonce=zz", ""))
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(error_code(&text(resp).await), "invalid_nonce");
    let resp = c
        .send(req("GET", "/attestation?nonce=00ff", ""))
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(error_code(&text(resp).await), "attestation_unavailable");
    let (_, m) = metrics_get(agent.metrics_addr(), "/metrics").await;
    assert!(
        m.contains(r#"chrysalis_agent_upstream_errors_total{kind="connect"} 4"#),
        "{m}"
    );
    agent.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_1_2_is_refused_and_alpn_picks_the_protocol() {
    let agent = start_agent(dead_port(), |_| {}).await;
    let addr = agent.https_addr();
    let tls12 = client_config(&[&rustls::version::TLS12], &[b"http/1.1"]);
    let e = tls_with(addr, tls12).await.map(|_| ()).unwrap_err();
    assert!(
        e.to_string().to_lowercase().contains("protocolversion")
            || e.to_string().to_lowercase().contains("protocol version"),
        "{e}"
    );
    for (offer, want) in [
        (&[&b"h2"[..], b"http/1.1"][..], Some(&b"h2"[..])),
        (&[&b"http/1.1"[..]][..], Some(&b"http/1.1"[..])),
        (&[][..], None),
    ] {
        let s = tls(addr, offer).await.unwrap();
        let (_, conn) = s.get_ref();
        assert_eq!(conn.alpn_protocol(), want);
        assert_eq!(
            conn.protocol_version(),
            Some(rustls::ProtocolVersion::TLSv1_3)
        );
    }
    // No ALPN: HTTP/1.1.
    let s = tls(addr, &[]).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http1::handshake::<_, ReqBody>(hyper_util::rt::TokioIo::new(s))
            .await
            .unwrap();
    tokio::spawn(conn);
    let resp = send.send_request(req("GET", "/healthz", "")).await.unwrap();
    assert_eq!(resp.status(), 200);
    let (_, m) = metrics_get(agent.metrics_addr(), "/metrics").await;
    assert!(
        m.contains("chrysalis_agent_tls_handshake_failures_total 1"),
        "{m}"
    );
    agent.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_json_400_without_reaching_the_engine_or_echoing_the_body() {
    let stub = Stub::start().await;
    let agent = start_agent(stub.addr, |_| {}).await;
    wait_ready(&agent).await;
    let secret = "my secret prompt";
    for h2 in [false, true] {
        let mut c = if h2 {
            Client::h2(agent.https_addr()).await
        } else {
            Client::h1(agent.https_addr()).await
        };
        for bad in [
            format!(r#"{{"model":"m","messages":[{{"content":"{secret}"}}"#),
            format!("{secret} is not json"),
            String::new(),
        ] {
            let resp = c
                .send(req("POST", "/v1/chat/completions", &bad))
                .await
                .unwrap();
            assert_eq!(resp.status(), 400, "{bad:?}");
            let body = text(resp).await;
            assert_eq!(error_code(&body), "malformed_request", "{body}");
            assert!(body.contains("not valid JSON"), "{body}");
            assert!(
                !body.contains("secret"),
                "the error echoes the body: {body}"
            );
        }
        // The same connection still serves a valid request.
        let resp = c
            .send(req("POST", "/v1/chat/completions", CHAT))
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    // Only the two valid requests reached the engine.
    assert_eq!(stub.requests_seen(), 2);
}
