//! Any byte string either parses as a TDX quote that re-serialises to the
//! same bytes, or is rejected with an error — never a panic.
#![no_main]
use chrysalis_attestation::tdx::TdxQuote;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((q, used)) = TdxQuote::parse_prefix(data) {
        assert_eq!(q.to_bytes(), &data[..used]);
    }
});
