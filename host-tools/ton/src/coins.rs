//! Amounts of TON: held in nanotons, read from and written as decimal TON
//! ("10", "0.5", "1.000000001").

use std::fmt;
use std::str::FromStr;

/// Nanotons in one TON.
pub const NANOTONS_PER_TON: u64 = 1_000_000_000;

/// Decimal places of a TON amount (one nanoton is 0.000000001 TON).
const DECIMALS: usize = 9;

/// An amount of TON in nanotons (1 TON = 10⁹ nanotons).
///
/// Parses from decimal TON (`"1.5".parse::<Coins>()` is 1 500 000 000
/// nanotons): digits, optionally a point and at most nine more digits;
/// either side of the point may be empty but not both. No sign, no
/// exponent, no spaces. Displays as the shortest decimal TON that reads
/// back to the same amount (`"1.5"`, `"10"`, `"0"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Coins(u64);

impl Coins {
    /// No TON.
    pub const ZERO: Coins = Coins(0);
    /// One TON.
    pub const ONE_TON: Coins = Coins(NANOTONS_PER_TON);

    /// An amount of `nanotons`.
    pub const fn from_nanotons(nanotons: u64) -> Self {
        Coins(nanotons)
    }

    /// The amount in nanotons.
    pub const fn nanotons(self) -> u64 {
        self.0
    }

    /// The sum, or `None` if it exceeds `u64::MAX` nanotons.
    pub fn checked_add(self, other: Coins) -> Option<Coins> {
        self.0.checked_add(other.0).map(Coins)
    }
}

impl From<Coins> for u64 {
    fn from(c: Coins) -> u64 {
        c.0
    }
}

/// Why a string is not a TON amount.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseCoinsError {
    /// Nothing to parse (`""` or `"."`).
    #[error("empty amount")]
    Empty,
    /// A leading minus sign: amounts are never negative.
    #[error("negative amount")]
    Negative,
    /// Something other than digits and one decimal point.
    #[error("not a decimal number of TON")]
    NotDecimal,
    /// More decimals than nanotons resolve.
    #[error("more than {DECIMALS} decimals (1 nanoton is 0.000000001 TON)")]
    TooManyDecimals,
    /// More nanotons than fit in 64 bits.
    #[error("too large (at most {} TON)", Coins(u64::MAX))]
    Overflow,
}

impl FromStr for Coins {
    type Err = ParseCoinsError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.starts_with('-') {
            return Err(ParseCoinsError::Negative);
        }
        let (int, frac) = s.split_once('.').unwrap_or((s, ""));
        if int.is_empty() && frac.is_empty() {
            return Err(ParseCoinsError::Empty);
        }
        if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParseCoinsError::NotDecimal);
        }
        if frac.len() > DECIMALS {
            return Err(ParseCoinsError::TooManyDecimals);
        }
        // Only digits from here: a failed parse is an overflow.
        let whole: u64 = if int.is_empty() {
            0
        } else {
            int.parse().map_err(|_| ParseCoinsError::Overflow)?
        };
        let part: u64 = format!("{frac:0<DECIMALS$}")
            .parse()
            .map_err(|_| ParseCoinsError::Overflow)?;
        whole
            .checked_mul(NANOTONS_PER_TON)
            .and_then(|v| v.checked_add(part))
            .map(Coins)
            .ok_or(ParseCoinsError::Overflow)
    }
}

impl fmt::Display for Coins {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = self.0 / NANOTONS_PER_TON;
        let part = self.0 % NANOTONS_PER_TON;
        if part == 0 {
            return write!(f, "{whole}");
        }
        let digits = format!("{part:0DECIMALS$}");
        write!(f, "{whole}.{}", digits.trim_end_matches('0'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<u64, ParseCoinsError> {
        s.parse::<Coins>().map(Coins::nanotons)
    }

    #[test]
    fn parses_whole_and_fractional_ton() {
        assert_eq!(parse("10"), Ok(10_000_000_000));
        assert_eq!(parse("0.5"), Ok(500_000_000));
        assert_eq!(parse("1.5"), Ok(1_500_000_000));
        assert_eq!(parse(".5"), Ok(500_000_000));
        assert_eq!(parse("2."), Ok(2_000_000_000));
        assert_eq!(parse("0"), Ok(0));
        assert_eq!(parse("007"), Ok(7_000_000_000));
        assert_eq!(parse("0.000000001"), Ok(1));
        assert_eq!(parse("1.123456789"), Ok(1_123_456_789));
    }

    #[test]
    fn empty_is_refused() {
        assert_eq!(parse(""), Err(ParseCoinsError::Empty));
        assert_eq!(parse("."), Err(ParseCoinsError::Empty));
    }

    #[test]
    fn negative_is_refused() {
        assert_eq!(parse("-1"), Err(ParseCoinsError::Negative));
        assert_eq!(parse("-0.5"), Err(ParseCoinsError::Negative));
    }

    #[test]
    fn anything_but_digits_and_one_point_is_refused() {
        for s in [
            "+1", "1e9", " 1", "1 ", "1,5", "1.2.3", "ten", "0x10", "1_000", "..", "١",
        ] {
            assert_eq!(parse(s), Err(ParseCoinsError::NotDecimal), "{s:?}");
        }
    }

    #[test]
    fn more_than_nine_decimals_is_refused() {
        assert_eq!(parse("0.0000000001"), Err(ParseCoinsError::TooManyDecimals));
        assert_eq!(parse("1.1234567890"), Err(ParseCoinsError::TooManyDecimals));
    }

    #[test]
    fn overflow_is_refused_at_the_exact_limit() {
        // u64::MAX nanotons = 18446744073.709551615 TON.
        assert_eq!(parse("18446744073.709551615"), Ok(u64::MAX));
        assert_eq!(
            parse("18446744073.709551616"),
            Err(ParseCoinsError::Overflow)
        );
        assert_eq!(parse("18446744074"), Err(ParseCoinsError::Overflow));
        assert_eq!(
            parse("99999999999999999999999"),
            Err(ParseCoinsError::Overflow)
        );
    }

    #[test]
    fn displays_the_shortest_decimal() {
        let show = |n: u64| Coins::from_nanotons(n).to_string();
        assert_eq!(show(0), "0");
        assert_eq!(show(1), "0.000000001");
        assert_eq!(show(500_000_000), "0.5");
        assert_eq!(show(10_000_000_000), "10");
        assert_eq!(show(1_050_000_000), "1.05");
        assert_eq!(show(u64::MAX), "18446744073.709551615");
        assert_eq!(Coins::ONE_TON.to_string(), "1");
    }

    #[test]
    fn display_reads_back() {
        for n in [
            0,
            1,
            9,
            10,
            999_999_999,
            1_000_000_000,
            123_456_789_012,
            u64::MAX,
        ] {
            let c = Coins::from_nanotons(n);
            assert_eq!(c.to_string().parse::<Coins>(), Ok(c));
        }
    }

    proptest::proptest! {
        #[test]
        fn any_amount_reads_back(n in proptest::num::u64::ANY) {
            let c = Coins::from_nanotons(n);
            proptest::prop_assert_eq!(c.to_string().parse::<Coins>(), Ok(c));
        }
    }

    #[test]
    fn errors_say_what_is_wrong() {
        assert_eq!(
            ParseCoinsError::TooManyDecimals.to_string(),
            "more than 9 decimals (1 nanoton is 0.000000001 TON)"
        );
        assert_eq!(
            ParseCoinsError::Overflow.to_string(),
            "too large (at most 18446744073.709551615 TON)"
        );
    }

    #[test]
    fn checked_add_stops_at_u64() {
        let max = Coins::from_nanotons(u64::MAX);
        assert_eq!(max.checked_add(Coins::from_nanotons(1)), None);
        assert_eq!(
            Coins::ONE_TON.checked_add(Coins::from_nanotons(1)),
            Some(Coins::from_nanotons(1_000_000_001))
        );
    }
}
