//! The H100 attestation report: an SPDM 1.1 `GET_MEASUREMENTS` request
//! followed by the signed `MEASUREMENTS` response, as NVML returns it and as
//! NVIDIA's SDK samples store it (hex text).
//!
//! Layout (all multi-byte integers little-endian, per DSP0274):
//!
//! ```text
//! request (37 bytes):  version u8 | code u8 = 0xE0 | param1 u8 | param2 u8 | nonce [32] | slot u8
//! response:            version u8 | code u8 = 0x60 | param1 u8 | param2 u8
//!                      | number_of_blocks u8 | record_length u24
//!                      | measurement record [record_length]
//!                      | nonce [32] | opaque_length u16 | opaque data [opaque_length]
//!                      | signature [96]  (ECDSA P-384 r || s, big-endian each)
//! measurement block:   index u8 | spec u8 = 0x01 (DMTF) | size u16
//!                      | value_type u8 | value_size u16 | value [value_size]
//! opaque data:         repeated { type u16 | size u16 | value [size] }
//! ```
//!
//! The signature covers SHA-384 of `request || response without signature`
//! (the SPDM 1.1 L1/L2 transcript of one exchange).

use crate::error::{Error, Result};

/// Length of the SPDM `GET_MEASUREMENTS` request NVIDIA's driver sends.
pub const REQUEST_LEN: usize = 37;
/// Length of the nonce in the request and the response, in bytes.
pub const NONCE_LEN: usize = 32;
/// Length of the ECDSA P-384 signature (raw `r || s`), in bytes.
pub const SIGNATURE_LEN: usize = 96;
/// SPDM request code of `GET_MEASUREMENTS`.
pub const GET_MEASUREMENTS: u8 = 0xE0;
/// SPDM response code of `MEASUREMENTS`.
pub const MEASUREMENTS: u8 = 0x60;
/// The DMTF measurement specification identifier in a measurement block.
pub const DMTF_SPEC: u8 = 0x01;
/// Upper bound on the accepted report size (a real H100 report is ~4 KiB).
pub const MAX_REPORT_LEN: usize = 64 * 1024;

/// The SPDM `GET_MEASUREMENTS` request as the verifier sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeasurementRequest {
    /// SPDM version byte (0x11 = SPDM 1.1).
    pub spdm_version: u8,
    /// Param1 (bit 0: signature requested).
    pub param1: u8,
    /// Param2 (0xFF: all measurement blocks).
    pub param2: u8,
    /// The caller-chosen nonce the GPU was asked to sign over.
    pub nonce: [u8; NONCE_LEN],
    /// Certificate slot used for the signature.
    pub slot_id: u8,
}

/// One DMTF measurement block of the response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeasurementBlock {
    /// Block index as carried (1-based; RIM index = this − 1).
    pub index: u8,
    /// DMTF measurement value type.
    pub value_type: u8,
    /// The measurement (for H100: a SHA-384 digest, 48 bytes).
    pub value: Vec<u8>,
}

/// One opaque-data field of the response (NVIDIA-defined `type`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpaqueField {
    /// Field type (3 = driver version, 6 = VBIOS version, …).
    pub field_type: u16,
    /// Raw value bytes.
    pub value: Vec<u8>,
}

/// Opaque field type: driver version (NUL-terminated ASCII).
pub const OPAQUE_DRIVER_VERSION: u16 = 3;
/// Opaque field type: VBIOS version (8 bytes, little-endian).
pub const OPAQUE_VBIOS_VERSION: u16 = 6;
/// Opaque field type: project (ASCII, NUL-padded).
pub const OPAQUE_PROJECT: u16 = 17;
/// Opaque field type: project SKU (ASCII, NUL-padded).
pub const OPAQUE_PROJECT_SKU: u16 = 18;
/// Opaque field type: chip SKU (ASCII, NUL-padded).
pub const OPAQUE_CHIP_SKU: u16 = 15;
/// Opaque field type: NVDEC0 status (0xAA enabled, 0x55 disabled).
pub const OPAQUE_NVDEC0_STATUS: u16 = 11;

/// The SPDM `MEASUREMENTS` response, typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeasurementResponse {
    /// SPDM version byte.
    pub spdm_version: u8,
    /// Param1 (number of measurement indices when requested; else 0).
    pub param1: u8,
    /// Param2 (slot id in the low nibble).
    pub param2: u8,
    /// The measurement blocks in wire order.
    pub blocks: Vec<MeasurementBlock>,
    /// The responder's nonce.
    pub responder_nonce: [u8; NONCE_LEN],
    /// Opaque data fields in wire order.
    pub opaque: Vec<OpaqueField>,
    /// ECDSA P-384 signature, raw `r || s`.
    pub signature: [u8; SIGNATURE_LEN],
}

/// A parsed H100 attestation report (request + response), with the exact
/// bytes it was parsed from, so that the signature is checked over them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestationReport {
    raw: Vec<u8>,
    /// The request half.
    pub request: MeasurementRequest,
    /// The response half.
    pub response: MeasurementResponse,
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        match end {
            Some(end) => {
                let s = &self.buf[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(Error::MalformedReport(format!(
                "{what}: needs {n} bytes at offset {}, only {} left",
                self.pos,
                self.buf.len() - self.pos
            ))),
        }
    }
    fn u8(&mut self, what: &str) -> Result<u8> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &str) -> Result<u16> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u24(&mut self, what: &str) -> Result<u32> {
        let b = self.take(3, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], 0]))
    }
    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let b = self.take(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(b);
        Ok(a)
    }
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
}

impl AttestationReport {
    /// Parse a binary report. Rejects short input, wrong SPDM codes,
    /// inconsistent lengths, and any trailing byte after the signature.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        if bytes.len() > MAX_REPORT_LEN {
            return Err(Error::MalformedReport(format!(
                "{} bytes, more than the {MAX_REPORT_LEN}-byte limit",
                bytes.len()
            )));
        }
        let mut r = Reader { buf: bytes, pos: 0 };
        let spdm_version = r.u8("request version")?;
        let code = r.u8("request code")?;
        if code != GET_MEASUREMENTS {
            return Err(Error::MalformedReport(format!(
                "request code 0x{code:02x}, expected GET_MEASUREMENTS (0xe0)"
            )));
        }
        let param1 = r.u8("request param1")?;
        let param2 = r.u8("request param2")?;
        let nonce = r.array::<NONCE_LEN>("request nonce")?;
        let slot_id = r.u8("request slot id")?;
        let request = MeasurementRequest {
            spdm_version,
            param1,
            param2,
            nonce,
            slot_id,
        };

        let r_version = r.u8("response version")?;
        let r_code = r.u8("response code")?;
        if r_code != MEASUREMENTS {
            return Err(Error::MalformedReport(format!(
                "response code 0x{r_code:02x}, expected MEASUREMENTS (0x60)"
            )));
        }
        if r_version != spdm_version {
            return Err(Error::MalformedReport(format!(
                "response SPDM version 0x{r_version:02x} differs from request 0x{spdm_version:02x}"
            )));
        }
        let r_param1 = r.u8("response param1")?;
        let r_param2 = r.u8("response param2")?;
        let number_of_blocks = r.u8("number of blocks")?;
        let record_len = r.u24("measurement record length")? as usize;
        let record = r.take(record_len, "measurement record")?;
        let blocks = parse_record(record, number_of_blocks)?;
        let responder_nonce = r.array::<NONCE_LEN>("response nonce")?;
        let opaque_len = r.u16("opaque data length")? as usize;
        let opaque = parse_opaque(r.take(opaque_len, "opaque data")?)?;
        let signature = r.array::<SIGNATURE_LEN>("signature")?;
        if r.remaining() != 0 {
            return Err(Error::MalformedReport(format!(
                "{} trailing byte(s) after the signature",
                r.remaining()
            )));
        }
        Ok(AttestationReport {
            raw: bytes.to_vec(),
            request,
            response: MeasurementResponse {
                spdm_version: r_version,
                param1: r_param1,
                param2: r_param2,
                blocks,
                responder_nonce,
                opaque,
                signature,
            },
        })
    }

    /// Parse the hex text form of NVIDIA's SDK samples (whitespace and an
    /// optional `0x` prefix allowed).
    pub fn parse_hex(text: &str) -> Result<Self> {
        let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        let compact = compact
            .strip_prefix("0x")
            .or_else(|| compact.strip_prefix("0X"))
            .unwrap_or(&compact);
        let bytes = hex::decode(compact)
            .map_err(|e| Error::MalformedReport(format!("not valid hex: {e}")))?;
        Self::parse(&bytes)
    }

    /// The exact bytes the report was parsed from.
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    /// The bytes the signature covers: request and response up to (not
    /// including) the signature.
    pub fn signed_bytes(&self) -> &[u8] {
        &self.raw[..self.raw.len() - SIGNATURE_LEN]
    }

    /// The nonce of the request (the one the verifier chose).
    pub fn nonce(&self) -> &[u8; NONCE_LEN] {
        &self.request.nonce
    }

    /// The first opaque field of `field_type`, if present.
    pub fn opaque(&self, field_type: u16) -> Option<&[u8]> {
        self.response
            .opaque
            .iter()
            .find(|f| f.field_type == field_type)
            .map(|f| f.value.as_slice())
    }

    /// The driver version the GPU firmware reports (e.g. `545.00`), if present.
    pub fn driver_version(&self) -> Option<String> {
        self.opaque(OPAQUE_DRIVER_VERSION).map(ascii_field)
    }

    /// The VBIOS version as NVIDIA formats it (`96.00.5E.00.01`), if present.
    ///
    /// The field is 8 bytes little-endian; the printed form is the lower four
    /// bytes of the big-endian value followed by its byte 3, each as two hex digits.
    pub fn vbios_version(&self) -> Option<String> {
        let v = self.opaque(OPAQUE_VBIOS_VERSION)?;
        if v.len() != 8 {
            return None;
        }
        let mut be = v.to_vec();
        be.reverse(); // big-endian
        let parts = [be[4], be[5], be[6], be[7], be[3]];
        Some(
            parts
                .iter()
                .map(|b| format!("{b:02X}"))
                .collect::<Vec<_>>()
                .join("."),
        )
    }

    /// Project, project SKU and chip SKU (they name the VBIOS RIM file).
    pub fn project_ids(&self) -> Option<(String, String, String)> {
        Some((
            ascii_field(self.opaque(OPAQUE_PROJECT)?),
            ascii_field(self.opaque(OPAQUE_PROJECT_SKU)?),
            ascii_field(self.opaque(OPAQUE_CHIP_SKU)?),
        ))
    }

    /// The measurement of RIM index `rim_index` (block index − 1), if present.
    pub fn measurement(&self, rim_index: u16) -> Option<&[u8]> {
        self.response
            .blocks
            .iter()
            .find(|b| u16::from(b.index) == rim_index + 1)
            .map(|b| b.value.as_slice())
    }
}

fn ascii_field(v: &[u8]) -> String {
    let end = v.iter().position(|&b| b == 0).unwrap_or(v.len());
    String::from_utf8_lossy(&v[..end]).trim().to_string()
}

fn parse_record(record: &[u8], number_of_blocks: u8) -> Result<Vec<MeasurementBlock>> {
    let mut r = Reader {
        buf: record,
        pos: 0,
    };
    let mut blocks = Vec::with_capacity(number_of_blocks as usize);
    for i in 0..number_of_blocks {
        let index = r.u8("measurement block index")?;
        let spec = r.u8("measurement specification")?;
        if spec != DMTF_SPEC {
            return Err(Error::MalformedReport(format!(
                "measurement block {i}: specification 0x{spec:02x}, expected DMTF (0x01)"
            )));
        }
        let size = r.u16("measurement block size")? as usize;
        let body = r.take(size, "measurement block")?;
        let mut b = Reader { buf: body, pos: 0 };
        let value_type = b.u8("DMTF value type")?;
        let value_size = b.u16("DMTF value size")? as usize;
        let value = b.take(value_size, "DMTF value")?.to_vec();
        if b.remaining() != 0 {
            return Err(Error::MalformedReport(format!(
                "measurement block {i}: {} byte(s) after the DMTF value",
                b.remaining()
            )));
        }
        if blocks.iter().any(|x: &MeasurementBlock| x.index == index) {
            return Err(Error::MalformedReport(format!(
                "measurement block index {index} appears twice"
            )));
        }
        blocks.push(MeasurementBlock {
            index,
            value_type,
            value,
        });
    }
    if r.remaining() != 0 {
        return Err(Error::MalformedReport(format!(
            "{} byte(s) in the measurement record after {number_of_blocks} blocks",
            r.remaining()
        )));
    }
    Ok(blocks)
}

fn parse_opaque(data: &[u8]) -> Result<Vec<OpaqueField>> {
    let mut r = Reader { buf: data, pos: 0 };
    let mut out = Vec::new();
    while r.remaining() > 0 {
        let field_type = r.u16("opaque field type")?;
        let size = r.u16("opaque field size")? as usize;
        let value = r.take(size, "opaque field value")?.to_vec();
        out.push(OpaqueField { field_type, value });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..5000)) {
            let _ = AttestationReport::parse(&bytes);
        }

        #[test]
        fn parse_never_panics_with_valid_prefix(tail in proptest::collection::vec(any::<u8>(), 0..600)) {
            let mut bytes = vec![0x11, 0xe0, 0x01, 0xff];
            bytes.extend_from_slice(&[7u8; 32]);
            bytes.push(0);
            bytes.extend_from_slice(&[0x11, 0x60, 0, 0]);
            bytes.extend_from_slice(&tail);
            let _ = AttestationReport::parse(&bytes);
        }
    }

    #[test]
    fn short_input_names_the_field() {
        let e = AttestationReport::parse(&[0x11, 0xe0, 0x01]).unwrap_err();
        assert!(e.to_string().contains("request param2"), "{e}");
    }
}
