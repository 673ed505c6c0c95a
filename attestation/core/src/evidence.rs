//! Evidence as it arrives from outside: decode any supported encoding
//! (binary, hex with or without `0x`, base64, or a JSON object with a
//! `quote`/`report` field), detect TDX quote vs SNP report, parse once.

use base64::Engine;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::snp::SnpReport;
use crate::tdx::TdxQuote;
use crate::verified::Tee;

/// Largest evidence input accepted (a TDX quote with its PCK chain is ~5 KiB;
/// padded quote buffers are up to 16 KiB). Bounds allocation on hostile input.
pub const MAX_EVIDENCE_LEN: usize = 1 << 20;

/// How the input was encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InputEncoding {
    /// Raw bytes.
    Binary,
    /// Hex text (optionally `0x`-prefixed, whitespace ignored).
    Hex,
    /// Base64 text (standard or URL-safe, padding optional).
    Base64,
    /// A JSON object carrying hex/base64 evidence in `quote` or `report`.
    Json,
}

/// Parsed evidence of either TEE.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "tee", rename_all = "lowercase")]
// Created once per piece of evidence and never stored in bulk: boxing the
// larger variant would only add an allocation and awkward matching.
#[allow(clippy::large_enum_variant)]
pub enum Evidence {
    /// An Intel TDX quote.
    Tdx(TdxQuote),
    /// An AMD SEV-SNP attestation report.
    Snp(SnpReport),
}

/// Evidence decoded from some input, with the exact bytes it occupies.
#[derive(Debug, Clone)]
pub struct DecodedEvidence {
    /// The parsed evidence.
    pub evidence: Evidence,
    /// The exact evidence bytes (without padding or trailing data).
    pub bytes: Vec<u8>,
    /// How the input was encoded.
    pub encoding: InputEncoding,
    /// Bytes after the evidence that were ignored (zero padding of quote
    /// buffers, or junk); callers should warn when non-zero.
    pub trailing: usize,
}

impl Evidence {
    /// Which TEE the evidence is from.
    pub fn tee(&self) -> Tee {
        match self {
            Evidence::Tdx(_) => Tee::Tdx,
            Evidence::Snp(_) => Tee::Snp,
        }
    }

    /// The 64 bytes of report data the guest bound into the evidence.
    pub fn report_data(&self) -> [u8; 64] {
        match self {
            Evidence::Tdx(q) => q.td_report().report_data,
            Evidence::Snp(r) => r.report_data,
        }
    }

    /// Serialises back to wire bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Evidence::Tdx(q) => q.to_bytes(),
            Evidence::Snp(r) => r.to_bytes(),
        }
    }

    /// Parses wire bytes that must be exactly one quote or report.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let d = decode_binary(bytes, InputEncoding::Binary)?;
        if d.trailing != 0 {
            return Err(Error::Encoding(format!(
                "{} trailing bytes after the {} evidence",
                d.trailing,
                d.evidence.tee()
            )));
        }
        Ok(d.evidence)
    }
}

/// Decodes evidence from any supported encoding and detects its type.
/// Trailing bytes after a TDX quote are tolerated and counted (quote
/// generators return padded buffers); an SNP report must be exactly 1184 bytes.
pub fn decode(input: &[u8]) -> Result<DecodedEvidence> {
    if input.len() > 4 * MAX_EVIDENCE_LEN {
        return Err(Error::Encoding(format!(
            "input is {} bytes; evidence is at most {MAX_EVIDENCE_LEN} bytes",
            input.len()
        )));
    }
    let (bytes, encoding) = unwrap_text(input)?;
    decode_binary(&bytes, encoding)
}

fn decode_binary(bytes: &[u8], encoding: InputEncoding) -> Result<DecodedEvidence> {
    if bytes.len() > MAX_EVIDENCE_LEN {
        return Err(Error::Encoding(format!(
            "evidence is {} bytes; at most {MAX_EVIDENCE_LEN} are accepted",
            bytes.len()
        )));
    }
    if looks_like_tdx(bytes) {
        let (quote, used) = TdxQuote::parse_prefix(bytes)?;
        return Ok(DecodedEvidence {
            evidence: Evidence::Tdx(quote),
            bytes: bytes[..used].to_vec(),
            encoding,
            trailing: bytes.len() - used,
        });
    }
    if looks_like_snp(bytes) {
        let report = SnpReport::parse(bytes)?;
        return Ok(DecodedEvidence {
            evidence: Evidence::Snp(report),
            bytes: bytes.to_vec(),
            encoding,
            trailing: 0,
        });
    }
    Err(Error::Encoding(format!(
        "not TDX or SNP evidence: {} bytes starting {} — a TDX quote starts with version 4 or 5 (u16 LE), key type 2 and TEE type 0x81; an SNP report is {} bytes starting with version 2..=5 (u32 LE)",
        bytes.len(),
        hex::encode(&bytes[..bytes.len().min(8)]),
        crate::snp::REPORT_LEN
    )))
}

fn looks_like_tdx(b: &[u8]) -> bool {
    b.len() >= 8
        && matches!(u16::from_le_bytes([b[0], b[1]]), 4 | 5)
        && u32::from_le_bytes([b[4], b[5], b[6], b[7]]) == crate::tdx::quote::TEE_TYPE_TDX
}

fn looks_like_snp(b: &[u8]) -> bool {
    b.len() >= 4 && (2..=16).contains(&u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Turns text encodings into bytes; binary input passes through.
fn unwrap_text(input: &[u8]) -> Result<(Vec<u8>, InputEncoding)> {
    let Ok(text) = std::str::from_utf8(input) else {
        return Ok((input.to_vec(), InputEncoding::Binary));
    };
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(Error::Encoding("input is empty".into()));
    }
    if trimmed.starts_with('{') {
        let v: serde_json::Value = serde_json::from_str(trimmed)
            .map_err(|e| Error::Encoding(format!("input looks like JSON but is not: {e}")))?;
        let field = ["quote", "report", "evidence"]
            .iter()
            .find_map(|k| v.get(*k).and_then(|f| f.as_str()).map(|s| (*k, s)))
            .ok_or_else(|| {
                Error::Encoding(
                    "JSON input has no string field `quote`, `report` or `evidence`".into(),
                )
            })?;
        let (bytes, _) = unwrap_text(field.1.as_bytes())
            .map_err(|e| Error::Encoding(format!("JSON field `{}`: {e}", field.0)))?;
        return Ok((bytes, InputEncoding::Json));
    }
    let compact: String = trimmed.chars().filter(|c| !c.is_whitespace()).collect();
    let hex_body = compact
        .strip_prefix("0x")
        .or_else(|| compact.strip_prefix("0X"))
        .unwrap_or(&compact);
    if !hex_body.is_empty() && hex_body.bytes().all(|c| c.is_ascii_hexdigit()) {
        return hex::decode(hex_body)
            .map(|b| (b, InputEncoding::Hex))
            .map_err(|e| Error::Encoding(format!("hex input: {e}")));
    }
    if compact
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'-' | b'_' | b'='))
    {
        let body = compact.trim_end_matches('=');
        let engine = if body.contains(['-', '_']) {
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
        } else {
            &base64::engine::general_purpose::STANDARD_NO_PAD
        };
        return engine
            .decode(body)
            .map(|b| (b, InputEncoding::Base64))
            .map_err(|e| Error::Encoding(format!("base64 input: {e}")));
    }
    // Printable text that is neither hex nor base64: treat as binary so the
    // detector reports what it saw.
    Ok((input.to_vec(), InputEncoding::Binary))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn empty_and_junk_inputs_are_named() {
        assert!(decode(b"  \n").unwrap_err().to_string().contains("empty"));
        let e = decode(b"hello world, this is text")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not TDX or SNP evidence"), "{e}");
        let e = decode(b"{\"nope\":1}").unwrap_err().to_string();
        assert!(e.contains("no string field"), "{e}");
        let e = decode(b"0xabc").unwrap_err().to_string();
        assert!(e.contains("hex input"), "{e}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..3000)) {
            let _ = decode(&bytes);
        }
        #[test]
        fn decode_text_never_panics(s in "[0-9a-fA-Fx+/=_{}\" \\n-]{0,400}") {
            let _ = decode(s.as_bytes());
        }
    }
}
