//! Shared helpers: the NVIDIA vectors (skipped with a message when
//! ../shared is absent) and generated P-384 test PKIs.
#![allow(dead_code)]

use std::path::PathBuf;

use p384::ecdsa::signature::Signer;
use p384::ecdsa::{Signature, SigningKey};
use p384::pkcs8::DecodePrivateKey;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

/// The nonce NVIDIA's SDK samples request the sample report for
/// (`client.set_nonce(...)` in nvtrust's attestation_sdk tests; it is also
/// the nonce inside the report's GET_MEASUREMENTS request).
pub const SAMPLE_NONCE: &str = "931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb";

pub fn nonce() -> [u8; 32] {
    hex::decode(SAMPLE_NONCE).unwrap().try_into().unwrap()
}

/// A time inside the RIM signer certificates' validity (2023-06-27..2025-06-22).
pub fn at() -> time::OffsetDateTime {
    time::macros::datetime!(2024-06-01 00:00 UTC)
}

pub fn vectors() -> Option<PathBuf> {
    let d = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vectors/nvidia");
    if d.join("nvtrust_hopperAttestationReport.txt").exists() {
        Some(d)
    } else {
        eprintln!(
            "SKIP: {} is absent (the shared NVIDIA vectors are not checked out)",
            d.display()
        );
        None
    }
}

pub const REPORT: &str = "nvtrust_hopperAttestationReport.txt";
pub const CHAIN: &str = "nvtrust_hopperCertChain.txt";
pub const DRIVER_RIM: &str = "nvtrust_Driver_RIM_test_no_gpu.swidtag";
pub const VBIOS_RIM: &str = "nvtrust_1010_0200_882_96005E0001_test_no_gpu.swidtag";

pub fn read(d: &std::path::Path, f: &str) -> Vec<u8> {
    std::fs::read(d.join(f)).unwrap()
}

pub fn rims(d: &std::path::Path) -> Vec<chrysalis_gpu::Rim> {
    [DRIVER_RIM, VBIOS_RIM]
        .iter()
        .map(|f| chrysalis_gpu::Rim::parse(f, &read(d, f)).unwrap())
        .collect()
}

/// A generated three-level P-384 PKI: root → intermediate → leaf.
pub struct TestPki {
    pub root_der: Vec<u8>,
    pub inter_der: Vec<u8>,
    pub leaf_der: Vec<u8>,
    pub inter_key: SigningKey,
    pub leaf_key: SigningKey,
    /// The intermediate's parameters and PKCS#8 key, to issue more leaves.
    pub inter_params: CertificateParams,
    pub inter_pkcs8: Vec<u8>,
}

fn ca_params(cn: &str) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p
}

fn p384_key(kp: &KeyPair) -> SigningKey {
    SigningKey::from_pkcs8_der(&kp.serialize_der()).unwrap()
}

impl TestPki {
    /// `leaf_cn` should start with the chip name (e.g. `GH100 test leaf`).
    pub fn new(leaf_cn: &str) -> Self {
        let alg = &rcgen::PKCS_ECDSA_P384_SHA384;
        let root_kp = KeyPair::generate_for(alg).unwrap();
        let root =
            CertifiedIssuer::self_signed(ca_params("Test GPU Root (not NVIDIA)"), root_kp).unwrap();
        let inter_kp = KeyPair::generate_for(alg).unwrap();
        let inter_key = p384_key(&inter_kp);
        let inter_pkcs8 = inter_kp.serialize_der();
        let inter = CertifiedIssuer::signed_by(ca_params("Test GPU Intermediate"), inter_kp, &root)
            .unwrap();
        let leaf_kp = KeyPair::generate_for(alg).unwrap();
        let leaf_key = p384_key(&leaf_kp);
        let mut lp = CertificateParams::new(Vec::<String>::new()).unwrap();
        lp.distinguished_name.push(DnType::CommonName, leaf_cn);
        let leaf = lp.signed_by(&leaf_kp, &inter).unwrap();
        TestPki {
            root_der: root.der().to_vec(),
            inter_der: inter.der().to_vec(),
            leaf_der: leaf.der().to_vec(),
            inter_key,
            leaf_key,
            inter_params: ca_params("Test GPU Intermediate"),
            inter_pkcs8,
        }
    }

    pub fn chain_pem(&self) -> String {
        chrysalis_gpu::certs::CertChain::from_ders(vec![
            self.leaf_der.clone(),
            self.inter_der.clone(),
            self.root_der.clone(),
        ])
        .unwrap()
        .to_pem()
    }

    /// Re-sign report bytes (request + response, signature replaced).
    pub fn sign_report(&self, report: &[u8]) -> Vec<u8> {
        let n = report.len() - 96;
        let sig: Signature = self.leaf_key.sign(&report[..n]);
        let mut out = report[..n].to_vec();
        out.extend_from_slice(&sig.to_bytes());
        out
    }
}

/// Rewrite the measurement blocks of `raw` (request + response) so that
/// every active golden measurement of `rims` matches (alternative 0).
/// The signature must be redone afterwards.
pub fn conform_to_rims(raw: &[u8], rims: &[chrysalis_gpu::Rim]) -> Vec<u8> {
    let mut out = raw.to_vec();
    let record_start = 37 + 8;
    let record_len = u32::from_le_bytes([raw[37 + 5], raw[37 + 6], raw[37 + 7], 0]) as usize;
    let mut pos = record_start;
    while pos < record_start + record_len {
        let index = raw[pos];
        let size = u16::from_le_bytes([raw[pos + 2], raw[pos + 3]]) as usize;
        let value_at = pos + 4 + 3;
        let value_len = size - 3;
        for rim in rims {
            if let Some(m) = rim.active().find(|m| m.index + 1 == u16::from(index)) {
                assert_eq!(m.size, value_len);
                out[value_at..value_at + value_len].copy_from_slice(&m.alternatives[0]);
            }
        }
        pos += 4 + size;
    }
    out
}

/// What a generated OCSP response says.
pub enum TestStatus {
    Good,
    Revoked,
}

/// Build a DER OCSP response for `cert_der` (issued by `issuer_der`),
/// signed directly by the issuer's key, valid `this_update..next_update`.
pub fn ocsp_response(
    cert_der: &[u8],
    issuer_der: &[u8],
    issuer_key: &SigningKey,
    status: TestStatus,
    this_update: time::OffsetDateTime,
    next_update: time::OffsetDateTime,
) -> Vec<u8> {
    use der::asn1::{BitString, GeneralizedTime, OctetString};
    use der::Encode;
    use sha2::{Digest, Sha384};
    use x509_ocsp::*;
    use x509_parser::prelude::FromDer;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(cert_der).unwrap();
    let (_, issuer) = x509_parser::certificate::X509Certificate::from_der(issuer_der).unwrap();
    let gt = |t: time::OffsetDateTime| {
        OcspGeneralizedTime(
            GeneralizedTime::from_unix_duration(std::time::Duration::from_secs(
                t.unix_timestamp() as u64
            ))
            .unwrap(),
        )
    };
    let alg = |oid: &str| x509_cert::spki::AlgorithmIdentifierOwned {
        oid: der::oid::ObjectIdentifier::new(oid).unwrap(),
        parameters: None,
    };
    let key_hash = Sha384::digest(&issuer.public_key().subject_public_key.data).to_vec();
    let cert_id = CertId {
        hash_algorithm: alg("2.16.840.1.101.3.4.2.2"),
        issuer_name_hash: OctetString::new(Sha384::digest(issuer.subject().as_raw()).to_vec())
            .unwrap(),
        issuer_key_hash: OctetString::new(key_hash.clone()).unwrap(),
        serial_number: x509_cert::serial_number::SerialNumber::new(cert.raw_serial()).unwrap(),
    };
    let cert_status = match status {
        TestStatus::Good => CertStatus::good(),
        TestStatus::Revoked => CertStatus::Revoked(RevokedInfo {
            revocation_time: gt(this_update - time::Duration::days(1)),
            revocation_reason: None,
        }),
    };
    let tbs = ResponseData {
        version: Version::V1,
        responder_id: ResponderId::ByKey(OctetString::new(key_hash).unwrap()),
        produced_at: gt(this_update),
        responses: vec![SingleResponse {
            cert_id,
            cert_status,
            this_update: gt(this_update),
            next_update: Some(gt(next_update)),
            single_extensions: None,
        }],
        response_extensions: None,
    };
    let sig: p384::ecdsa::Signature = issuer_key.sign(&tbs.to_der().unwrap());
    let basic = BasicOcspResponse {
        tbs_response_data: tbs,
        signature_algorithm: alg("1.2.840.10045.4.3.3"),
        signature: BitString::from_bytes(p384::ecdsa::DerSignature::from(sig).as_bytes()).unwrap(),
        certs: None,
    };
    OcspResponse {
        response_status: OcspResponseStatus::Successful,
        response_bytes: Some(ResponseBytes {
            response_type: der::oid::ObjectIdentifier::new("1.3.6.1.5.5.7.48.1.1").unwrap(),
            response: OctetString::new(basic.to_der().unwrap()).unwrap(),
        }),
    }
    .to_der()
    .unwrap()
}
