//! NVIDIA H100 attestation report (SPDM GET_MEASUREMENTS request +
//! response) and the GPU evidence bundle: must never panic; a parsed report
//! re-exposes exactly the bytes it came from.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = chrysalis_gpu::AttestationReport::parse(data) {
        assert_eq!(r.raw(), data);
        let _ = (r.driver_version(), r.vbios_version(), r.project_ids());
    }
    let _ = chrysalis_gpu::GpuEvidenceBundle::from_json(data);
});
