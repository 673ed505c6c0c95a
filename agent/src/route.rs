//! The routes the agent serves, and what each one accepts.

use http::Method;

/// The routes; their names are the `route` metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `POST /v1/chat/completions`
    ChatCompletions,
    /// `POST /v1/completions`
    Completions,
    /// `POST /v1/embeddings`
    Embeddings,
    /// `GET /v1/models`, `GET /v1/models/{id}`
    Models,
    /// `GET /attestation?nonce=HEX`, `GET /attestation/batch?nonce=HEX`,
    /// `GET /attestation/latest` (see [`crate::fresh`])
    Attestation,
    /// `GET /healthz`
    Healthz,
    /// `GET /readyz`
    Readyz,
    /// `GET /metrics` (metrics listener only)
    Metrics,
    /// `GET /v1/chrysalis/vouchers` (see [`crate::payment`])
    Vouchers,
    /// Anything else.
    Other,
}

impl Route {
    /// Classifies a path.
    pub fn of(path: &str) -> Self {
        match path {
            "/v1/chat/completions" => Self::ChatCompletions,
            "/v1/completions" => Self::Completions,
            "/v1/embeddings" => Self::Embeddings,
            "/v1/models" => Self::Models,
            "/attestation" | "/attestation/batch" | "/attestation/latest" => Self::Attestation,
            "/healthz" => Self::Healthz,
            "/readyz" => Self::Readyz,
            "/metrics" => Self::Metrics,
            "/v1/chrysalis/vouchers" => Self::Vouchers,
            p if p.starts_with("/v1/models/") && p.len() > "/v1/models/".len() => Self::Models,
            _ => Self::Other,
        }
    }

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::ChatCompletions => "chat_completions",
            Self::Completions => "completions",
            Self::Embeddings => "embeddings",
            Self::Models => "models",
            Self::Attestation => "attestation",
            Self::Healthz => "healthz",
            Self::Readyz => "readyz",
            Self::Metrics => "metrics",
            Self::Vouchers => "vouchers",
            Self::Other => "other",
        }
    }

    pub(crate) fn allowed(self) -> &'static str {
        match self {
            Self::ChatCompletions | Self::Completions | Self::Embeddings => "POST",
            _ => "GET, HEAD",
        }
    }

    pub(crate) fn accepts(self, m: &Method) -> bool {
        match self {
            Self::ChatCompletions | Self::Completions | Self::Embeddings => m == Method::POST,
            _ => m == Method::GET || m == Method::HEAD,
        }
    }

    /// Answers whose `usage` is counted.
    pub(crate) fn counts_tokens(self) -> bool {
        matches!(
            self,
            Self::ChatCompletions | Self::Completions | Self::Embeddings
        )
    }
}

/// Longest model id accepted in `/v1/models/{id}`.
pub const MAX_MODEL_ID_LEN: usize = 256;

/// Checks the path of a [`Route::Models`] request: `/v1/models`, or
/// `/v1/models/{id}` with `{id}` exactly one path segment made of the
/// characters model ids use (ASCII letters, digits and `. _ - : + @ ~`),
/// neither `.` nor `..`, and not percent-encoded (so no encoded slash or
/// backslash can reach the engine). The error says which rule failed,
/// without quoting the path.
pub fn check_models_path(path: &str) -> Result<(), &'static str> {
    let Some(id) = path.strip_prefix("/v1/models/") else {
        return Ok(());
    };
    if id.split('/').any(|s| s == "." || s == "..") {
        return Err("dot segments are not allowed in /v1/models/{id}");
    }
    let lower = id.as_bytes();
    if lower.windows(3).any(|w| {
        w[0] == b'%' && (w[1..].eq_ignore_ascii_case(b"2f") || w[1..].eq_ignore_ascii_case(b"5c"))
    }) {
        return Err("encoded slashes are not allowed in /v1/models/{id}");
    }
    if id.contains('/') {
        return Err("a model id in /v1/models/{id} is exactly one path segment");
    }
    if id.len() > MAX_MODEL_ID_LEN {
        return Err("the model id in /v1/models/{id} is longer than 256 bytes");
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-:+@~".contains(&b))
    {
        return Err(
            "a model id in /v1/models/{id} is made of ASCII letters, digits and . _ - : + @ ~ \
             (no percent-encoding)",
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(Route::of("/v1/chat/completions"), Route::ChatCompletions);
        assert_eq!(Route::of("/v1/models/tiny"), Route::Models);
        assert_eq!(Route::of("/v1/models/"), Route::Other);
        assert_eq!(Route::of("/v1/chat/completions/"), Route::Other);
        assert_eq!(Route::of("/v2/x"), Route::Other);
        assert!(Route::ChatCompletions.accepts(&Method::POST));
        assert!(!Route::ChatCompletions.accepts(&Method::GET));
        assert!(Route::Models.accepts(&Method::GET));
        assert!(!Route::Models.accepts(&Method::DELETE));
        assert_eq!(Route::of("/attestation/latest"), Route::Attestation);
        assert_eq!(Route::of("/attestation/batch"), Route::Attestation);
        assert_eq!(Route::of("/attestation/other"), Route::Other);
    }

    #[test]
    fn model_ids_are_one_plain_segment() {
        for ok in [
            "/v1/models",
            "/v1/models/tiny",
            "/v1/models/Llama-3.1-8B-Instruct",
            "/v1/models/ft:gpt-4o-mini:org:custom:abc123",
            "/v1/models/model_v2+q4@rev~1",
            "/v1/models/...",
        ] {
            assert_eq!(check_models_path(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("/v1/models/..", "dot segments"),
            ("/v1/models/.", "dot segments"),
            ("/v1/models/../../admin", "dot segments"),
            ("/v1/models/a/../b", "dot segments"),
            ("/v1/models/a%2fb", "encoded slashes"),
            ("/v1/models/a%2Fb", "encoded slashes"),
            ("/v1/models/a%5cb", "encoded slashes"),
            ("/v1/models/a%5Cb", "encoded slashes"),
            ("/v1/models/%2e%2e", "percent-encoding"),
            ("/v1/models/org/model", "one path segment"),
            ("/v1/models/a b", "letters, digits"),
            ("/v1/models/a\\b", "letters, digits"),
        ] {
            let e = check_models_path(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
        let long = format!("/v1/models/{}", "a".repeat(MAX_MODEL_ID_LEN + 1));
        assert!(check_models_path(&long).unwrap_err().contains("256"));
        let max = format!("/v1/models/{}", "a".repeat(MAX_MODEL_ID_LEN));
        assert_eq!(check_models_path(&max), Ok(()));
    }
}
