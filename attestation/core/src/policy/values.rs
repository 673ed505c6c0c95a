//! Hex values of a policy, decoded with the key they came from; the
//! closest-set report shared by both TEEs.

use crate::error::{Error, Result};

/// If no set matches, report the mismatches of the closest set; returns
/// the index of the first set that matches.
pub(super) fn push_closest(
    mismatches: Vec<Vec<String>>,
    tee: &str,
    reasons: &mut Vec<String>,
) -> Option<usize> {
    if let Some(i) = mismatches.iter().position(|m| m.is_empty()) {
        return Some(i);
    }
    let n = mismatches.len();
    if let Some(best) = mismatches.into_iter().min_by_key(|m| m.len()) {
        if n > 1 {
            reasons.push(format!(
                "{tee} measurements match none of the {n} accepted sets; closest:"
            ));
        }
        reasons.extend(best);
    }
    None
}

pub(super) fn decode_exact<const N: usize>(s: &str, field: &str) -> Result<[u8; N]> {
    let s = s.trim();
    let s = s.strip_prefix("0x").unwrap_or(s);
    let v = hex::decode(s).map_err(|e| Error::InvalidPolicy(format!("{field}: not hex: {e}")))?;
    v.try_into().map_err(|v: Vec<u8>| {
        Error::InvalidPolicy(format!("{field}: {} bytes, expected {N}", v.len()))
    })
}

pub(super) fn decode_padded<const N: usize>(s: &str, field: &str) -> Result<[u8; N]> {
    let s = s.trim();
    let s = s.strip_prefix("0x").unwrap_or(s);
    let v = hex::decode(s).map_err(|e| Error::InvalidPolicy(format!("{field}: not hex: {e}")))?;
    if v.len() > N {
        return Err(Error::InvalidPolicy(format!(
            "{field}: {} bytes, at most {N}",
            v.len()
        )));
    }
    let mut out = [0u8; N];
    out[..v.len()].copy_from_slice(&v);
    Ok(out)
}
