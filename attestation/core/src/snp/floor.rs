//! The minimum SNP TCB per AMD product, shipped with the verifier.
//!
//! Intel publishes a signed verdict (`UpToDate`, `OutOfDate`, …) for every
//! TDX platform; AMD publishes none. What AMD publishes are security
//! bulletins naming, per product, the firmware and microcode security patch
//! levels (SPLs) that fix a vulnerability. This table is those levels: a
//! report whose *reported* TCB (the TCB its VCEK/VLEK certifies, so the host
//! cannot inflate it) is below the floor in any component gets
//! [`crate::TcbStatus::OutOfDate`], which the default policy rejects.
//!
//! The floor is the AMD-SB-3019 ("EntrySign", CVE-2024-56161) mitigation
//! level: below it a host can load forged microcode, which voids every
//! SEV-SNP guarantee, the attestation report included. Later bulletins
//! (AMD-SB-3020 RMP initialisation, CVE-2025-0033; AMD-SB-3027 StackWarp,
//! CVE-2025-29943) are *not* in the default floor because their Milan values
//! could not be confirmed from a source available when this table was
//! written; a policy raises the floor with `snp.min_tcb`. The table must
//! track AMD's bulletins: nothing plays the role of Intel's TCB info.
//!
//! Microcode SPLs are the low byte of the microcode patch id, and each
//! silicon line has its own patch sequence: Milan-X and Genoa-X (stepping 2)
//! and the Zen 4c parts Bergamo/Siena (Genoa product, models A0h–AFh) get
//! their own microcode floor, chosen from the report's signed CPUID
//! (report version 3+). A report without CPUID gets the product's classic
//! floor, the strictest.
//!
//! Sources (checked 2026-12): the bulletins' values as quoted by peers —
//! the per-line microcode minimums of AMD-SB-3019 (Milan 0x0A0011DB,
//! Milan-X 0x0A001244, Genoa 0x0A101154, Genoa-X 0x0A10124F, Bergamo
//! 0x0AA00219) as used by an open-source SNP client's built-in baseline,
//! and the Genoa `TCB[SNP] = 0x17` and Turin (AMD-SB-3020) `SPL = 0x04`,
//! microcode `0x0B002150` rows as quoted from the bulletins by a public
//! security review of Tinfoil's verifier. The bulletins themselves were
//! not reachable from the build machine; each value says how it was
//! confirmed.

use serde::Serialize;

use super::report::CpuId;
use super::tcb::{Product, TcbVersion};

/// The minimum SPL of each TCB component. `fmc` exists on Turin only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TcbFloor {
    /// Which product line the floor is for (e.g. `Genoa-X`).
    pub line: &'static str,
    /// The bulletin that sets the floor.
    pub bulletin: &'static str,
    /// Minimum FMC SPL (Turin only).
    pub fmc: Option<u8>,
    /// Minimum secure-processor bootloader SPL.
    pub bootloader: u8,
    /// Minimum secure-processor OS (TEE) SPL.
    pub tee: u8,
    /// Minimum SNP firmware SPL.
    pub snp: u8,
    /// Minimum microcode SPL.
    pub microcode: u8,
}

/// Milan (EPYC 7003), classic parts (stepping 1): AMD-SB-3019 SNP 22
/// (0x16, not confirmed against the bulletin text) and microcode 219
/// (0x0A0011DB); bootloader 4 and TEE 0 are set by no bulletin (peer
/// baseline).
pub const MILAN: TcbFloor = TcbFloor {
    line: "Milan",
    bulletin: "AMD-SB-3019",
    fmc: None,
    // Bootloader 4: no bulletin sets it; the lowest value seen on patched
    // Milan hosts (Azure DCasv5 reports, Feb 2025) and used by peers.
    bootloader: 4,
    // TEE 0: no bulletin sets a TEE floor for Milan.
    tee: 0,
    // SNP 22 (0x16): SEV firmware 1.55.21 per AMD-SB-3019 as used by a
    // peer's baseline; matches patched Azure hosts. Not confirmed against
    // the bulletin text itself.
    snp: 22,
    // Microcode 219 (0xDB): AMD-SB-3019 minimum patch 0x0A0011DB (213 =
    // 0x0A0011D5 is the last patch without the signature fix).
    microcode: 219,
};

/// Milan-X (EPYC 7003X, stepping 2): its own microcode line, AMD-SB-3019
/// minimum 0x0A001244 (SPL 68); the rest as [`MILAN`].
pub const MILAN_X: TcbFloor = TcbFloor {
    line: "Milan-X",
    // Microcode 68 (0x44): AMD-SB-3019 minimum patch 0x0A001244.
    microcode: 68,
    ..MILAN
};

/// Genoa (EPYC 9004), classic parts: AMD-SB-3019 SNP 23 (0x17, firmware
/// 1.55.40) and microcode 84 (0x0A101154); bootloader 7 and TEE 0 are set
/// by no bulletin (Tinfoil's floor).
pub const GENOA: TcbFloor = TcbFloor {
    line: "Genoa",
    bulletin: "AMD-SB-3019",
    fmc: None,
    // Bootloader 7: no bulletin sets it; Tinfoil's Genoa floor.
    bootloader: 7,
    // TEE 0: no bulletin sets a TEE floor for Genoa.
    tee: 0,
    // SNP 23 (0x17): AMD-SB-3019, SEV firmware 1.55.40, `TCB[SNP] = 0x17`
    // (as quoted from the bulletin by a public review; patched Genoa hosts
    // report exactly 23).
    snp: 23,
    // Microcode 84 (0x54): AMD-SB-3019 minimum patch 0x0A101154.
    microcode: 84,
};

/// Genoa-X (EPYC 9084X, stepping 2): its own microcode line, AMD-SB-3019
/// minimum 0x0A10124F (SPL 79); the rest as [`GENOA`].
pub const GENOA_X: TcbFloor = TcbFloor {
    line: "Genoa-X",
    // Microcode 79 (0x4F): AMD-SB-3019 minimum patch 0x0A10124F.
    microcode: 79,
    ..GENOA
};

/// Bergamo / Siena (Zen 4c, Genoa product, models A0h–AFh): AMD-SB-3019
/// microcode minimum 0x0AA00219 (SPL 25); the rest as [`GENOA`].
pub const GENOA_ZEN4C: TcbFloor = TcbFloor {
    line: "Bergamo/Siena",
    // Microcode 25 (0x19): AMD-SB-3019 minimum patch 0x0AA00219.
    microcode: 25,
    ..GENOA
};

/// Turin (EPYC 9005). AMD-SB-3019 does not list Turin (Zen 5 microcode
/// signing is AMD-SB-7033); the earliest bulletin with Turin SEV values
/// found is AMD-SB-3020: SNP 4 and microcode 0x0B002150 (SPL 80; the
/// low-byte reading is not confirmed for Turin). FMC 1, bootloader 1 and
/// TEE 1 are set by no bulletin (Tinfoil's floor).
pub const TURIN: TcbFloor = TcbFloor {
    line: "Turin",
    bulletin: "AMD-SB-3020",
    // FMC 1: no bulletin sets it; Tinfoil's Turin floor.
    fmc: Some(1),
    // Bootloader 1: no bulletin sets it; Tinfoil's Turin floor.
    bootloader: 1,
    // TEE 1: no bulletin sets it; Tinfoil's Turin floor.
    tee: 1,
    // SNP 4: AMD-SB-3020 (CVE-2025-0033) Turin fix `SPL = 0x04` (as
    // quoted from the bulletin by a public review).
    snp: 4,
    // Microcode 80 (0x50): AMD-SB-3020 Turin microcode 0x0B002150 (as
    // quoted); the low-byte reading is not confirmed for Turin, whose
    // patched hosts report 97.
    microcode: 80,
};

/// The floor for `product`, refined by the report's CPUID when it has one.
pub fn floor_for(product: Product, cpuid: Option<CpuId>) -> TcbFloor {
    match (product, cpuid) {
        (Product::Milan, Some(c)) if c.stepping == 2 => MILAN_X,
        (Product::Milan, _) => MILAN,
        (Product::Genoa, Some(c)) if (0xA0..=0xAF).contains(&c.model) => GENOA_ZEN4C,
        (Product::Genoa, Some(c)) if c.stepping == 2 => GENOA_X,
        (Product::Genoa, _) => GENOA,
        (Product::Turin, _) => TURIN,
    }
}

impl TcbFloor {
    /// Every component of `tcb` below this floor, as `name have < need`.
    pub fn shortfalls(&self, tcb: &TcbVersion) -> Vec<String> {
        let mut comps = vec![
            ("bootloader", tcb.bootloader(), self.bootloader),
            ("tee", tcb.tee(), self.tee),
            ("snp", tcb.snp(), self.snp),
            ("microcode", tcb.microcode(), self.microcode),
        ];
        if let Some(fmc) = self.fmc {
            comps.insert(0, ("fmc", tcb.fmc().unwrap_or(0), fmc));
        }
        comps
            .into_iter()
            .filter(|(_, have, need)| have < need)
            .map(|(name, have, need)| {
                format!(
                    "reported TCB {name} SPL {have} is below the {} floor {need} ({})",
                    self.line, self.bulletin
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpuid(family: u8, model: u8, stepping: u8) -> Option<CpuId> {
        Some(CpuId {
            family,
            model,
            stepping,
        })
    }

    #[test]
    fn lines_are_chosen_from_the_cpuid() {
        assert_eq!(floor_for(Product::Milan, cpuid(0x19, 1, 1)), MILAN);
        assert_eq!(floor_for(Product::Milan, cpuid(0x19, 1, 2)), MILAN_X);
        assert_eq!(floor_for(Product::Milan, None), MILAN);
        assert_eq!(floor_for(Product::Genoa, cpuid(0x19, 0x11, 1)), GENOA);
        assert_eq!(floor_for(Product::Genoa, cpuid(0x19, 0x11, 2)), GENOA_X);
        assert_eq!(floor_for(Product::Genoa, cpuid(0x19, 0xA0, 2)), GENOA_ZEN4C);
        assert_eq!(floor_for(Product::Turin, cpuid(0x1A, 2, 1)), TURIN);
    }

    #[test]
    fn entrysign_vulnerable_milan_microcode_is_short() {
        use super::super::tcb::TcbLayout;
        // 0x0A0011D5: the last Milan patch without the signing fix.
        let t = TcbVersion::from_parts(TcbLayout::MilanGenoa, 0, 4, 0, 22, 0xD5);
        let s = MILAN.shortfalls(&t);
        assert_eq!(s.len(), 1, "{s:?}");
        assert!(s[0].contains("microcode SPL 213") && s[0].contains("AMD-SB-3019"));
        let patched = TcbVersion::from_parts(TcbLayout::MilanGenoa, 0, 4, 0, 22, 0xDB);
        assert!(MILAN.shortfalls(&patched).is_empty());
        // Live patched hosts quoted by the sources meet their floors.
        let genoa = TcbVersion::from_parts(TcbLayout::MilanGenoa, 0, 10, 0, 23, 84);
        assert!(GENOA.shortfalls(&genoa).is_empty());
        let turin = TcbVersion::from_parts(TcbLayout::Turin, 1, 3, 2, 5, 97);
        assert!(TURIN.shortfalls(&turin).is_empty());
        let old_turin = TcbVersion::from_parts(TcbLayout::Turin, 0, 3, 2, 5, 97);
        assert!(TURIN.shortfalls(&old_turin)[0].contains("fmc"));
    }
}
