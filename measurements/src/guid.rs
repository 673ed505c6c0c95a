//! EFI GUIDs in their mixed-endian wire form, shared by the TDX and SNP code.

use std::fmt;

/// An EFI GUID, stored as its 16 wire bytes (the first three fields
/// little-endian, the last two as written).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Guid(pub [u8; 16]);

impl Guid {
    /// Builds a GUID from its textual fields (`data1-data2-data3-data4`),
    /// usable in `const` context.
    pub const fn from_fields(d1: u32, d2: u16, d3: u16, d4: [u8; 8]) -> Guid {
        let a = d1.to_le_bytes();
        let b = d2.to_le_bytes();
        let c = d3.to_le_bytes();
        Guid([
            a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d4[0], d4[1], d4[2], d4[3], d4[4],
            d4[5], d4[6], d4[7],
        ])
    }

    /// Parses the registry form `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`
    /// (case-insensitive).
    pub fn parse(s: &str) -> Option<Guid> {
        let parts: Vec<&str> = s.trim().split('-').collect();
        let lens = [8, 4, 4, 4, 12];
        if parts.len() != 5
            || parts.iter().zip(lens).any(|(p, l)| p.len() != l)
            || !parts
                .iter()
                .all(|p| p.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return None;
        }
        let d1 = u32::from_str_radix(parts[0], 16).ok()?;
        let d2 = u16::from_str_radix(parts[1], 16).ok()?;
        let d3 = u16::from_str_radix(parts[2], 16).ok()?;
        let mut d4 = [0u8; 8];
        hex::decode_to_slice(format!("{}{}", parts[3], parts[4]), &mut d4).ok()?;
        Some(Guid::from_fields(d1, d2, d3, d4))
    }

    /// The 16 wire bytes.
    pub fn bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        write!(
            f,
            "{:08x}-{:04x}-{:04x}-{}-{}",
            u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            u16::from_le_bytes([b[4], b[5]]),
            u16::from_le_bytes([b[6], b[7]]),
            hex::encode(&b[8..10]),
            hex::encode(&b[10..16])
        )
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Guid({self})")
    }
}

/// `EFI_GLOBAL_VARIABLE` (SecureBoot, PK, KEK, BootOrder, Boot####).
pub const EFI_GLOBAL_VARIABLE: Guid = Guid::from_fields(
    0x8be4df61,
    0x93ca,
    0x11d2,
    [0xaa, 0x0d, 0x00, 0xe0, 0x98, 0x03, 0x2b, 0x8c],
);

/// `EFI_IMAGE_SECURITY_DATABASE_GUID` (db, dbx).
pub const EFI_IMAGE_SECURITY_DATABASE: Guid = Guid::from_fields(
    0xd719b2cb,
    0x3d3a,
    0x4596,
    [0xa3, 0xbc, 0xda, 0xd0, 0x0e, 0x67, 0x65, 0x6f],
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_display_round_trip_and_wire_order() {
        let g = Guid::parse("8BE4DF61-93CA-11D2-AA0D-00E098032B8C").unwrap();
        assert_eq!(g, EFI_GLOBAL_VARIABLE);
        assert_eq!(hex::encode(g.bytes()), "61dfe48bca93d211aa0d00e098032b8c");
        assert_eq!(g.to_string(), "8be4df61-93ca-11d2-aa0d-00e098032b8c");
        assert!(Guid::parse("8BE4DF61-93CA-11D2-AA0D").is_none());
        assert!(Guid::parse("8BE4DF6G-93CA-11D2-AA0D-00E098032B8C").is_none());
        assert!(Guid::parse("+BE4DF61-93CA-11D2-AA0D-00E098032B8C").is_none());
    }
}
