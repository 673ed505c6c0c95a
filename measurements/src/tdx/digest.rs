//! SHA-384 digests and register extension, the arithmetic every TDX
//! measurement shares, plus the hex forms JSON uses. A leaf module: it
//! imports nothing from its siblings.

use sha2::{Digest, Sha384};

/// A SHA-384 digest or measurement register value (48 raw bytes).
pub type Digest384 = [u8; 48];

/// SHA-384 of `data`.
pub fn sha384(data: &[u8]) -> Digest384 {
    Sha384::digest(data).into()
}

/// Extends `register` with `digest`: `register := SHA-384(register ‖ digest)`.
pub fn extend(register: &mut Digest384, digest: &Digest384) {
    let mut h = Sha384::new();
    h.update(register.as_slice());
    h.update(digest);
    *register = h.finalize().into();
}

/// The value of a register after extending each digest in order, starting
/// from zero.
pub fn replay_digests<'a>(digests: impl IntoIterator<Item = &'a Digest384>) -> Digest384 {
    let mut reg = [0u8; 48];
    for d in digests {
        extend(&mut reg, d);
    }
    reg
}

/// Parses 96 hex digits (optionally `0x`-prefixed) into a SHA-384 value.
pub fn parse_hex48(s: &str) -> Result<Digest384, String> {
    let s = s.trim();
    let s = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    let mut out = [0u8; 48];
    hex::decode_to_slice(s, &mut out).map_err(|e| {
        format!(
            "expected 96 hex digits (a SHA-384), got {} characters: {e}",
            s.len()
        )
    })?;
    Ok(out)
}

/// Serde helpers writing 48-byte digests as lowercase hex.
pub(crate) mod hex48 {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8; 48], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 48], D::Error> {
        let s = String::deserialize(d)?;
        super::parse_hex48(&s).map_err(D::Error::custom)
    }

    /// The same for `Option<[u8; 48]>` (`null` when absent); serialise only.
    pub mod opt {
        use serde::Serializer;

        pub fn serialize<S: Serializer>(v: &Option<[u8; 48]>, s: S) -> Result<S::Ok, S::Error> {
            match v {
                Some(v) => s.serialize_str(&hex::encode(v)),
                None => s.serialize_none(),
            }
        }
    }
}

/// Serde helper writing 32-byte digests as lowercase hex.
pub(crate) mod hex32 {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = String::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(s.trim(), &mut out)
            .map_err(|e| D::Error::custom(format!("expected 64 hex digits (a SHA-256): {e}")))?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extend_is_hash_of_concatenation() {
        let d = sha384(b"x");
        let mut reg = [0u8; 48];
        extend(&mut reg, &d);
        let mut cat = vec![0u8; 48];
        cat.extend_from_slice(&d);
        assert_eq!(reg, sha384(&cat));
        assert_eq!(replay_digests([&d]), reg);
    }

    #[test]
    fn parse_hex48_accepts_prefix_and_rejects_wrong_length() {
        let h = "ab".repeat(48);
        assert_eq!(parse_hex48(&h).unwrap(), [0xab; 48]);
        assert_eq!(parse_hex48(&format!("0x{h}")).unwrap(), [0xab; 48]);
        assert!(parse_hex48("abcd").is_err());
    }
}
