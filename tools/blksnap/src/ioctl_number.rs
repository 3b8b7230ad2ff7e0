// SPDX-License-Identifier: GPL-2.0
//! The `_IOC` encoding of ioctl request numbers on the architectures whose
//! layout is asm-generic's (x86, arm64, riscv, ...).  The numbers of
//! [`crate::uapi`] are computed here from the same pieces as the C macros,
//! and `tests/layout.rs` compares them with what gcc makes of the header.

const NRBITS: u32 = 8;
const TYPEBITS: u32 = 8;
const SIZEBITS: u32 = 14;
const NRSHIFT: u32 = 0;
const TYPESHIFT: u32 = NRSHIFT + NRBITS;
const SIZESHIFT: u32 = TYPESHIFT + TYPEBITS;
const DIRSHIFT: u32 = SIZESHIFT + SIZEBITS;

const WRITE: u32 = 1;
const READ: u32 = 2;

const fn ioc(dir: u32, ty: u8, nr: u32, size: usize) -> u32 {
    // A structure too large for the size field would silently change the
    // number; refuse it at compile time instead.
    assert!(size < (1 << SIZEBITS));
    (dir << DIRSHIFT) | ((ty as u32) << TYPESHIFT) | (nr << NRSHIFT) | ((size as u32) << SIZESHIFT)
}

/// `_IOW(ty, nr, T)`: the program writes `T` to the kernel.
pub const fn iow<T>(ty: u8, nr: u32) -> u32 {
    ioc(WRITE, ty, nr, core::mem::size_of::<T>())
}

/// `_IOR(ty, nr, T)`: the kernel writes `T` to the program.
pub const fn ior<T>(ty: u8, nr: u32) -> u32 {
    ioc(READ, ty, nr, core::mem::size_of::<T>())
}

/// `_IOWR(ty, nr, T)`: both ways.
pub const fn iowr<T>(ty: u8, nr: u32) -> u32 {
    ioc(READ | WRITE, ty, nr, core::mem::size_of::<T>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_well_known_numbers() {
        // BLKGETSIZE64 is _IOR(0x12, 114, size_t), FS_IOC_FIEMAP
        // _IOWR('f', 11, struct fiemap) (32 bytes).
        assert_eq!(ior::<u64>(0x12, 114), 0x8008_1272);
        assert_eq!(iowr::<[u8; 32]>(b'f', 11), 0xc020_660b);
    }
}
