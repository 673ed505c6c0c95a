//! The knobs of the simulated collateral: validity windows, the TCB status
//! of the simulated platform's level, revocation of the PCK leaf.

use time::Duration;

/// TCB status the TCB info assigns to the simulated platform's level.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SimTcbStatus {
    /// The simulated platform is on the newest level.
    #[default]
    UpToDate,
    /// A newer level exists (PCE SVN one higher); the simulated platform's
    /// level is `OutOfDate` with these advisory ids (e.g. `INTEL-SA-00837`).
    OutOfDate {
        /// Advisory ids listed on the platform's level.
        advisory_ids: Vec<String>,
    },
}

/// Knobs of the simulated collateral. `Default` gives valid, up-to-date
/// collateral with nothing revoked.
///
/// Offsets are relative to the `now` given to
/// [`SimTdxPki::generate_with`](super::SimTdxPki::generate_with); issue
/// dates are `now - 1h` unless said otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimTdxOptions {
    /// Days from `now` to `nextUpdate` of the TCB info, the QE identity and
    /// both CRLs. Default 30, like Intel's PCS.
    pub validity_days: u32,
    /// Overrides `nextUpdate` of the TCB info (offset from `now`; negative
    /// for already expired TCB info). `None`: `validity_days`.
    pub tcb_info_next_update: Option<Duration>,
    /// Overrides `nextUpdate` of the QE identity (offset from `now`).
    /// `None`: `validity_days`.
    pub qe_identity_next_update: Option<Duration>,
    /// Overrides `thisUpdate` of both CRLs (offset from `now`; positive for a
    /// CRL that is not yet valid). `None`: `now - 1h`.
    pub crl_this_update: Option<Duration>,
    /// Overrides `nextUpdate` of both CRLs (offset from `now`; must be after
    /// `thisUpdate`). `None`: `validity_days`.
    pub crl_next_update: Option<Duration>,
    /// The TCB status of the simulated platform's TCB level.
    pub tcb_status: SimTcbStatus,
    /// Put the PCK leaf certificate's serial on the PCK CRL.
    pub revoke_pck: bool,
    /// `tcbEvaluationDataNumber` of the TCB info and QE identity. Default 17.
    pub tcb_evaluation_data_number: u32,
}

impl Default for SimTdxOptions {
    fn default() -> Self {
        SimTdxOptions {
            validity_days: 30,
            tcb_info_next_update: None,
            qe_identity_next_update: None,
            crl_this_update: None,
            crl_next_update: None,
            tcb_status: SimTcbStatus::UpToDate,
            revoke_pck: false,
            tcb_evaluation_data_number: 17,
        }
    }
}

impl SimTdxOptions {
    /// Makes the simulated platform's level `OutOfDate` with `advisory_ids`.
    pub fn out_of_date<S: AsRef<str>>(mut self, advisory_ids: &[S]) -> Self {
        self.tcb_status = SimTcbStatus::OutOfDate {
            advisory_ids: advisory_ids.iter().map(|s| s.as_ref().to_owned()).collect(),
        };
        self
    }

    /// Revokes the PCK leaf certificate on the PCK CRL.
    pub fn revoke_pck(mut self, revoke: bool) -> Self {
        self.revoke_pck = revoke;
        self
    }

    /// Sets the validity in days of the TCB info, QE identity and CRLs.
    pub fn validity_days(mut self, days: u32) -> Self {
        self.validity_days = days;
        self
    }
}
