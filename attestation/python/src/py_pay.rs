//! Paying through a channel from Python (`chrysalis.http_client(channel=…)`):
//! the client-side core of `chrysalis_payments::client` (the same checks
//! as `chrysalis chat --channel`) as the classes `PaymentChannel` and
//! `PaidAnswer`, and the exception `PaymentRefused`.

use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use chrysalis_payments::client::{ChannelFile, PaidAnswer};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyType};

/// `chrysalis.PaymentRefused`, a subclass of the module's `ChrysalisError`
/// (made in [`register`], from the module, so this file needs nothing
/// from the rest of the bindings).
static PAYMENT_REFUSED: OnceLock<Py<PyType>> = OnceLock::new();

fn refused(e: chrysalis_payments::Error) -> PyErr {
    match PAYMENT_REFUSED.get() {
        Some(t) => Python::attach(|py| PyErr::from_type(t.bind(py).clone(), e.to_string())),
        None => pyo3::exceptions::PyRuntimeError::new_err(e.to_string()),
    }
}

/// A channel file (from `chrysalis ton channel open`), updated after every
/// paid answer. Thread-safe: one answer is accounted at a time.
#[pyclass(frozen, module = "chrysalis", name = "PaymentChannel")]
pub struct PyChannel {
    path: PathBuf,
    file: Mutex<ChannelFile>,
}

fn lock(m: &Mutex<ChannelFile>) -> std::sync::MutexGuard<'_, ChannelFile> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[pymethods]
impl PyChannel {
    #[new]
    fn new(path: PathBuf) -> PyResult<Self> {
        let file = ChannelFile::load(&path).map_err(refused)?;
        Ok(Self {
            path,
            file: Mutex::new(file),
        })
    }

    /// The voucher for everything paid so far (the `X-Chrysalis-Voucher`
    /// value); recorded in the file before it is returned.
    fn voucher(&self) -> PyResult<String> {
        let mut f = lock(&self.file);
        let v = f.next_voucher().map_err(refused)?;
        f.save(&self.path, false).map_err(refused)?;
        Ok(v)
    }

    /// Checks the receipt of `answer` (the header value for a JSON answer,
    /// `None` for an event stream) for `request` (the body sent) against
    /// the connection's attested key `public_key_der`; records and returns
    /// `{"seq", "amount", "cumulative"}`, or raises `PaymentRefused`.
    #[pyo3(signature = (answer, header, request, public_key_der))]
    fn accept<'py>(
        &self,
        py: Python<'py>,
        answer: &PyPaidAnswer,
        header: Option<&str>,
        request: &[u8],
        public_key_der: &[u8],
    ) -> PyResult<Bound<'py, PyDict>> {
        let a = std::mem::take(&mut *answer.inner.lock().unwrap_or_else(|p| p.into_inner()));
        let got = a.finish(header).map_err(refused)?;
        let mut f = lock(&self.file);
        let mut next = f.clone();
        let r = next
            .accept_receipt(
                public_key_der,
                &got.receipt,
                request,
                &got.response_sha256,
                got.usage,
            )
            .map_err(refused)?;
        next.save(&self.path, false).map_err(refused)?;
        *f = next;
        let d = PyDict::new(py);
        d.set_item("seq", r.receipt.seq)?;
        d.set_item("amount", r.receipt.amount)?;
        d.set_item("cumulative", r.receipt.cumulative)?;
        Ok(d)
    }

    /// Refuses (`PaymentRefused`) a connection to another machine's key.
    fn check_key(&self, public_key_der: &[u8]) -> PyResult<()> {
        lock(&self.file).check_key(public_key_der).map_err(refused)
    }

    /// Nanotons charged by paid receipts so far.
    #[getter]
    fn charged(&self) -> u64 {
        lock(&self.file).charged
    }

    /// Sequence number of the last paid receipt.
    #[getter]
    fn seq(&self) -> u64 {
        lock(&self.file).seq
    }

    /// The channel's address (raw form).
    #[getter]
    fn address(&self) -> String {
        lock(&self.file).channel.clone()
    }
}

/// The bytes of one answer as they arrive (receipt, response hash, usage).
#[pyclass(frozen, module = "chrysalis", name = "PaidAnswer")]
pub struct PyPaidAnswer {
    inner: Mutex<PaidAnswer>,
}

#[pymethods]
impl PyPaidAnswer {
    #[new]
    fn new() -> Self {
        Self {
            inner: Mutex::new(PaidAnswer::new()),
        }
    }

    /// Whether an event stream's receipt event has been read whole.
    fn has_receipt(&self) -> bool {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .has_receipt()
    }

    /// Feeds the next bytes of the body.
    fn feed(&self, chunk: &[u8]) -> PyResult<()> {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .feed(chunk)
            .map_err(refused)
    }
}

/// Adds the classes and `PaymentRefused` (a subclass of the module's
/// `ChrysalisError`, which must be added first) to `chrysalis._native`.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<PyChannel>()?;
    m.add_class::<PyPaidAnswer>()?;
    let base = m.getattr("ChrysalisError")?.cast_into::<PyType>()?;
    let t = PyErr::new_type(
        py,
        c"chrysalis.PaymentRefused",
        Some(c"A usage receipt was refused (forged, overcharging or not matching the answer), or the channel cannot pay (another machine's key, deposit used up)."),
        Some(&base),
        None,
    )?;
    m.add("PaymentRefused", t.bind(py))?;
    let _ = PAYMENT_REFUSED.set(t);
    Ok(())
}
