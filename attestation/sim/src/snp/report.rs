//! Report assembly: a version 3 attestation report shaped like a Milan
//! chip's, for this authority's chip id and TCB, signed by its VCEK.

use p384::ecdsa::signature::Signer;
use rand_core::{OsRng, RngCore};

use chrysalis_attestation::snp::report::{
    CpuId, EcdsaSignature, FirmwareVersion, GuestPolicy, KeyInfo, PlatformInfo, SnpReport,
    SIG_ALGO_ECDSA_P384_SHA384,
};

use super::pki::SimSnpAuthority;

impl SimSnpAuthority {
    /// A signed version 3 report, shaped like one from a Milan chip: guest
    /// policy without debug (SMT allowed, ABI 0.0), VMPL 0, CPUID family 0x19
    /// model 0x01, this authority's chip id and TCB.
    pub fn report(
        &self,
        report_data: [u8; 64],
        measurement: [u8; 48],
        host_data: [u8; 32],
    ) -> Vec<u8> {
        let mut report = self.unsigned_report(report_data, measurement, host_data);
        self.sign(&mut report);
        report.to_bytes()
    }

    /// The report [`Self::report`] would sign, unsigned (zero signature), to
    /// change fields before [`Self::sign`]ing it.
    pub fn unsigned_report(
        &self,
        report_data: [u8; 64],
        measurement: [u8; 48],
        host_data: [u8; 32],
    ) -> SnpReport {
        let mut report_id = [0u8; 32];
        OsRng.fill_bytes(&mut report_id);
        let firmware = FirmwareVersion {
            major: 1,
            minor: 55,
            build: 21,
        };
        SnpReport {
            version: 3,
            guest_svn: 0,
            // Bit 17 must be one; bit 16 allows SMT; bit 19 (debug) clear.
            policy: GuestPolicy(0x3_0000),
            family_id: [0; 16],
            image_id: [0; 16],
            vmpl: 0,
            sig_algo: SIG_ALGO_ECDSA_P384_SHA384,
            current_tcb: self.tcb,
            platform_info: PlatformInfo(0x1),
            key_info: KeyInfo(0),
            reserved_04c: [0; 4],
            report_data,
            measurement,
            host_data,
            id_key_digest: [0; 48],
            author_key_digest: [0; 48],
            report_id,
            report_id_ma: [0xff; 32],
            reported_tcb: self.tcb,
            cpuid: Some(CpuId {
                family: 0x19,
                model: 0x01,
                stepping: 0x01,
            }),
            reserved_188: [0; 3],
            reserved_18b: [0; 21],
            chip_id: self.chip_id,
            committed_tcb: self.tcb,
            current_version: firmware,
            reserved_1eb: 0,
            committed_version: firmware,
            reserved_1ef: 0,
            launch_tcb: self.tcb,
            launch_mit_vector: None,
            current_mit_vector: None,
            reserved_1f8: [0; 16],
            reserved_208: [0; 152],
            signature: EcdsaSignature::from_p384_be(&[0; 48], &[0; 48]),
        }
    }

    /// Signs `report` in place with the VCEK key: ECDSA P-384 over SHA-384
    /// of bytes `0..0x2A0`, stored little-endian.
    pub fn sign(&self, report: &mut SnpReport) {
        let sig: p384::ecdsa::Signature = self.vcek_key.sign(&report.signed_bytes());
        let (r, s) = sig.split_bytes();
        let mut r_be = [0u8; 48];
        let mut s_be = [0u8; 48];
        r_be.copy_from_slice(&r);
        s_be.copy_from_slice(&s);
        report.signature = EcdsaSignature::from_p384_be(&r_be, &s_be);
    }
}
