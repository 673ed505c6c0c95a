//! The RA-TLS certificate format checked by an independent client: a Python
//! script written from `SPEC.md` alone (`tests/py/ratls_check.py`, only
//! `ssl`, `hashlib` and the `cryptography` package, its own DER reader).
//!
//! It connects over TLS 1.3 to the example server (`examples/sim_server.rs`,
//! run in-process here) and checks the binding; offline it checks forged
//! certificates, which it must reject exactly where this crate's verifier
//! rejects them.
//!
//! The Python side needs the venv that `ci/pyclient.sh` creates
//! (`$PYVENV`, else `${CARGO_TARGET_DIR:-target}/pyvenv`); without it every test
//! prints "skipping: …" and returns, unless `CHRYSALIS_REQUIRE_PYCLIENT=1`
//! makes that a failure (for CI, where the venv is installed first).

mod common;

// The example's server code, so that the test runs exactly what the
// example serves (its `main` is unused here).
#[path = "../examples/sim_server.rs"]
#[allow(dead_code)]
mod sim_server;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use chrysalis_attestation::provider::{EvidenceProvider, RawEvidence};
use chrysalis_attestation::verifier::Collateral;
use chrysalis_attestation::Tee;
use chrysalis_ratls::x509::{build_certificate, ratls_extensions, CertificateParams};
use chrysalis_ratls::{
    server_config, verify_certificate_der, CertKey, Claims, ClaimsPurpose, EmbeddedCollateral,
    Error, IdentityOptions, ImageId, KeyType, RaTlsIdentity, VerifierConfig,
};
use chrysalis_sim::sim_measurement;
use chrysalis_sim::tdx::{SimQuoteVersion, SimTdInput, SimTdx, SimTdxOptions};
use common::*;
use serde_json::Value;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// Exit codes of `ratls_check.py`.
const EXIT_OK: i32 = 0;
const EXIT_MALFORMED: i32 = 2;
const EXIT_BINDING: i32 = 3;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/ratls_check.py")
}

/// The venv's Python if it has `cryptography`, else `None` after printing
/// why (or a panic when `CHRYSALIS_REQUIRE_PYCLIENT=1`).
fn python() -> Option<PathBuf> {
    // Where ci/pyclient.sh puts the venv: $PYVENV, else
    // ${CARGO_TARGET_DIR:-<repo>/target}/pyvenv.
    let venv = std::env::var_os("PYVENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"))
                .join("pyvenv")
        });
    let py = venv.join("bin/python");
    let why = if !py.exists() {
        format!("{} not found (run ci/pyclient.sh)", py.display())
    } else {
        match Command::new(&py)
            .args(["-c", "import cryptography"])
            .output()
        {
            Ok(o) if o.status.success() => return Some(py),
            Ok(o) => format!(
                "{} has no cryptography package: {}",
                py.display(),
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => format!("{} does not run: {e}", py.display()),
        }
    };
    if std::env::var("CHRYSALIS_REQUIRE_PYCLIENT").as_deref() == Ok("1") {
        panic!("CHRYSALIS_REQUIRE_PYCLIENT=1 but {why}");
    }
    eprintln!("skipping: {why}");
    None
}

/// What the script said: exit code and its JSON line.
struct Report {
    code: i32,
    json: Value,
}

impl Report {
    fn check(&self, name: &str) -> bool {
        self.json["checks"][name]
            .as_bool()
            .unwrap_or_else(|| panic!("no check {name} in {}", self.json))
    }
    fn str(&self, key: &str) -> &str {
        self.json[key]
            .as_str()
            .unwrap_or_else(|| panic!("no string {key} in {}", self.json))
    }
}

fn run_script(py: &Path, args: &[&str]) -> Report {
    let out = Command::new(py)
        .arg(script())
        .args(args)
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stdout.lines().last().unwrap_or_default();
    let json: Value = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("no JSON line ({e}); stdout {stdout:?}; stderr {stderr:?}"));
    let code = out
        .status
        .code()
        .unwrap_or_else(|| panic!("python killed: {stderr}"));
    Report { code, json }
}

/// Runs the script against the example server presenting `identity`,
/// in-process on 127.0.0.1; returns the report and how many connections
/// the server answered.
fn against_server(py: &Path, identity: &RaTlsIdentity) -> (Report, usize) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let acceptor = TlsAcceptor::from(Arc::new(server_config(identity, None).expect("config")));
    let listener = rt.block_on(TcpListener::bind("127.0.0.1:0")).expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    // One connection, and a lifetime bound so that a failing client cannot
    // hang the test.
    let server = rt.spawn(sim_server::serve(
        listener,
        acceptor,
        1,
        Duration::from_secs(60),
    ));
    let report = run_script(py, &[&addr, "--timeout", "30"]);
    let answered = rt.block_on(server).expect("server task");
    (report, answered)
}

/// The genuine-server assertions: the script passed, saw this very
/// certificate, and read report_data where the Rust parser did.
fn assert_accepted(r: &Report, identity: &RaTlsIdentity) {
    assert_eq!(r.code, EXIT_OK, "{}", r.json);
    assert_eq!(r.json["binding_ok"], Value::Bool(true));
    assert_eq!(
        r.str("sha256"),
        hex::encode(Sha256::digest(identity.cert_der()))
    );
    let expected_rd = hex::encode(Claims::report_data(identity.claims_bytes()));
    assert_eq!(r.str("report_data"), expected_rd);
    let offset = r.json["report_data_offset"].as_u64().expect("offset") as usize;
    assert_eq!(
        hex::encode(&identity.evidence()[offset..offset + 64]),
        expected_rd
    );
    let tee = match identity.tee() {
        Tee::Tdx => "tdx",
        Tee::Snp => "snp",
    };
    assert_eq!(r.str("tee"), tee);
    assert_eq!(r.str("claims_tee"), tee);
    assert_eq!(r.str("purpose"), "certificate");
    let created = identity.claims().expect("claims").created_at;
    assert_eq!(
        r.json["created_at"].as_i64(),
        Some(created.unix_timestamp())
    );
}

/// A certificate for `key` carrying `evidence` and `claims_der` (what an
/// attacker without the TEE can build), DER.
fn forged_der(key: &CertKey, evidence: &[u8], claims_der: &[u8]) -> Vec<u8> {
    let now = OffsetDateTime::now_utc();
    build_certificate(
        key,
        &CertificateParams {
            common_name: "forged".into(),
            subject_alt_names: vec![],
            not_before: now - time::Duration::minutes(1),
            not_after: now + time::Duration::hours(1),
            critical_ext_key_usage: false,
            extensions: ratls_extensions(evidence, claims_der, None, None).expect("extensions"),
        },
    )
    .expect("certificate")
}

/// DER claims of a certificate for `key` created now.
fn certificate_claims(key: &CertKey, tee: Tee) -> Vec<u8> {
    let now = OffsetDateTime::now_utc().unix_timestamp();
    Claims {
        purpose: ClaimsPurpose::Certificate,
        tee,
        spki_der: key.spki_der(),
        created_at: OffsetDateTime::from_unix_timestamp(now).expect("time"),
        nonce: None,
        image: None,
        gpu_evidence_digest: None,
    }
    .to_der()
    .expect("claims DER")
}

fn write_temp(bytes: &[u8]) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().expect("temp file");
    f.write_all(bytes).expect("write");
    f.flush().expect("flush");
    f
}

fn offline(py: &Path, der: &[u8]) -> Report {
    let f = write_temp(der);
    run_script(py, &["--cert", f.path().to_str().expect("utf-8 path")])
}

/// This crate's verdict on `der` (simulated evidence allowed, `sim`'s
/// collateral).
fn rust_verdict(der: &[u8], sim: &chrysalis_sim::SimProvider) -> Result<(), Error> {
    let cfg = VerifierConfig::new(dev_policy()).with_collateral(sim_collateral(sim));
    verify_certificate_der(der, &cfg, OffsetDateTime::now_utc()).map(|_| ())
}

fn served_identity_is_accepted(tee: Tee) {
    let Some(py) = python() else { return };
    let id = sim_server::sim_identity(tee).expect("identity");
    let (r, answered) = against_server(&py, &id);
    assert_accepted(&r, &id);
    assert_eq!(r.str("tls_version"), "TLSv1.3");
    assert_eq!(r.str("http_status"), "HTTP/1.1 200 OK");
    assert_eq!(r.str("http_body"), "hello");
    assert_eq!(r.json["has_collateral"], Value::Bool(true));
    assert_eq!(answered, 1);
}

#[test]
fn python_client_accepts_the_tdx_example_server() {
    served_identity_is_accepted(Tee::Tdx);
}

#[test]
fn python_client_accepts_the_snp_example_server() {
    served_identity_is_accepted(Tee::Snp);
}

/// Identity A's evidence and claims on identity B's key: the evidence is
/// bound to the claims, but the claims name A's key. Both the script and
/// this crate must reject it as a binding failure.
fn moved_evidence_is_rejected(tee: Tee) {
    let Some(py) = python() else { return };
    let sim = sim(tee);
    let a = identity(&sim);
    let key_b = CertKey::generate(KeyType::EcdsaP256).expect("key");
    let der = forged_der(&key_b, a.evidence(), a.claims_bytes());

    let r = offline(&py, &der);
    assert_eq!(r.code, EXIT_BINDING, "{}", r.json);
    assert_eq!(r.json["binding_ok"], Value::Bool(false));
    assert!(!r.check("claims_spki_is_cert_spki"));
    assert!(!r.check("claims_spki_is_reencoded_spki"));
    // The rest of the certificate is sound: only the key is not bound.
    assert!(r.check("report_data_is_sha512_of_claims"));
    assert!(r.check("self_signature"));
    assert!(r.check("claims_tee_is_evidence_tee"));

    let e = rust_verdict(&der, &sim).expect_err("the crate rejects it too");
    assert!(matches!(e, Error::KeyNotBound(_)), "{e:?}");
    // The genuine certificate of A passes both, offline as well.
    assert_eq!(offline(&py, a.cert_der()).code, EXIT_OK);
    rust_verdict(a.cert_der(), &sim).expect("genuine");
}

#[test]
fn python_client_rejects_tdx_evidence_moved_to_another_key() {
    moved_evidence_is_rejected(Tee::Tdx);
}

#[test]
fn python_client_rejects_snp_evidence_moved_to_another_key() {
    moved_evidence_is_rejected(Tee::Snp);
}

/// Identity A's evidence with B's claims (which do name B's key): the
/// report_data does not match the claims.
#[test]
fn python_client_rejects_evidence_not_bound_to_the_claims() {
    let Some(py) = python() else { return };
    for tee in [Tee::Tdx, Tee::Snp] {
        let sim = sim(tee);
        let a = identity(&sim);
        let b_key = CertKey::generate(KeyType::EcdsaP256).expect("key");
        let b_claims = Claims {
            spki_der: b_key.spki_der(),
            ..a.claims().expect("claims").clone()
        }
        .to_der()
        .expect("claims DER");
        let der = forged_der(&b_key, a.evidence(), &b_claims);

        let r = offline(&py, &der);
        assert_eq!(r.code, EXIT_BINDING, "{tee:?}: {}", r.json);
        assert!(!r.check("report_data_is_sha512_of_claims"));
        assert!(r.check("claims_spki_is_cert_spki"));
        let e = rust_verdict(&der, &sim).expect_err("the crate rejects it too");
        assert!(matches!(e, Error::EvidenceNotBound { .. }), "{e:?}");
    }
}

/// Claims that are not DER `RaTlsClaims` are malformed (exit 2), not a
/// binding failure, even when report_data is SHA-512 of those bytes: here a
/// byte appended after the SEQUENCE.
#[test]
fn python_client_rejects_trailing_bytes_after_the_claims() {
    let Some(py) = python() else { return };
    let sim = sim(Tee::Tdx);
    let key = CertKey::generate(KeyType::EcdsaP256).expect("key");
    let mut claims = certificate_claims(&key, Tee::Tdx);
    claims.push(0);
    let evidence = sim
        .evidence(&Claims::report_data(&claims))
        .expect("evidence");
    let der = forged_der(&key, &evidence.bytes, &claims);

    let r = offline(&py, &der);
    assert_eq!(r.code, EXIT_MALFORMED, "{}", r.json);
    assert!(
        r.str("error").contains("trailing"),
        "the message names the problem: {}",
        r.json
    );
    assert!(rust_verdict(&der, &sim).is_err());
}

/// The evidence extension carries the quote exactly: padding after a TDX
/// quote (which a quote's own length fields reveal) is malformed.
#[test]
fn python_client_rejects_padding_after_a_tdx_quote() {
    let Some(py) = python() else { return };
    let sim = sim(Tee::Tdx);
    let key = CertKey::generate(KeyType::EcdsaP256).expect("key");
    let claims = certificate_claims(&key, Tee::Tdx);
    let mut quote = sim
        .evidence(&Claims::report_data(&claims))
        .expect("evidence")
        .bytes;
    let exact = forged_der(&key, &quote, &claims);
    assert_eq!(offline(&py, &exact).code, EXIT_OK);
    quote.extend_from_slice(&[0; 16]);
    let padded = forged_der(&key, &quote, &claims);

    let r = offline(&py, &padded);
    assert_eq!(r.code, EXIT_MALFORMED, "{}", r.json);
    assert!(r.str("error").contains("signature data ends"), "{}", r.json);
    assert!(rust_verdict(&padded, &sim).is_err());
}

#[test]
fn python_client_rejects_what_is_not_a_certificate() {
    let Some(py) = python() else { return };
    let sim = sim(Tee::Tdx);
    let id = identity(&sim);
    let der = id.cert_der().to_vec();
    let mut trailing = der.clone();
    trailing.push(0);
    // The outer signatureAlgorithm (the last ecdsa-with-SHA256 identifier)
    // turned into ecdsa-with-SHA384: it no longer equals the TBS one.
    let ecdsa_sha256 = [
        0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02,
    ];
    let at = der
        .windows(ecdsa_sha256.len())
        .rposition(|w| w == ecdsa_sha256)
        .expect("outer signatureAlgorithm");
    let mut other_alg = der.clone();
    other_alg[at + ecdsa_sha256.len() - 1] = 0x03;
    for bad in [
        &b"not a certificate"[..],
        &der[..der.len() / 2],
        &trailing,
        &other_alg,
    ] {
        let r = offline(&py, bad);
        assert_eq!(r.code, EXIT_MALFORMED, "{}", r.json);
        assert_eq!(r.json["malformed"], Value::Bool(true));
        assert!(rust_verdict(bad, &sim).is_err());
    }
}

/// PEM input, an Ed25519 key and the optional claims fields (image
/// identifiers, GPU digest with its extension): the DER reader walks them
/// all.
#[test]
fn python_client_reads_pem_ed25519_and_optional_claims() {
    let Some(py) = python() else { return };
    let sim = sim(Tee::Snp);
    let gpu = [0x5a; 48];
    let id = RaTlsIdentity::generate(
        &sim,
        &IdentityOptions {
            key_type: KeyType::Ed25519,
            image: Some(ImageId {
                release: Some("chrysalis-0.1.0-é".into()),
                measurements_sha256: Some([7; 32]),
            }),
            gpu_evidence_digest: Some(gpu),
            ..opts_with_collateral(&sim)
        },
    )
    .expect("identity");
    let pem = pem_of(id.cert_der());
    let f = write_temp(pem.as_bytes());
    let r = run_script(&py, &["--cert", f.path().to_str().expect("utf-8 path")]);
    assert_accepted(&r, &id);
    assert_eq!(r.str("key"), "Ed25519PublicKey");
    assert_eq!(r.str("gpu_evidence_digest"), hex::encode(gpu));
    assert!(r.check("gpu_digest_matches"));
    assert_eq!(r.json["image"]["release"], "chrysalis-0.1.0-é");
    assert_eq!(r.json["image"]["measurements_sha256"], hex::encode([7; 32]));

    // And over TLS: OpenSSL checks the Ed25519 CertificateVerify.
    let (r, answered) = against_server(&py, &id);
    assert_accepted(&r, &id);
    assert_eq!(answered, 1);
}

fn pem_of(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

/// A simulated TDX platform that answers with version 5 quotes (TD report
/// 1.5 body, type 3): report_data sits 6 bytes further than in v4.
struct SimTdxV5(SimTdx);

impl EvidenceProvider for SimTdxV5 {
    fn name(&self) -> &'static str {
        "sim-v5"
    }
    fn tee(&self) -> Tee {
        Tee::Tdx
    }
    fn evidence(&self, report_data: &[u8; 64]) -> chrysalis_attestation::Result<RawEvidence> {
        Ok(RawEvidence {
            tee: Tee::Tdx,
            bytes: self.0.quote(&SimTdInput {
                mrtd: sim_measurement("MRTD"),
                report_data: *report_data,
                version: SimQuoteVersion::V5,
                ..SimTdInput::default()
            }),
            aux: None,
            provider: "sim-v5",
        })
    }
}

#[test]
fn python_client_reads_tdx_quote_v5() {
    let Some(py) = python() else { return };
    let sim =
        SimTdxV5(SimTdx::new(OffsetDateTime::now_utc(), &SimTdxOptions::default()).expect("sim"));
    let collateral = Collateral::Tdx(chrysalis_attestation::tdx::TdxCollateral {
        v3: sim.0.collateral(),
        simulated_root_ca: Some(sim.0.root_ca_der().to_vec()),
    });
    let id = RaTlsIdentity::generate(
        &sim,
        &IdentityOptions {
            collateral: Some(EmbeddedCollateral::from_collateral(&collateral)),
            ..IdentityOptions::default()
        },
    )
    .expect("identity");
    let (r, answered) = against_server(&py, &id);
    assert_accepted(&r, &id);
    assert_eq!(r.json["quote_version"], 5);
    assert_eq!(answered, 1);
}
