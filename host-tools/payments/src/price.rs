//! Amounts due: tokens × price per million tokens, rounded up.

/// Largest integer a receipt carries: 2^53 − 1, so every JSON number is
/// exact in IEEE doubles (I-JSON, RFC 7493) and in JCS.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// Nanotons due for `tokens` at `price_per_million` nanotons per million
/// tokens, rounded up to a whole nanoton; `None` above [`MAX_SAFE_INTEGER`].
pub fn amount_due(tokens: u64, price_per_million: u64) -> Option<u64> {
    let product = u128::from(tokens) * u128::from(price_per_million);
    let amount = product.div_ceil(1_000_000);
    u64::try_from(amount)
        .ok()
        .filter(|a| *a <= MAX_SAFE_INTEGER)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_up() {
        assert_eq!(amount_due(0, 5), Some(0));
        assert_eq!(amount_due(1, 1), Some(1));
        assert_eq!(amount_due(1_000_000, 7), Some(7));
        assert_eq!(amount_due(1_000_001, 7), Some(8));
        assert_eq!(amount_due(123, 1_000_000_000), Some(123_000));
        assert_eq!(amount_due(u64::MAX, u64::MAX), None);
    }
}
