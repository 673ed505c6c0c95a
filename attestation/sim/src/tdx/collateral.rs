//! The collateral JSON a PCS would serve for the simulated platform: the TDX
//! TCB info and the TD_QE identity, in Intel's field order, each signed by
//! the TCB signing key over exactly its bytes.

use serde::Serialize;
use time::{Duration, OffsetDateTime, Time};

use chrysalis_attestation::error::Result;
use chrysalis_attestation::timefmt::format_rfc3339;

use super::key::SimKey;
use super::options::{SimTcbStatus, SimTdxOptions};
use super::platform::{pki_error, SimQeIdentityValues, SimTcbValues, SIM_FMSPC, SIM_PCE_ID};

/// A collateral JSON document and the TCB signing key's ECDSA-P256-SHA256
/// signature (raw `r ‖ s`) over exactly its bytes.
pub(super) struct SignedJson {
    /// The JSON, byte for byte what the signature covers.
    pub(super) json: String,
    /// The signature over `json`.
    pub(super) signature: [u8; 64],
}

impl SignedJson {
    fn sign(json: String, signer: &SimKey) -> Self {
        let signature = signer.sign_raw(json.as_bytes());
        SignedJson { json, signature }
    }
}

/// The TCB info for `tcb`, issued at `issue`, signed by `signer`.
pub(super) fn signed_tcb_info(
    tcb: &SimTcbValues,
    opts: &SimTdxOptions,
    issue: OffsetDateTime,
    next_update: OffsetDateTime,
    signer: &SimKey,
) -> Result<SignedJson> {
    Ok(SignedJson::sign(
        tcb_info_json(tcb, opts, issue, next_update)?,
        signer,
    ))
}

/// The QE identity for `qe`, issued at `issue`, signed by `signer`.
pub(super) fn signed_qe_identity(
    qe: &SimQeIdentityValues,
    opts: &SimTdxOptions,
    issue: OffsetDateTime,
    next_update: OffsetDateTime,
    signer: &SimKey,
) -> Result<SignedJson> {
    Ok(SignedJson::sign(
        qe_identity_json(qe, opts, issue, next_update)?,
        signer,
    ))
}

// ---- PCCS JSON shapes (field order as Intel's PCS emits them) ----

#[derive(Serialize)]
struct SvnJson {
    svn: u8,
}

#[derive(Serialize)]
struct TcbJson {
    sgxtcbcomponents: Vec<SvnJson>,
    pcesvn: u16,
    tdxtcbcomponents: Vec<SvnJson>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TcbLevelJson<T> {
    tcb: T,
    tcb_date: String,
    tcb_status: &'static str,
    #[serde(rename = "advisoryIDs", skip_serializing_if = "Vec::is_empty")]
    advisory_ids: Vec<String>,
}

#[derive(Serialize)]
struct IsvSvnJson {
    isvsvn: u16,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TdxModuleJson {
    mrsigner: String,
    attributes: String,
    attributes_mask: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TdxModuleIdentityJson {
    id: String,
    mrsigner: String,
    attributes: String,
    attributes_mask: String,
    tcb_levels: Vec<TcbLevelJson<IsvSvnJson>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TcbInfoJson {
    id: &'static str,
    version: u8,
    issue_date: String,
    next_update: String,
    fmspc: String,
    pce_id: String,
    tcb_type: u8,
    tcb_evaluation_data_number: u32,
    tdx_module: TdxModuleJson,
    tdx_module_identities: Vec<TdxModuleIdentityJson>,
    tcb_levels: Vec<TcbLevelJson<TcbJson>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct QeIdentityJson {
    id: &'static str,
    version: u8,
    issue_date: String,
    next_update: String,
    tcb_evaluation_data_number: u32,
    miscselect: String,
    miscselect_mask: String,
    attributes: String,
    attributes_mask: String,
    mrsigner: String,
    isvprodid: u16,
    tcb_levels: Vec<TcbLevelJson<IsvSvnJson>>,
}

fn svns(v: &[u8]) -> Vec<SvnJson> {
    v.iter().map(|&svn| SvnJson { svn }).collect()
}

/// `YYYY-MM-DDT00:00:00Z`: Intel dates TCB levels by day.
fn tcb_date(t: OffsetDateTime) -> String {
    format_rfc3339(t.replace_time(Time::MIDNIGHT))
}

fn tcb_info_json(
    tcb: &SimTcbValues,
    opts: &SimTdxOptions,
    issue: OffsetDateTime,
    next_update: OffsetDateTime,
) -> Result<String> {
    let level =
        |pce_svn: u16, date: OffsetDateTime, status: &'static str, adv: Vec<String>| TcbLevelJson {
            tcb: TcbJson {
                sgxtcbcomponents: svns(&tcb.cpu_svn),
                pcesvn: pce_svn,
                tdxtcbcomponents: svns(&tcb.tee_tcb_svn),
            },
            tcb_date: tcb_date(date),
            tcb_status: status,
            advisory_ids: adv,
        };
    let tcb_levels = match &opts.tcb_status {
        // The platform's level, then an older one below it (realistic shape;
        // never matched by the simulated platform).
        SimTcbStatus::UpToDate => vec![
            level(tcb.pce_svn, issue - Duration::days(30), "UpToDate", vec![]),
            level(
                tcb.pce_svn.saturating_sub(2),
                issue - Duration::days(400),
                "OutOfDate",
                vec!["INTEL-SA-00837".to_owned()],
            ),
        ],
        // A newer level the platform falls short of (PCE SVN + 1), then the
        // platform's own, out-of-date level.
        SimTcbStatus::OutOfDate { advisory_ids } => vec![
            level(
                tcb.pce_svn + 1,
                issue - Duration::days(30),
                "UpToDate",
                vec![],
            ),
            level(
                tcb.pce_svn,
                issue - Duration::days(400),
                "OutOfDate",
                advisory_ids.clone(),
            ),
        ],
    };
    let module_isvsvn = u16::from(tcb.tee_tcb_svn[0]);
    let module_id = TdxModuleIdentityJson {
        // Selected by tee_tcb_svn[1], the module's major version.
        id: format!("TDX_{:02X}", tcb.tee_tcb_svn[1]),
        mrsigner: hex::encode_upper(tcb.mrsignerseam),
        attributes: hex::encode_upper(tcb.seam_attributes),
        attributes_mask: "FFFFFFFFFFFFFFFF".to_owned(),
        tcb_levels: vec![
            TcbLevelJson {
                tcb: IsvSvnJson {
                    isvsvn: module_isvsvn,
                },
                tcb_date: tcb_date(issue - Duration::days(30)),
                tcb_status: "UpToDate",
                advisory_ids: vec![],
            },
            TcbLevelJson {
                tcb: IsvSvnJson {
                    isvsvn: module_isvsvn.saturating_sub(2),
                },
                tcb_date: tcb_date(issue - Duration::days(400)),
                tcb_status: "OutOfDate",
                advisory_ids: vec![],
            },
        ],
    };
    let info = TcbInfoJson {
        id: "TDX",
        version: 3,
        issue_date: format_rfc3339(issue),
        next_update: format_rfc3339(next_update),
        fmspc: hex::encode_upper(SIM_FMSPC),
        pce_id: hex::encode_upper(SIM_PCE_ID),
        tcb_type: 0,
        tcb_evaluation_data_number: opts.tcb_evaluation_data_number,
        tdx_module: TdxModuleJson {
            mrsigner: hex::encode_upper(tcb.mrsignerseam),
            attributes: hex::encode_upper(tcb.seam_attributes),
            attributes_mask: "FFFFFFFFFFFFFFFF".to_owned(),
        },
        tdx_module_identities: vec![module_id],
        tcb_levels,
    };
    serde_json::to_string(&info).map_err(|e| pki_error("TCB info JSON", e))
}

fn qe_identity_json(
    qe: &SimQeIdentityValues,
    opts: &SimTdxOptions,
    issue: OffsetDateTime,
    next_update: OffsetDateTime,
) -> Result<String> {
    let mut attributes_mask = [0u8; 16];
    // Intel's mask: the first 8 bytes, less DEBUG (bit 1) which the verifier
    // checks on its own.
    attributes_mask[..8].copy_from_slice(&[0xFB, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]);
    let id = QeIdentityJson {
        id: "TD_QE",
        version: 2,
        issue_date: format_rfc3339(issue),
        next_update: format_rfc3339(next_update),
        tcb_evaluation_data_number: opts.tcb_evaluation_data_number,
        // dcap-qvl reads these hex strings as the report's little-endian bytes.
        miscselect: hex::encode_upper(qe.misc_select.to_le_bytes()),
        miscselect_mask: "FFFFFFFF".to_owned(),
        attributes: hex::encode_upper(qe.attributes),
        attributes_mask: hex::encode_upper(attributes_mask),
        mrsigner: hex::encode_upper(qe.mr_signer),
        isvprodid: qe.isv_prod_id,
        tcb_levels: vec![
            TcbLevelJson {
                tcb: IsvSvnJson { isvsvn: qe.isv_svn },
                tcb_date: tcb_date(issue - Duration::days(30)),
                tcb_status: "UpToDate",
                advisory_ids: vec![],
            },
            TcbLevelJson {
                tcb: IsvSvnJson {
                    isvsvn: qe.isv_svn.saturating_sub(1),
                },
                tcb_date: tcb_date(issue - Duration::days(400)),
                tcb_status: "OutOfDate",
                advisory_ids: vec!["INTEL-SA-00615".to_owned()],
            },
        ],
    };
    serde_json::to_string(&id).map_err(|e| pki_error("QE identity JSON", e))
}
