//! A bounds-checked little-endian cursor over untrusted bytes. Every read
//! either returns the bytes asked for or says what was missing and where;
//! nothing here can panic or allocate more than the input holds.

/// Why a read failed: what was being read, at which offset, and how many
/// bytes it needed beyond what was left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Short {
    pub what: &'static str,
    pub offset: usize,
    pub needed: usize,
    pub available: usize,
}

impl std::fmt::Display for Short {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "truncated {}: needs {} bytes at offset {}, only {} left",
            self.what, self.needed, self.offset, self.available
        )
    }
}

/// A cursor over a byte slice.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Offset of the next unread byte.
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// The unread bytes.
    pub fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], Short> {
        if n > self.remaining() {
            return Err(Short {
                what,
                offset: self.pos,
                needed: n,
                available: self.remaining(),
            });
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    pub fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], Short> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    pub fn u8(&mut self, what: &'static str) -> Result<u8, Short> {
        Ok(self.array::<1>(what)?[0])
    }

    pub fn u16(&mut self, what: &'static str) -> Result<u16, Short> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }

    pub fn u32(&mut self, what: &'static str) -> Result<u32, Short> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    pub fn u64(&mut self, what: &'static str) -> Result<u64, Short> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }
}

/// Reads a little-endian `u16` at `offset` of `buf`.
pub(crate) fn le16_at(buf: &[u8], offset: usize, what: &'static str) -> Result<u16, Short> {
    Ok(u16::from_le_bytes(array_at(buf, offset, what)?))
}

/// Reads a little-endian `u32` at `offset` of `buf`.
pub(crate) fn le32_at(buf: &[u8], offset: usize, what: &'static str) -> Result<u32, Short> {
    Ok(u32::from_le_bytes(array_at(buf, offset, what)?))
}

/// Copies `N` bytes at `offset` of `buf`.
pub(crate) fn array_at<const N: usize>(
    buf: &[u8],
    offset: usize,
    what: &'static str,
) -> Result<[u8; N], Short> {
    let mut r = Reader::new(buf);
    if offset > buf.len() {
        return Err(Short {
            what,
            offset,
            needed: N,
            available: 0,
        });
    }
    r.pos = offset;
    r.array(what)
}

/// The sub-slice `buf[start..start + len]`, checked.
pub(crate) fn slice_at<'a>(
    buf: &'a [u8],
    start: usize,
    len: usize,
    what: &'static str,
) -> Result<&'a [u8], Short> {
    match start.checked_add(len) {
        Some(end) if end <= buf.len() => Ok(&buf[start..end]),
        _ => Err(Short {
            what,
            offset: start,
            needed: len,
            available: buf.len().saturating_sub(start),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_reports_short_input() {
        let mut r = Reader::new(&[1, 0, 2, 0, 0, 0, 9]);
        assert_eq!(r.u16("a").unwrap(), 1);
        assert_eq!(r.u32("b").unwrap(), 2);
        let e = r.u16("c").unwrap_err();
        assert_eq!((e.offset, e.needed, e.available), (6, 2, 1));
        assert!(e.to_string().contains("truncated c"));
        assert_eq!(r.u8("d").unwrap(), 9);
        assert!(array_at::<2>(&[0; 3], 5, "x").is_err());
        assert!(slice_at(&[0; 3], 1, usize::MAX, "x").is_err());
        assert_eq!(le32_at(&[0, 1, 0, 0, 0], 1, "x").unwrap(), 1);
        assert_eq!(le16_at(&[1, 1], 0, "x").unwrap(), 0x101);
    }
}
