//! AMD product generations and the 64-bit SNP `TCB_VERSION`.
//!
//! The TCB version is a little-endian `u64` whose bytes are the security
//! patch levels (SPLs) of the platform's firmware components. Which byte is
//! which depends on the product: Turin added an FMC SPL and moved the others.

use serde::Serialize;

/// An AMD EPYC generation with SEV-SNP. Each has its own ARK, ASK and ASVK
/// and its own KDS path component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
pub enum Product {
    /// EPYC 7003 (Zen 3), CPUID family 0x19 models 0x00–0x0F.
    Milan,
    /// EPYC 9004 (Zen 4), CPUID family 0x19 models 0x10–0x1F and 0xA0–0xAF.
    Genoa,
    /// EPYC 9005 (Zen 5), CPUID family 0x1A models 0x00–0x1F.
    Turin,
}

impl Product {
    /// Every supported product, oldest first.
    pub const ALL: [Product; 3] = [Product::Milan, Product::Genoa, Product::Turin];

    /// The name AMD uses in KDS URLs and certificate names (`Milan`, `Genoa`,
    /// `Turin`).
    pub fn name(self) -> &'static str {
        match self {
            Product::Milan => "Milan",
            Product::Genoa => "Genoa",
            Product::Turin => "Turin",
        }
    }

    /// Parses a product name, case-insensitively. A stepping suffix as in the
    /// VCEK `productName` extension (`Milan-B0`) is accepted and ignored.
    pub fn from_name(name: &str) -> Option<Product> {
        let base = name.trim().split('-').next().unwrap_or_default();
        Product::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(base))
    }

    /// The product for a CPUID family / model pair as written in version 3+
    /// reports (`CPUID_FAM_ID`, `CPUID_MOD_ID`: extended family/model already
    /// combined). `None` for anything else, e.g. family 0x1A models of later
    /// generations.
    pub fn from_cpuid(family: u8, model: u8) -> Option<Product> {
        match (family, model) {
            (0x19, 0x00..=0x0F) => Some(Product::Milan),
            (0x19, 0x10..=0x1F | 0xA0..=0xAF) => Some(Product::Genoa),
            (0x1A, 0x00..=0x1F) => Some(Product::Turin),
            _ => None,
        }
    }

    /// The product named by an AMD certificate common name: `SEV-Milan` (ASK,
    /// and the issuer of a VCEK), `SEV-VLEK-Milan` (ASVK, issuer of a VLEK) or
    /// `ARK-Milan`. `None` for any other name, including simulated ones.
    pub fn from_cert_cn(cn: &str) -> Option<Product> {
        let rest = cn
            .strip_prefix("SEV-VLEK-")
            .or_else(|| cn.strip_prefix("SEV-"))
            .or_else(|| cn.strip_prefix("ARK-"))?;
        Product::ALL.into_iter().find(|p| p.name() == rest)
    }

    /// How this product lays out its TCB version.
    pub fn tcb_layout(self) -> TcbLayout {
        match self {
            Product::Milan | Product::Genoa => TcbLayout::MilanGenoa,
            Product::Turin => TcbLayout::Turin,
        }
    }
}

impl std::fmt::Display for Product {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Product {
    type Err = crate::Error;
    fn from_str(s: &str) -> crate::Result<Self> {
        Product::from_name(s).ok_or_else(|| {
            crate::Error::Encoding(format!(
                "unknown AMD product {s:?}; expected Milan, Genoa or Turin"
            ))
        })
    }
}

/// Byte layout of a `TCB_VERSION` (indexes into its little-endian bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TcbLayout {
    /// Milan and Genoa: bootloader byte 0, TEE byte 1, bytes 2–5 reserved,
    /// SNP byte 6, microcode byte 7.
    MilanGenoa,
    /// Turin: FMC byte 0, bootloader byte 1, TEE byte 2, SNP byte 3, bytes
    /// 4–6 reserved, microcode byte 7.
    Turin,
}

/// A decoded SNP `TCB_VERSION`: the raw 64-bit value (as stored in the report,
/// little-endian on the wire) and the security patch level of each component.
///
/// Two values are equal only when both their raw value and their layout
/// agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct TcbVersion {
    #[serde(serialize_with = "serialize_raw")]
    raw: u64,
    layout: TcbLayout,
    #[serde(skip_serializing_if = "Option::is_none")]
    fmc: Option<u8>,
    bootloader: u8,
    tee: u8,
    snp: u8,
    microcode: u8,
}

fn serialize_raw<S: serde::Serializer>(raw: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{raw:016x}"))
}

impl TcbVersion {
    /// Decodes `raw` with the given layout. Total: every `u64` decodes.
    pub fn from_raw(raw: u64, layout: TcbLayout) -> Self {
        let b = raw.to_le_bytes();
        match layout {
            TcbLayout::MilanGenoa => TcbVersion {
                raw,
                layout,
                fmc: None,
                bootloader: b[0],
                tee: b[1],
                snp: b[6],
                microcode: b[7],
            },
            TcbLayout::Turin => TcbVersion {
                raw,
                layout,
                fmc: Some(b[0]),
                bootloader: b[1],
                tee: b[2],
                snp: b[3],
                microcode: b[7],
            },
        }
    }

    /// Decodes `raw` as the given product lays it out.
    pub fn for_product(raw: u64, product: Product) -> Self {
        Self::from_raw(raw, product.tcb_layout())
    }

    /// Encodes component SPLs (reserved bytes zero). `fmc` is ignored for the
    /// Milan/Genoa layout, which has no FMC byte.
    pub fn from_parts(
        layout: TcbLayout,
        fmc: u8,
        bootloader: u8,
        tee: u8,
        snp: u8,
        microcode: u8,
    ) -> Self {
        let bytes = match layout {
            TcbLayout::MilanGenoa => [bootloader, tee, 0, 0, 0, 0, snp, microcode],
            TcbLayout::Turin => [fmc, bootloader, tee, snp, 0, 0, 0, microcode],
        };
        Self::from_raw(u64::from_le_bytes(bytes), layout)
    }

    /// The same raw value decoded with another layout.
    pub fn with_layout(self, layout: TcbLayout) -> Self {
        Self::from_raw(self.raw, layout)
    }

    /// The raw 64-bit value.
    pub fn raw(&self) -> u64 {
        self.raw
    }
    /// The layout used to decode [`Self::raw`].
    pub fn layout(&self) -> TcbLayout {
        self.layout
    }
    /// FMC (first mutable code) SPL; Turin only.
    pub fn fmc(&self) -> Option<u8> {
        self.fmc
    }
    /// Secure processor bootloader SPL.
    pub fn bootloader(&self) -> u8 {
        self.bootloader
    }
    /// Secure processor operating system (TEE) SPL.
    pub fn tee(&self) -> u8 {
        self.tee
    }
    /// SNP firmware SPL.
    pub fn snp(&self) -> u8 {
        self.snp
    }
    /// CPU microcode SPL.
    pub fn microcode(&self) -> u8 {
        self.microcode
    }
}

impl std::fmt::Display for TcbVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(fmc) = self.fmc {
            write!(f, "fmc={fmc} ")?;
        }
        write!(
            f,
            "bl={} tee={} snp={} ucode={} (raw {:016x})",
            self.bootloader, self.tee, self.snp, self.microcode, self.raw
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milan_layout_matches_gosev_vector() {
        // go-sev-guest attestation.bin: TCB bytes 0200000000000544 on the wire.
        let raw = u64::from_le_bytes([0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0x44]);
        let t = TcbVersion::for_product(raw, Product::Milan);
        assert_eq!(
            (t.bootloader(), t.tee(), t.snp(), t.microcode(), t.fmc()),
            (2, 0, 5, 68, None)
        );
        assert_eq!(
            TcbVersion::from_parts(TcbLayout::MilanGenoa, 9, 2, 0, 5, 68),
            t
        );
    }

    #[test]
    fn turin_layout() {
        let raw = u64::from_le_bytes([1, 2, 3, 4, 0, 0, 0, 9]);
        let t = TcbVersion::for_product(raw, Product::Turin);
        assert_eq!(
            (t.fmc(), t.bootloader(), t.tee(), t.snp(), t.microcode()),
            (Some(1), 2, 3, 4, 9)
        );
        assert_eq!(TcbVersion::from_parts(TcbLayout::Turin, 1, 2, 3, 4, 9), t);
        let json = serde_json::to_value(t).unwrap();
        assert_eq!(json["fmc"], 1);
        assert_eq!(json["raw"], "0900000004030201");
    }

    #[test]
    fn product_names_and_cpuid() {
        assert_eq!(Product::from_name("milan"), Some(Product::Milan));
        assert_eq!(Product::from_name("Genoa-B1"), Some(Product::Genoa));
        assert_eq!(Product::from_name("Venice"), None);
        assert_eq!(Product::from_cpuid(0x19, 0x01), Some(Product::Milan));
        assert_eq!(Product::from_cpuid(0x19, 0x11), Some(Product::Genoa));
        assert_eq!(Product::from_cpuid(0x19, 0xA0), Some(Product::Genoa));
        assert_eq!(Product::from_cpuid(0x1A, 0x02), Some(Product::Turin));
        assert_eq!(Product::from_cpuid(0x17, 0x31), None);
        assert_eq!(
            Product::from_cert_cn("SEV-VLEK-Turin"),
            Some(Product::Turin)
        );
        assert_eq!(Product::from_cert_cn("SEV-Milan"), Some(Product::Milan));
        assert_eq!(Product::from_cert_cn("ARK-Genoa"), Some(Product::Genoa));
        assert_eq!(Product::from_cert_cn("SEV-Chrysalis-SIMULATED"), None);
        assert_eq!(Product::from_cert_cn("SEV-VCEK"), None);
    }
}
