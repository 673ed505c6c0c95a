//! Any byte string either parses as an SNP report that re-serialises to the
//! same bytes, or is rejected with an error — never a panic.
#![no_main]
use chrysalis_attestation::snp::SnpReport;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = SnpReport::parse(data) {
        assert_eq!(r.to_bytes(), data);
    }
});
