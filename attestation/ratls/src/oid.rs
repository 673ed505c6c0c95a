//! Object identifiers of the RA-TLS certificate extensions.
//!
//! Chrysalis extensions live under `2.25.<UUID>` (ITU-T X.667 / RFC 4122:
//! an arc formed from a UUID needs no registration). The UUID is
//! `7c586b91-c959-44ed-8110-60848a05dd62`, as an integer
//! `165283375369106195242582353339650268514`:
//!
//! | OID | extension |
//! |---|---|
//! | `2.25.165283375369106195242582353339650268514.1` | CPU evidence (critical) |
//! | `2.25.165283375369106195242582353339650268514.2` | GPU evidence digest (critical, optional) |
//! | `2.25.165283375369106195242582353339650268514.3` | claims (critical) |
//! | `2.25.165283375369106195242582353339650268514.4` | collateral (non-critical, optional) |
//!
//! The UUID arc does not fit the `u64` arcs that rcgen, yasna and const-oid
//! use, so the OIDs are kept as their DER content octets (X.690 §8.19),
//! computed at compile time from [`ARC_UUID`] by [`oid_content`].
//!
//! Telegram Cocoon's extensions use `1.3.6.1.4.1.12345.1` (raw TDX quote)
//! and `1.3.6.1.4.1.12345.2` (user claims).

/// The UUID whose integer value forms the Chrysalis arc `2.25.<ARC_UUID>`.
pub const ARC_UUID: u128 = 0x7c58_6b91_c959_44ed_8110_6084_8a05_dd62;

/// Dotted form of the Chrysalis arc.
pub const ARC_DOTTED: &str = "2.25.165283375369106195242582353339650268514";

/// Length of the DER content of a Chrysalis extension OID: one byte for
/// `2.25` (2·40+25 = 105), 19 base-128 bytes for the 128-bit UUID, one for
/// the leaf (< 128).
pub const OID_CONTENT_LEN: usize = 21;

// DER base-128 must be minimal: the most significant of the 19 groups is
// non-zero (checked at compile time).
const _: () = assert!((ARC_UUID >> 126) != 0, "UUID needs fewer than 19 groups");

/// DER content octets (without tag and length) of `2.25.<ARC_UUID>.<leaf>`.
pub const fn oid_content(leaf: u8) -> [u8; OID_CONTENT_LEN] {
    assert!(leaf < 0x80, "leaf arc must fit one base-128 byte");
    let mut out = [0u8; OID_CONTENT_LEN];
    out[0] = 2 * 40 + 25;
    let mut i = 0;
    while i < 19 {
        let shift = 7 * (18 - i);
        let group = ((ARC_UUID >> shift) & 0x7f) as u8;
        out[1 + i] = if i < 18 { group | 0x80 } else { group };
        i += 1;
    }
    out[OID_CONTENT_LEN - 1] = leaf;
    out
}

/// CPU evidence extension: the raw TDX quote or SNP report. Critical.
pub const EVIDENCE: [u8; OID_CONTENT_LEN] = oid_content(1);
/// GPU evidence digest extension: SHA-384 of the GPU evidence. Critical when present.
pub const GPU_EVIDENCE_DIGEST: [u8; OID_CONTENT_LEN] = oid_content(2);
/// Claims extension: DER `RaTlsClaims`. Critical.
pub const CLAIMS: [u8; OID_CONTENT_LEN] = oid_content(3);
/// Collateral extension: verification material for the evidence. Non-critical.
pub const COLLATERAL: [u8; OID_CONTENT_LEN] = oid_content(4);

/// DER content octets of `1.3.6.1.4.1.12345.<leaf>`: `1.3` → 43, then 6,
/// 1, 4, 1, 12345 (= 96·128 + 57 → `e0 39`), leaf.
pub const fn cocoon_oid(leaf: u8) -> [u8; 8] {
    assert!(leaf < 0x80, "leaf arc must fit one base-128 byte");
    [0x2b, 0x06, 0x01, 0x04, 0x01, 0xe0, 0x39, leaf]
}

/// Cocoon `TDX_QUOTE` (`1.3.6.1.4.1.12345.1`): the raw TDX quote. Critical.
pub const COCOON_QUOTE: [u8; 8] = cocoon_oid(1);
/// Cocoon `TDX_USER_CLAIMS` (`1.3.6.1.4.1.12345.2`): the serialised user
/// claims (today: the certificate's raw 32-byte Ed25519 key). Critical.
pub const COCOON_CLAIMS: [u8; 8] = cocoon_oid(2);

/// X.509 extensions that may be critical in an RA-TLS certificate besides
/// the RA-TLS ones: basicConstraints, keyUsage, extKeyUsage,
/// subjectAltName (dotted).
pub const KNOWN_CRITICAL_STANDARD: [&str; 4] = ["2.5.29.19", "2.5.29.15", "2.5.29.37", "2.5.29.17"];

/// Human name of an RA-TLS OID (content octets), for messages.
pub fn name(content: &[u8]) -> Option<&'static str> {
    Some(match content {
        c if c == EVIDENCE => "evidence",
        c if c == GPU_EVIDENCE_DIGEST => "GPU evidence digest",
        c if c == CLAIMS => "claims",
        c if c == COLLATERAL => "collateral",
        c if c == COCOON_QUOTE => "Cocoon TDX_QUOTE",
        c if c == COCOON_CLAIMS => "Cocoon TDX_USER_CLAIMS",
        _ => return None,
    })
}

/// Dotted form of a Chrysalis extension OID with this leaf.
pub fn dotted(leaf: u8) -> String {
    format!("{ARC_DOTTED}.{leaf}")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Dotted form of DER OID content octets, decoded with u128 arcs
    /// (independent of [`oid_content`]).
    pub(crate) fn dotted_from_content(c: &[u8]) -> String {
        let mut arcs: Vec<u128> = Vec::new();
        let mut acc: u128 = 0;
        for &b in c {
            acc = (acc << 7) | u128::from(b & 0x7f);
            if b & 0x80 == 0 {
                arcs.push(acc);
                acc = 0;
            }
        }
        let first = arcs.remove(0);
        let (a, b) = if first < 80 {
            (first / 40, first % 40)
        } else {
            (2, first - 80)
        };
        std::iter::once(a)
            .chain(std::iter::once(b))
            .chain(arcs)
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(".")
    }

    #[test]
    fn uuid_arc_is_the_documented_uuid_and_integer() {
        let from_uuid_text =
            u128::from_str_radix(&"7c586b91-c959-44ed-8110-60848a05dd62".replace('-', ""), 16)
                .unwrap();
        assert_eq!(ARC_UUID, from_uuid_text);
        assert_eq!(ARC_DOTTED, format!("2.25.{from_uuid_text}"));
        for (leaf, content) in [
            (1, EVIDENCE),
            (2, GPU_EVIDENCE_DIGEST),
            (3, CLAIMS),
            (4, COLLATERAL),
        ] {
            assert_eq!(dotted_from_content(&content), dotted(leaf));
            // Minimal base-128: no group starts with 0x80.
            assert_ne!(content[1], 0x80);
        }
    }

    #[test]
    fn cocoon_oids_match_yasna() {
        for leaf in [1u64, 2] {
            let der = yasna::construct_der(|w| {
                w.write_oid(&yasna::models::ObjectIdentifier::from_slice(&[
                    1, 3, 6, 1, 4, 1, 12345, leaf,
                ]))
            });
            assert_eq!(&der[2..], cocoon_oid(leaf as u8));
        }
        assert_eq!(dotted_from_content(&COCOON_QUOTE), "1.3.6.1.4.1.12345.1");
        assert_eq!(name(&COCOON_CLAIMS), Some("Cocoon TDX_USER_CLAIMS"));
        assert_eq!(name(&CLAIMS), Some("claims"));
        assert_eq!(name(&[1, 2, 3]), None);
    }
}
