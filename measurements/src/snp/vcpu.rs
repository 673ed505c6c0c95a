//! QEMU vCPU models and the CPUID signature each puts in the initial VMSA.
//!
//! Under QEMU the initial `RDX` of every vCPU holds the CPUID Fn0000_0001 EAX
//! signature (family/model/stepping) of the guest CPU model, so the model is part
//! of the SNP launch digest. The names are QEMU's `-cpu` names as
//! `sev-snp-measure --vcpu-type` accepts them (plus the Turin versions the `sev`
//! crate knows); versions of one model share a signature.

use std::fmt;
use std::str::FromStr;

use crate::error::Error;

/// A guest vCPU model (QEMU `-cpu NAME`), or an explicit CPUID signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VcpuType {
    /// `EPYC`
    Epyc,
    /// `EPYC-v1`
    EpycV1,
    /// `EPYC-v2`
    EpycV2,
    /// `EPYC-IBPB`
    EpycIbpb,
    /// `EPYC-v3`
    EpycV3,
    /// `EPYC-v4`
    EpycV4,
    /// `EPYC-Rome`
    EpycRome,
    /// `EPYC-Rome-v1`
    EpycRomeV1,
    /// `EPYC-Rome-v2`
    EpycRomeV2,
    /// `EPYC-Rome-v3`
    EpycRomeV3,
    /// `EPYC-Milan`
    EpycMilan,
    /// `EPYC-Milan-v1`
    EpycMilanV1,
    /// `EPYC-Milan-v2`
    EpycMilanV2,
    /// `EPYC-Genoa`
    EpycGenoa,
    /// `EPYC-Genoa-v1`
    EpycGenoaV1,
    /// `EPYC-Turin`
    EpycTurin,
    /// `EPYC-Turin-v1`
    EpycTurinV1,
    /// `EPYC-Turin-v2`
    EpycTurinV2,
    /// Any other model, given by its 32-bit CPUID Fn0000_0001 EAX signature
    /// (as `sev-snp-measure --vcpu-sig`); see [`cpu_signature`].
    Signature(u32),
}

/// Every named model with its name, in the order `sev-snp-measure` lists them.
const NAMED: &[(VcpuType, &str)] = &[
    (VcpuType::Epyc, "EPYC"),
    (VcpuType::EpycV1, "EPYC-v1"),
    (VcpuType::EpycV2, "EPYC-v2"),
    (VcpuType::EpycIbpb, "EPYC-IBPB"),
    (VcpuType::EpycV3, "EPYC-v3"),
    (VcpuType::EpycV4, "EPYC-v4"),
    (VcpuType::EpycRome, "EPYC-Rome"),
    (VcpuType::EpycRomeV1, "EPYC-Rome-v1"),
    (VcpuType::EpycRomeV2, "EPYC-Rome-v2"),
    (VcpuType::EpycRomeV3, "EPYC-Rome-v3"),
    (VcpuType::EpycMilan, "EPYC-Milan"),
    (VcpuType::EpycMilanV1, "EPYC-Milan-v1"),
    (VcpuType::EpycMilanV2, "EPYC-Milan-v2"),
    (VcpuType::EpycGenoa, "EPYC-Genoa"),
    (VcpuType::EpycGenoaV1, "EPYC-Genoa-v1"),
    (VcpuType::EpycTurin, "EPYC-Turin"),
    (VcpuType::EpycTurinV1, "EPYC-Turin-v1"),
    (VcpuType::EpycTurinV2, "EPYC-Turin-v2"),
];

impl VcpuType {
    /// All named models (not [`VcpuType::Signature`]), for help texts.
    pub fn all_named() -> impl Iterator<Item = VcpuType> {
        NAMED.iter().map(|(t, _)| *t)
    }

    /// The QEMU `-cpu` name, or `sig:0xNNNNNNNN` for [`VcpuType::Signature`].
    pub fn name(&self) -> String {
        match self {
            VcpuType::Signature(sig) => format!("sig:{sig:#010x}"),
            named => NAMED
                .iter()
                .find(|(t, _)| t == named)
                .map(|(_, n)| (*n).to_string())
                .unwrap_or_default(),
        }
    }

    /// The CPUID Fn0000_0001 EAX signature QEMU reports for this model (the
    /// value of `RDX` in the initial VMSA under QEMU).
    pub fn signature(&self) -> u32 {
        use VcpuType::*;
        match self {
            Epyc | EpycV1 | EpycV2 | EpycIbpb | EpycV3 | EpycV4 => cpu_signature(23, 1, 2),
            EpycRome | EpycRomeV1 | EpycRomeV2 | EpycRomeV3 => cpu_signature(23, 49, 0),
            EpycMilan | EpycMilanV1 | EpycMilanV2 => cpu_signature(25, 1, 1),
            EpycGenoa | EpycGenoaV1 => cpu_signature(25, 17, 0),
            EpycTurin | EpycTurinV1 | EpycTurinV2 => cpu_signature(26, 0, 0),
            Signature(sig) => *sig,
        }
    }
}

impl fmt::Display for VcpuType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl FromStr for VcpuType {
    type Err = Error;

    /// Parses a QEMU model name, case-insensitively (`EPYC-Milan`, `epyc-v4`),
    /// or `sig:0xHEX` for an explicit signature.
    fn from_str(s: &str) -> Result<Self, Error> {
        if let Some(hex) = s.strip_prefix("sig:") {
            let digits = hex.strip_prefix("0x").unwrap_or(hex);
            return u32::from_str_radix(digits, 16)
                .map(VcpuType::Signature)
                .map_err(|_| {
                    Error::BadInput(format!("vCPU signature {s:?} is not a 32-bit hex number"))
                });
        }
        NAMED
            .iter()
            .find(|(_, n)| n.eq_ignore_ascii_case(s))
            .map(|(t, _)| *t)
            .ok_or_else(|| {
                let names: Vec<&str> = NAMED.iter().map(|(_, n)| *n).collect();
                Error::BadInput(format!(
                    "unknown vCPU type {s:?}; known: {}, or sig:0xHEX",
                    names.join(", ")
                ))
            })
    }
}

/// The 32-bit CPUID Fn0000_0001 EAX signature of a family, model and stepping
/// (AMD CPUID specification #25481: extended family above 0xf, model split in
/// low and extended nibbles).
pub const fn cpu_signature(family: u32, model: u32, stepping: u32) -> u32 {
    let (family_low, family_high) = if family > 0xf {
        (0xf, (family - 0xf) & 0xff)
    } else {
        (family, 0)
    };
    (family_high << 20)
        | (((model >> 4) & 0xf) << 16)
        | (family_low << 8)
        | ((model & 0xf) << 4)
        | (stepping & 0xf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for t in VcpuType::all_named() {
            assert_eq!(t.name().parse::<VcpuType>().unwrap(), t);
            assert_eq!(t.name().to_lowercase().parse::<VcpuType>().unwrap(), t);
        }
        let sig = VcpuType::Signature(0x00a00f11);
        assert_eq!(sig.name().parse::<VcpuType>().unwrap(), sig);
        assert!("EPYC-Zen9".parse::<VcpuType>().is_err());
        assert!("sig:zz".parse::<VcpuType>().is_err());
    }

    #[test]
    fn signatures_match_amd_encoding() {
        // Milan is family 19h model 01h stepping 1: EAX 0x00a00f11 (as /proc/cpuinfo shows it).
        assert_eq!(VcpuType::EpycMilan.signature(), 0x00a0_0f11);
        // Genoa: family 19h model 11h stepping 0 -> 0x00a10f10.
        assert_eq!(VcpuType::EpycGenoa.signature(), 0x00a1_0f10);
        // Naples (EPYC): family 17h model 01h stepping 2 -> 0x00800f12.
        assert_eq!(VcpuType::EpycV4.signature(), 0x0080_0f12);
    }
}
