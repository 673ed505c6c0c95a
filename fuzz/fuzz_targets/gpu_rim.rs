//! NVIDIA RIM (SWID tag XML) parsing and XML-DSig verification: must never
//! panic on any input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(rim) = chrysalis_gpu::Rim::parse("fuzz", data) {
        let _ = chrysalis_gpu::rim::verify_rim(
            &rim,
            chrysalis_gpu::certs::NVIDIA_RIM_ROOT_DER,
            time::OffsetDateTime::UNIX_EPOCH,
        );
    }
});
