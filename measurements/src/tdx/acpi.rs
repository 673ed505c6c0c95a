//! The table list inside QEMU's `etc/acpi/tables` blob: the ACPI tables
//! laid end to end (each starts with a 4-byte signature and a `u32`
//! little-endian length, ACPI 6.5 §5.2.6), then zero padding up to the blob
//! size QEMU reserves (128 KiB).
//!
//! RTMR0 measures the blob as a whole ([`super::rtmr::AcpiTables`]); this
//! listing only says what is inside, for reports and tests.

/// One table found in the blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AcpiTableEntry {
    /// Signature, e.g. `*b"DSDT"`.
    pub signature: [u8; 4],
    /// Byte offset of the table in the blob.
    pub offset: usize,
    /// Length from the table's header, in bytes.
    pub length: usize,
}

impl AcpiTableEntry {
    /// The signature as text (`"DSDT"`).
    pub fn name(&self) -> String {
        String::from_utf8_lossy(&self.signature).into_owned()
    }
}

/// Smallest table: a FACS has only signature and length before its fields
/// (64 bytes); every other table has the 36-byte standard header.
const MIN_TABLE: usize = 36;

/// Lists the tables in an `etc/acpi/tables` blob. Stops at the first
/// all-zero signature; what follows must be zero padding. Errors name the
/// offset and what is wrong; never panics.
pub fn list_tables(blob: &[u8]) -> Result<Vec<AcpiTableEntry>, String> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < blob.len() {
        let rest = &blob[at..];
        if rest.iter().take(4).all(|&b| b == 0) {
            if let Some(p) = rest.iter().position(|&b| b != 0) {
                return Err(format!(
                    "non-zero byte at offset {} after the last table",
                    at + p
                ));
            }
            break;
        }
        let Some(head) = rest.get(..8) else {
            return Err(format!(
                "{} bytes at offset {at}: too short for a table header",
                rest.len()
            ));
        };
        let signature = [head[0], head[1], head[2], head[3]];
        if !signature
            .iter()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        {
            return Err(format!(
                "offset {at}: {signature:02x?} is not a table signature"
            ));
        }
        let length = u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as usize;
        if length < MIN_TABLE || length > blob.len() - at {
            return Err(format!(
                "{} at offset {at}: length {length} outside {MIN_TABLE}..={}",
                String::from_utf8_lossy(&signature),
                blob.len() - at
            ));
        }
        out.push(AcpiTableEntry {
            signature,
            offset: at,
            length,
        });
        at += length;
    }
    Ok(out)
}

/// The table with this signature (the first one).
pub fn find_table(blob: &[u8], signature: &[u8; 4]) -> Result<AcpiTableEntry, String> {
    list_tables(blob)?
        .into_iter()
        .find(|t| &t.signature == signature)
        .ok_or_else(|| format!("no {} table", String::from_utf8_lossy(signature)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(sig: &[u8; 4], len: usize) -> Vec<u8> {
        let mut t = vec![0x5a; len];
        t[..4].copy_from_slice(sig);
        t[4..8].copy_from_slice(&(len as u32).to_le_bytes());
        t
    }

    #[test]
    fn lists_tables_then_padding() {
        let mut blob = table(b"FACS", 64);
        blob.extend(table(b"DSDT", 100));
        blob.extend(vec![0; 300]);
        let l = list_tables(&blob).unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(l[1].name(), "DSDT");
        assert_eq!((l[1].offset, l[1].length), (64, 100));
        assert_eq!(find_table(&blob, b"DSDT").unwrap().offset, 64);
        assert!(find_table(&blob, b"MCFG").is_err());
    }

    #[test]
    fn rejects_bad_lengths_and_trailing_junk() {
        let mut blob = table(b"DSDT", 100);
        blob.truncate(99);
        assert!(list_tables(&blob).is_err());
        let mut short = table(b"DSDT", 36);
        short[4] = 8;
        assert!(list_tables(&short).is_err());
        let mut junk = table(b"DSDT", 40);
        junk.extend([0, 0, 0, 0, 0, 1]);
        assert!(list_tables(&junk)
            .unwrap_err()
            .contains("after the last table"));
        assert!(list_tables(&[0x44, 0x53]).is_err());
        assert!(list_tables(b"ds\x00\x01\x28\x00\x00\x00").is_err());
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = list_tables(&bytes);
        }
    }
}
