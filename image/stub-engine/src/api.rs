//! The three routes and their deterministic answers.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};

/// The one model this engine serves.
pub const MODEL: &str = "chrysalis-stub";
/// Largest request body accepted, in bytes.
const MAX_BODY: usize = 1 << 20;

/// Routes one request.
pub async fn handle(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    Ok(match (&parts.method, parts.uri.path()) {
        (&Method::GET, "/v1/models") => json_response(StatusCode::OK, &models()),
        (&Method::GET, "/health") => json_response(StatusCode::OK, &json!({"status": "ok"})),
        (&Method::POST, "/v1/chat/completions") => {
            match Limited::new(body, MAX_BODY).collect().await {
                Ok(b) => chat(&b.to_bytes()),
                Err(_) => error(StatusCode::PAYLOAD_TOO_LARGE, "request body too large"),
            }
        }
        _ => error(StatusCode::NOT_FOUND, "no such route"),
    })
}

/// `GET /v1/models`.
pub fn models() -> Value {
    json!({"object": "list", "data": [{"id": MODEL, "object": "model", "created": 0, "owned_by": "chrysalis"}]})
}

/// The answer text for a request: `echo: ` and the last user message.
pub fn answer_for(request: &Value) -> Option<String> {
    let messages = request.get("messages")?.as_array()?;
    let last = messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))?;
    let content = last.get("content")?.as_str()?;
    Some(format!("echo: {content}"))
}

fn chat(body: &[u8]) -> Response<Full<Bytes>> {
    let request: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("body is not JSON: {e}")),
    };
    let Some(text) = answer_for(&request) else {
        return error(
            StatusCode::BAD_REQUEST,
            "messages must hold a user message with string content",
        );
    };
    let stream = request.get("stream").and_then(Value::as_bool) == Some(true);
    if stream {
        sse(&text)
    } else {
        let words = text.split(' ').count();
        json_response(
            StatusCode::OK,
            &json!({
                "id": "chatcmpl-stub", "object": "chat.completion", "created": 0, "model": MODEL,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": words, "completion_tokens": words, "total_tokens": 2 * words}
            }),
        )
    }
}

/// The streamed answer: one chunk per word, then `[DONE]`.
pub fn sse_body(text: &str) -> String {
    let chunk = |delta: Value, finish: Value| {
        json!({"id": "chatcmpl-stub", "object": "chat.completion.chunk", "created": 0, "model": MODEL,
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    };
    let mut out = String::new();
    let mut push = |v: Value| out.push_str(&format!("data: {v}\n\n"));
    push(chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    ));
    for (i, word) in text.split(' ').enumerate() {
        let piece = if i == 0 {
            word.to_string()
        } else {
            format!(" {word}")
        };
        push(chunk(json!({"content": piece}), Value::Null));
    }
    push(chunk(json!({}), json!("stop")));
    out.push_str("data: [DONE]\n\n");
    out
}

fn sse(text: &str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(Full::new(Bytes::from(sse_body(text))))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

fn json_response(status: StatusCode, v: &Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(v.to_string())))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

fn error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    json_response(
        status,
        &json!({"error": {"message": message, "type": "invalid_request_error"}}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answer_is_the_last_user_message() {
        let r = json!({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "x"}, {"role": "user", "content": "hello there"}]});
        assert_eq!(answer_for(&r).as_deref(), Some("echo: hello there"));
        assert_eq!(answer_for(&json!({"messages": []})), None);
        assert_eq!(
            answer_for(&json!({"messages": [{"role": "user", "content": 3}]})),
            None
        );
    }

    #[test]
    fn stream_reassembles_to_the_plain_answer() {
        let body = sse_body("echo: one two");
        assert!(body.ends_with("data: [DONE]\n\n"));
        let text: String = body
            .split("\n\n")
            .filter_map(|l| l.strip_prefix("data: "))
            .filter(|d| *d != "[DONE]")
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .filter_map(|v| {
                v["choices"][0]["delta"]["content"]
                    .as_str()
                    .map(String::from)
            })
            .collect();
        assert_eq!(text, "echo: one two");
    }

    #[test]
    fn bad_bodies_are_400() {
        assert_eq!(chat(b"not json").status(), StatusCode::BAD_REQUEST);
        assert_eq!(chat(b"{\"messages\":5}").status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            chat(b"{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}").status(),
            StatusCode::OK
        );
    }
}
