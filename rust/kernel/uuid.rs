// SPDX-License-Identifier: GPL-2.0

//! Universally unique identifiers (RFC 4122).
//!
//! C header: [`include/linux/uuid.h`](srctree/include/linux/uuid.h)

use crate::bindings;

/// Number of bytes in a UUID.
pub const UUID_SIZE: usize = 16;

/// A 128-bit universally unique identifier.
///
/// # Examples
///
/// ```
/// use kernel::uuid::Uuid;
///
/// let id = Uuid::new_random();
/// assert!(Uuid::from_bytes(*id.as_bytes()) == id);
/// pr_info!("new generation {id}\n");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Uuid([u8; UUID_SIZE]);

impl Uuid {
    /// Returns a new random (version 4) UUID.
    pub fn new_random() -> Self {
        let mut b = [0u8; UUID_SIZE];
        // SAFETY: `b` is a valid, writable buffer of the 16 bytes the function
        // fills.
        unsafe { bindings::generate_random_uuid(b.as_mut_ptr()) };
        Self(b)
    }

    /// Makes a UUID from its 16 bytes.
    pub const fn from_bytes(b: [u8; UUID_SIZE]) -> Self {
        Self(b)
    }

    /// Returns the 16 bytes of the UUID.
    pub const fn as_bytes(&self) -> &[u8; UUID_SIZE] {
        &self.0
    }
}

impl crate::fmt::Display for Uuid {
    fn fmt(&self, f: &mut crate::fmt::Formatter<'_>) -> crate::fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

#[macros::kunit_tests(rust_kernel_uuid)]
mod tests {
    use super::*;

    #[test]
    fn random_uuids_differ_and_are_version_4() {
        let a = Uuid::new_random();
        let b = Uuid::new_random();
        assert!(a != b);
        // Version in the high nibble of byte 6, RFC 4122 variant in byte 8.
        assert_eq!(a.as_bytes()[6] >> 4, 4);
        assert_eq!(a.as_bytes()[8] & 0xc0, 0x80);
    }

    #[test]
    fn bytes_round_trip() {
        let bytes = [7u8; UUID_SIZE];
        assert_eq!(Uuid::from_bytes(bytes).as_bytes(), &bytes);
    }
}
