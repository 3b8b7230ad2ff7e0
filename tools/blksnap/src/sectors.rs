// SPDX-License-Identifier: GPL-2.0
//! Sector ranges as written on the command line: `SECTOR:COUNT`.

use crate::uapi::blksnap_sectors;
use std::fmt;

/// Why a range was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRange(pub String, pub &'static str);

impl fmt::Display for BadRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad range {:?}: {}", self.0, self.1)
    }
}

impl std::error::Error for BadRange {}

/// Parses `SECTOR:COUNT` (decimal, or hexadecimal with 0x).  A zero count
/// or a range past the last sector number is refused here, where the user
/// can still see which argument was wrong.
pub fn parse_range(s: &str) -> Result<blksnap_sectors, BadRange> {
    let bad = |why| BadRange(s.to_string(), why);
    let (first, count) = s.split_once(':').ok_or_else(|| bad("want SECTOR:COUNT"))?;
    let offset = parse_number(first).ok_or_else(|| bad("SECTOR is not a number"))?;
    let count = parse_number(count).ok_or_else(|| bad("COUNT is not a number"))?;
    if count == 0 {
        return Err(bad("COUNT is zero"));
    }
    offset
        .checked_add(count)
        .ok_or_else(|| bad("the range ends past 2^64 sectors"))?;
    Ok(blksnap_sectors { offset, count })
}

fn parse_number(s: &str) -> Option<u64> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

/// Total sectors of `ranges`, saturating (only used for reporting).
pub fn total(ranges: &[blksnap_sectors]) -> u64 {
    ranges
        .iter()
        .fold(0u64, |sum, r| sum.saturating_add(r.count))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_decimal_and_hex() {
        assert_eq!(
            parse_range("0:2048").unwrap(),
            blksnap_sectors {
                offset: 0,
                count: 2048
            }
        );
        assert_eq!(
            parse_range("0x10:0x20").unwrap(),
            blksnap_sectors {
                offset: 16,
                count: 32
            }
        );
    }

    #[test]
    fn refuses_bad_ranges() {
        for s in [
            "",
            "12",
            "a:1",
            "1:b",
            "5:0",
            "-1:4",
            "18446744073709551615:1",
        ] {
            assert!(parse_range(s).is_err(), "{s:?} accepted");
        }
    }
}
