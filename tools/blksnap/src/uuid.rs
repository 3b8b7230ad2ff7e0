// SPDX-License-Identifier: GPL-2.0
//! Snapshot identifiers and change-tracker generations: 16 bytes, written
//! in the canonical 8-4-4-4-12 hexadecimal form.

use crate::uapi::{blksnap_uuid, UUID_SIZE};
use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Uuid(pub [u8; UUID_SIZE]);

impl Uuid {
    pub fn to_raw(self) -> blksnap_uuid {
        blksnap_uuid { b: self.0 }
    }

    pub fn from_raw(raw: &blksnap_uuid) -> Self {
        Uuid(raw.b)
    }
}

impl fmt::Display for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// Why a string is not an identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadUuid(pub String);

impl fmt::Display for BadUuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "not a UUID (want 32 hex digits, as 8-4-4-4-12): {:?}",
            self.0
        )
    }
}

impl std::error::Error for BadUuid {}

impl FromStr for Uuid {
    type Err = BadUuid;

    /// Takes the canonical form or the 32 digits without hyphens; nothing
    /// in between, so that a truncated paste is not read as another id.
    fn from_str(s: &str) -> Result<Self, BadUuid> {
        let bad = || BadUuid(s.to_string());
        let digits: Vec<u8> = match s.len() {
            36 => {
                let dashes = s.bytes().enumerate().filter(|&(_, c)| c == b'-');
                if !dashes.map(|(i, _)| i).eq([8, 13, 18, 23]) {
                    return Err(bad());
                }
                s.bytes().filter(|&c| c != b'-').collect()
            }
            32 => s.bytes().collect(),
            _ => return Err(bad()),
        };
        // from_str_radix would take a sign; only digits are an id.
        if !digits.iter().all(u8::is_ascii_hexdigit) {
            return Err(bad());
        }
        let mut id = [0u8; UUID_SIZE];
        for (i, pair) in digits.chunks_exact(2).enumerate() {
            let hex = std::str::from_utf8(pair).map_err(|_| bad())?;
            id[i] = u8::from_str_radix(hex, 16).map_err(|_| bad())?;
        }
        Ok(Uuid(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_the_canonical_form() {
        let s = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
        assert_eq!(s.parse::<Uuid>().unwrap().to_string(), s);
        let plain: Uuid = "0f1e2d3c4b5a69788796a5b4c3d2e1f0".parse().unwrap();
        assert_eq!(plain.to_string(), s);
    }

    #[test]
    fn refuses_malformed_ids() {
        for s in [
            "",
            "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f",
            "0f1e2d3c4b5a-6978-8796-a5b4c3d2e1f0-",
            "zz1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
            "+f1e2d3c4b5a69788796a5b4c3d2e1f0",
        ] {
            assert!(s.parse::<Uuid>().is_err(), "{s:?} accepted");
        }
    }
}
