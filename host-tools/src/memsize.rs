//! Memory sizes as the command line takes them (`--memory`, `--vm`).

use anyhow::anyhow;

use crate::failure::{Failure, IoContext};

/// Parses `--memory`: MiB by default, or with K/M/G/T suffix (binary units).
pub(crate) fn parse_memory(s: &str) -> Result<u64, Failure> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .io_context(|| format!("--memory {s:?}: expected e.g. 2048, 2G, 64G"))?;
    let shift = match unit
        .trim()
        .to_ascii_uppercase()
        .trim_end_matches("IB")
        .trim_end_matches('B')
    {
        "" | "M" => 20,
        "K" => 10,
        "G" => 30,
        "T" => 40,
        other => {
            return Err(Failure::io(anyhow!(
                "--memory {s:?}: unknown unit {other:?} (K, M, G, T)"
            )))
        }
    };
    n.checked_shl(shift)
        .filter(|b| b >> shift == n)
        .io_context(|| format!("--memory {s:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_units() {
        assert_eq!(parse_memory("2048").unwrap(), 2048 << 20);
        assert_eq!(parse_memory("64G").unwrap(), 64 << 30);
        assert_eq!(parse_memory("512M").unwrap(), 512 << 20);
        assert_eq!(parse_memory("1GiB").unwrap(), 1 << 30);
        assert!(parse_memory("lots").is_err());
        assert!(parse_memory("2P").is_err());
        assert!(parse_memory("99999999999T").is_err());
    }
}
