//! Paying through a channel as a client (`chrysalis chat --channel FILE`):
//! the voucher sent with each request and the check of each receipt,
//! both from `chrysalis_payments::client` (shared with the Python client).
//!
//! Per answer: a voucher for everything paid receipts charged so far goes
//! with the request; the answer's receipt is checked (signature by the
//! verified RA-TLS key, the channel's machine key, channel, sequence,
//! request and response hashes, the tokens the answer reported, a price
//! no higher than the registry's at open); then it is paid at once with a
//! voucher sent along `GET /v1/models` (not charged). A refused receipt is
//! never paid: exit 3 when it does not verify, 4 when it overcharges.

use std::path::{Path, PathBuf};

use anyhow::anyhow;
use chrysalis_attestation::ErrorCategory;
use chrysalis_payments::client::{ChannelFile, PaidAnswer};
use chrysalis_payments::Error as PayError;

use crate::failure::Failure;

/// Request header of the voucher.
pub const VOUCHER_HEADER: &str = "x-chrysalis-voucher";

/// A payments error with its exit category (by variant, never by text).
pub fn pf(e: PayError) -> Failure {
    let category = match &e {
        PayError::Overcharge(_) | PayError::Channel(_) => ErrorCategory::Rejected,
        PayError::Io { .. } => ErrorCategory::Io,
        PayError::BadSignature { .. }
        | PayError::Refused(_)
        | PayError::UnsupportedKey(_)
        | PayError::Malformed { .. } => ErrorCategory::Verification,
        _ => ErrorCategory::Malformed,
    };
    Failure::new(category, anyhow::Error::new(e))
}

/// One paid answer of `chat`.
pub struct Payer {
    path: PathBuf,
    file: ChannelFile,
    spki: Vec<u8>,
    answer: PaidAnswer,
}

impl Payer {
    /// Opens the channel file for a connection whose verified RA-TLS key
    /// is `spki` (refused unless it is the channel's machine key).
    pub fn open(path: &Path, spki: &[u8]) -> Result<Self, Failure> {
        let file = ChannelFile::load(path).map_err(pf)?;
        file.check_key(spki).map_err(pf)?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
            spki: spki.to_vec(),
            answer: PaidAnswer::new(),
        })
    }

    /// The voucher for this request (recorded in the file before it is sent).
    pub fn voucher_header(&mut self) -> Result<String, Failure> {
        let v = self.file.next_voucher().map_err(pf)?;
        self.file.save(&self.path, false).map_err(pf)?;
        Ok(v)
    }

    /// Feeds a chunk of the answer.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), Failure> {
        self.answer.feed(chunk).map_err(pf)
    }
}

/// After the answer: checks its receipt, then pays for it at once with a
/// voucher sent along `GET /v1/models`, so the operator can claim
/// everything received.
pub async fn settle(
    payer: Payer,
    request: &[u8],
    conn: &mut chrysalis_client::NodeConnection,
) -> Result<(), Failure> {
    use http_body_util::BodyExt;
    let Payer {
        path,
        mut file,
        spki,
        answer,
    } = payer;
    let got = answer.finish(None).map_err(pf)?;
    let r = file
        .accept_receipt(
            &spki,
            &got.receipt,
            request,
            &got.response_sha256,
            got.usage,
        )
        .map_err(pf)?;
    let voucher = file.next_voucher().map_err(pf)?;
    file.save(&path, false).map_err(pf)?;
    let req = hyper::Request::get("/v1/models")
        .header("host", "chrysalis")
        .header(VOUCHER_HEADER, voucher)
        .body(http_body_util::Full::new(hyper::body::Bytes::new()))
        .map_err(|e| Failure::new(ErrorCategory::Malformed, e))?;
    let conn_err = |e: hyper::Error| Failure::new(ErrorCategory::Connection, e);
    let resp = conn.send(req).await?;
    let status = resp.status();
    let _ = resp.into_body().collect().await.map_err(conn_err)?;
    if !status.is_success() {
        return Err(Failure::new(
            ErrorCategory::Connection,
            anyhow!(
                "the agent did not take the voucher for {} nanotons: HTTP {status}",
                file.charged
            ),
        ));
    }
    eprintln!(
        "paid {} nanotons for this answer (receipt verified against the attested key); {} nanotons in total on channel {}",
        r.receipt.amount, file.charged, file.channel
    );
    Ok(())
}
