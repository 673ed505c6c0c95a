//! A bounds-checked cursor over a byte slice, shared by the wire parsers.
//!
//! Every read names the field it reads, so a short or bad input yields a
//! [`ParseError`] naming the structure, field and offset. Nothing here
//! allocates more than the input length, and nothing panics.

use crate::error::ParseError;

/// Cursor over an input slice. `base` is added to reported offsets so nested
/// structures report offsets from the start of the whole input.
pub(crate) struct Reader<'a> {
    structure: &'static str,
    input: &'a [u8],
    pos: usize,
    base: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(structure: &'static str, input: &'a [u8]) -> Self {
        Self::with_base(structure, input, 0)
    }

    pub(crate) fn with_base(structure: &'static str, input: &'a [u8], base: usize) -> Self {
        Self {
            structure,
            input,
            pos: 0,
            base,
        }
    }

    /// Absolute offset of the next byte to be read.
    pub(crate) fn offset(&self) -> usize {
        self.base + self.pos
    }

    /// Bytes consumed so far.
    pub(crate) fn consumed(&self) -> usize {
        self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.input.len() - self.pos
    }

    /// An error about `field` at the current offset.
    pub(crate) fn error(&self, field: &'static str, reason: impl Into<String>) -> ParseError {
        self.error_at(field, self.offset(), reason)
    }

    pub(crate) fn error_at(
        &self,
        field: &'static str,
        offset: usize,
        reason: impl Into<String>,
    ) -> ParseError {
        ParseError {
            structure: self.structure,
            field,
            offset,
            reason: reason.into(),
        }
    }

    pub(crate) fn bytes(
        &mut self,
        field: &'static str,
        len: usize,
    ) -> Result<&'a [u8], ParseError> {
        if self.remaining() < len {
            return Err(self.error(
                field,
                format!("needs {len} bytes, only {} left", self.remaining()),
            ));
        }
        let out = &self.input[self.pos..self.pos + len];
        self.pos += len;
        Ok(out)
    }

    pub(crate) fn array<const N: usize>(
        &mut self,
        field: &'static str,
    ) -> Result<[u8; N], ParseError> {
        let bytes = self.bytes(field, N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, ParseError> {
        Ok(self.array::<1>(field)?[0])
    }

    pub(crate) fn u16_le(&mut self, field: &'static str) -> Result<u16, ParseError> {
        Ok(u16::from_le_bytes(self.array(field)?))
    }

    pub(crate) fn u32_le(&mut self, field: &'static str) -> Result<u32, ParseError> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }

    pub(crate) fn u64_le(&mut self, field: &'static str) -> Result<u64, ParseError> {
        Ok(u64::from_le_bytes(self.array(field)?))
    }

    /// Fails unless the whole input was consumed.
    pub(crate) fn finish(&self) -> Result<(), ParseError> {
        if self.remaining() != 0 {
            return Err(self.error(
                "(end)",
                format!("{} trailing bytes after the structure", self.remaining()),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_read_names_field_and_offset() {
        let mut r = Reader::with_base("Thing", &[1, 2, 3], 10);
        assert_eq!(r.u16_le("a").unwrap(), 0x0201);
        let err = r.u32_le("b").unwrap_err();
        assert_eq!(err.field, "b");
        assert_eq!(err.offset, 12);
        assert!(err.to_string().contains("needs 4 bytes, only 1 left"));
    }

    #[test]
    fn finish_rejects_trailing() {
        let mut r = Reader::new("Thing", &[1, 2]);
        r.u8("a").unwrap();
        assert!(r.finish().unwrap_err().reason.contains("1 trailing"));
    }
}
