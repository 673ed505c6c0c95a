//! The one error type of this crate, classified into the workspace's
//! [`ErrorCategory`].

/// The workspace's one error category enum (defined by the attestation
/// core); [`Error::category`] sorts this crate's errors into it.
pub use chrysalis_attestation::ErrorCategory;

/// Everything that can go wrong while reading, verifying or judging NVIDIA
/// GPU confidential-computing evidence.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The SPDM attestation report could not be decoded.
    #[error("malformed GPU attestation report: {0}")]
    MalformedReport(String),
    /// A certificate (device chain, RIM signer chain or OCSP responder) could
    /// not be decoded.
    #[error("malformed certificate: {0}")]
    MalformedCertificate(String),
    /// A reference integrity manifest (SWID tag XML) could not be decoded.
    #[error("malformed RIM {name}: {reason}")]
    MalformedRim {
        /// File name or description of the RIM.
        name: String,
        /// What was wrong.
        reason: String,
    },
    /// An OCSP response could not be decoded.
    #[error("malformed OCSP response: {0}")]
    MalformedOcsp(String),
    /// The policy or an evidence bundle could not be decoded.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// What was being decoded.
        what: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// The device certificate chain does not verify to the pinned NVIDIA root.
    #[error("GPU certificate chain rejected: {0}")]
    Chain(String),
    /// The attestation report's signature does not verify with the leaf key.
    #[error(
        "GPU attestation report signature does not verify with the device leaf certificate key"
    )]
    ReportSignature,
    /// The nonce in the report's request is not the expected one.
    #[error("GPU attestation report nonce mismatch: expected {expected}, report carries {actual}")]
    NonceMismatch {
        /// Hex of the nonce the verifier expected.
        expected: String,
        /// Hex of the nonce in the SPDM GET_MEASUREMENTS request.
        actual: String,
    },
    /// A RIM's XML signature or its signer chain does not verify.
    #[error("RIM {name} signature rejected: {reason}")]
    RimSignature {
        /// File name or description of the RIM.
        name: String,
        /// What failed.
        reason: String,
    },
    /// The RIMs do not describe this report (wrong product, version or
    /// overlapping measurement indexes).
    #[error("RIM does not apply to this evidence: {0}")]
    RimMismatch(String),
    /// Runtime measurements differ from the RIM's golden values beyond what
    /// the policy tolerates.
    #[error("GPU measurements do not match the RIMs at index(es) {indexes:?} (policy tolerates {tolerated})")]
    MeasurementMismatch {
        /// The measurement indexes (0-based, as in the RIM) that differ.
        indexes: Vec<u16>,
        /// How many mismatches the policy tolerates.
        tolerated: u32,
    },
    /// OCSP says a certificate is revoked, or the OCSP response does not
    /// verify, or is stale.
    #[error("OCSP: {0}")]
    Ocsp(String),
    /// A GPU evidence bundle is not the one the TEE evidence binds.
    #[error("GPU evidence bundle SHA-384 {actual} is not the digest bound in the TEE evidence ({bound})")]
    DigestMismatch {
        /// Hex of the digest the TEE evidence carries.
        bound: String,
        /// Hex of the received bundle's SHA-384.
        actual: String,
    },
    /// The evidence is authentic but the policy rejects it.
    #[error("GPU policy rejects the evidence: {0}")]
    Policy(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The path involved.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// An HTTP request (OCSP, RIM service) failed.
    #[error("HTTP request to {url} failed: {reason}")]
    Http {
        /// The URL requested.
        url: String,
        /// What failed.
        reason: String,
    },
    /// The RIM service did not give a usable RIM for an id (unreachable,
    /// 404, malformed answer, or a RIM other than the one asked for).
    #[error("RIM {id} from {url}: {problem}")]
    RimService {
        /// The RIM id asked for (e.g. `NV_GPU_DRIVER_GH100_550.90.07`).
        id: String,
        /// The URL it was asked from.
        url: String,
        /// What went wrong.
        problem: RimServiceProblem,
    },
    /// The NVIDIA driver (NVML) is absent or an NVML call failed.
    #[error("NVML: {0}")]
    Nvml(String),
}

impl Error {
    /// The family of this error.
    pub fn category(&self) -> ErrorCategory {
        match self {
            Error::MalformedReport(_)
            | Error::MalformedCertificate(_)
            | Error::MalformedRim { .. }
            | Error::MalformedOcsp(_)
            | Error::Malformed { .. } => ErrorCategory::Malformed,
            Error::Chain(_)
            | Error::ReportSignature
            | Error::NonceMismatch { .. }
            | Error::RimSignature { .. }
            | Error::RimMismatch(_)
            | Error::MeasurementMismatch { .. }
            | Error::Ocsp(_)
            | Error::DigestMismatch { .. } => ErrorCategory::Verification,
            Error::Policy(_) => ErrorCategory::Rejected,
            Error::RimService { problem, .. } if problem.is_io() => ErrorCategory::Io,
            Error::RimService {
                problem: RimServiceProblem::WrongRim(_),
                ..
            } => ErrorCategory::Verification,
            Error::RimService { .. } => ErrorCategory::Malformed,
            Error::Io { .. } | Error::Http { .. } | Error::Nvml(_) => ErrorCategory::Io,
        }
    }

    pub(crate) fn io(path: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// What went wrong asking the RIM service for one id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RimServiceProblem {
    /// The service answered 404: it has no RIM of this id.
    #[error("the service has no RIM of this id (HTTP 404)")]
    NotFound,
    /// The service answered another non-success status.
    #[error("the service answered HTTP {0}")]
    Status(u16),
    /// Connecting, sending or reading failed (time-out included).
    #[error("request failed: {0}")]
    Transport(String),
    /// The body is larger than [`crate::rim_service::MAX_RESPONSE_LEN`].
    #[error("the response is over the size limit")]
    TooLarge,
    /// Offline, and the cache has no usable RIM of this id.
    #[error("offline, and the cache has no usable RIM of this id ({0})")]
    Offline(String),
    /// The body is not the expected JSON object (not JSON, a field missing
    /// or of the wrong type).
    #[error("the response is not the RIM service's JSON: {0}")]
    NotJson(String),
    /// The `id` field is not the id asked for.
    #[error("the response is for id {0:?}, not the one asked for")]
    IdMismatch(String),
    /// The `rim` field is not standard base64.
    #[error("the rim field is not base64")]
    BadBase64,
    /// `sha256` is not the SHA-256 of the decoded RIM.
    #[error("the sha256 field {0:?} is not the SHA-256 of the decoded RIM")]
    Sha256Mismatch(String),
    /// `rim_format` is not `TCG` (SWID); CoRIM is not supported.
    #[error("RIM format {0:?} is not supported (only TCG SWID tags)")]
    Format(String),
    /// The decoded RIM is not the one the id names (other version or chip).
    #[error("the RIM is not the one asked for: {0}")]
    WrongRim(String),
}

impl RimServiceProblem {
    /// Whether this is about the service being unreachable or not having
    /// the RIM (I/O), rather than answering something malformed.
    pub fn is_io(&self) -> bool {
        matches!(
            self,
            RimServiceProblem::NotFound
                | RimServiceProblem::Status(_)
                | RimServiceProblem::Transport(_)
                | RimServiceProblem::Offline(_)
        )
    }
}

/// Shorthand for results of this crate.
pub type Result<T> = std::result::Result<T, Error>;
