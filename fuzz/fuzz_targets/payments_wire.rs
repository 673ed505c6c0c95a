//! What a client and an agent read from each other about payment: the
//! voucher header, the receipt's wire form, a paid event stream. Parsing
//! never panics, and whatever parses re-encodes to what was read.
#![no_main]
use libfuzzer_sys::fuzz_target;

use chrysalis_payments::client::PaidAnswer;
use chrysalis_payments::receipt::SignedReceipt;
use chrysalis_payments::voucher::SignedVoucher;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(v) = SignedVoucher::parse(s) {
            let _ = v.verify();
            let again = SignedVoucher::parse(&v.encode().expect("re-encode")).expect("re-parse");
            assert_eq!(again, v);
        }
        if let Ok(r) = SignedReceipt::parse(s) {
            assert_eq!(SignedReceipt::parse(&r.encode()).expect("re-parse"), r);
        }
    }
    let mut a = PaidAnswer::new();
    for chunk in data.chunks(7) {
        if a.feed(chunk).is_err() {
            return;
        }
    }
    let _ = a.finish(None);
});
