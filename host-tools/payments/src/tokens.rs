//! Tokens of a streamed answer whose engine reports no `usage` (e.g.
//! llama-cpp-python's server ignores `stream_options.include_usage`): the
//! agent and the client count them by the same rule, so that the client
//! can check the receipt.
//!
//! Rule: completion tokens = the `data:` lines (JSON) with at least one
//! choice whose `delta.content` (chat) or `text` (completions) is a
//! non-empty string; prompt tokens = 0 (not charged). OpenAI-compatible
//! servers stream one token per such chunk; a server that batches several
//! tokens per chunk is undercharged, never overcharged.

/// Longest line counted, bytes; longer lines are skipped.
const MAX_LINE: usize = 1 << 20;

/// Counts content chunks of an event stream, fed in arbitrary pieces.
#[derive(Debug, Clone, Default)]
pub struct ChunkCounter {
    line: Vec<u8>,
    skipping: bool,
    count: u64,
}

impl ChunkCounter {
    /// Nothing counted yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the next bytes.
    pub fn feed(&mut self, chunk: &[u8]) {
        let mut rest = chunk;
        while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
            if !self.skipping {
                self.line.extend_from_slice(&rest[..nl]);
                if is_content_line(&self.line) {
                    self.count += 1;
                }
            }
            self.line.clear();
            self.skipping = false;
            rest = &rest[nl + 1..];
        }
        if !self.skipping {
            if self.line.len() + rest.len() > MAX_LINE {
                self.line.clear();
                self.skipping = true;
            } else {
                self.line.extend_from_slice(rest);
            }
        }
    }

    /// Content chunks seen in complete lines.
    pub fn count(&self) -> u64 {
        self.count
    }
}

fn is_content_line(line: &[u8]) -> bool {
    let Some(data) = line.strip_prefix(b"data:") else {
        return false;
    };
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data.trim_ascii()) else {
        return false;
    };
    v["choices"].as_array().is_some_and(|cs| {
        cs.iter().any(|c| {
            let s = c["delta"]["content"]
                .as_str()
                .or_else(|| c["text"].as_str());
            s.is_some_and(|s| !s.is_empty())
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_content_chunks_whatever_the_split() {
        let s = b"data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"a\"}}]}\n\n\
data: {\"choices\":[{\"delta\":{\"content\":\"\"}}]}\n\n\
data: {\"choices\":[{\"text\":\"b\"}]}\n\n\
event: chrysalis.receipt\ndata: xyz\n\n\
data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n";
        for split in [1, 3, 10, s.len()] {
            let mut c = ChunkCounter::new();
            for p in s.chunks(split) {
                c.feed(p);
            }
            assert_eq!(c.count(), 2, "split {split}");
        }
    }
}
