//! Fresh evidence on demand: `GET /attestation?nonce=HEX` on the agent's
//! RA-TLS server answers with evidence created now, bound to the caller's
//! nonce *and* to the key of the certificate the connection uses. A client
//! that distrusts a day-old certificate gets proof that the same key is
//! still held by the same TEE.
//!
//! JSON: `{"evidence": hex, "claims": hex, "collateral": {"tdx": {…}} |
//! {"snp_pem": "…"} | null, "tee": "tdx" | "snp"}`; `report_data` of the
//! evidence is SHA-512 of the claims DER, whose purpose is
//! `freshEvidence`.

use chrysalis_attestation::provider::EvidenceProvider;
use chrysalis_attestation::Tee;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::claims::{Claims, ClaimsPurpose, MAX_NONCE_LEN};
use crate::collateral::EmbeddedCollateral;
use crate::error::{Error, Result};
use crate::identity::{evidence_for, whole_seconds, RaTlsIdentity};
use crate::peer::VerifiedPeer;
use crate::verify::{check_tee, verify_fresh_parts, VerifierConfig};

/// Largest fresh-evidence JSON accepted, in bytes.
pub const MAX_FRESH_JSON_LEN: usize = 1 << 20;

/// Evidence answering one nonce.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FreshEvidence {
    /// The raw evidence (TDX quote / SNP report), hex in JSON.
    #[serde(with = "hex::serde")]
    pub evidence: Vec<u8>,
    /// DER `RaTlsClaims` (purpose `freshEvidence`), hex in JSON.
    #[serde(with = "hex::serde")]
    pub claims: Vec<u8>,
    /// Collateral for clients without their own (untrusted).
    pub collateral: Option<EmbeddedCollateral>,
    /// The TEE.
    pub tee: Tee,
    /// The node's verified GPU evidence bundle (chrysalis-gpu's JSON),
    /// exactly the bytes whose SHA-384 the certificate's claims carry as
    /// `gpuEvidenceDigest` (kept as a string so the bytes survive JSON);
    /// see [`FreshEvidence::check_gpu_evidence`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_evidence: Option<String>,
    /// TDX: the runtime events the agent extended into RTMR3, in order
    /// (name and payload). Unsigned: a client replays it against the RTMR3
    /// of `evidence` (verified) and refuses a log that does not replay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_events: Option<Vec<chrysalis_attestation::runtime_events::LoggedEvent>>,
}

impl FreshEvidence {
    /// The JSON answer.
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string(self).map_err(|e| Error::FreshEvidence(e.to_string()))
    }

    /// Checks that the GPU evidence served with this answer is the one the
    /// certificate committed to: present with SHA-384 equal to
    /// `cert_gpu_digest` when the certificate carries one, absent when it
    /// does not.
    pub fn check_gpu_evidence(&self, cert_gpu_digest: Option<&[u8; 48]>) -> Result<()> {
        use sha2::{Digest, Sha384};
        match (cert_gpu_digest, &self.gpu_evidence) {
            (None, None) => Ok(()),
            (Some(_), None) => Err(Error::ClaimsMismatch(
                "the certificate commits to GPU evidence but the answer carries none".into(),
            )),
            (None, Some(_)) => Err(Error::ClaimsMismatch(
                "the answer carries GPU evidence the certificate does not commit to".into(),
            )),
            (Some(want), Some(bundle)) => {
                let got: [u8; 48] = Sha384::digest(bundle.as_bytes()).into();
                if &got == want {
                    Ok(())
                } else {
                    Err(Error::ClaimsMismatch(format!(
                        "GPU evidence SHA-384 is {} but the certificate commits to {}",
                        hex::encode(got),
                        hex::encode(want)
                    )))
                }
            }
        }
    }

    /// Parses the JSON answer (bounded size, no unknown fields).
    pub fn from_json(text: &str) -> Result<Self> {
        if text.len() > MAX_FRESH_JSON_LEN {
            return Err(Error::FreshEvidence(format!(
                "{} bytes is more than the {MAX_FRESH_JSON_LEN} accepted",
                text.len()
            )));
        }
        serde_json::from_str(text).map_err(|e| {
            Error::FreshEvidence(format!("line {}, column {}: {e}", e.line(), e.column()))
        })
    }
}

/// Creates fresh evidence now for `nonce` (1..=64 bytes), bound to the key
/// of `identity`'s certificate.
pub fn fresh_evidence(
    provider: &dyn EvidenceProvider,
    identity: &RaTlsIdentity,
    nonce: &[u8],
) -> Result<FreshEvidence> {
    fresh_evidence_at(provider, identity, nonce, OffsetDateTime::now_utc())
}

/// [`fresh_evidence`] with an explicit creation time.
pub fn fresh_evidence_at(
    provider: &dyn EvidenceProvider,
    identity: &RaTlsIdentity,
    nonce: &[u8],
    now: OffsetDateTime,
) -> Result<FreshEvidence> {
    check_nonce(nonce)?;
    let claims = Claims {
        purpose: ClaimsPurpose::FreshEvidence,
        tee: provider.tee(),
        spki_der: identity.spki_der().to_vec(),
        created_at: whole_seconds(now)?,
        nonce: Some(nonce.to_vec()),
        image: identity.claims().and_then(|c| c.image.clone()),
        gpu_evidence_digest: None,
    };
    let claims_der = claims.to_der()?;
    let evidence = evidence_for(provider, &claims_der)?;
    Ok(FreshEvidence {
        evidence,
        claims: claims_der,
        collateral: identity.collateral().cloned(),
        tee: provider.tee(),
        gpu_evidence: None,
        runtime_events: None,
    })
}

/// Verifies fresh evidence: bound to its claims, the claims answer `nonce`
/// and name `expected_spki` (the DER SubjectPublicKeyInfo of the
/// certificate of the connection it came over), the GPU evidence served
/// with it is the one that certificate commits to (`cert_gpu_digest`, see
/// [`FreshEvidence::check_gpu_evidence`]), the evidence verifies, the
/// policy accepts.
pub fn verify_fresh(
    fresh: &FreshEvidence,
    expected_spki: &[u8],
    cert_gpu_digest: Option<&[u8; 48]>,
    nonce: &[u8],
    config: &VerifierConfig,
    now: OffsetDateTime,
) -> Result<VerifiedPeer> {
    check_nonce(nonce)?;
    fresh.check_gpu_evidence(cert_gpu_digest)?;
    let evidence = crate::cert::decode_evidence(&fresh.evidence, false)?;
    let claims = Claims::from_der(&fresh.claims)?;
    let expected = Claims::report_data(&fresh.claims);
    let actual = evidence.evidence.report_data();
    if actual != expected {
        return Err(Error::EvidenceNotBound {
            report_data: hex::encode(actual),
            expected: hex::encode(expected),
        });
    }
    if claims.purpose != ClaimsPurpose::FreshEvidence {
        return Err(Error::ClaimsMismatch(format!(
            "claims purpose is {:?}, fresh evidence needs FreshEvidence",
            claims.purpose
        )));
    }
    if claims.nonce.as_deref() != Some(nonce) {
        return Err(Error::NonceMismatch {
            expected: hex::encode(nonce),
            actual: claims.nonce.as_deref().map(hex::encode).unwrap_or_default(),
        });
    }
    if claims.spki_der != expected_spki {
        return Err(Error::KeyMismatch(format!(
            "claims name …{}, the certificate has …{}",
            hex::encode(&claims.spki_der[claims.spki_der.len().saturating_sub(16)..]),
            hex::encode(&expected_spki[expected_spki.len().saturating_sub(16)..])
        )));
    }
    check_tee(&claims, evidence.evidence.tee())?;
    if fresh.tee != claims.tee {
        return Err(Error::ClaimsMismatch(format!(
            "the answer says TEE {} but the claims say {}",
            fresh.tee, claims.tee
        )));
    }
    verify_fresh_parts(&evidence, claims, fresh.collateral.as_ref(), config, now)
}

fn check_nonce(nonce: &[u8]) -> Result<()> {
    if nonce.is_empty() || nonce.len() > MAX_NONCE_LEN {
        return Err(Error::InvalidNonce(format!(
            "{} bytes; 1..={MAX_NONCE_LEN} allowed",
            nonce.len()
        )));
    }
    Ok(())
}

/// Parses the query string of `GET /attestation?nonce=HEX` (without the
/// `?`): exactly one `nonce` parameter, hex (either case), 1..=64 bytes.
/// Other parameters are ignored.
pub fn parse_nonce_query(query: &str) -> Result<Vec<u8>> {
    // Bound the work on hostile input before splitting.
    if query.len() > 4096 {
        return Err(Error::InvalidNonce(format!(
            "query string is {} bytes; at most 4096 accepted",
            query.len()
        )));
    }
    let mut found: Option<&str> = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == "nonce" {
            if found.is_some() {
                return Err(Error::InvalidNonce("`nonce` given more than once".into()));
            }
            found = Some(v);
        }
    }
    let hex_text = found.ok_or_else(|| Error::InvalidNonce("no `nonce` parameter".into()))?;
    if hex_text.len() > 2 * MAX_NONCE_LEN {
        return Err(Error::InvalidNonce(format!(
            "{} hex digits; at most {} ({MAX_NONCE_LEN} bytes)",
            hex_text.len(),
            2 * MAX_NONCE_LEN
        )));
    }
    let nonce = hex::decode(hex_text)
        .map_err(|e| Error::InvalidNonce(format!("`nonce` is not hex: {e}")))?;
    check_nonce(&nonce)?;
    Ok(nonce)
}

#[cfg(test)]
mod tests {

    #[test]
    fn gpu_evidence_must_match_the_certificate_commitment() {
        use sha2::{Digest, Sha384};
        let mut f = FreshEvidence {
            evidence: vec![],
            claims: vec![],
            collateral: None,
            tee: Tee::Tdx,
            gpu_evidence: None,
            runtime_events: None,
        };
        let bundle = r#"{"gpus":[]}"#.to_string();
        let digest: [u8; 48] = Sha384::digest(bundle.as_bytes()).into();
        assert!(f.check_gpu_evidence(None).is_ok());
        assert!(f.check_gpu_evidence(Some(&digest)).is_err());
        f.gpu_evidence = Some(bundle.clone());
        assert!(f.check_gpu_evidence(None).is_err());
        assert!(f.check_gpu_evidence(Some(&digest)).is_ok());
        f.gpu_evidence = Some(bundle + " ");
        let e = f.check_gpu_evidence(Some(&digest)).unwrap_err();
        assert!(e.to_string().contains("SHA-384"), "{e}");
        // The field survives a JSON round trip byte for byte.
        let j = f.to_json().unwrap();
        assert_eq!(FreshEvidence::from_json(&j).unwrap(), f);
    }

    use super::*;
    use proptest::prelude::*;

    #[test]
    fn query_parsing() {
        assert_eq!(parse_nonce_query("nonce=0a0B").unwrap(), vec![0x0a, 0x0b]);
        assert_eq!(parse_nonce_query("x=1&nonce=ff&y").unwrap(), vec![0xff]);
        for (q, why) in [
            ("", "no `nonce`"),
            ("nonce=", "0 bytes"),
            ("nonce=abc", "not hex"),
            ("nonce=zz", "not hex"),
            ("nonce=01&nonce=02", "more than once"),
        ] {
            let e = parse_nonce_query(q).unwrap_err();
            assert!(matches!(e, Error::InvalidNonce(_)), "{q}: {e:?}");
            assert!(e.to_string().contains(why), "{q}: {e}");
        }
        let ok64 = format!("nonce={}", "ab".repeat(64));
        assert_eq!(parse_nonce_query(&ok64).unwrap().len(), 64);
        let e = parse_nonce_query(&format!("nonce={}", "ab".repeat(65))).unwrap_err();
        assert!(e.to_string().contains("at most 128"), "{e}");
    }

    proptest! {
        #[test]
        fn query_parser_never_panics(q in "[a-z0-9=&%+]{0,300}") {
            let _ = parse_nonce_query(&q);
        }
        #[test]
        fn json_parser_never_panics(q in "[{}\":,a-z0-9 \\[\\]]{0,300}") {
            let _ = FreshEvidence::from_json(&q);
        }
    }
}
