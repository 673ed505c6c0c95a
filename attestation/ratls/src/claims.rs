//! The RA-TLS claims: what the TEE asserts about the certificate, bound into
//! the evidence as `report_data = SHA-512(DER of the claims)`.
//!
//! ```text
//! RaTlsClaims ::= SEQUENCE {
//!   version              INTEGER { v1(1) },
//!   purpose              ENUMERATED { certificate(1), freshEvidence(2) },
//!   tee                  ENUMERATED { tdx(1), snp(2) },
//!   subjectPublicKeyInfo SubjectPublicKeyInfo,   -- byte-identical to the certificate's
//!   createdAt            INTEGER (0..MAX),        -- seconds since 1970-01-01T00:00:00Z
//!   nonce                [0] IMPLICIT OCTET STRING (SIZE(1..64)) OPTIONAL,
//!   image                [1] IMPLICIT ImageIdentifiers OPTIONAL,
//!   gpuEvidenceDigest    [2] IMPLICIT OCTET STRING (SIZE(48)) OPTIONAL
//! }
//! ImageIdentifiers ::= SEQUENCE {
//!   release              [0] IMPLICIT UTF8String (SIZE(1..256)) OPTIONAL,
//!   measurementsSha256   [1] IMPLICIT OCTET STRING (SIZE(32)) OPTIONAL
//! }
//! ```
//!
//! Encoded and decoded with yasna in DER mode: non-minimal lengths, trailing
//! bytes and unknown versions are rejected.

use chrysalis_attestation::Tee;
use serde::Serialize;
use sha2::{Digest, Sha512};
use time::OffsetDateTime;
use yasna::tags::TAG_SEQUENCE;
use yasna::{ASN1Error, ASN1ErrorKind, Tag};

use crate::error::{Error, Result};

/// The only claims version this crate writes and reads.
pub const CLAIMS_VERSION: u64 = 1;
/// Largest nonce accepted, in bytes.
pub const MAX_NONCE_LEN: usize = 64;
/// Largest image release name accepted, in bytes of UTF-8.
pub const MAX_RELEASE_LEN: usize = 256;
/// Largest SubjectPublicKeyInfo accepted, in bytes (an RSA-8192 SPKI is ~1.1 KiB).
pub const MAX_SPKI_LEN: usize = 2048;

/// What the claims are for; a verifier checks it so that claims made for
/// one use cannot be presented for the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClaimsPurpose {
    /// Claims carried by an RA-TLS certificate.
    Certificate,
    /// Claims of fresh evidence answering a nonce (`GET /attestation`).
    FreshEvidence,
}

impl ClaimsPurpose {
    fn code(self) -> i64 {
        match self {
            ClaimsPurpose::Certificate => 1,
            ClaimsPurpose::FreshEvidence => 2,
        }
    }
    fn from_code(c: i64) -> Option<Self> {
        match c {
            1 => Some(ClaimsPurpose::Certificate),
            2 => Some(ClaimsPurpose::FreshEvidence),
            _ => None,
        }
    }
}

fn tee_code(t: Tee) -> i64 {
    match t {
        Tee::Tdx => 1,
        Tee::Snp => 2,
    }
}

fn tee_from_code(c: i64) -> Option<Tee> {
    match c {
        1 => Some(Tee::Tdx),
        2 => Some(Tee::Snp),
        _ => None,
    }
}

/// Identifiers of the image the TEE runs, for humans and policies that
/// pin releases; the measurements themselves are in the evidence.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ImageId {
    /// Image release name, e.g. `chrysalis-0.1.0` (1..=256 bytes of UTF-8).
    pub release: Option<String>,
    /// SHA-256 of the image's `measurements.json`.
    #[serde(serialize_with = "opt_hex")]
    pub measurements_sha256: Option<[u8; 32]>,
}

/// Decoded RA-TLS claims (see the module documentation for the DER).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Claims {
    /// Certificate or fresh evidence.
    pub purpose: ClaimsPurpose,
    /// The TEE that produced the evidence.
    pub tee: Tee,
    /// DER SubjectPublicKeyInfo of the certificate's key.
    #[serde(with = "hex::serde")]
    pub spki_der: Vec<u8>,
    /// When the evidence was created (whole seconds, UTC).
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Caller's nonce (fresh evidence), 1..=64 bytes.
    #[serde(serialize_with = "opt_hex")]
    pub nonce: Option<Vec<u8>>,
    /// Image identifiers.
    pub image: Option<ImageId>,
    /// SHA-384 of the GPU evidence, once GPU attestation fills it.
    #[serde(serialize_with = "opt_hex")]
    pub gpu_evidence_digest: Option<[u8; 48]>,
}

fn opt_hex<S: serde::Serializer, T: AsRef<[u8]>>(v: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(b) => s.serialize_str(&hex::encode(b.as_ref())),
        None => s.serialize_none(),
    }
}

impl Claims {
    /// DER encoding (what SHA-512 is taken over).
    ///
    /// Fails when a field is out of its range (nonce length, release
    /// length, time before 1970) so that nothing is written that
    /// [`Claims::from_der`] would reject.
    pub fn to_der(&self) -> Result<Vec<u8>> {
        self.validate()?;
        let created = u64::try_from(self.created_at.unix_timestamp())
            .map_err(|_| Error::Claims("createdAt before 1970".into()))?;
        Ok(yasna::construct_der(|w| {
            w.write_sequence(|w| {
                w.next().write_u64(CLAIMS_VERSION);
                w.next().write_enum(self.purpose.code());
                w.next().write_enum(tee_code(self.tee));
                w.next().write_der(&self.spki_der);
                w.next().write_u64(created);
                if let Some(n) = &self.nonce {
                    w.next()
                        .write_tagged_implicit(Tag::context(0), |w| w.write_bytes(n));
                }
                if let Some(img) = &self.image {
                    w.next().write_tagged_implicit(Tag::context(1), |w| {
                        w.write_sequence(|w| {
                            if let Some(r) = &img.release {
                                w.next().write_tagged_implicit(Tag::context(0), |w| {
                                    w.write_utf8_string(r)
                                });
                            }
                            if let Some(m) = &img.measurements_sha256 {
                                w.next()
                                    .write_tagged_implicit(Tag::context(1), |w| w.write_bytes(m));
                            }
                        })
                    });
                }
                if let Some(g) = &self.gpu_evidence_digest {
                    w.next()
                        .write_tagged_implicit(Tag::context(2), |w| w.write_bytes(g));
                }
            })
        }))
    }

    /// SHA-512 of the DER: the 64 bytes of report_data that bind these
    /// claims into the evidence.
    pub fn report_data(der: &[u8]) -> [u8; 64] {
        Sha512::digest(der).into()
    }

    fn validate(&self) -> Result<()> {
        if let Some(n) = &self.nonce {
            if n.is_empty() || n.len() > MAX_NONCE_LEN {
                return Err(Error::Claims(format!(
                    "nonce is {} bytes; 1..={MAX_NONCE_LEN} allowed",
                    n.len()
                )));
            }
        }
        if let Some(ImageId {
            release: Some(r), ..
        }) = &self.image
        {
            if r.is_empty() || r.len() > MAX_RELEASE_LEN {
                return Err(Error::Claims(format!(
                    "image release name is {} bytes; 1..={MAX_RELEASE_LEN} allowed",
                    r.len()
                )));
            }
        }
        if self.spki_der.is_empty() || self.spki_der.len() > MAX_SPKI_LEN {
            return Err(Error::Claims(format!(
                "subjectPublicKeyInfo is {} bytes; 1..={MAX_SPKI_LEN} allowed",
                self.spki_der.len()
            )));
        }
        Ok(())
    }

    /// Parses DER claims; rejects anything [`Claims::to_der`] would not
    /// write (other versions, out-of-range fields, trailing bytes, BER).
    pub fn from_der(der: &[u8]) -> Result<Self> {
        let claims = yasna::parse_der(der, |r| {
            r.read_sequence(|r| {
                let version = r.next().read_u64()?;
                if version != CLAIMS_VERSION {
                    return Err(ASN1Error::new(ASN1ErrorKind::Invalid));
                }
                let purpose = ClaimsPurpose::from_code(r.next().read_enum()?)
                    .ok_or_else(|| ASN1Error::new(ASN1ErrorKind::Invalid))?;
                let tee = tee_from_code(r.next().read_enum()?)
                    .ok_or_else(|| ASN1Error::new(ASN1ErrorKind::Invalid))?;
                let spki = {
                    let next = r.next();
                    if next.lookahead_tag()? != TAG_SEQUENCE {
                        return Err(ASN1Error::new(ASN1ErrorKind::Invalid));
                    }
                    next.read_der()?
                };
                let created = r.next().read_u64()?;
                let nonce = r.read_optional(|r| {
                    r.read_tagged_implicit(Tag::context(0), |r| r.read_bytes())
                })?;
                let image = r.read_optional(|r| {
                    r.read_tagged_implicit(Tag::context(1), |r| {
                        r.read_sequence(|r| {
                            let release = r.read_optional(|r| {
                                r.read_tagged_implicit(Tag::context(0), |r| r.read_utf8string())
                            })?;
                            let m = r.read_optional(|r| {
                                r.read_tagged_implicit(Tag::context(1), |r| r.read_bytes())
                            })?;
                            Ok((release, m))
                        })
                    })
                })?;
                let gpu = r.read_optional(|r| {
                    r.read_tagged_implicit(Tag::context(2), |r| r.read_bytes())
                })?;
                Ok((purpose, tee, spki, created, nonce, image, gpu))
            })
        })
        .map_err(|e| Error::Claims(format!("not DER RaTlsClaims v{CLAIMS_VERSION}: {e}")))?;
        let (purpose, tee, spki_der, created, nonce, image, gpu) = claims;

        let created_at = i64::try_from(created)
            .ok()
            .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
            .ok_or_else(|| Error::Claims(format!("createdAt {created} is out of range")))?;
        let image = image
            .map(|(release, m)| -> Result<ImageId> {
                let measurements_sha256 = m
                    .map(|m| {
                        <[u8; 32]>::try_from(m.as_slice()).map_err(|_| {
                            Error::Claims(format!(
                                "image.measurementsSha256 is {} bytes, expected 32",
                                m.len()
                            ))
                        })
                    })
                    .transpose()?;
                Ok(ImageId {
                    release,
                    measurements_sha256,
                })
            })
            .transpose()?;
        let gpu_evidence_digest = gpu
            .map(|g| {
                <[u8; 48]>::try_from(g.as_slice()).map_err(|_| {
                    Error::Claims(format!(
                        "gpuEvidenceDigest is {} bytes, expected 48 (SHA-384)",
                        g.len()
                    ))
                })
            })
            .transpose()?;
        let claims = Claims {
            purpose,
            tee,
            spki_der,
            created_at,
            nonce,
            image,
            gpu_evidence_digest,
        };
        claims.validate()?;
        // The DER writer and reader must agree byte for byte: anything that
        // decodes but would re-encode differently is not canonical.
        if claims.to_der()? != der {
            return Err(Error::Claims("not in canonical DER form".into()));
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Claims {
        Claims {
            purpose: ClaimsPurpose::Certificate,
            tee: Tee::Tdx,
            // A minimal SEQUENCE standing in for a SubjectPublicKeyInfo.
            spki_der: vec![0x30, 0x03, 0x02, 0x01, 0x05],
            created_at: OffsetDateTime::from_unix_timestamp(1_760_000_000).unwrap(),
            nonce: Some(vec![7; 32]),
            image: Some(ImageId {
                release: Some("chrysalis-0.1.0".into()),
                measurements_sha256: Some([9; 32]),
            }),
            gpu_evidence_digest: Some([0xab; 48]),
        }
    }

    #[test]
    fn round_trip_with_and_without_optionals() {
        let full = sample();
        let der = full.to_der().unwrap();
        assert_eq!(Claims::from_der(&der).unwrap(), full);
        let bare = Claims {
            nonce: None,
            image: None,
            gpu_evidence_digest: None,
            ..sample()
        };
        let der2 = bare.to_der().unwrap();
        assert!(der2.len() < der.len());
        assert_eq!(Claims::from_der(&der2).unwrap(), bare);
        let only_release = Claims {
            image: Some(ImageId {
                release: Some("r".into()),
                measurements_sha256: None,
            }),
            ..bare.clone()
        };
        assert_eq!(
            Claims::from_der(&only_release.to_der().unwrap()).unwrap(),
            only_release
        );
    }

    #[test]
    fn rejects_other_versions_trailing_bytes_and_bad_lengths() {
        let der = sample().to_der().unwrap();
        let mut trailing = der.clone();
        trailing.push(0);
        assert!(matches!(Claims::from_der(&trailing), Err(Error::Claims(_))));
        // version is the first element: 30 len 02 01 01 → make it 2.
        let mut v2 = der.clone();
        let pos = v2.windows(3).position(|w| w == [0x02, 0x01, 0x01]).unwrap();
        v2[pos + 2] = 2;
        assert!(Claims::from_der(&v2).is_err());
        let long_nonce = Claims {
            nonce: Some(vec![0; 65]),
            ..sample()
        };
        assert!(long_nonce.to_der().is_err());
        let empty_nonce = Claims {
            nonce: Some(vec![]),
            ..sample()
        };
        assert!(empty_nonce.to_der().is_err());
    }

    #[test]
    fn report_data_is_sha512_of_der() {
        let der = sample().to_der().unwrap();
        let rd = Claims::report_data(&der);
        let mut other = der.clone();
        let last = other.len() - 1;
        other[last] ^= 1;
        assert_ne!(Claims::report_data(&other), rd);
        assert_eq!(rd.to_vec(), Sha512::digest(&der).to_vec());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]
        #[test]
        fn from_der_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = Claims::from_der(&bytes);
        }
        #[test]
        fn bit_flips_never_panic_and_never_reencode(idx in 0usize..4096, bit in 0u8..8) {
            let der = sample().to_der().unwrap();
            let mut m = der.clone();
            let i = idx % m.len();
            m[i] ^= 1 << bit;
            if let Ok(c) = Claims::from_der(&m) {
                // Anything accepted is canonical: it re-encodes to the input.
                prop_assert_eq!(c.to_der().unwrap(), m);
            }
        }
    }
}
