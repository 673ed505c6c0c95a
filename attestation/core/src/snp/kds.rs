//! URLs of AMD's Key Distribution Service (KDS).
//!
//! Pure functions: fetching (with caching and an offline bundle) happens in
//! the callers. Formats follow AMD's "Versioned Chip Endorsement Key (VCEK)
//! Certificate and KDS Interface Specification".

use super::tcb::{Product, TcbVersion};

/// Base URL of the AMD KDS.
pub const KDS_BASE: &str = "https://kdsintf.amd.com";

/// URL of the VCEK for a chip at a TCB:
/// `https://kdsintf.amd.com/vcek/v1/{product}/{hwid}?blSPL=..&teeSPL=..&snpSPL=..&ucodeSPL=..`.
///
/// `hwid` is the lowercase hex chip id: all 64 bytes on Milan and Genoa,
/// the first 8 on Turin, which also takes `fmcSPL`. SPLs are decimal. The
/// TCB is re-decoded with `product`'s layout, so a [`TcbVersion`] decoded
/// with another layout still gives the right URL.
pub fn kds_vcek_url(product: Product, chip_id: &[u8; 64], tcb: &TcbVersion) -> String {
    let tcb = TcbVersion::for_product(tcb.raw(), product);
    let (hwid, fmc) = match product {
        Product::Turin => (
            hex::encode(&chip_id[..8]),
            format!("fmcSPL={}&", tcb.fmc().unwrap_or(0)),
        ),
        Product::Milan | Product::Genoa => (hex::encode(chip_id), String::new()),
    };
    format!(
        "{KDS_BASE}/vcek/v1/{}/{hwid}?{fmc}blSPL={}&teeSPL={}&snpSPL={}&ucodeSPL={}",
        product.name(),
        tcb.bootloader(),
        tcb.tee(),
        tcb.snp(),
        tcb.microcode()
    )
}

/// URL of the ASK + ARK chain (PEM, ASK first) for VCEKs of `product`.
pub fn kds_cert_chain_url(product: Product) -> String {
    format!("{KDS_BASE}/vcek/v1/{}/cert_chain", product.name())
}

/// URL of the ASVK + ARK chain (PEM, ASVK first) for VLEKs of `product`.
pub fn kds_vlek_chain_url(product: Product) -> String {
    format!("{KDS_BASE}/vlek/v1/{}/cert_chain", product.name())
}

/// URL of the CRL (DER, signed by the ARK) revoking ASKs of `product`.
pub fn kds_crl_url(product: Product) -> String {
    format!("{KDS_BASE}/vcek/v1/{}/crl", product.name())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vcek_url_matches_go_sev_guest() {
        let chip_id = [0xab; 64];
        let raw = u64::from_le_bytes([2, 0, 0, 0, 0, 0, 5, 68]);
        let tcb = TcbVersion::for_product(raw, Product::Milan);
        let url = kds_vcek_url(Product::Milan, &chip_id, &tcb);
        assert_eq!(
            url,
            format!(
                "https://kdsintf.amd.com/vcek/v1/Milan/{}?blSPL=2&teeSPL=0&snpSPL=5&ucodeSPL=68",
                "ab".repeat(64)
            )
        );
    }

    #[test]
    fn turin_url_uses_8_byte_hwid_and_fmc() {
        let mut chip_id = [0u8; 64];
        chip_id[..8].copy_from_slice(&[0x1e, 0x55, 0x0a, 0x8e, 0xe5, 0xcf, 0x9f, 0x4d]);
        let raw = u64::from_le_bytes([1, 3, 0, 5, 0, 0, 0, 9]);
        // Decoded with the wrong layout on purpose: the URL re-decodes.
        let tcb = TcbVersion::for_product(raw, Product::Milan);
        assert_eq!(
            kds_vcek_url(Product::Turin, &chip_id, &tcb),
            "https://kdsintf.amd.com/vcek/v1/Turin/1e550a8ee5cf9f4d?fmcSPL=1&blSPL=3&teeSPL=0&snpSPL=5&ucodeSPL=9"
        );
    }

    #[test]
    fn chain_urls() {
        assert_eq!(
            kds_cert_chain_url(Product::Genoa),
            "https://kdsintf.amd.com/vcek/v1/Genoa/cert_chain"
        );
        assert_eq!(
            kds_vlek_chain_url(Product::Turin),
            "https://kdsintf.amd.com/vlek/v1/Turin/cert_chain"
        );
        assert_eq!(
            kds_crl_url(Product::Milan),
            "https://kdsintf.amd.com/vcek/v1/Milan/crl"
        );
    }
}
