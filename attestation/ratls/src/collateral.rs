//! The collateral a certificate (or fresh evidence) may carry for clients
//! that have none of their own.
//!
//! ```text
//! RaTlsCollateral ::= CHOICE {
//!   tdxQuoteCollateralV3Json [0] IMPLICIT UTF8String,  -- as TdxCollateral::to_json writes it
//!   snpCertificatesPem       [1] IMPLICIT UTF8String   -- VCEK/VLEK, then ASK/ASVK and ARK, PEM
//! }
//! ```
//!
//! It is untrusted: every verification re-checks all of it against the
//! verifier's anchors, and a verifier configured with its own collateral
//! ignores it. Simulated TDX collateral carries the simulated root, which
//! only ever yields a `Simulated` trust anchor.

use base64::Engine;
use chrysalis_attestation::snp::SnpCertificates;
use chrysalis_attestation::tdx::TdxCollateral;
use chrysalis_attestation::verifier::Collateral;
use chrysalis_attestation::Tee;
use yasna::Tag;

use crate::error::{Error, Result};

/// Largest collateral accepted, in bytes (real TDX collateral is ~15–25 KiB).
pub const MAX_COLLATERAL_LEN: usize = 256 * 1024;

/// Collateral as carried in a certificate extension or fresh evidence:
/// text, parsed by the attestation core only when it is used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmbeddedCollateral {
    /// TDX: `QuoteCollateralV3` JSON (byte fields hex), optionally with the
    /// simulated root (`chrysalis_simulated_root_ca`).
    TdxJson(String),
    /// SNP: the VCEK or VLEK certificate and optionally the ASK/ASVK and
    /// ARK, PEM.
    SnpPem(String),
}

impl EmbeddedCollateral {
    /// From parsed TDX collateral.
    pub fn from_tdx(c: &TdxCollateral) -> Self {
        EmbeddedCollateral::TdxJson(c.to_json())
    }

    /// From SNP certificates (written as PEM, VCEK first).
    pub fn from_snp(c: &SnpCertificates) -> Self {
        let mut pem = pem_block(&c.vek);
        for der in [&c.ask, &c.ark].into_iter().flatten() {
            pem.push_str(&pem_block(der));
        }
        EmbeddedCollateral::SnpPem(pem)
    }

    /// From the attestation core's collateral.
    pub fn from_collateral(c: &Collateral) -> Self {
        match c {
            Collateral::Tdx(t) => Self::from_tdx(t),
            Collateral::Snp(s) => Self::from_snp(s),
        }
    }

    /// Which TEE the collateral is for.
    pub fn tee(&self) -> Tee {
        match self {
            EmbeddedCollateral::TdxJson(_) => Tee::Tdx,
            EmbeddedCollateral::SnpPem(_) => Tee::Snp,
        }
    }

    /// Parses it for the verifier. Nothing is trusted by parsing.
    pub fn to_collateral(&self) -> Result<Collateral> {
        match self {
            EmbeddedCollateral::TdxJson(j) => TdxCollateral::from_json(j)
                .map(Collateral::Tdx)
                .map_err(|e| Error::Collateral(format!("embedded TDX collateral: {e}"))),
            EmbeddedCollateral::SnpPem(p) => {
                SnpCertificates::from_files_bytes(vec![p.as_bytes().to_vec()])
                    .map(Collateral::Snp)
                    .map_err(|e| Error::Collateral(format!("embedded SNP certificates: {e}")))
            }
        }
    }

    /// DER `RaTlsCollateral`.
    pub fn to_der(&self) -> Result<Vec<u8>> {
        let (tag, text) = self.tagged();
        if text.len() > MAX_COLLATERAL_LEN {
            return Err(Error::Collateral(format!(
                "{} bytes is more than the {MAX_COLLATERAL_LEN} allowed",
                text.len()
            )));
        }
        Ok(yasna::construct_der(|w| {
            w.write_tagged_implicit(Tag::context(tag), |w| w.write_utf8_string(text))
        }))
    }

    fn tagged(&self) -> (u64, &str) {
        match self {
            EmbeddedCollateral::TdxJson(t) => (0, t),
            EmbeddedCollateral::SnpPem(t) => (1, t),
        }
    }

    /// Parses DER `RaTlsCollateral`.
    pub fn from_der(der: &[u8]) -> Result<Self> {
        if der.len() > MAX_COLLATERAL_LEN + 8 {
            return Err(Error::Collateral(format!(
                "{} bytes is more than the {MAX_COLLATERAL_LEN} allowed",
                der.len()
            )));
        }
        yasna::parse_der(der, |r| {
            let tag = r.lookahead_tag()?;
            if tag == Tag::context(0) {
                r.read_tagged_implicit(Tag::context(0), |r| r.read_utf8string())
                    .map(EmbeddedCollateral::TdxJson)
            } else if tag == Tag::context(1) {
                r.read_tagged_implicit(Tag::context(1), |r| r.read_utf8string())
                    .map(EmbeddedCollateral::SnpPem)
            } else {
                Err(yasna::ASN1Error::new(yasna::ASN1ErrorKind::Invalid))
            }
        })
        .map_err(|e| Error::Collateral(format!("not DER RaTlsCollateral: {e}")))
    }
}

/// JSON form (fresh evidence): `{"tdx": <QuoteCollateralV3 object>}` or
/// `{"snp_pem": "<PEM>"}`.
impl serde::Serialize for EmbeddedCollateral {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::{Error as _, SerializeMap};
        let mut m = s.serialize_map(Some(1))?;
        match self {
            EmbeddedCollateral::TdxJson(j) => {
                let raw = serde_json::value::RawValue::from_string(j.clone())
                    .map_err(|e| S::Error::custom(format!("TDX collateral is not JSON: {e}")))?;
                m.serialize_entry("tdx", &raw)?;
            }
            EmbeddedCollateral::SnpPem(p) => m.serialize_entry("snp_pem", p)?,
        }
        m.end()
    }
}

impl<'de> serde::Deserialize<'de> for EmbeddedCollateral {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "snake_case", deny_unknown_fields)]
        enum Wire {
            Tdx(Box<serde_json::value::RawValue>),
            SnpPem(String),
        }
        Ok(match Wire::deserialize(d)? {
            Wire::Tdx(raw) => EmbeddedCollateral::TdxJson(raw.get().to_string()),
            Wire::SnpPem(p) => EmbeddedCollateral::SnpPem(p),
        })
    }
}

fn pem_block(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        // base64 output is ASCII, so every chunk is valid UTF-8.
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn der_and_json_round_trip() {
        for c in [
            EmbeddedCollateral::TdxJson("{\"a\": [1, 2]}".into()),
            EmbeddedCollateral::SnpPem("-----BEGIN CERTIFICATE-----\nAA==\n".into()),
        ] {
            assert_eq!(
                EmbeddedCollateral::from_der(&c.to_der().unwrap()).unwrap(),
                c
            );
            let j = serde_json::to_string(&c).unwrap();
            let back: EmbeddedCollateral = serde_json::from_str(&j).unwrap();
            assert_eq!(back, c);
        }
        assert!(EmbeddedCollateral::from_der(&[0x82, 0x00]).is_err());
    }

    #[test]
    fn snp_pem_round_trips_through_the_core() {
        let auth = chrysalis_sim::snp::SimSnpAuthority::generate().unwrap();
        let certs = auth.certificates();
        let emb = EmbeddedCollateral::from_snp(&certs);
        match emb.to_collateral().unwrap() {
            Collateral::Snp(back) => assert_eq!(back, certs),
            Collateral::Tdx(_) => panic!("SNP collateral parsed as TDX"),
        }
    }

    proptest! {
        #[test]
        fn from_der_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = EmbeddedCollateral::from_der(&bytes);
        }
    }
}
