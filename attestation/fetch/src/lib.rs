//! Fetching collateral over HTTP(S) into an on-disk cache.
//!
//! Collateral servers (Intel PCS, a PCCS, AMD KDS) are untrusted: this module
//! only downloads and stores; every verification re-checks the signatures
//! against the pinned roots. Fetching is a separate step so that
//! verification works fully offline from the cache.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrysalis_attestation::error::{Error, Result};
use chrysalis_attestation::snp::{kds, Product, SnpReport};
use chrysalis_attestation::tdx::collateral::files;
use chrysalis_attestation::tdx::TdxQuote;

/// Largest response accepted (the PCK CRL is ~3 KiB, TCB info ~10 KiB).
const MAX_RESPONSE: u64 = 4 << 20;
/// Per-request timeout.
const TIMEOUT: Duration = Duration::from_secs(30);

struct Response {
    body: Vec<u8>,
    headers: Vec<(String, String)>,
}

impl Response {
    fn header(&self, names: &[&str]) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| names.iter().any(|n| k.eq_ignore_ascii_case(n)))
            .map(|(_, v)| v.as_str())
    }
}

fn get(url: &str) -> Result<Response> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(TIMEOUT))
        .build()
        .into();
    let mut resp = agent.get(url).call().map_err(|e| Error::Fetch {
        url: url.to_string(),
        detail: e.to_string(),
    })?;
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let mut body = Vec::new();
    resp.body_mut()
        .as_reader()
        .take(MAX_RESPONSE + 1)
        .read_to_end(&mut body)
        .map_err(|e| Error::Fetch {
            url: url.to_string(),
            detail: e.to_string(),
        })?;
    if body.len() as u64 > MAX_RESPONSE {
        return Err(Error::Fetch {
            url: url.to_string(),
            detail: format!("response larger than {MAX_RESPONSE} bytes"),
        });
    }
    Ok(Response { body, headers })
}

fn issuer_chain(resp: &Response, names: &[&str], url: &str) -> Result<String> {
    let raw = resp.header(names).ok_or_else(|| Error::Fetch {
        url: url.to_string(),
        detail: format!("response has no {} header", names[0]),
    })?;
    percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|e| Error::Fetch {
            url: url.to_string(),
            detail: format!("{}: {e}", names[0]),
        })
}

/// Fetches PCS v4 collateral for a TDX quote from `base` (Intel PCS or a
/// PCCS) into `out` (the directory layout of [`files`]). Returns the files written.
pub fn fetch_tdx_collateral(quote: &TdxQuote, base: &str, out: &Path) -> Result<Vec<PathBuf>> {
    let base = base.trim_end_matches('/');
    let pem = quote.pck_chain_pem().ok_or_else(|| {
        Error::Unsupported("quote carries no PCK certificate chain (type 5)".into())
    })?;
    let chain = chrysalis_attestation::tdx::verify::pem_certificates(pem)?;
    let leaf = chain
        .first()
        .ok_or_else(|| Error::verification("PCK chain", "empty"))?;
    let ext = dcap_qvl::intel::parse_pck_extension(leaf)
        .map_err(|e| Error::verification("PCK certificate SGX extension", format!("{e:#}")))?;
    let ca = match dcap_qvl::intel::pck_ca(leaf) {
        Ok(dcap_qvl::config::PckCa::Platform) => "platform",
        _ => "processor",
    };
    let fmspc = hex::encode(ext.fmspc);

    // Everything is fetched before anything is written, so a failure part
    // way leaves an existing cache untouched rather than half-updated.
    let mut fetched: Vec<(&str, Vec<u8>)> = Vec::with_capacity(7);
    let mut save = |name: &'static str, bytes: &[u8]| -> Result<()> {
        fetched.push((name, bytes.to_vec()));
        Ok(())
    };

    let url = format!("{base}/sgx/certification/v4/pckcrl?ca={ca}&encoding=der");
    let r = get(&url)?;
    save(files::PCK_CRL, &r.body)?;
    save(
        files::PCK_CRL_ISSUER_CHAIN,
        issuer_chain(&r, &["SGX-PCK-CRL-Issuer-Chain"], &url)?.as_bytes(),
    )?;

    let url = format!("{base}/tdx/certification/v4/tcb?fmspc={fmspc}");
    let r = get(&url)?;
    save(files::TCB_INFO, &r.body)?;
    save(
        files::TCB_INFO_ISSUER_CHAIN,
        issuer_chain(
            &r,
            &["TCB-Info-Issuer-Chain", "SGX-TCB-Info-Issuer-Chain"],
            &url,
        )?
        .as_bytes(),
    )?;

    let url = format!("{base}/tdx/certification/v4/qe/identity");
    let r = get(&url)?;
    save(files::QE_IDENTITY, &r.body)?;
    save(
        files::QE_IDENTITY_ISSUER_CHAIN,
        issuer_chain(&r, &["SGX-Enclave-Identity-Issuer-Chain"], &url)?.as_bytes(),
    )?;

    // A PCCS serves the root CA CRL (hex text); Intel PCS does not, and the
    // root CA's CRL distribution point names Intel's URL instead.
    let url = format!("{base}/sgx/certification/v4/rootcacrl");
    let body = match get(&url) {
        Ok(r) => r.body,
        Err(_) => get(&root_crl_distribution_point(&chain)?)?.body,
    };
    save(files::ROOT_CA_CRL, &body)?;

    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let mut written = Vec::with_capacity(fetched.len());
    for (name, bytes) in fetched {
        let p = out.join(name);
        chrysalis_attestation::fsutil::write_atomic(&p, &bytes)?;
        written.push(p);
    }
    Ok(written)
}

fn root_crl_distribution_point(chain: &[Vec<u8>]) -> Result<String> {
    use x509_parser::extensions::{DistributionPointName, GeneralName, ParsedExtension};
    use x509_parser::prelude::FromDer;
    let root = chain
        .last()
        .ok_or_else(|| Error::verification("PCK chain", "empty"))?;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(root)
        .map_err(|e| Error::verification("PCK chain", e))?;
    for ext in cert.extensions() {
        if let ParsedExtension::CRLDistributionPoints(dps) = ext.parsed_extension() {
            for dp in dps.iter() {
                if let Some(DistributionPointName::FullName(names)) = &dp.distribution_point {
                    for n in names {
                        if let GeneralName::URI(u) = n {
                            return Ok(u.to_string());
                        }
                    }
                }
            }
        }
    }
    Err(Error::Unsupported(
        "root CA has no CRL distribution point and the server has no rootcacrl endpoint".into(),
    ))
}

/// Fetches the VCEK, the ASK/ARK chain and AMD's CRL for an SNP report from
/// the AMD KDS at `base` into `out` (`vcek.der`, `cert_chain.pem`,
/// `crl.der`). The CRL is checked at verification when it is passed along
/// (it fails closed once stale, so fetch again).
pub fn fetch_snp_certificates(report: &SnpReport, base: &str, out: &Path) -> Result<Vec<PathBuf>> {
    let base = base.trim_end_matches('/');
    let candidates: Vec<Product> = match report.product_hint() {
        Some(p) => vec![p],
        None => vec![Product::Milan, Product::Genoa, Product::Turin],
    };
    let mut last_err = None;
    for product in candidates {
        let rebase = |u: String| u.replacen(kds::KDS_BASE, base, 1);
        let vcek_url = rebase(kds::kds_vcek_url(
            product,
            &report.chip_id,
            &report.reported_tcb,
        ));
        match get(&vcek_url) {
            Ok(vcek) => {
                let chain = get(&rebase(kds::kds_cert_chain_url(product)))?;
                let crl = get(&rebase(kds::kds_crl_url(product)))?;
                std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
                let p1 = out.join("vcek.der");
                let p2 = out.join("cert_chain.pem");
                let p3 = out.join("crl.der");
                chrysalis_attestation::fsutil::write_atomic(&p1, &vcek.body)?;
                chrysalis_attestation::fsutil::write_atomic(&p2, &chain.body)?;
                chrysalis_attestation::fsutil::write_atomic(&p3, &crl.body)?;
                return Ok(vec![p1, p2, p3]);
            }
            Err(e) => last_err = Some(e),
        }
    }
    Err(last_err.unwrap_or_else(|| Error::Unsupported("no product to try".into())))
}
