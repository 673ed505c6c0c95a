//! The PyO3 module `chrysalis._native`. The Python package `chrysalis`
//! (`python/chrysalis/`) re-exports it with the httpx transports on top;
//! `python/chrysalis/_native.pyi` gives the types.
//!
//! Network I/O and verification run with the GIL released
//! (`Python::detach`), so other Python threads run meanwhile.

use std::net::{Shutdown, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, TryLockError};
use std::time::Duration;

use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};
use serde_json::Value;

use crate::client::{policy_from_file, policy_from_toml, Client, RaTlsStream};
use crate::error::{Error, ErrorKind};
use crate::identity::IdentityView;
use crate::session::{Plaintext, TlsSession};
use crate::target::Target;

create_exception!(
    chrysalis,
    ChrysalisError,
    PyException,
    "Base class of every error of the chrysalis package."
);
create_exception!(
    chrysalis,
    VerificationFailed,
    ChrysalisError,
    "The peer did not prove what it runs: a signature, chain, binding, validity or handshake check failed."
);
create_exception!(
    chrysalis,
    MalformedEvidence,
    VerificationFailed,
    "The peer's certificate carries no RA-TLS evidence, or evidence, claims or collateral that cannot be decoded."
);
create_exception!(
    chrysalis,
    PolicyRejected,
    ChrysalisError,
    "The peer's evidence is authentic but the policy rejects it; `reasons` lists every failed rule."
);
create_exception!(
    chrysalis,
    ConnectionFailed,
    ChrysalisError,
    "The TCP connection or the TLS protocol failed for a reason other than the peer's evidence."
);
create_exception!(
    chrysalis,
    ConnectionTimedOut,
    ConnectionFailed,
    "Connecting, the handshake, a read or a write took longer than allowed."
);
create_exception!(
    chrysalis,
    InvalidPolicy,
    ChrysalisError,
    "The policy file or text cannot be read or is invalid."
);

/// The Python exception for `e`; a policy rejection carries `reasons`.
fn to_py(py: Python<'_>, e: Error) -> PyErr {
    let msg = e.to_string();
    let err = match e.kind() {
        ErrorKind::Malformed => MalformedEvidence::new_err(msg),
        ErrorKind::Verification => VerificationFailed::new_err(msg),
        ErrorKind::Rejected => PolicyRejected::new_err(msg),
        ErrorKind::Connection => ConnectionFailed::new_err(msg),
        ErrorKind::Timeout => ConnectionTimedOut::new_err(msg),
        ErrorKind::InvalidPolicy => InvalidPolicy::new_err(msg),
        ErrorKind::InvalidArgument => PyValueError::new_err(msg),
    };
    if e.kind() == ErrorKind::Rejected {
        // Best effort: the message already lists the reasons.
        let _ = err.value(py).setattr("reasons", e.reasons().to_vec());
    }
    err
}

fn secs(timeout: Option<f64>) -> PyResult<Option<Duration>> {
    match timeout {
        None => Ok(None),
        Some(t) if t.is_finite() && t >= 0.0 => Ok(Some(Duration::from_secs_f64(t))),
        Some(t) => Err(PyValueError::new_err(format!(
            "timeout {t}: expected a non-negative number of seconds or None"
        ))),
    }
}

/// JSON → Python objects (dict, list, str, int, float, bool, None).
fn json_to_py<'py>(py: Python<'py>, v: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match v {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => b.into_pyobject(py)?.to_owned().into_any(),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => i.into_pyobject(py)?.into_any(),
            (None, Some(u)) => u.into_pyobject(py)?.into_any(),
            _ => n.as_f64().unwrap_or(f64::NAN).into_pyobject(py)?.into_any(),
        },
        Value::String(s) => s.into_pyobject(py)?.into_any(),
        Value::Array(a) => {
            let list = PyList::empty(py);
            for x in a {
                list.append(json_to_py(py, x)?)?;
            }
            list.into_any()
        }
        Value::Object(m) => {
            let d = PyDict::new(py);
            for (k, x) in m {
                d.set_item(k, json_to_py(py, x)?)?;
            }
            d.into_any()
        }
    })
}

/// A policy: which TCB statuses, measurements, debug and simulated
/// evidence are acceptable (README "Policy file").
#[pyclass(frozen, module = "chrysalis", name = "Policy")]
#[derive(Debug, Clone)]
pub struct PyPolicy {
    inner: chrysalis_attestation::Policy,
    pin: PinKind,
}

/// Where a [`PyPolicy`]'s image pinning came from (decides how `verify()`
/// names the node).
#[derive(Debug, Clone)]
enum PinKind {
    /// The published releases compiled in (all, or one by name).
    Published(Option<String>),
    /// A policy file or text.
    Custom,
    /// No image pinned, on purpose.
    AnyImage,
}

impl PyPolicy {
    fn custom(inner: chrysalis_attestation::Policy) -> Self {
        Self {
            inner,
            pin: PinKind::Custom,
        }
    }

    fn published_inner(release: Option<String>) -> chrysalis_releases::Result<Self> {
        let catalogue = match &release {
            None => chrysalis_releases::Catalogue::builtin().clone(),
            Some(r) => chrysalis_releases::Catalogue::builtin().only(r)?,
        };
        Ok(Self {
            inner: catalogue.policy().policy,
            pin: PinKind::Published(release),
        })
    }

    /// The node-verification configuration for this policy.
    fn node_config(
        &self,
        allow_sim: bool,
    ) -> chrysalis_client::Result<chrysalis_client::NodeConfig> {
        use chrysalis_client::ImagePin;
        let pin = match &self.pin {
            PinKind::Published(None) => ImagePin::published(),
            PinKind::Published(Some(r)) => ImagePin::release(r)?,
            PinKind::AnyImage => ImagePin::AnyImage,
            PinKind::Custom => ImagePin::Policy {
                policy: Box::new(self.inner.clone()),
                source: "the given policy".into(),
            },
        };
        Ok(chrysalis_client::NodeConfig::new(pin)
            .allow_simulated(allow_sim || self.inner.allow_simulated)
            .accept_tcb(self.inner.accepted_tcb_status.iter().copied()))
    }
}

#[pymethods]
impl PyPolicy {
    /// The default policy: the published Chrysalis releases compiled into
    /// this build (every register of each configuration pinned), TCB
    /// `UpToDate` only, no debug guests, no simulated evidence.
    #[new]
    fn new() -> Self {
        Self::published_inner(None).expect("the built-in catalogue has no unknown release")
    }

    /// Only the published release `release` (None: every published one).
    #[staticmethod]
    #[pyo3(signature = (release = None))]
    fn published(py: Python<'_>, release: Option<String>) -> PyResult<Self> {
        Self::published_inner(release).map_err(|e| to_py(py, Error::Argument(e.to_string())))
    }

    /// Any image on an authentic TEE: authenticity, TCB and debug only.
    /// Every identity's `warnings` says NO IMAGE PINNED.
    #[staticmethod]
    fn any_image() -> Self {
        Self {
            inner: chrysalis_attestation::Policy::default(),
            pin: PinKind::AnyImage,
        }
    }

    /// Parses and validates policy TOML text.
    #[staticmethod]
    fn from_toml(py: Python<'_>, text: &str) -> PyResult<Self> {
        policy_from_toml(text)
            .map(Self::custom)
            .map_err(|e| to_py(py, e))
    }

    /// Reads and validates a policy TOML file.
    #[staticmethod]
    fn from_file(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        policy_from_file(&path)
            .map(Self::custom)
            .map_err(|e| to_py(py, e))
    }

    /// What image this policy accepts, in words.
    #[getter]
    fn accepts(&self) -> String {
        match &self.pin {
            PinKind::Published(None) => format!(
                "published releases ({})",
                chrysalis_releases::Catalogue::builtin().names()
            ),
            PinKind::Published(Some(r)) => format!("published release {r}"),
            PinKind::Custom => "the given policy".into(),
            PinKind::AnyImage => "ANY IMAGE (no measurement pinned)".into(),
        }
    }

    /// True when the policy itself accepts simulated evidence.
    #[getter]
    fn allow_simulated(&self) -> bool {
        self.inner.allow_simulated
    }

    /// TCB statuses accepted.
    #[getter]
    fn accepted_tcb_status(&self) -> Vec<String> {
        self.inner
            .accepted_tcb_status
            .iter()
            .map(|s| s.as_str().to_string())
            .collect()
    }

    fn __repr__(&self) -> String {
        format!(
            "Policy(accepted_tcb_status={:?}, allow_simulated={}, allow_debug={})",
            self.accepted_tcb_status(),
            self.inner.allow_simulated,
            self.inner.allow_debug
        )
    }
}

/// What a verified peer proved. Immutable; `to_dict()` gives every field.
#[pyclass(frozen, module = "chrysalis", name = "VerifiedIdentity")]
#[derive(Debug)]
pub struct PyIdentity {
    inner: Arc<IdentityView>,
}

#[pymethods]
impl PyIdentity {
    /// `"tdx"` or `"snp"`.
    #[getter]
    fn tee(&self) -> &str {
        &self.inner.tee
    }
    /// `"chrysalis"` or `"cocoon"` (certificate format).
    #[getter]
    fn format(&self) -> &str {
        &self.inner.format
    }
    /// True when the evidence chained to a simulated root: it proves nothing.
    #[getter]
    fn simulated(&self) -> bool {
        self.inner.simulated
    }
    /// `"production"`, `"simulated"` or `"custom"`.
    #[getter]
    fn trust_anchor(&self) -> &str {
        &self.inner.trust_anchor
    }
    /// Measurement registers and identity fields (hex strings; SNP also
    /// numbers and the reported TCB).
    #[getter]
    fn measurements<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        json_to_py(py, &Value::Object(self.inner.measurements.clone()))
    }
    /// Platform TCB status (`"UpToDate"`, `"OutOfDate"`, …).
    #[getter]
    fn tcb_status(&self) -> &str {
        &self.inner.tcb_status
    }
    /// Advisories that apply at this TCB level.
    #[getter]
    fn advisory_ids(&self) -> Vec<String> {
        self.inner.advisory_ids.clone()
    }
    /// Which TCB components are behind, in words.
    #[getter]
    fn tcb_notes(&self) -> Vec<String> {
        self.inner.tcb_notes.clone()
    }
    /// True when the guest runs with debugging enabled.
    #[getter]
    fn debug(&self) -> bool {
        self.inner.debug
    }
    /// `"absent"` or `"bound_not_verified"`.
    #[getter]
    fn gpu_evidence(&self) -> &'static str {
        self.inner.gpu_evidence.as_str()
    }
    /// SHA-384 of the bound GPU evidence, hex, or None.
    #[getter]
    fn gpu_evidence_digest(&self) -> Option<String> {
        self.inner.gpu_evidence_digest.clone()
    }
    /// SHA-256 of the certificate DER, hex (None for fresh evidence).
    #[getter]
    fn certificate_sha256(&self) -> Option<String> {
        self.inner.certificate.as_ref().map(|c| c.sha256.clone())
    }
    /// The certificate's notBefore, RFC 3339.
    #[getter]
    fn certificate_not_before(&self) -> Option<String> {
        self.inner
            .certificate
            .as_ref()
            .map(|c| chrysalis_attestation::timefmt::format_rfc3339(c.not_before))
    }
    /// The certificate's notAfter, RFC 3339.
    #[getter]
    fn certificate_not_after(&self) -> Option<String> {
        self.inner
            .certificate
            .as_ref()
            .map(|c| chrysalis_attestation::timefmt::format_rfc3339(c.not_after))
    }
    /// True when the certificate is valid now.
    #[getter]
    fn certificate_valid(&self) -> bool {
        self.inner
            .certificate_valid_at(time::OffsetDateTime::now_utc())
    }
    /// SHA-256 of the attested key's SubjectPublicKeyInfo, hex: the key
    /// the connection is pinned to.
    #[getter]
    fn public_key_sha256(&self) -> &str {
        &self.inner.public_key_sha256
    }
    /// The attested key's DER SubjectPublicKeyInfo.
    #[getter]
    fn public_key_der<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.public_key_der)
    }
    /// When the evidence was created, RFC 3339.
    #[getter]
    fn created_at(&self) -> Option<String> {
        self.inner.created_at.clone()
    }
    /// The verification time, RFC 3339.
    #[getter]
    fn verified_at(&self) -> &str {
        &self.inner.verified_at
    }
    /// The accepted configuration the registers matched (e.g.
    /// `chrysalis-0.2.0-cpu / snp-2cpu-EPYC-v4`); None when no image is
    /// pinned.
    #[getter]
    fn node(&self) -> Option<String> {
        self.inner.node.clone()
    }

    /// True when evidence bound to a fresh nonce was verified (`verify()`).
    #[getter]
    fn fresh_evidence(&self) -> bool {
        self.inner.fresh_evidence
    }

    /// Image release named in the claims (a hint; `node` is what the
    /// registers matched).
    #[getter]
    fn release(&self) -> Option<String> {
        self.inner.release.clone()
    }
    /// Policy warnings (e.g. simulated evidence accepted by flag).
    #[getter]
    fn warnings(&self) -> Vec<String> {
        self.inner.warnings.clone()
    }
    /// Every field as plain Python values (JSON-compatible).
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        json_to_py(py, &self.inner.to_json())
    }
    /// Every field as JSON text.
    fn to_json(&self) -> String {
        self.inner.to_json().to_string()
    }
    fn __repr__(&self) -> String {
        let i = &self.inner;
        let main = match (
            i.measurements.get("mrtd"),
            i.measurements.get("measurement"),
        ) {
            (Some(Value::String(m)), _) => format!("mrtd='{}…'", &m[..m.len().min(16)]),
            (_, Some(Value::String(m))) => format!("measurement='{}…'", &m[..m.len().min(16)]),
            _ => String::new(),
        };
        format!(
            "VerifiedIdentity(tee='{}', {main}, tcb_status='{}', simulated={}, public_key_sha256={}…)",
            i.tee,
            i.tcb_status,
            if i.simulated { "True" } else { "False" },
            &i.public_key_sha256[..16]
        )
    }
    fn __eq__(&self, other: &Self) -> bool {
        // Same evidence, same key: the verification time, the cache flag
        // and how much was checked on top (fresh evidence, the GPU bundle)
        // do not make another identity.
        let strip = |v: &IdentityView| {
            let mut v = v.clone();
            v.verified_at.clear();
            v.from_cache = false;
            v.fresh_evidence = false;
            if v.gpu_evidence == crate::identity::GpuEvidenceStatus::Verified {
                v.gpu_evidence = crate::identity::GpuEvidenceStatus::BoundNotVerified;
            }
            v
        };
        strip(&self.inner) == strip(&other.inner)
    }
}

/// A relying party: the production Intel and AMD roots, a policy, and a
/// verification cache shared by its connections.
#[pyclass(frozen, module = "chrysalis", name = "Verifier")]
#[derive(Debug)]
pub struct PyVerifier {
    client: Client,
    node: chrysalis_client::NodeConfig,
}

#[pymethods]
impl PyVerifier {
    /// A verifier with `policy` (default: `Policy()`); `allow_sim` also
    /// accepts simulated evidence.
    #[new]
    #[pyo3(signature = (policy = None, allow_sim = false))]
    fn new(py: Python<'_>, policy: Option<&PyPolicy>, allow_sim: bool) -> PyResult<Self> {
        let p = policy.cloned().unwrap_or_else(PyPolicy::new);
        let node = p
            .node_config(allow_sim)
            .map_err(|e| to_py(py, Error::from_client("policy", &e)))?;
        Ok(Self {
            client: Client::with_config((**node.verifier()).clone()),
            node,
        })
    }

    /// True when simulated evidence is accepted.
    #[getter]
    fn allow_sim(&self) -> bool {
        self.client.allows_simulated()
    }

    /// Connects to HOST:PORT and completes a verified TLS 1.3 handshake
    /// within `timeout` seconds (None: no limit).
    #[pyo3(signature = (host, port, timeout = None))]
    fn connect(
        &self,
        py: Python<'_>,
        host: &str,
        port: u16,
        timeout: Option<f64>,
    ) -> PyResult<PyStream> {
        let target = Target::new(host, port).map_err(|e| to_py(py, e))?;
        let timeout = secs(timeout)?;
        let client = self.client.clone();
        let stream = py
            .detach(move || client.connect(&target, timeout))
            .map_err(|e| to_py(py, e))?;
        let handle = stream.socket_handle().ok();
        let identity = PyIdentity {
            inner: stream.identity().clone(),
        };
        Ok(PyStream {
            peer: stream.peer().to_string(),
            alpn: stream
                .alpn()
                .map(|a| String::from_utf8_lossy(a).into_owned()),
            identity: Py::new(py, identity)?,
            inner: Mutex::new(stream),
            handle,
        })
    }

    /// Verifies the node at an `https://HOST:PORT` URL the way
    /// `chrysalis verify` does (the same library): RA-TLS handshake,
    /// evidence bound to a fresh nonce for the same key, the accepted
    /// configuration it matches, and its GPU evidence (required for a gpu
    /// release); closes and returns what the node proved.
    #[pyo3(signature = (url, timeout = None))]
    fn verify(&self, py: Python<'_>, url: &str, timeout: Option<f64>) -> PyResult<PyIdentity> {
        // The same URL rules (and ValueError) as the connections.
        let target = Target::parse_url(url).map_err(|e| to_py(py, e))?;
        let timeout = secs(timeout)?;
        let mut node = self.node.clone();
        if let Some(t) = timeout {
            node = node.connect_timeout(t);
        }
        let url = format!("https://{}", target.authority());
        py.detach(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| Error::Io {
                    peer: url.clone(),
                    what: "starting the I/O runtime",
                    source: e,
                })?;
            let fut = chrysalis_client::verify_node(&url, &node);
            // `timeout` bounds the handshake (above) and, with a margin
            // for the nonce round trip, the whole verification.
            let r = match timeout {
                Some(t) => rt.block_on(async {
                    let whole = t + t.max(Duration::from_secs(1));
                    tokio::time::timeout(whole, fut)
                        .await
                        .map_err(|_| Error::Timeout {
                            peer: url.clone(),
                            what: "verification",
                            after: whole,
                        })
                })?,
                None => rt.block_on(fut),
            };
            r.map(|n| IdentityView::of_node(&n))
                .map_err(|e| Error::from_client(&url, &e))
        })
        .map(|v| PyIdentity { inner: Arc::new(v) })
        .map_err(|e| to_py(py, e))
    }

    /// A sans-I/O session for HOST:PORT (the async transport drives it).
    fn session(&self, py: Python<'_>, host: &str, port: u16) -> PyResult<PySession> {
        let target = Target::new(host, port).map_err(|e| to_py(py, e))?;
        let s = self.client.session(&target).map_err(|e| to_py(py, e))?;
        Ok(PySession {
            peer: s.peer().to_string(),
            inner: Mutex::new(s),
        })
    }

    /// Verifies a DER certificate offline, now.
    fn verify_certificate(&self, py: Python<'_>, der: &[u8]) -> PyResult<PyIdentity> {
        let der = der.to_vec();
        let client = self.client.clone();
        py.detach(move || client.verify_certificate(&der))
            .map(|v| PyIdentity { inner: Arc::new(v) })
            .map_err(|e| to_py(py, e))
    }
}

fn lock_poisoned(peer: &str) -> PyErr {
    ConnectionFailed::new_err(format!("{peer}: connection state poisoned by a panic"))
}

/// A verified RA-TLS connection over a blocking socket, pinned for its
/// lifetime to the key the handshake proved.
#[pyclass(frozen, module = "chrysalis", name = "RaTlsStream")]
#[derive(Debug)]
pub struct PyStream {
    peer: String,
    alpn: Option<String>,
    identity: Py<PyIdentity>,
    inner: Mutex<RaTlsStream>,
    /// Aborts a read or write blocked in another thread.
    handle: Option<TcpStream>,
}

#[pymethods]
impl PyStream {
    /// What the peer proved.
    #[getter]
    fn identity(&self, py: Python<'_>) -> Py<PyIdentity> {
        self.identity.clone_ref(py)
    }
    /// `HOST:PORT`.
    #[getter]
    fn peer(&self) -> &str {
        &self.peer
    }
    /// ALPN protocol agreed (`"http/1.1"`) or None.
    #[getter]
    fn alpn(&self) -> Option<&str> {
        self.alpn.as_deref()
    }

    /// The socket's file descriptor (-1 when unknown), to poll whether an
    /// idle connection was closed by the peer.
    fn fileno(&self) -> i64 {
        #[cfg(unix)]
        {
            use std::os::fd::AsRawFd;
            self.handle
                .as_ref()
                .map_or(-1, |h| i64::from(h.as_raw_fd()))
        }
        #[cfg(not(unix))]
        {
            -1
        }
    }

    /// Reads up to `max_bytes` of plaintext, waiting at most `timeout`
    /// seconds (None: no limit); `b""` at the end of the stream.
    #[pyo3(signature = (max_bytes, timeout = None))]
    fn read<'py>(
        &self,
        py: Python<'py>,
        max_bytes: usize,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let timeout = secs(timeout)?;
        let mut buf = vec![0u8; max_bytes.clamp(1, crate::session::MAX_READ)];
        let n = py.detach(|| {
            let mut s = self.inner.lock().map_err(|_| None)?;
            s.read(&mut buf, timeout).map_err(Some)
        });
        match n {
            Ok(n) => Ok(PyBytes::new(py, &buf[..n])),
            Err(Some(e)) => Err(to_py(py, e)),
            Err(None) => Err(lock_poisoned(&self.peer)),
        }
    }

    /// Writes all of `data`, each socket write waiting at most `timeout`.
    #[pyo3(signature = (data, timeout = None))]
    fn write(&self, py: Python<'_>, data: &[u8], timeout: Option<f64>) -> PyResult<()> {
        let timeout = secs(timeout)?;
        let r = py.detach(|| {
            let mut s = self.inner.lock().map_err(|_| None)?;
            s.write_all(data, timeout).map_err(Some)
        });
        match r {
            Ok(()) => Ok(()),
            Err(Some(e)) => Err(to_py(py, e)),
            Err(None) => Err(lock_poisoned(&self.peer)),
        }
    }

    /// Sends close_notify and closes. From another thread while a read
    /// or write is blocked, it shuts the socket down (which ends that
    /// call). Idempotent.
    fn close(&self, py: Python<'_>) {
        py.detach(|| match self.inner.try_lock() {
            Ok(mut s) => s.close(),
            Err(TryLockError::Poisoned(p)) => p.into_inner().close(),
            Err(TryLockError::WouldBlock) => {
                if let Some(h) = &self.handle {
                    let _ = h.shutdown(Shutdown::Both);
                }
            }
        })
    }

    fn __repr__(&self) -> String {
        format!(
            "RaTlsStream(peer='{}', tee='{}')",
            self.peer,
            self.identity.get().inner.tee
        )
    }
}

/// A sans-I/O RA-TLS session: the caller moves bytes between it and a
/// socket (`receive`, `data_to_send`), then reads and writes plaintext.
#[pyclass(frozen, module = "chrysalis", name = "TlsSession")]
#[derive(Debug)]
pub struct PySession {
    peer: String,
    inner: Mutex<TlsSession>,
}

impl PySession {
    fn with<T>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut TlsSession) -> crate::Result<T> + Send,
    ) -> PyResult<T>
    where
        T: Send,
    {
        let r = py.detach(|| {
            let mut s = self.inner.lock().map_err(|_| None)?;
            f(&mut s).map_err(Some)
        });
        match r {
            Ok(v) => Ok(v),
            Err(Some(e)) => Err(to_py(py, e)),
            Err(None) => Err(lock_poisoned(&self.peer)),
        }
    }
}

#[pymethods]
impl PySession {
    /// `HOST:PORT`.
    #[getter]
    fn peer(&self) -> &str {
        &self.peer
    }

    /// True until the handshake (and the verification) completed.
    #[getter]
    fn is_handshaking(&self, py: Python<'_>) -> PyResult<bool> {
        self.with(py, |s| Ok(s.is_handshaking()))
    }

    /// What the peer proved, once the handshake completed (else None).
    #[getter]
    fn identity(&self, py: Python<'_>) -> PyResult<Option<PyIdentity>> {
        self.with(py, |s| Ok(s.identity().cloned()))
            .map(|i| i.map(|inner| PyIdentity { inner }))
    }

    /// ALPN protocol agreed, or None.
    #[getter]
    fn alpn(&self, py: Python<'_>) -> PyResult<Option<String>> {
        self.with(py, |s| {
            Ok(s.alpn().map(|a| String::from_utf8_lossy(a).into_owned()))
        })
    }

    /// Takes bytes received from the socket (`b""`: the socket's end);
    /// runs the handshake and the verifier as messages arrive.
    fn receive(&self, py: Python<'_>, data: &[u8]) -> PyResult<()> {
        self.with(py, |s| s.receive(data))
    }

    /// TLS bytes to send now (may be empty).
    fn data_to_send<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let out = self.with(py, |s| Ok(s.data_to_send()))?;
        Ok(PyBytes::new(py, &out))
    }

    /// Up to `max_bytes` of plaintext; None when more must be received
    /// first; `b""` at the end of the stream.
    fn read<'py>(
        &self,
        py: Python<'py>,
        max_bytes: usize,
    ) -> PyResult<Option<Bound<'py, PyBytes>>> {
        match self.with(py, |s| s.read(max_bytes))? {
            Plaintext::Data(d) => Ok(Some(PyBytes::new(py, &d))),
            Plaintext::Eof => Ok(Some(PyBytes::new(py, b""))),
            Plaintext::WouldBlock => Ok(None),
        }
    }

    /// Queues plaintext (refused before the handshake completed); send
    /// `data_to_send()` after.
    fn write(&self, py: Python<'_>, data: &[u8]) -> PyResult<()> {
        self.with(py, |s| s.write(data))
    }

    /// Queues close_notify; send `data_to_send()` after.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        self.with(py, |s| {
            s.close();
            Ok(())
        })
    }
}

/// The extension module.
#[pymodule]
#[pyo3(name = "_native")]
fn native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<PyPolicy>()?;
    m.add_class::<PyVerifier>()?;
    m.add_class::<PyIdentity>()?;
    m.add_class::<PyStream>()?;
    m.add_class::<PySession>()?;
    m.add("ChrysalisError", py.get_type::<ChrysalisError>())?;
    m.add("VerificationFailed", py.get_type::<VerificationFailed>())?;
    m.add("MalformedEvidence", py.get_type::<MalformedEvidence>())?;
    m.add("PolicyRejected", py.get_type::<PolicyRejected>())?;
    m.add("ConnectionFailed", py.get_type::<ConnectionFailed>())?;
    m.add("ConnectionTimedOut", py.get_type::<ConnectionTimedOut>())?;
    m.add("InvalidPolicy", py.get_type::<InvalidPolicy>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    crate::py_pay::register(m)?;
    Ok(())
}
