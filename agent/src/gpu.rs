//! GPU attestation at boot (NVIDIA H100 confidential computing).
//!
//! When configured, the agent collects the GPUs' evidence for a fresh
//! random nonce, verifies it (device chain to the pinned NVIDIA root,
//! report signature and nonce, measurements against the signed RIMs, OCSP
//! as the policy says) and checks the `[gpu]` policy — all in
//! [`chrysalis_gpu::gate()`], which sets the GPUs ready only after that.
//! On success the bundle's SHA-384 goes into the RA-TLS claims and (TDX)
//! RTMR3, and `GET /attestation` serves the bundle itself. On failure the
//! agent never becomes ready, `/readyz` and the log say exactly why, and
//! requests to the engine are refused: prompts never reach a GPU that did
//! not prove it is in confidential-computing mode.

use std::path::PathBuf;

use chrysalis_gpu::nvml::NvmlSource;
use chrysalis_gpu::ocsp::OcspClient;
use chrysalis_gpu::{
    gate, Collateral, GpuEvidenceSource, GpuPolicy, Readiness, RecordedSource, RimServiceClient,
};
use rand_core::RngCore;
use time::OffsetDateTime;

use crate::error::{Error, Result};

/// Where GPU evidence comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GpuSourceKind {
    /// The NVIDIA driver, through NVML.
    Nvml,
    /// A recorded evidence bundle (JSON) — tests and offline checks.
    RecordedBundle(PathBuf),
    /// The bundle this boot's GPU gate wrote (`chrysalis-gpu-gate`, run as
    /// root by `chrysalis-gpu-gate.service` before the agent: it collected
    /// the evidence for a fresh random nonce, verified it and set the GPUs
    /// ready). The agent, which holds no GPU privileges, verifies it again
    /// here against the nonce it carries — the gate's, chosen this boot —
    /// and serves it; it never sets the ready state itself.
    Gate(PathBuf),
    /// Recorded NVIDIA SDK sample files: hex report and PEM chain.
    RecordedSdk {
        /// Hex attestation report.
        report: PathBuf,
        /// PEM device certificate chain.
        cert_chain: PathBuf,
    },
}

/// `[gpu]` of the agent configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuSettings {
    /// Evidence source.
    pub source: GpuSourceKind,
    /// Policy file whose `[gpu]` section applies (default: the strict
    /// default policy).
    pub policy: Option<PathBuf>,
    /// Reference integrity manifests (driver, VBIOS); a directory stands
    /// for its `*.swidtag` and `*.xml` files (sorted).
    pub rims: Vec<PathBuf>,
    /// OCSP response cache directory.
    pub ocsp_cache: Option<PathBuf>,
    /// Use only the OCSP cache, never the network.
    pub offline: bool,
}

/// RIMs fetched by id (the report's driver and VBIOS RIM ids) from a RIM
/// service when the RIM files lack them (`--rim-service`/`--rim-cache` of
/// the gate, `--gpu-rim-service`/`--gpu-rim-cache` of the agent). What the
/// service answers is checked exactly like a RIM file. With
/// [`GpuSettings::offline`] only the cache answers: the agent's
/// re-verification of the gate's bundle reads the RIMs the gate fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RimServiceSettings {
    /// Base URL ([`chrysalis_gpu::rim_service::NVIDIA_RIM_SERVICE`] by
    /// default); RIMs are fetched from `{url}/v1/rim/{id}`.
    pub url: String,
    /// Cache directory: fetched RIMs are kept there as `{id}.xml`.
    pub cache: Option<PathBuf>,
}

impl Default for RimServiceSettings {
    fn default() -> Self {
        RimServiceSettings {
            url: chrysalis_gpu::rim_service::NVIDIA_RIM_SERVICE.to_string(),
            cache: None,
        }
    }
}

/// The verified GPU evidence the agent serves.
#[derive(Debug, Clone)]
pub struct GpuAttested {
    /// SHA-384 of `bundle` (RA-TLS claim `gpuEvidenceDigest`).
    pub digest: [u8; 48],
    /// The `gpu` RTMR3 event's payload: SHA-384 of the verified GPU state a
    /// release determines (`VerifiedGpuSet::event_state`: count, driver, CC
    /// on, dev tools off; no nonce, nothing card-specific), so the same on
    /// every boot of a configuration and predicted by `measure image`.
    pub state_digest: [u8; 48],
    /// The evidence bundle JSON (served at `GET /attestation`), checked to
    /// be UTF-8 once here rather than on every request.
    pub bundle: String,
    /// One line for logs and `/readyz`.
    pub summary: String,
}

/// The nonce inside the gate's bundle (`Err` names what is wrong: no
/// bundle means the gate did not pass this boot).
fn gate_nonce(
    p: &std::path::Path,
) -> std::result::Result<[u8; chrysalis_gpu::evidence::NONCE_LEN], String> {
    let bytes =
        std::fs::read(p).map_err(|e| format!("GPU gate bundle {} unreadable: {e}", p.display()))?;
    chrysalis_gpu::bundle::GpuEvidenceBundle::from_json(&bytes)
        .and_then(|b| b.nonce_bytes())
        .map_err(|e| format!("GPU gate bundle {}: {e}", p.display()))
}

/// A GPU policy or RIM that cannot be read or decoded is a configuration
/// error of the agent (the message names the file).
fn gpu_config_error(e: chrysalis_gpu::Error) -> Error {
    Error::Config(e.to_string())
}

impl GpuSettings {
    fn load_policy(&self) -> Result<GpuPolicy> {
        match &self.policy {
            None => Ok(GpuPolicy::default()),
            Some(p) => GpuPolicy::from_file(p).map_err(gpu_config_error),
        }
    }

    fn collateral(&self, rim_service: Option<&RimServiceSettings>) -> Result<Collateral> {
        let c = Collateral::from_rim_files(
            &self.rim_files()?,
            OcspClient::new(self.ocsp_cache.clone(), self.offline),
        )
        .map_err(gpu_config_error)?;
        Ok(match rim_service {
            None => c,
            Some(r) => c.with_rim_service(
                RimServiceClient::new(&r.url, r.cache.clone(), self.offline)
                    .map_err(gpu_config_error)?,
            ),
        })
    }

    /// [`GpuSettings::rims`] with directories expanded.
    fn rim_files(&self) -> Result<Vec<PathBuf>> {
        let mut files = Vec::new();
        for p in &self.rims {
            if !p.is_dir() {
                files.push(p.clone());
                continue;
            }
            let rd = std::fs::read_dir(p)
                .map_err(|e| Error::Config(format!("GPU RIM directory {}: {e}", p.display())))?;
            let mut found: Vec<PathBuf> = rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|x| x == "swidtag" || x == "xml"))
                .collect();
            found.sort();
            files.extend(found);
        }
        Ok(files)
    }

    fn open_source(&self) -> std::result::Result<Box<dyn GpuEvidenceSource>, String> {
        let r: chrysalis_gpu::Result<Box<dyn GpuEvidenceSource>> = match &self.source {
            GpuSourceKind::Nvml => NvmlSource::open().map(|s| Box::new(s) as _),
            GpuSourceKind::RecordedBundle(p) | GpuSourceKind::Gate(p) => {
                RecordedSource::from_bundle_file(p).map(|s| Box::new(s) as _)
            }
            GpuSourceKind::RecordedSdk { report, cert_chain } => {
                RecordedSource::from_sdk_files(report, cert_chain, None).map(|s| Box::new(s) as _)
            }
        };
        r.map_err(|e| format!("GPU evidence source unavailable: {e}"))
    }

    /// Runs the gate at time `at` with a fresh random nonce. `Ok(Err(why))`
    /// is a refusal to report (not ready); `Err` a configuration error that
    /// stops start-up.
    pub fn check(&self, at: OffsetDateTime) -> Result<std::result::Result<GpuAttested, String>> {
        self.check_using(at, None)
    }

    /// [`GpuSettings::check`], fetching the RIMs the files lack from
    /// `rim_service` (when given).
    pub fn check_using(
        &self,
        at: OffsetDateTime,
        rim_service: Option<&RimServiceSettings>,
    ) -> Result<std::result::Result<GpuAttested, String>> {
        let mut nonce = [0u8; chrysalis_gpu::evidence::NONCE_LEN];
        if let GpuSourceKind::Gate(p) = &self.source {
            // The gate's nonce: it was fresh when the gate collected.
            match gate_nonce(p) {
                Ok(n) => nonce = n,
                Err(why) => return Ok(Err(why)),
            }
        } else {
            rand_core::OsRng.fill_bytes(&mut nonce);
        }
        self.check_with_nonce_using(at, &nonce, rim_service)
    }

    /// [`GpuSettings::check`] with a given nonce (recorded evidence was
    /// made for a known nonce; a real node always uses a fresh one).
    pub fn check_with_nonce(
        &self,
        at: OffsetDateTime,
        nonce: &[u8; chrysalis_gpu::evidence::NONCE_LEN],
    ) -> Result<std::result::Result<GpuAttested, String>> {
        self.check_with_nonce_using(at, nonce, None)
    }

    /// [`GpuSettings::check_with_nonce`], fetching the RIMs the files lack
    /// from `rim_service` (when given).
    pub fn check_with_nonce_using(
        &self,
        at: OffsetDateTime,
        nonce: &[u8; chrysalis_gpu::evidence::NONCE_LEN],
        rim_service: Option<&RimServiceSettings>,
    ) -> Result<std::result::Result<GpuAttested, String>> {
        let policy = self.load_policy()?;
        let collateral = self.collateral(rim_service)?;
        let mut source = match self.open_source() {
            Ok(s) => s,
            Err(why) => return Ok(Err(why)),
        };
        Ok(
            match gate(source.as_mut(), &policy, &collateral, nonce, at) {
                Readiness::Ready { verified, bundle } => {
                    let Ok(bundle) = String::from_utf8(bundle) else {
                        return Ok(Err("GPU evidence bundle is not UTF-8".into()));
                    };
                    let gpus = verified.gpus();
                    let summary = format!(
                        "{} GPU(s) attested from {} (bundle SHA-384 {})",
                        gpus.len(),
                        source.describe(),
                        hex::encode(verified.bundle_digest())
                    );
                    Ok(GpuAttested {
                        digest: *verified.bundle_digest(),
                        state_digest: verified.event_state().payload(),
                        bundle,
                        summary,
                    })
                }
                Readiness::NotReady(why) => Err(why),
            },
        )
    }
}
