//! Forwarding through the agent to the stub engine: every route over
//! HTTP/1.1 and HTTP/2, SSE passthrough chunk by chunk, cancellation when
//! the client goes away, hop-by-hop headers, metrics.

mod common;

use common::*;
use http_body_util::BodyExt;

const CHAT: &str = r#"{"model":"stub-model","messages":[{"role":"user","content":"hi"}]}"#;
const STREAM: &str =
    r#"{"model":"stub-model","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_is_forwarded_over_h1_and_h2() {
    let stub = Stub::start().await;
    let agent = start_agent(stub.addr, |_| {}).await;
    wait_ready(&agent).await;
    for h2 in [false, true] {
        let mut c = if h2 {
            Client::h2(agent.https_addr()).await
        } else {
            Client::h1(agent.https_addr()).await
        };
        for (method, path, body, expect) in [
            ("POST", "/v1/chat/completions", CHAT, "chat.completion"),
            (
                "POST",
                "/v1/completions",
                r#"{"prompt":"x"}"#,
                "text_completion",
            ),
            ("POST", "/v1/embeddings", r#"{"input":"x"}"#, "embedding"),
            ("GET", "/v1/models", "", "stub-model"),
            ("GET", "/v1/models/some-id?x=1", "", "some-id"),
        ] {
            let resp = c.send(req(method, path, body)).await.unwrap();
            assert_eq!(resp.status(), 200, "{method} {path}");
            assert_eq!(resp.headers()["x-stub"], "ok");
            let got = text(resp).await;
            assert!(got.contains(expect), "{path}: {got}");
            let (m, p, headers, b) = stub.next_request().await;
            // Query strings are not forwarded (the OpenAI API defines none
            // on these routes; issue 17).
            let forwarded = path.split('?').next().unwrap();
            assert_eq!((m.as_str(), p.as_str()), (method, forwarded));
            assert_eq!(
                b,
                body.as_bytes(),
                "{path}: the body reaches the engine unchanged"
            );
            let host = headers["host"].to_str().unwrap();
            assert_eq!(host, stub.addr.to_string(), "Host names the engine");
        }
    }
    agent.shutdown(std::time::Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_chunks_arrive_one_by_one_before_the_stream_ends() {
    let stub = Stub::start().await;
    let agent = start_agent(stub.addr, |_| {}).await;
    wait_ready(&agent).await;
    for h2 in [false, true] {
        let mut c = if h2 {
            Client::h2(agent.https_addr()).await
        } else {
            Client::h1(agent.https_addr()).await
        };
        let mut r = req("POST", "/v1/chat/completions", STREAM);
        r.headers_mut().insert("x-stub-gated", "1".parse().unwrap());
        r.headers_mut()
            .insert("x-stub-chunks", "4".parse().unwrap());
        let resp = c.send(r).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        let mut body = resp.into_body();
        // The engine sends chunk i only after chunk i-1 reached the
        // client: a buffering proxy would hang here (the guard fails).
        for i in 0..4 {
            stub.release(1);
            let chunk = next_chunk(&mut body).await.unwrap().unwrap();
            assert_eq!(
                chunk,
                chunk_text(i).as_bytes(),
                "chunk {i} arrives alone, unchanged"
            );
        }
        let mut rest = Vec::new();
        while let Some(c) = next_chunk(&mut body).await {
            rest.extend_from_slice(&c.unwrap());
        }
        let rest = String::from_utf8(rest).unwrap();
        assert_eq!(rest, format!("{}data: [DONE]\n\n", usage_chunk(4)));
        stub.wait_event("stream finished", |e| matches!(e, Event::StreamFinished))
            .await;
    }
    let (_, m) = metrics_get(agent.metrics_addr(), "/metrics").await;
    assert!(
        m.contains(r#"chrysalis_agent_tokens_total{route="chat_completions",kind="completion"} 8"#),
        "final-chunk usage of both streams (4 + 4) counted:\n{m}"
    );
    agent.shutdown(std::time::Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnect_cancels_the_upstream_request() {
    let stub = Stub::start().await;
    let agent = start_agent(stub.addr, |_| {}).await;
    wait_ready(&agent).await;
    for h2 in [false, true] {
        let mut c = if h2 {
            Client::h2(agent.https_addr()).await
        } else {
            Client::h1(agent.https_addr()).await
        };
        let mut r = req("POST", "/v1/chat/completions", STREAM);
        r.headers_mut().insert("x-stub-gated", "1".parse().unwrap());
        r.headers_mut()
            .insert("x-stub-chunks", "100".parse().unwrap());
        let resp = c.send(r).await.unwrap();
        let mut body = resp.into_body();
        stub.release(1);
        next_chunk(&mut body).await.unwrap().unwrap();
        stub.clear_events();
        // HTTP/1.1: the connection goes; HTTP/2: only the stream is reset
        // (the connection stays open).
        drop(body);
        if !h2 {
            drop(c);
        }
        stub.wait_event("the engine sees its stream abandoned", |e| {
            matches!(e, Event::StreamCancelled)
        })
        .await;
        within("in-flight back to 0", async {
            while agent.metrics().in_flight_now() != 0 {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        })
        .await;
    }
    agent.shutdown(std::time::Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_headers_are_stripped_both_ways() {
    let stub = Stub::start().await;
    let agent = start_agent(stub.addr, |_| {}).await;
    wait_ready(&agent).await;
    let mut c = Client::h1(agent.https_addr()).await;
    let mut r = req("POST", "/v1/chat/completions", CHAT);
    let h = r.headers_mut();
    h.insert("connection", "keep-alive, x-client-hop".parse().unwrap());
    h.insert("x-client-hop", "secret".parse().unwrap());
    h.insert("keep-alive", "timeout=5".parse().unwrap());
    h.insert("proxy-authorization", "Basic Zm9vOmJhcg==".parse().unwrap());
    h.insert("te", "trailers".parse().unwrap());
    h.insert("upgrade", "websocket".parse().unwrap());
    h.insert("authorization", "Bearer end-to-end".parse().unwrap());
    h.insert("expect", "100-continue".parse().unwrap());
    let resp = c.send(r).await.unwrap();
    assert_eq!(resp.status(), 200);
    for gone in ["x-stub-hop", "keep-alive"] {
        assert!(
            !resp.headers().contains_key(gone),
            "{gone} reached the client"
        );
    }
    assert_eq!(resp.headers()["x-stub"], "ok");
    text(resp).await;
    let (_, _, seen, _) = stub.next_request().await;
    for gone in [
        "x-client-hop",
        "keep-alive",
        "proxy-authorization",
        "te",
        "upgrade",
        "expect",
    ] {
        assert!(!seen.contains_key(gone), "{gone} reached the engine");
    }
    assert_eq!(seen["authorization"], "Bearer end-to-end");
    // hyper's client adds its own `connection` only when needed; never ours.
    assert!(seen
        .get_all("connection")
        .iter()
        .all(|v| !v.to_str().unwrap().contains("x-client-hop")));
    agent.shutdown(std::time::Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_routes_statuses_tokens_without_request_text() {
    let stub = Stub::start().await;
    let agent = start_agent(stub.addr, |_| {}).await;
    wait_ready(&agent).await;
    let mut c = Client::h2(agent.https_addr()).await;
    let secret = r#"{"model":"SECRET-MODEL-NAME","messages":[{"role":"user","content":"SECRET-PROMPT-TEXT"}]}"#;
    for _ in 0..2 {
        let resp = c
            .send(req("POST", "/v1/chat/completions", secret))
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        text(resp).await;
    }
    let resp = c.send(req("POST", "/v1/embeddings", secret)).await.unwrap();
    text(resp).await;
    let resp = c
        .send(req("GET", "/v1/models/SECRET-MODEL-ID", ""))
        .await
        .unwrap();
    text(resp).await;
    let mut r = req("POST", "/v1/completions", secret);
    r.headers_mut()
        .insert("x-stub-status", "500".parse().unwrap());
    let resp = c.send(r).await.unwrap();
    assert_eq!(resp.status(), 500, "engine errors pass through");
    text(resp).await;
    let resp = c.send(req("GET", "/SECRET-PATH", "")).await.unwrap();
    assert_eq!(resp.status(), 404);
    text(resp).await;

    let (status, m) = metrics_get(agent.metrics_addr(), "/metrics").await;
    assert_eq!(status, 200);
    for needle in [
        r#"chrysalis_agent_requests_total{route="chat_completions",status="200"} 2"#,
        r#"chrysalis_agent_requests_total{route="embeddings",status="200"} 1"#,
        r#"chrysalis_agent_requests_total{route="models",status="200"} 1"#,
        r#"chrysalis_agent_requests_total{route="completions",status="500"} 1"#,
        r#"chrysalis_agent_requests_total{route="other",status="404"} 1"#,
        r#"chrysalis_agent_tokens_total{route="chat_completions",kind="prompt"} 6"#,
        r#"chrysalis_agent_tokens_total{route="chat_completions",kind="completion"} 10"#,
        r#"chrysalis_agent_tokens_total{route="embeddings",kind="prompt"} 7"#,
        r#"chrysalis_agent_request_duration_seconds_count{route="chat_completions"} 2"#,
        r#"chrysalis_agent_response_head_seconds_count{route="chat_completions"} 2"#,
        "chrysalis_agent_in_flight_requests 0",
        "chrysalis_agent_ready 1",
        "chrysalis_agent_open_connections 1",
    ] {
        assert!(m.contains(needle), "missing {needle} in\n{m}");
    }
    assert!(!m.contains("SECRET"), "request text in metrics:\n{m}");
    // Error answers of the engine carry no usage: nothing counted for them.
    assert!(!m.contains(r#"route="completions",kind"#), "{m}");
    let (s, _) = metrics_get(agent.metrics_addr(), "/v1/models").await;
    assert_eq!(s, 404, "the metrics listener does not proxy");
    drop(c);
    agent.shutdown(std::time::Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_dying_mid_stream_gives_a_clean_error_and_others_continue() {
    let stub = Stub::start().await;
    let agent = start_agent(stub.addr, |_| {}).await;
    wait_ready(&agent).await;
    // Two streams at once; the engine dies on the first one's connection.
    let mut a = Client::h1(agent.https_addr()).await;
    let mut b = Client::h2(agent.https_addr()).await;
    let mut ra = req("POST", "/v1/chat/completions", STREAM);
    ra.headers_mut()
        .insert("x-stub-fail-after", "1".parse().unwrap());
    ra.headers_mut()
        .insert("x-stub-chunks", "5".parse().unwrap());
    let mut rb = req("POST", "/v1/chat/completions", STREAM);
    rb.headers_mut()
        .insert("x-stub-gated", "1".parse().unwrap());
    rb.headers_mut()
        .insert("x-stub-chunks", "3".parse().unwrap());
    let resp_b = b.send(rb).await.unwrap();
    let mut body_b = resp_b.into_body();
    stub.release(1);
    assert_eq!(
        next_chunk(&mut body_b).await.unwrap().unwrap(),
        chunk_text(0).as_bytes()
    );

    let resp_a = a.send(ra).await.unwrap();
    assert_eq!(resp_a.status(), 200);
    let got = text(resp_a).await;
    let (first, last) = got.split_once("\n\n").unwrap();
    assert_eq!(format!("{first}\n\n"), chunk_text(0));
    let last = last.strip_prefix("data: ").unwrap().trim_end();
    assert_eq!(error_code(last), "upstream_disconnected", "{got}");
    assert!(!got.contains("[DONE]"));

    // The other stream is unaffected.
    stub.release(2);
    let mut rest = Vec::new();
    while let Some(c) = next_chunk(&mut body_b).await {
        rest.extend_from_slice(&c.unwrap());
    }
    let rest = String::from_utf8(rest).unwrap();
    assert!(
        rest.starts_with(&(chunk_text(1) + &chunk_text(2))),
        "{rest}"
    );
    assert!(rest.ends_with("data: [DONE]\n\n"), "{rest}");
    let (_, m) = metrics_get(agent.metrics_addr(), "/metrics").await;
    assert!(
        m.contains(r#"chrysalis_agent_upstream_errors_total{kind="body"} 1"#),
        "{m}"
    );

    // A body that is not an event stream cannot carry an error event: it
    // is cut, and the client sees the cut (never a silent truncation).
    for h2 in [false, true] {
        let mut c = if h2 {
            Client::h2(agent.https_addr()).await
        } else {
            Client::h1(agent.https_addr()).await
        };
        let mut r = req("POST", "/v1/chat/completions", STREAM);
        let h = r.headers_mut();
        h.insert("x-stub-fail-after", "1".parse().unwrap());
        h.insert("x-stub-content-type", "application/json".parse().unwrap());
        let resp = c.send(r).await.unwrap();
        assert_eq!(resp.headers()["content-type"], "application/json");
        let mut body = resp.into_body();
        assert_eq!(
            next_chunk(&mut body).await.unwrap().unwrap(),
            chunk_text(0).as_bytes()
        );
        assert!(
            next_chunk(&mut body).await.unwrap().is_err(),
            "the cut is visible"
        );
    }
    drop(b);
    agent.shutdown(std::time::Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_killed_then_back_recovers() {
    let stub = Stub::start().await;
    let addr = stub.addr;
    let agent = start_agent(addr, |_| {}).await;
    wait_ready(&agent).await;
    let mut c = Client::h2(agent.https_addr()).await;
    let mut r = req("POST", "/v1/chat/completions", STREAM);
    r.headers_mut().insert("x-stub-gated", "1".parse().unwrap());
    let resp = c.send(r).await.unwrap();
    let mut body = resp.into_body();
    stub.release(1);
    next_chunk(&mut body).await.unwrap().unwrap();

    stub.kill();
    drop(stub);
    // The stream in flight ends promptly with an error event.
    let mut rest = Vec::new();
    while let Some(c) = next_chunk(&mut body).await {
        rest.extend_from_slice(&c.unwrap());
    }
    let rest = String::from_utf8(rest).unwrap();
    assert_eq!(
        error_code(rest.strip_prefix("data: ").unwrap().trim_end()),
        "upstream_disconnected"
    );
    // New requests fail fast with 502 while the engine is away; the agent
    // itself (same connection) stays healthy.
    let resp = c
        .send(req("POST", "/v1/chat/completions", CHAT))
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    assert_eq!(error_code(&text(resp).await), "upstream_unavailable");
    let resp = c.send(req("GET", "/healthz", "")).await.unwrap();
    assert_eq!(resp.status(), 200);
    text(resp).await;
    within("readiness lost", async {
        while agent.readiness().is_ready() {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await;

    // The engine comes back on the same address.
    let stub = Stub::start_on(addr).await;
    wait_ready(&agent).await;
    let resp = c
        .send(req("POST", "/v1/chat/completions", CHAT))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(text(resp).await.contains("chat.completion"));
    let (_, _, _, _) = stub.next_request().await;
    agent.shutdown(std::time::Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_readiness_documents() {
    let port = dead_port();
    let agent = start_agent(port, |_| {}).await;
    let mut c = Client::h1(agent.https_addr()).await;
    let resp = c.send(req("GET", "/healthz", "")).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(text(resp).await, r#"{"status":"ok"}"#);

    let check = |status: http::StatusCode, body: &str, engine: &str, ready: bool| {
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["ready"], ready, "{body}");
        assert_eq!(status == 200, ready, "{body}");
        assert_eq!(v["inputs"]["engine"]["state"], engine, "{body}");
        assert_eq!(v["inputs"]["evidence"]["state"], "not_configured", "{body}");
        assert_eq!(v["inputs"]["gpu"]["state"], "not_configured", "{body}");
        assert_eq!(v["draining"], false, "{body}");
    };
    // The engine is not there: not ready, on both listeners.
    within("engine probed", async {
        while agent.readiness().report().inputs.engine.state != chrysalis_agent::InputState::Failed
        {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await;
    let resp = c.send(req("GET", "/readyz", "")).await.unwrap();
    let s = resp.status();
    check(s, &text(resp).await, "failed", false);
    let (s, b) = metrics_get(agent.metrics_addr(), "/readyz").await;
    check(s, &b, "failed", false);
    let (s, b) = metrics_get(agent.metrics_addr(), "/healthz").await;
    assert_eq!((s.as_u16(), b.as_str()), (200, r#"{"status":"ok"}"#));

    // Start the engine where the agent expects it: ready.
    let stub = Stub::start_on(port).await;
    wait_ready(&agent).await;
    let resp = c.send(req("GET", "/readyz", "")).await.unwrap();
    let s = resp.status();
    check(s, &text(resp).await, "ready", true);
    drop(stub);
    drop(c);
    agent.shutdown(std::time::Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_connections_are_reused_and_answers_with_a_length_counted() {
    let stub = Stub::start().await;
    let agent = start_agent(stub.addr, |_| {}).await;
    wait_ready(&agent).await;
    let before = stub.connections();
    let mut c = Client::h1(agent.https_addr()).await;
    for _ in 0..20 {
        let resp = c
            .send(req("POST", "/v1/chat/completions", CHAT))
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert!(resp.headers().contains_key("content-length"));
        text(resp).await;
    }
    // Sequential requests need one engine connection (the readiness probe
    // may have opened the first one).
    assert!(
        stub.connections() - before <= 1,
        "{} new engine connections for 20 sequential requests",
        stub.connections() - before
    );
    let (_, m) = metrics_get(agent.metrics_addr(), "/metrics").await;
    assert!(
        m.contains(
            r#"chrysalis_agent_tokens_total{route="chat_completions",kind="completion"} 100"#
        ),
        "usage of answers with a Content-Length counted over HTTP/1.1:\n{m}"
    );
    agent.shutdown(std::time::Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_upload_is_forwarded_whole() {
    let stub = Stub::start().await;
    let agent = start_agent(stub.addr, |_| {}).await;
    wait_ready(&agent).await;
    let mut c = Client::h1(agent.https_addr()).await;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let r = http::Request::builder()
        .method("POST")
        .uri("https://localhost/v1/chat/completions")
        .header("x-test", "1")
        .body(ChannelBody(rx).boxed())
        .unwrap();
    let send = tokio::spawn(async move { c.send(r).await.map(|r| r.status()) });
    for part in [&CHAT[..10], &CHAT[10..]] {
        tx.send(Ok(http_body::Frame::data(bytes::Bytes::from(
            part.to_string(),
        ))))
        .await
        .unwrap();
    }
    drop(tx);
    assert_eq!(within("answer", send).await.unwrap().unwrap(), 200);
    let (_, _, headers, body) = stub.next_request().await;
    assert_eq!(body, CHAT.as_bytes());
    assert_eq!(headers["content-length"], CHAT.len().to_string());
    assert!(!headers.contains_key("transfer-encoding"));
    agent.shutdown(std::time::Duration::from_secs(5)).await;
}
