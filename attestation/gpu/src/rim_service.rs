//! RIMs fetched by id from NVIDIA's RIM service (an untrusted collateral
//! server: what it answers is checked exactly like a RIM file).
//!
//! The ids come from the signed attestation report (the peers' scheme:
//! nvtrust's local verifier, go-nvattest-tools):
//! - driver RIM: `NV_GPU_DRIVER_{chip}_{driver version}`, e.g.
//!   `NV_GPU_DRIVER_GH100_550.90.07` (`chip` from the device certificate);
//! - VBIOS RIM: `NV_GPU_VBIOS_{project}_{project sku}_{chip sku}_{vbios}`
//!   with the VBIOS version's dots removed, uppercase, e.g.
//!   `NV_GPU_VBIOS_1010_0200_882_96009F0001` for `96.00.9F.00.01`.
//!
//! `GET {base}/v1/rim/{id}` answers JSON ([`RimResponse`]): `id` (must be
//! the id asked for), `rim` (the SWID tag, standard base64), and optionally
//! `sha256` (hex SHA-256 of the decoded RIM: checked when present),
//! `rim_format` (`TCG` for SWID tags: anything else is refused),
//! `last_updated` and `request_id` (informational).
//!
//! Nothing the service says is trusted: the decoded RIM must parse, its
//! `colloquialVersion` must be the version the id names (and, for a driver
//! RIM, its product the chip the id names), and its XML signature and
//! signer chain must verify to the pinned CoRIM root before it is cached;
//! verification ([`crate::verify_gpu`]) then checks it again like any file
//! RIM (chip, measurements, OCSP of the signer chain per policy).
//!
//! The cache holds the RIM XML as `{cache}/{id}.xml` (written atomically);
//! a cached RIM is re-checked on every use, and an unusable one is fetched
//! again unless the client is offline. Because the files are plain RIMs,
//! the cache directory also works as a `--rim DIR`.

use std::path::PathBuf;
use std::time::Duration;

use ::time::OffsetDateTime;
use base64::Engine;
use serde::Deserialize;
use sha2::{Digest, Sha256};

pub use crate::error::RimServiceProblem;
use crate::error::{Error, Result};
use crate::evidence::AttestationReport;
use crate::rim::{self, Rim};

/// NVIDIA's RIM service.
pub const NVIDIA_RIM_SERVICE: &str = "https://rim.attestation.nvidia.com";
/// Upper bound on a RIM service response body, in bytes (real answers are
/// about 30 KiB: a ~20 KiB RIM, base64-encoded, in JSON).
pub const MAX_RESPONSE_LEN: usize = 1024 * 1024;
/// Default time limit for one request (connect, send, read), in seconds.
pub const DEFAULT_TIMEOUT_SECS: u64 = 15;
/// Upper bound on the length of a RIM id, in bytes.
pub const MAX_ID_LEN: usize = 128;

/// Which component a RIM describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RimKind {
    /// The GPU driver (GSP firmware and its configuration).
    Driver,
    /// The VBIOS of one board (project, SKU, chip SKU).
    Vbios,
}

/// A RIM service id, derived from a report: `NV_GPU_DRIVER_…` or
/// `NV_GPU_VBIOS_…`. Only characters `A-Z a-z 0-9 . _ -` (no `..`), so it
/// is safe in a URL path segment and as a file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RimId {
    id: String,
    kind: RimKind,
    /// The `colloquialVersion` the RIM must carry (driver `550.90.07`,
    /// VBIOS `96.00.9F.00.01`).
    version: String,
    /// The product a driver RIM must name (`GH100`); `None` for VBIOS RIMs
    /// (the chip is checked against the device certificate at verification).
    product: Option<String>,
}

/// The two RIMs one GPU's report needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RimIds {
    /// Driver RIM id.
    pub driver: RimId,
    /// VBIOS RIM id.
    pub vbios: RimId,
}

fn component_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_ID_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'))
        && !s.contains("..")
}

fn bad_component(what: &str, value: &str) -> Error {
    Error::MalformedReport(format!(
        "{what} {value:?} cannot form a RIM id (expected 1..{MAX_ID_LEN} characters A-Z a-z 0-9 . -)"
    ))
}

impl RimId {
    /// The driver RIM id for `chip` (e.g. `GH100`) and `driver_version`
    /// (e.g. `550.90.07`).
    pub fn driver(chip: &str, driver_version: &str) -> Result<RimId> {
        if !component_ok(chip) || chip.contains('.') {
            return Err(bad_component("chip", chip));
        }
        if !component_ok(driver_version) {
            return Err(bad_component("driver version", driver_version));
        }
        Ok(RimId {
            id: format!("NV_GPU_DRIVER_{chip}_{driver_version}"),
            kind: RimKind::Driver,
            version: driver_version.to_string(),
            product: Some(chip.to_string()),
        })
    }

    /// The VBIOS RIM id for a board (`project`, `project_sku`, `chip_sku`,
    /// as the report's opaque data gives them, case-folded to uppercase)
    /// and its VBIOS version `xx.xx.xx.xx.xx` (hex digits).
    pub fn vbios(
        project: &str,
        project_sku: &str,
        chip_sku: &str,
        vbios_version: &str,
    ) -> Result<RimId> {
        for (what, v) in [
            ("project", project),
            ("project SKU", project_sku),
            ("chip SKU", chip_sku),
        ] {
            if !component_ok(v) || v.contains('.') {
                return Err(bad_component(what, v));
            }
        }
        let parts: Vec<&str> = vbios_version.split('.').collect();
        if parts.len() != 5
            || !parts
                .iter()
                .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(bad_component("VBIOS version", vbios_version));
        }
        Ok(RimId {
            id: format!(
                "NV_GPU_VBIOS_{}_{}_{}_{}",
                project.to_ascii_uppercase(),
                project_sku.to_ascii_uppercase(),
                chip_sku.to_ascii_uppercase(),
                parts.concat().to_ascii_uppercase()
            ),
            kind: RimKind::Vbios,
            version: vbios_version.to_ascii_uppercase(),
            product: None,
        })
    }

    /// The id as sent to the service.
    pub fn as_str(&self) -> &str {
        &self.id
    }
    /// Driver or VBIOS.
    pub fn kind(&self) -> RimKind {
        self.kind
    }
    /// The `colloquialVersion` a RIM of this id must carry.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Whether `rim` is what this id names: same version (VBIOS versions
    /// compared case-insensitively) and, for a driver RIM, same product.
    /// `Err` says what differs.
    pub fn check(&self, rim: &Rim) -> std::result::Result<(), String> {
        let version_ok = match self.kind {
            RimKind::Driver => rim.version == self.version,
            RimKind::Vbios => rim.version.eq_ignore_ascii_case(&self.version),
        };
        if !version_ok {
            return Err(format!(
                "the RIM is version {:?}, the id names {:?}",
                rim.version, self.version
            ));
        }
        if let Some(p) = &self.product {
            if !rim.product.eq_ignore_ascii_case(p) {
                return Err(format!(
                    "the RIM is for product {:?}, the id names {p:?}",
                    rim.product
                ));
            }
        }
        Ok(())
    }
}

impl std::fmt::Display for RimId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.id)
    }
}

impl RimIds {
    /// The driver and VBIOS RIM ids of a report from a GPU whose device
    /// certificate names `chip` (e.g. `GH100`). Fails when the report's
    /// opaque data lacks the driver version, VBIOS version or board ids.
    pub fn for_report(report: &AttestationReport, chip: &str) -> Result<RimIds> {
        let missing =
            |what: &str| Error::MalformedReport(format!("the report carries no {what}: no RIM id"));
        let driver_version = report
            .driver_version()
            .ok_or_else(|| missing("driver version"))?;
        let vbios_version = report
            .vbios_version()
            .ok_or_else(|| missing("VBIOS version"))?;
        let (project, project_sku, chip_sku) = report
            .project_ids()
            .ok_or_else(|| missing("project / SKU / chip SKU"))?;
        Ok(RimIds {
            driver: RimId::driver(chip, &driver_version)?,
            vbios: RimId::vbios(&project, &project_sku, &chip_sku, &vbios_version)?,
        })
    }
}

/// The JSON the RIM service answers for `GET /v1/rim/{id}`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct RimResponse {
    /// The id of the RIM.
    pub id: String,
    /// The RIM document, standard base64.
    pub rim: String,
    /// Hex SHA-256 of the decoded RIM, if the service gives it.
    #[serde(default)]
    pub sha256: Option<String>,
    /// `TCG` (SWID tag) or `CORIM`, if the service gives it.
    #[serde(default)]
    pub rim_format: Option<String>,
    /// When the service last updated the RIM (informational).
    #[serde(default)]
    pub last_updated: Option<String>,
    /// The service's request id (informational).
    #[serde(default)]
    pub request_id: Option<String>,
}

impl RimResponse {
    /// Parse a response body (at most [`MAX_RESPONSE_LEN`] bytes; trailing
    /// data after the JSON object is refused).
    pub fn parse(body: &[u8]) -> std::result::Result<RimResponse, RimServiceProblem> {
        if body.len() > MAX_RESPONSE_LEN {
            return Err(RimServiceProblem::TooLarge);
        }
        serde_json::from_slice(body).map_err(|e| RimServiceProblem::NotJson(e.to_string()))
    }

    /// The decoded RIM bytes, if this response is for `id` and its fields
    /// are consistent (id, base64, sha256, format).
    pub fn rim_bytes(&self, id: &RimId) -> std::result::Result<Vec<u8>, RimServiceProblem> {
        if self.id != id.as_str() {
            return Err(RimServiceProblem::IdMismatch(self.id.clone()));
        }
        if let Some(f) = &self.rim_format {
            if !f.eq_ignore_ascii_case("TCG") {
                return Err(RimServiceProblem::Format(f.clone()));
            }
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(self.rim.as_bytes())
            .map_err(|_| RimServiceProblem::BadBase64)?;
        if let Some(h) = &self.sha256 {
            if !h.eq_ignore_ascii_case(&hex::encode(Sha256::digest(&bytes))) {
                return Err(RimServiceProblem::Sha256Mismatch(h.clone()));
            }
        }
        Ok(bytes)
    }
}

/// A RIM service client: base URL, optional on-disk cache, offline mode
/// (cache only), bounded responses and a time limit.
#[derive(Debug, Clone)]
pub struct RimServiceClient {
    base_url: String,
    cache_dir: Option<PathBuf>,
    offline: bool,
    timeout: Duration,
}

impl RimServiceClient {
    /// A client for the service at `base_url` (`http://` or `https://`;
    /// [`NVIDIA_RIM_SERVICE`] for NVIDIA's), caching in `cache_dir`;
    /// `offline` forbids HTTP (the cache alone answers).
    pub fn new(base_url: &str, cache_dir: Option<PathBuf>, offline: bool) -> Result<Self> {
        let base = base_url.trim_end_matches('/');
        let rest = base
            .strip_prefix("https://")
            .or_else(|| base.strip_prefix("http://"));
        if !rest.is_some_and(|r| !r.is_empty() && !r.contains(['?', '#', ' '])) {
            return Err(Error::Malformed {
                what: "RIM service URL",
                reason: format!("{base_url:?}: expected http(s)://HOST[:PORT][/PATH]"),
            });
        }
        Ok(RimServiceClient {
            base_url: base.to_string(),
            cache_dir,
            offline,
            timeout: Duration::from_secs(DEFAULT_TIMEOUT_SECS),
        })
    }

    /// Limit each request to `timeout` (connect, send and read together).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Whether HTTP is forbidden.
    pub fn is_offline(&self) -> bool {
        self.offline
    }

    /// The cache directory, if any.
    pub fn cache_dir(&self) -> Option<&std::path::Path> {
        self.cache_dir.as_deref()
    }

    /// The URL the RIM of `id` is fetched from.
    pub fn url(&self, id: &RimId) -> String {
        format!("{}/v1/rim/{}", self.base_url, id.as_str())
    }

    /// Where the RIM of `id` is cached.
    pub fn cache_path(&self, id: &RimId) -> Option<PathBuf> {
        self.cache_dir
            .as_ref()
            .map(|d| d.join(format!("{}.xml", id.as_str())))
    }

    fn problem(&self, id: &RimId, problem: RimServiceProblem) -> Error {
        Error::RimService {
            id: id.to_string(),
            url: self.url(id),
            problem,
        }
    }

    /// The RIM of `id`, parsed, matching the id, and with its signature and
    /// signer chain verified to `rim_root` at `at`: from the cache when the
    /// cached copy passes those checks, else fetched (unless offline),
    /// checked, then cached. Verification still checks it again as it does
    /// a file RIM.
    pub fn fetch(&self, id: &RimId, rim_root: &[u8], at: OffsetDateTime) -> Result<Rim> {
        let mut cache_problem = "no cached copy".to_string();
        if let Some(path) = self.cache_path(id) {
            match std::fs::read(&path) {
                Ok(bytes) => {
                    let name = path.display().to_string();
                    match self.accept(id, &name, &bytes, rim_root, at) {
                        Ok(r) => return Ok(r),
                        Err(e) => cache_problem = format!("cached copy unusable: {e}"),
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(path.display().to_string(), e)),
            }
        } else {
            cache_problem = "no cache directory".into();
        }
        if self.offline {
            return Err(self.problem(id, RimServiceProblem::Offline(cache_problem)));
        }
        let url = self.url(id);
        let body = self.get(id, &url)?;
        let bytes = RimResponse::parse(&body)
            .and_then(|r| r.rim_bytes(id))
            .map_err(|p| self.problem(id, p))?;
        let rim = self.accept(id, &format!("{id} from {url}"), &bytes, rim_root, at)?;
        if let Some(path) = self.cache_path(id) {
            crate::ocsp::write_atomic(&path, &bytes)?;
        }
        Ok(rim)
    }

    /// Parse `bytes` as the RIM of `id` and verify its signature.
    fn accept(
        &self,
        id: &RimId,
        name: &str,
        bytes: &[u8],
        rim_root: &[u8],
        at: OffsetDateTime,
    ) -> Result<Rim> {
        let rim = Rim::parse(name, bytes)?;
        id.check(&rim)
            .map_err(|why| self.problem(id, RimServiceProblem::WrongRim(why)))?;
        rim::verify_rim(&rim, rim_root, at)?;
        Ok(rim)
    }

    fn get(&self, id: &RimId, url: &str) -> Result<Vec<u8>> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(self.timeout))
            .build()
            .into();
        let mut resp = agent
            .get(url)
            .header("Accept", "application/json")
            .call()
            .map_err(|e| self.problem(id, transport_problem(e)))?;
        resp.body_mut()
            .with_config()
            .limit(MAX_RESPONSE_LEN as u64)
            .read_to_vec()
            .map_err(|e| self.problem(id, transport_problem(e)))
    }
}

fn transport_problem(e: ureq::Error) -> RimServiceProblem {
    match e {
        ureq::Error::StatusCode(404) => RimServiceProblem::NotFound,
        ureq::Error::StatusCode(s) => RimServiceProblem::Status(s),
        ureq::Error::BodyExceedsLimit(_) => RimServiceProblem::TooLarge,
        other => RimServiceProblem::Transport(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn driver() -> RimId {
        RimId::driver("GH100", "550.90.07").unwrap()
    }

    #[test]
    fn ids_are_nvidias_names() {
        assert_eq!(driver().as_str(), "NV_GPU_DRIVER_GH100_550.90.07");
        let v = RimId::vbios("1010", "0200", "882", "96.00.9f.00.01").unwrap();
        assert_eq!(v.as_str(), "NV_GPU_VBIOS_1010_0200_882_96009F0001");
        assert_eq!(v.version(), "96.00.9F.00.01");
        assert_eq!(v.kind(), RimKind::Vbios);
    }

    #[test]
    fn unsafe_components_are_refused() {
        for bad in ["", "../x", "5/0", "550..90", "a b", "x?y"] {
            assert!(RimId::driver("GH100", bad).is_err(), "{bad:?}");
        }
        assert!(RimId::driver("GH.100", "550").is_err());
        assert!(RimId::vbios("10/10", "0200", "882", "96.00.9F.00.01").is_err());
        assert!(RimId::vbios("1010", "0200", "882", "96.00.9F.00").is_err());
        assert!(RimId::vbios("1010", "0200", "882", "96.00.9G.00.01").is_err());
    }

    fn body(id: &str, rim: &[u8], extra: &str) -> Vec<u8> {
        let b64 = base64::engine::general_purpose::STANDARD.encode(rim);
        format!(r#"{{"id":"{id}","rim":"{b64}"{extra}}}"#).into_bytes()
    }

    #[test]
    fn response_fields_are_checked() {
        let id = driver();
        let ok = RimResponse::parse(&body(id.as_str(), b"<x/>", "")).unwrap();
        assert_eq!(ok.rim_bytes(&id).unwrap(), b"<x/>");
        let sha = hex::encode(Sha256::digest(b"<x/>"));
        let r = RimResponse::parse(&body(
            id.as_str(),
            b"<x/>",
            &format!(r#","sha256":"{sha}","rim_format":"TCG","request_id":"r","last_updated":"t""#),
        ))
        .unwrap();
        assert_eq!(r.rim_bytes(&id).unwrap(), b"<x/>");
        let r = RimResponse::parse(&body(id.as_str(), b"<x/>", r#","sha256":"00""#)).unwrap();
        assert!(matches!(
            r.rim_bytes(&id),
            Err(RimServiceProblem::Sha256Mismatch(_))
        ));
        let r =
            RimResponse::parse(&body(id.as_str(), b"<x/>", r#","rim_format":"CORIM""#)).unwrap();
        assert!(matches!(
            r.rim_bytes(&id),
            Err(RimServiceProblem::Format(_))
        ));
        let r = RimResponse::parse(&body("NV_GPU_DRIVER_GH100_1", b"<x/>", "")).unwrap();
        assert_eq!(
            r.rim_bytes(&id),
            Err(RimServiceProblem::IdMismatch(
                "NV_GPU_DRIVER_GH100_1".into()
            ))
        );
        let r =
            RimResponse::parse(br#"{"id":"NV_GPU_DRIVER_GH100_550.90.07","rim":"%%"}"#).unwrap();
        assert_eq!(r.rim_bytes(&id), Err(RimServiceProblem::BadBase64));
        let bads: [&[u8]; 4] = [br#"{"id":"x"}"#, b"", b"[]", br#"{"id":1,"rim":""}"#];
        for bad in bads {
            assert!(matches!(
                RimResponse::parse(bad),
                Err(RimServiceProblem::NotJson(_))
            ));
        }
        // Trailing data after the object.
        let mut t = body(id.as_str(), b"<x/>", "");
        t.extend_from_slice(b"{}");
        assert!(matches!(
            RimResponse::parse(&t),
            Err(RimServiceProblem::NotJson(_))
        ));
        let big = vec![b' '; MAX_RESPONSE_LEN + 1];
        assert_eq!(RimResponse::parse(&big), Err(RimServiceProblem::TooLarge));
    }

    #[test]
    fn base_urls_are_checked() {
        assert!(RimServiceClient::new("ftp://x", None, false).is_err());
        assert!(RimServiceClient::new("https://", None, false).is_err());
        let c = RimServiceClient::new("http://127.0.0.1:9/", None, true).unwrap();
        assert_eq!(
            c.url(&driver()),
            "http://127.0.0.1:9/v1/rim/NV_GPU_DRIVER_GH100_550.90.07"
        );
    }

    #[test]
    fn offline_without_cache_names_the_id_and_url() {
        let c = RimServiceClient::new(NVIDIA_RIM_SERVICE, None, true).unwrap();
        let e = c
            .fetch(
                &driver(),
                crate::certs::NVIDIA_RIM_ROOT_DER,
                OffsetDateTime::UNIX_EPOCH,
            )
            .unwrap_err();
        let s = e.to_string();
        assert!(s.contains("NV_GPU_DRIVER_GH100_550.90.07"), "{s}");
        assert!(
            s.contains("https://rim.attestation.nvidia.com/v1/rim/"),
            "{s}"
        );
        assert!(matches!(
            e,
            Error::RimService {
                problem: RimServiceProblem::Offline(_),
                ..
            }
        ));
    }

    proptest! {
        #[test]
        fn response_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            if let Ok(r) = RimResponse::parse(&bytes) {
                let _ = r.rim_bytes(&driver());
            }
        }

        #[test]
        fn json_like_responses_never_panic(
            id in "[A-Z_0-9.]{0,40}",
            rim in "[A-Za-z0-9+/=%]{0,80}",
            sha in proptest::option::of("[0-9a-f]{0,64}"),
            format in proptest::option::of("[A-Z]{0,6}"),
        ) {
            let mut v = serde_json::json!({"id": id, "rim": rim});
            if let Some(s) = sha { v["sha256"] = s.into(); }
            if let Some(f) = format { v["rim_format"] = f.into(); }
            let body = serde_json::to_vec(&v).unwrap();
            let r = RimResponse::parse(&body).unwrap();
            let _ = r.rim_bytes(&driver());
        }

        #[test]
        fn ids_never_panic(a in ".{0,20}", b in ".{0,20}", c in ".{0,8}", d in ".{0,20}") {
            let _ = RimId::driver(&a, &b);
            let _ = RimId::vbios(&a, &b, &c, &d);
        }
    }
}
