//! Errors answered to HTTP clients, in the OpenAI error shape
//! `{"error":{"message","type","param":null,"code"}}`, so that OpenAI client
//! libraries surface them like any API error.

use bytes::Bytes;
use http::header::{HeaderValue, ALLOW, CONTENT_TYPE, RETRY_AFTER};
use http::{Response, StatusCode};
use serde::Serialize;

/// One error answer. Messages describe the request's *shape* (sizes,
/// methods, paths), never its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// OpenAI `type`: `invalid_request_error` (the client's fault) or
    /// `server_error`.
    pub kind: &'static str,
    /// Machine-readable `code`, e.g. `request_too_large`.
    pub code: &'static str,
    /// Human-readable message.
    pub message: String,
    /// `Retry-After` in seconds, sent with 503.
    pub retry_after: Option<u32>,
    /// `Allow`, sent with 405.
    pub allow: Option<&'static str>,
}

#[derive(Serialize)]
struct Envelope<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<()>,
    code: &'a str,
}

const INVALID: &str = "invalid_request_error";
const SERVER: &str = "server_error";

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, code: &'static str, message: String) -> Self {
        Self {
            status,
            kind,
            code,
            message,
            retry_after: None,
            allow: None,
        }
    }

    /// 400: the request could not be parsed.
    pub fn malformed(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            INVALID,
            "malformed_request",
            message.into(),
        )
    }

    /// 404: no such route.
    pub fn not_found(path_len: usize) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            INVALID,
            "not_found",
            format!(
                "no such route (path of {path_len} bytes); this agent serves /v1/chat/completions, \
                 /v1/completions, /v1/embeddings, /v1/models, /attestation, /healthz and /readyz"
            ),
        )
    }

    /// 405: the route exists with other methods.
    pub fn method_not_allowed(allowed: &'static str) -> Self {
        let mut e = Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            INVALID,
            "method_not_allowed",
            format!("this route accepts {allowed}"),
        );
        e.allow = Some(allowed);
        e
    }

    /// 408: the request body did not arrive in time.
    pub fn request_timeout(limit_ms: u128) -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            INVALID,
            "request_timeout",
            format!("the request was not received within {limit_ms} ms"),
        )
    }

    /// 413: the body is larger than allowed.
    pub fn body_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            INVALID,
            "request_too_large",
            format!("the request body is larger than the {limit} bytes allowed"),
        )
    }

    /// 431: the request head is larger than allowed.
    pub fn headers_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            INVALID,
            "headers_too_large",
            format!("the request line and headers are larger than the {limit} bytes allowed"),
        )
    }

    /// 414: the request target is too long.
    pub fn uri_too_long() -> Self {
        Self::new(
            StatusCode::URI_TOO_LONG,
            INVALID,
            "uri_too_long",
            "the request target is too long".into(),
        )
    }

    /// 503 + Retry-After: too many requests at once.
    pub fn overloaded(limit: usize, retry_after: u32) -> Self {
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            SERVER,
            "overloaded",
            format!("{limit} requests are already running; retry after {retry_after} s"),
        );
        e.retry_after = Some(retry_after);
        e
    }

    /// 503: the GPU check failed; nothing is forwarded to the engine.
    pub fn gpu_not_attested(why: &str) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            SERVER,
            "gpu_not_attested",
            format!("GPU attestation failed; no request is forwarded: {why}"),
        )
    }

    /// 502: the engine could not be reached.
    pub fn upstream_unavailable(detail: &str) -> Self {
        Self::new(
            StatusCode::BAD_GATEWAY,
            SERVER,
            "upstream_unavailable",
            format!("the inference engine could not be reached: {detail}"),
        )
    }

    /// 502: the engine failed before answering.
    pub fn upstream_failed(detail: &str) -> Self {
        Self::new(
            StatusCode::BAD_GATEWAY,
            SERVER,
            "upstream_error",
            format!("the inference engine failed before answering: {detail}"),
        )
    }

    /// 504: the engine did not answer within the request timeout.
    pub fn upstream_timeout(limit_ms: u128) -> Self {
        Self::new(
            StatusCode::GATEWAY_TIMEOUT,
            SERVER,
            "upstream_timeout",
            format!("the inference engine did not answer within {limit_ms} ms"),
        )
    }

    /// 400: a bad `nonce` for `/attestation`.
    pub fn bad_nonce(detail: String) -> Self {
        Self::new(StatusCode::BAD_REQUEST, INVALID, "invalid_nonce", detail)
    }

    /// 503: no attestation on this connection.
    pub fn attestation_unavailable(detail: &str) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            SERVER,
            "attestation_unavailable",
            detail.to_string(),
        )
    }

    /// 503: too many attestation requests at once (their own bound, not
    /// the inference permits).
    pub fn attestation_overloaded(limit: usize, retry_after: u32) -> Self {
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            SERVER,
            "attestation_overloaded",
            format!("more than {limit} attestation requests at once; retry after {retry_after} s"),
        );
        e.retry_after = Some(retry_after);
        e
    }

    /// 503: the next evidence window is full.
    pub fn attestation_busy(detail: &str, retry_after: u32) -> Self {
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            SERVER,
            "attestation_overloaded",
            format!("{detail}; retry after {retry_after} s"),
        );
        e.retry_after = Some(retry_after);
        e
    }

    /// 400: `/v1/models/{id}` with an id that is not one plain segment.
    pub fn invalid_model_id(why: &'static str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            INVALID,
            "invalid_model_id",
            why.to_string(),
        )
    }

    /// 500: the TEE did not produce evidence.
    pub fn attestation_failed(detail: String) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            SERVER,
            "attestation_failed",
            detail,
        )
    }

    /// The JSON body.
    pub fn body_json(&self) -> String {
        serde_json::to_string(&Envelope {
            error: Inner {
                message: &self.message,
                kind: self.kind,
                param: None,
                code: self.code,
            },
        })
        .unwrap_or_else(|_| String::from("{\"error\":{}}"))
    }

    /// The same error as one server-sent event (`data: {...}\n\n`), sent
    /// when a stream fails after its head was already answered.
    pub fn sse_event(&self) -> Bytes {
        Bytes::from(format!("data: {}\n\n", self.body_json()))
    }

    /// The complete response.
    pub fn into_response<B: From<Bytes>>(self) -> Response<B> {
        let body = Bytes::from(self.body_json());
        let mut r = Response::new(B::from(body));
        *r.status_mut() = self.status;
        r.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(s) = self.retry_after {
            r.headers_mut().insert(RETRY_AFTER, HeaderValue::from(s));
        }
        if let Some(a) = self.allow {
            r.headers_mut().insert(ALLOW, HeaderValue::from_static(a));
        }
        r
    }

    /// The complete HTTP/1.1 response as bytes (for answers written below
    /// hyper, see [`crate::h1_errors`]), with `connection: close`.
    pub fn http1_bytes(&self) -> Vec<u8> {
        let body = self.body_json();
        format!(
            "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
             connection: close\r\n\r\n{}",
            self.status.as_u16(),
            self.status.canonical_reason().unwrap_or(""),
            body.len(),
            body
        )
        .into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_shape() {
        let e = ApiError::overloaded(3, 2);
        let v: serde_json::Value = serde_json::from_str(&e.body_json()).unwrap();
        let obj = v["error"].as_object().unwrap();
        assert_eq!(obj.len(), 4);
        assert_eq!(obj["type"], "server_error");
        assert_eq!(obj["code"], "overloaded");
        assert!(obj["param"].is_null());
        assert!(obj["message"].as_str().unwrap().contains('3'));
        let r: Response<Bytes> = e.into_response();
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()[RETRY_AFTER], "2");
    }

    #[test]
    fn messages_are_escaped() {
        let e = ApiError::malformed("a \"quoted\"\nline");
        let v: serde_json::Value = serde_json::from_str(&e.body_json()).unwrap();
        assert_eq!(v["error"]["message"], "a \"quoted\"\nline");
        let ev = e.sse_event();
        assert!(ev.starts_with(b"data: {") && ev.ends_with(b"}\n\n"));
    }

    #[test]
    fn raw_http1_response_is_well_formed() {
        let e = ApiError::headers_too_large(8192);
        let raw = String::from_utf8(e.http1_bytes()).unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        assert_eq!(body, e.body_json());
    }
}
