//! Token counts from the engine's OpenAI `usage` objects, read from the
//! response bytes as they pass through (nothing is held back or copied
//! into logs).
//!
//! * JSON answers: the chunks are kept (reference-counted, not copied) up
//!   to [`MAX_JSON_SCAN`] bytes and the `usage` member is read once the
//!   body is complete.
//! * Server-sent events: each complete `data:` line that mentions `"usage"`
//!   is parsed; the last non-null `usage` seen wins (OpenAI sends it in the
//!   final chunk when `stream_options.include_usage` is set). Only the
//!   unfinished last line of a chunk is carried over, bounded by
//!   [`MAX_SSE_LINE`].

use bytes::{Bytes, BytesMut};
use memchr::memmem;
use serde::Deserialize;

/// Largest JSON answer scanned for `usage`, bytes; larger ones pass through
/// uncounted.
pub const MAX_JSON_SCAN: usize = 16 << 20;
/// Longest SSE line scanned, bytes.
pub const MAX_SSE_LINE: usize = 1 << 20;

/// Tokens of one answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct Usage {
    /// Tokens of the prompt (or embedding input).
    #[serde(default)]
    pub prompt_tokens: u64,
    /// Tokens generated.
    #[serde(default)]
    pub completion_tokens: u64,
}

#[derive(Deserialize)]
struct WithUsage {
    #[serde(default)]
    usage: Option<Usage>,
}

/// How a response body is scanned.
#[derive(Debug)]
pub enum UsageScanner {
    /// Not scanned (errors, `/v1/models`, other content types).
    Off,
    /// A JSON document.
    Json {
        /// The chunks so far.
        chunks: Vec<Bytes>,
        /// Their total length.
        len: usize,
    },
    /// An event stream.
    Sse {
        /// The unfinished last line.
        partial: BytesMut,
        /// The last `usage` seen.
        last: Option<Usage>,
        /// A line grew past [`MAX_SSE_LINE`]; the rest of it is skipped.
        skipping: bool,
    },
}

const USAGE_KEY: &[u8] = b"\"usage\"";

impl UsageScanner {
    /// A scanner for a JSON body.
    pub fn json() -> Self {
        Self::Json {
            chunks: Vec::new(),
            len: 0,
        }
    }

    /// A scanner for an event stream.
    pub fn sse() -> Self {
        Self::Sse {
            partial: BytesMut::new(),
            last: None,
            skipping: false,
        }
    }

    /// Feeds the next chunk of the body.
    pub fn feed(&mut self, chunk: &Bytes) {
        match self {
            Self::Off => {}
            Self::Json { chunks, len } => {
                *len += chunk.len();
                if *len > MAX_JSON_SCAN {
                    *self = Self::Off;
                } else {
                    chunks.push(chunk.clone());
                }
            }
            Self::Sse {
                partial,
                last,
                skipping,
            } => feed_sse(partial, last, skipping, chunk),
        }
    }

    /// The usage of the complete body, if it reported one.
    pub fn finish(self) -> Option<Usage> {
        match self {
            Self::Off => None,
            Self::Json { chunks, len } => {
                let parsed: Option<WithUsage> = if chunks.len() == 1 {
                    serde_json::from_slice(&chunks[0]).ok()
                } else {
                    let mut all = Vec::with_capacity(len);
                    for c in &chunks {
                        all.extend_from_slice(c);
                    }
                    serde_json::from_slice(&all).ok()
                };
                parsed.and_then(|w| w.usage)
            }
            Self::Sse {
                partial,
                mut last,
                skipping,
            } => {
                // A final line without its newline still counts.
                if !skipping {
                    if let Some(u) = sse_line_usage(&partial) {
                        last = Some(u);
                    }
                }
                last
            }
        }
    }
}

fn feed_sse(partial: &mut BytesMut, last: &mut Option<Usage>, skipping: &mut bool, chunk: &[u8]) {
    let mut rest = chunk;
    while let Some(nl) = memchr::memchr(b'\n', rest) {
        let piece = &rest[..nl];
        if *skipping {
            *skipping = false;
        } else if partial.is_empty() {
            if let Some(u) = sse_line_usage(piece) {
                *last = Some(u);
            }
        } else {
            partial.extend_from_slice(piece);
            if let Some(u) = sse_line_usage(partial) {
                *last = Some(u);
            }
            partial.clear();
        }
        rest = &rest[nl + 1..];
    }
    if !rest.is_empty() && !*skipping {
        if partial.len() + rest.len() > MAX_SSE_LINE {
            partial.clear();
            *skipping = true;
        } else {
            partial.extend_from_slice(rest);
        }
    }
}

/// The usage in one SSE line, when it is a `data:` line with a non-null
/// `usage` member.
fn sse_line_usage(line: &[u8]) -> Option<Usage> {
    let data = line.strip_prefix(b"data:")?;
    memmem::find(data, USAGE_KEY)?;
    let data = data.strip_suffix(b"\r").unwrap_or(data);
    serde_json::from_slice::<WithUsage>(data).ok()?.usage
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(mut s: UsageScanner, text: &[u8], split: usize) -> Option<Usage> {
        for c in text.chunks(split.max(1)) {
            s.feed(&Bytes::copy_from_slice(c));
        }
        s.finish()
    }

    #[test]
    fn json_usage_whatever_the_chunking() {
        let body = br#"{"id":"x","object":"chat.completion","choices":[{"message":{"content":"usage"}}],"usage":{"prompt_tokens":11,"completion_tokens":7,"total_tokens":18}}"#;
        for split in [1, 3, 17, body.len()] {
            assert_eq!(
                scan(UsageScanner::json(), body, split),
                Some(Usage {
                    prompt_tokens: 11,
                    completion_tokens: 7
                })
            );
        }
        let emb = br#"{"data":[],"usage":{"prompt_tokens":4,"total_tokens":4}}"#;
        assert_eq!(
            scan(UsageScanner::json(), emb, 5),
            Some(Usage {
                prompt_tokens: 4,
                completion_tokens: 0
            })
        );
        assert_eq!(scan(UsageScanner::json(), b"{\"usage\":null}", 2), None);
        assert_eq!(scan(UsageScanner::json(), b"not json", 2), None);
    }

    #[test]
    fn sse_last_usage_wins_whatever_the_chunking() {
        let stream =
            b"data: {\"choices\":[{\"delta\":{\"content\":\"\\\"usage\\\"\"}}],\"usage\":null}\n\n\
data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}\r\n\r\n\
data: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":30}}\n\n\
data: [DONE]\n\n";
        for split in [1, 2, 5, 64, stream.len()] {
            assert_eq!(
                scan(UsageScanner::sse(), stream, split),
                Some(Usage {
                    prompt_tokens: 9,
                    completion_tokens: 30
                }),
                "split {split}"
            );
        }
        assert_eq!(
            scan(
                UsageScanner::sse(),
                b"data: {\"choices\":[]}\n\ndata: [DONE]\n\n",
                3
            ),
            None
        );
        // Last line without a newline.
        assert_eq!(
            scan(
                UsageScanner::sse(),
                b"data: {\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":3}}",
                4
            ),
            Some(Usage {
                prompt_tokens: 2,
                completion_tokens: 3
            })
        );
    }

    #[test]
    fn overlong_sse_line_is_skipped_not_buffered() {
        let mut s = UsageScanner::sse();
        let big = Bytes::from(vec![b'a'; MAX_SSE_LINE / 2 + 1]);
        s.feed(&Bytes::from_static(b"data: "));
        s.feed(&big);
        s.feed(&big);
        if let UsageScanner::Sse { partial, .. } = &s {
            assert!(partial.len() <= MAX_SSE_LINE);
        }
        s.feed(&Bytes::from_static(
            b"\ndata: {\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1}}\n",
        ));
        assert_eq!(
            s.finish(),
            Some(Usage {
                prompt_tokens: 1,
                completion_tokens: 1
            })
        );
    }
}
