//! The evidence front door (encoding detection + TEE detection + parsing)
//! never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = chrysalis_attestation::evidence::decode(data);
});
