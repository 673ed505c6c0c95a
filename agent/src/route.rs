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
    /// `GET /attestation?nonce=HEX`
    Attestation,
    /// `GET /healthz`
    Healthz,
    /// `GET /readyz`
    Readyz,
    /// `GET /metrics` (metrics listener only)
    Metrics,
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
            "/attestation" => Self::Attestation,
            "/healthz" => Self::Healthz,
            "/readyz" => Self::Readyz,
            "/metrics" => Self::Metrics,
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
    }
}
