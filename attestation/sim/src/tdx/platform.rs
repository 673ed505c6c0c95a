//! The fixed identity of the simulated platform: its FMSPC and PCE-ID, the
//! TCB values the PCK certificate certifies and the TCB info describes, and
//! the Quoting Enclave values the QE identity expects. The PKI, the
//! collateral JSON and the quote all read them from here, so they agree.

use sha2::{Digest, Sha256, Sha384};

use chrysalis_attestation::error::Error;

/// FMSPC of the simulated platform (6 bytes, as in the PCK certificate and
/// TCB info). Not a real Intel FMSPC family.
pub const SIM_FMSPC: [u8; 6] = [0x5C, 0x15, 0x00, 0x00, 0x00, 0x00];
/// PCE-ID of the simulated platform (2 bytes, as in the PCK certificate).
pub(super) const SIM_PCE_ID: [u8; 2] = [0x00, 0x00];

/// The TCB values of the simulated platform: what the PCK certificate
/// certifies and what a TD report must carry to match the TCB info's
/// simulated level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimTcbValues {
    /// CPU SVN (16 SGX TCB components), in the PCK certificate and QE report.
    pub cpu_svn: [u8; 16],
    /// PCE SVN, in the PCK certificate and the quote header.
    pub pce_svn: u16,
    /// TEE TCB SVN of the TD report: byte 0 the TDX module's SVN, byte 1 its
    /// major version (selects the `TDX_01` module identity), bytes 2.. the
    /// other TDX TCB components.
    pub tee_tcb_svn: [u8; 16],
    /// MRSEAM of the TD report (not checked against collateral; a fixed
    /// simulated SHA-384 value).
    pub mrseam: [u8; 48],
    /// MRSIGNERSEAM the TCB info expects (all zero, as for Intel's module).
    pub mrsignerseam: [u8; 48],
    /// SEAM attributes the TCB info expects (little-endian u64, zero).
    pub seam_attributes: [u8; 8],
}

/// The Quoting Enclave values the simulated QE identity expects in a QE report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimQeIdentityValues {
    /// MRSIGNER of the simulated QE (SHA-256 of a label; not Intel's).
    pub mr_signer: [u8; 32],
    /// MRENCLAVE of the simulated QE (not checked against collateral).
    pub mr_enclave: [u8; 32],
    /// ISVPRODID of the TD quoting enclave (2, as Intel's TD_QE).
    pub isv_prod_id: u16,
    /// ISVSVN, matching the QE identity's `UpToDate` level.
    pub isv_svn: u16,
    /// Enclave attributes (INIT | MODE64BIT, not DEBUG).
    pub attributes: [u8; 16],
    /// MISCSELECT (little-endian in the report).
    pub misc_select: u32,
}

/// The simulated platform's TCB values (fixed).
pub(super) fn sim_tcb_values() -> SimTcbValues {
    SimTcbValues {
        cpu_svn: [4, 4, 2, 2, 3, 1, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0],
        pce_svn: 13,
        tee_tcb_svn: [5, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        mrseam: Sha384::digest(b"Chrysalis SIMULATED TDX module MRSEAM").into(),
        mrsignerseam: [0u8; 48],
        seam_attributes: [0u8; 8],
    }
}

/// The simulated Quoting Enclave's identity values (fixed).
pub(super) fn sim_qe_values() -> SimQeIdentityValues {
    let mut attributes = [0u8; 16];
    attributes[0] = 0x11; // INIT | MODE64BIT
    SimQeIdentityValues {
        mr_signer: Sha256::digest(b"Chrysalis SIMULATED TD_QE MRSIGNER").into(),
        mr_enclave: Sha256::digest(b"Chrysalis SIMULATED TD_QE MRENCLAVE").into(),
        isv_prod_id: 2,
        isv_svn: 4,
        attributes,
        misc_select: 0,
    }
}

/// The error of a failed generation step (`what`) of the simulated PKI or
/// its collateral.
pub(super) fn pki_error(what: &str, e: impl std::fmt::Display) -> Error {
    // rcgen and serde_json only fail on parameters the simulator chose, so
    // this is a bug in it rather than bad input; no better-fitting variant
    // exists.
    Error::Unsupported(format!("simulated TDX PKI: {what}: {e}"))
}
