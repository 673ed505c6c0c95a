//! `--sim-set FIELD=VALUE`: the typed override model.
//!
//! A [`SimOverride`] replaces one field of the simulated TD report or SNP
//! report; the simulator then signs the result as its hardware would (the
//! TDX attestation key over the quote, the VCEK over the SNP report), so the
//! evidence is authentic simulated evidence of a node that differs in
//! exactly that field. The verifiers judge it with the code that judges
//! real evidence.
//!
//! Values are written the way the report stores them:
//!
//! * **byte fields** (registers, digests, ids): hex in report byte order,
//!   exactly the field's length, no `0x` (e.g. `rtmr0=` and 96 hex digits,
//!   `host_data=` and 64);
//! * **integer fields** (TD attributes, XFAM, guest policy, VMPL, TCB
//!   versions …): decimal without leading zeros or `0x`-hex, as the
//!   number the report stores little-endian (e.g. `td_attributes=0x10000001`
//!   is SEPT_VE_DISABLE plus DEBUG, `policy=0xb0000` is SMT, the reserved
//!   one bit and DEBUG, `vmpl=1`). A run of hex digits with leading zeros
//!   (a report-order dump such as `0000001000000000`) is refused rather
//!   than read as a decimal number.
//!
//! [`SimField::ALL`] (room `field`) lists every field with its report, kind
//! and width; this file parses values and applies them.
//! Fields bound to the simulated platform's certificates are not settable
//! (the SNP `chip_id`, TDX header and QE fields) — except the SNP
//! `reported_tcb`: the simulator then issues its VCEK for that TCB, as
//! AMD's KDS issues one for any TCB a chip reports.

use chrysalis_attestation::snp::report::{GuestPolicy, KeyInfo, PlatformInfo, SnpReport};
use chrysalis_attestation::snp::{TcbLayout, TcbVersion};
use chrysalis_attestation::tdx::quote::TdReport10;
use chrysalis_attestation::Tee;

use crate::error::{Error, Result};

mod field;

pub use field::{FieldKind, SimField};

/// A parsed, checked value for a field.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    Bytes(Vec<u8>),
    Int(u64),
}

/// One field set to one value; the value has the field's kind and width.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimOverride {
    field: SimField,
    value: Value,
}

impl SimOverride {
    /// Parses `FIELD=VALUE` (the `--sim-set` syntax).
    pub fn parse_assignment(s: &str) -> Result<SimOverride> {
        let (name, value) = s.split_once('=').ok_or_else(|| Error::MissingEquals {
            input: s.to_owned(),
        })?;
        let field = SimField::from_name(name).ok_or_else(|| Error::UnknownField {
            field: name.trim().to_owned(),
            known: SimField::names(),
        })?;
        SimOverride::parse_value(field, value)
    }

    /// Parses `value` for `field`.
    pub fn parse_value(field: SimField, value: &str) -> Result<SimOverride> {
        let v = value.trim();
        let value = match field.kind() {
            FieldKind::Bytes(len) => Value::Bytes(parse_bytes(field, len, v)?),
            FieldKind::Int(bits) => Value::Int(parse_int(field, bits, v)?),
        };
        Ok(SimOverride { field, value })
    }

    /// `field` set to `bytes`; `bytes` must have the field's length.
    pub fn bytes(field: SimField, bytes: &[u8]) -> Result<SimOverride> {
        match field.kind() {
            FieldKind::Bytes(len) if bytes.len() == len => Ok(SimOverride {
                field,
                value: Value::Bytes(bytes.to_vec()),
            }),
            FieldKind::Bytes(len) => Err(Error::WrongLength {
                field: field.name(),
                expected: len,
                got: format!("got {} bytes", bytes.len()),
            }),
            FieldKind::Int(bits) => Err(Error::BadInteger {
                field: field.name(),
                bits,
                value: hex::encode(bytes),
            }),
        }
    }

    /// `field` set to the integer `v`; `v` must fit the field's width.
    pub fn int(field: SimField, v: u64) -> Result<SimOverride> {
        match field.kind() {
            FieldKind::Int(bits) if bits >= 64 || v >> bits == 0 => Ok(SimOverride {
                field,
                value: Value::Int(v),
            }),
            FieldKind::Int(bits) => Err(Error::BadInteger {
                field: field.name(),
                bits,
                value: v.to_string(),
            }),
            FieldKind::Bytes(len) => Err(Error::WrongLength {
                field: field.name(),
                expected: len,
                got: format!("got the integer {v}"),
            }),
        }
    }

    /// The field.
    pub fn field(&self) -> SimField {
        self.field
    }

    /// The value as `--sim-set` writes it (hex bytes, or `0x`-hex).
    pub fn value_text(&self) -> String {
        match &self.value {
            Value::Bytes(b) => hex::encode(b),
            Value::Int(v) => format!("{v:#x}"),
        }
    }

    fn int_value(&self) -> u64 {
        match self.value {
            Value::Int(v) => v,
            Value::Bytes(_) => 0,
        }
    }

    fn copy_to(&self, dst: &mut [u8]) {
        if let Value::Bytes(b) = &self.value {
            if b.len() == dst.len() {
                dst.copy_from_slice(b);
            }
        }
    }

    /// Applies this override to a TD report; a field of the SNP report is
    /// left alone (checked earlier by [`SimOverrides::check_tee`]).
    fn apply_td(&self, td: &mut TdReport10) {
        let int = self.int_value();
        match self.field {
            SimField::TeeTcbSvn => self.copy_to(&mut td.tee_tcb_svn),
            SimField::MrSeam => self.copy_to(&mut td.mrseam),
            SimField::MrSignerSeam => self.copy_to(&mut td.mrsignerseam),
            SimField::SeamAttributes => td.seam_attributes = int.to_le_bytes(),
            SimField::TdAttributes => td.td_attributes = int.to_le_bytes(),
            SimField::Xfam => td.xfam = int.to_le_bytes(),
            SimField::Mrtd => self.copy_to(&mut td.mrtd),
            SimField::MrConfigId => self.copy_to(&mut td.mrconfigid),
            SimField::MrOwner => self.copy_to(&mut td.mrowner),
            SimField::MrOwnerConfig => self.copy_to(&mut td.mrownerconfig),
            SimField::Rtmr0 => self.copy_to(&mut td.rtmr[0]),
            SimField::Rtmr1 => self.copy_to(&mut td.rtmr[1]),
            SimField::Rtmr2 => self.copy_to(&mut td.rtmr[2]),
            SimField::Rtmr3 => self.copy_to(&mut td.rtmr[3]),
            SimField::ReportData => self.copy_to(&mut td.report_data),
            _ => {}
        }
    }

    /// Applies this override to an SNP report; a TDX field is left alone.
    fn apply_snp(&self, r: &mut SnpReport) {
        let int = self.int_value();
        let tcb = || TcbVersion::from_raw(int, TcbLayout::MilanGenoa);
        match self.field {
            SimField::ReportData => self.copy_to(&mut r.report_data),
            SimField::GuestSvn => r.guest_svn = int as u32,
            SimField::Policy => r.policy = GuestPolicy(int),
            SimField::FamilyId => self.copy_to(&mut r.family_id),
            SimField::ImageId => self.copy_to(&mut r.image_id),
            SimField::Vmpl => r.vmpl = int as u32,
            SimField::CurrentTcb => r.current_tcb = tcb(),
            SimField::PlatformInfo => r.platform_info = PlatformInfo(int),
            SimField::KeyInfo => r.key_info = KeyInfo(int as u32),
            SimField::Measurement => self.copy_to(&mut r.measurement),
            SimField::HostData => self.copy_to(&mut r.host_data),
            SimField::IdKeyDigest => self.copy_to(&mut r.id_key_digest),
            SimField::AuthorKeyDigest => self.copy_to(&mut r.author_key_digest),
            SimField::ReportId => self.copy_to(&mut r.report_id),
            SimField::ReportIdMa => self.copy_to(&mut r.report_id_ma),
            SimField::ReportedTcb => r.reported_tcb = tcb(),
            SimField::CommittedTcb => r.committed_tcb = tcb(),
            SimField::LaunchTcb => r.launch_tcb = tcb(),
            _ => {}
        }
    }
}

impl std::fmt::Display for SimOverride {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}={}", self.field.name(), self.value_text())
    }
}

impl std::str::FromStr for SimOverride {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        SimOverride::parse_assignment(s)
    }
}

fn parse_bytes(field: SimField, len: usize, v: &str) -> Result<Vec<u8>> {
    let wrong = |got: String| Error::WrongLength {
        field: field.name(),
        expected: len,
        got,
    };
    if v.starts_with("0x") || v.starts_with("0X") {
        return Err(wrong("got a 0x prefix (byte fields are plain hex)".into()));
    }
    if !v.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(wrong(format!("got non-hex text {v:?}")));
    }
    if v.len() != len * 2 {
        return Err(wrong(format!("got {} hex digits", v.len())));
    }
    hex::decode(v).map_err(|e| wrong(format!("got {e}")))
}

fn parse_int(field: SimField, bits: u32, v: &str) -> Result<u64> {
    let bad = || Error::BadInteger {
        field: field.name(),
        bits,
        value: v.to_owned(),
    };
    let n = if let Some(h) = v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        if h.is_empty() || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        u64::from_str_radix(h, 16).map_err(|_| bad())?
    } else {
        // Leading zeros look like a report-order hex dump: refuse them.
        if v.is_empty()
            || !v.bytes().all(|b| b.is_ascii_digit())
            || (v.len() > 1 && v.starts_with('0'))
        {
            return Err(bad());
        }
        v.parse::<u64>().map_err(|_| bad())?
    };
    if bits < 64 && n >> bits != 0 {
        return Err(bad());
    }
    Ok(n)
}

/// The `--sim-set` overrides of one simulated node, applied in order (a
/// later value for the same field wins).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SimOverrides {
    list: Vec<SimOverride>,
}

impl SimOverrides {
    /// No overrides.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses each `FIELD=VALUE`, in order.
    pub fn parse_all<S: AsRef<str>>(assignments: &[S]) -> Result<Self> {
        Ok(SimOverrides {
            list: assignments
                .iter()
                .map(|a| SimOverride::parse_assignment(a.as_ref()))
                .collect::<Result<_>>()?,
        })
    }

    /// Adds one override (after the others).
    pub fn push(&mut self, o: SimOverride) {
        self.list.push(o);
    }

    /// The overrides, in order.
    pub fn iter(&self) -> impl Iterator<Item = &SimOverride> {
        self.list.iter()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Refuses a field the `tee` report does not have.
    pub fn check_tee(&self, tee: Tee) -> Result<()> {
        for o in &self.list {
            if let Some(field_tee) = o.field.tee() {
                if field_tee != tee {
                    return Err(Error::WrongTee {
                        field: o.field.name(),
                        field_tee,
                        tee,
                    });
                }
            }
        }
        Ok(())
    }

    /// The last value set for `field`, as an integer.
    pub fn int(&self, field: SimField) -> Option<u64> {
        self.list
            .iter()
            .rev()
            .find(|o| o.field == field)
            .and_then(|o| match o.value {
                Value::Int(v) => Some(v),
                Value::Bytes(_) => None,
            })
    }

    /// The last value set for `field`, as bytes.
    pub fn bytes(&self, field: SimField) -> Option<&[u8]> {
        self.list
            .iter()
            .rev()
            .find(|o| o.field == field)
            .and_then(|o| match &o.value {
                Value::Bytes(b) => Some(b.as_slice()),
                Value::Int(_) => None,
            })
    }

    /// Applies every TDX override to `td`, in order.
    pub fn apply_td(&self, td: &mut TdReport10) {
        for o in &self.list {
            o.apply_td(td);
        }
    }

    /// Applies every SNP override to `report`, in order (the caller signs
    /// it afterwards).
    pub fn apply_snp(&self, report: &mut SnpReport) {
        for o in &self.list {
            o.apply_snp(report);
        }
    }
}

impl std::fmt::Display for SimOverrides {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.list.iter().map(ToString::to_string).collect();
        f.write_str(&parts.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn msg(s: &str) -> String {
        SimOverride::parse_assignment(s).unwrap_err().to_string()
    }

    #[test]
    fn every_field_has_a_unique_name_and_parses_a_value_of_its_kind() {
        let mut names = std::collections::BTreeSet::new();
        for &f in SimField::ALL {
            assert!(names.insert(f.name()), "duplicate {}", f.name());
            assert_eq!(SimField::from_name(f.name()), Some(f));
            let text = match f.kind() {
                FieldKind::Bytes(n) => format!("{}={}", f.name(), "ab".repeat(n)),
                FieldKind::Int(_) => format!("{}=0x11", f.name()),
            };
            let o = SimOverride::parse_assignment(&text).unwrap();
            assert_eq!(o.field(), f);
            assert_eq!(SimOverride::parse_assignment(&o.to_string()).unwrap(), o);
        }
        assert_eq!(
            SimField::from_name("TD-Attributes"),
            Some(SimField::TdAttributes)
        );
    }

    #[test]
    fn integers_are_decimal_or_0x_hex_and_fit() {
        let v = |s: &str| SimOverride::parse_assignment(s).unwrap().int_value();
        assert_eq!(v("vmpl=1"), 1);
        assert_eq!(v("vmpl=0"), 0);
        assert_eq!(v("policy=0xb0000"), 0xb_0000);
        assert_eq!(v("td_attributes=0X10000001"), 0x1000_0001);
        assert_eq!(v("xfam=18446744073709551615"), u64::MAX);
        for bad in [
            "vmpl=4294967296",
            "vmpl=0x100000000",
            "vmpl=-1",
            "vmpl=",
            "vmpl=0x",
            "vmpl=one",
            "xfam=18446744073709551616",
        ] {
            let e = msg(bad);
            assert!(e.contains("-bit unsigned integer"), "{bad}: {e}");
        }
        // A report-order dump is not silently read as decimal.
        let e = msg("td_attributes=0000001000000000");
        assert!(
            e.contains("td_attributes") && e.contains("leading zeros"),
            "{e}"
        );
        assert!(msg("vmpl=4294967296").contains("32-bit"));
    }

    #[test]
    fn byte_fields_name_field_and_expected_length() {
        let e = msg("rtmr0=abcd");
        assert_eq!(
            e,
            "--sim-set rtmr0: expected 48 bytes (96 hex digits, report byte order, no 0x), got 4 hex digits"
        );
        let e = msg(&format!("host_data=0x{}", "00".repeat(32)));
        assert!(
            e.contains("host_data") && e.contains("32 bytes") && e.contains("0x"),
            "{e}"
        );
        let e = msg(&format!("mrtd={}zz", "00".repeat(47)));
        assert!(e.contains("non-hex"), "{e}");
        let o =
            SimOverride::parse_assignment(&format!(" measurement = {} ", "0A".repeat(48))).unwrap();
        assert_eq!(o.value_text(), "0a".repeat(48));
    }

    #[test]
    fn unknown_fields_and_missing_equals_are_named() {
        let e = msg("rtmr4=00");
        assert!(
            e.contains("\"rtmr4\"") && e.contains("rtmr3") && e.contains("vmpl"),
            "{e}"
        );
        let e = msg("vmpl");
        assert!(e.contains("FIELD=VALUE") && e.contains("vmpl"), "{e}");
        assert!(msg("chip_id=00").contains("unknown field"));
    }

    #[test]
    fn fields_of_the_other_tee_are_refused() {
        let o = SimOverrides::parse_all(&[
            "vmpl=1".to_owned(),
            format!("report_data={}", "00".repeat(64)),
        ])
        .unwrap();
        o.check_tee(Tee::Snp).unwrap();
        let e = o.check_tee(Tee::Tdx).unwrap_err().to_string();
        assert_eq!(
            e,
            "--sim-set vmpl: a field of the snp report, but this simulator plays tdx"
        );
        let o = SimOverrides::parse_all(&["td_attributes=1"]).unwrap();
        assert!(o.check_tee(Tee::Snp).is_err());
    }

    #[test]
    fn later_values_win_and_apply_in_order() {
        let o = SimOverrides::parse_all(&[
            format!("rtmr3={}", "11".repeat(48)),
            "td_attributes=0x10000010".into(),
            format!("rtmr3={}", "22".repeat(48)),
        ])
        .unwrap();
        assert_eq!(o.bytes(SimField::Rtmr3), Some(&[0x22u8; 48][..]));
        assert_eq!(o.int(SimField::TdAttributes), Some(0x1000_0010));
        let mut td = TdReport10 {
            tee_tcb_svn: [0; 16],
            mrseam: [0; 48],
            mrsignerseam: [0; 48],
            seam_attributes: [0; 8],
            td_attributes: [0; 8],
            xfam: [0; 8],
            mrtd: [0; 48],
            mrconfigid: [0; 48],
            mrowner: [0; 48],
            mrownerconfig: [0; 48],
            rtmr: [[0; 48]; 4],
            report_data: [0; 64],
        };
        o.apply_td(&mut td);
        assert_eq!(td.rtmr[3], [0x22; 48]);
        assert_eq!(td.td_attributes, [0x10, 0, 0, 0x10, 0, 0, 0, 0]);
    }

    proptest! {
        #[test]
        fn parsing_never_panics(s in ".{0,200}") {
            let _ = SimOverride::parse_assignment(&s);
        }

        #[test]
        fn parsing_known_fields_with_any_value_never_panics(
            i in 0usize..64,
            v in "(0x)?[0-9a-fA-F]{0,140}|[0-9]{0,30}|.{0,40}",
        ) {
            let f = SimField::ALL[i % SimField::ALL.len()];
            if let Ok(o) = SimOverride::parse_value(f, &v) {
                // What parses round-trips through its text form.
                prop_assert_eq!(SimOverride::parse_value(f, &o.value_text()).unwrap(), o);
            }
        }
    }
}
