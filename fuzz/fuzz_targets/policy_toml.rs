//! Policy files are untrusted text too: parsing never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = chrysalis_attestation::Policy::from_toml(s);
    }
});
