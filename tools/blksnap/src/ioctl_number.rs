// SPDX-License-Identifier: GPL-2.0
//! ioctl request numbers as the C macros `_IOW`, `_IOR` and `_IOWR` make
//! them.  nix encodes them for the architecture built for (the layout of
//! `_IOC` differs on mips, powerpc and sparc); `tests/layout.rs` compares
//! the numbers of [`crate::uapi`] with what gcc makes of the header.

/// The size field is 13 bits wide on some architectures and 14 on the
/// others, and nix masks a size too large for it, which would silently
/// give another number: such a structure is refused at compile time.
const fn arg_size<T>() -> usize {
    let size = core::mem::size_of::<T>();
    assert!(size < (1 << 13));
    size
}

/// `_IOW(ty, nr, T)`: the program writes `T` to the kernel.
pub const fn iow<T>(ty: u8, nr: u32) -> u32 {
    nix::request_code_write!(ty, nr, arg_size::<T>()) as u32
}

/// `_IOR(ty, nr, T)`: the kernel writes `T` to the program.
pub const fn ior<T>(ty: u8, nr: u32) -> u32 {
    nix::request_code_read!(ty, nr, arg_size::<T>()) as u32
}

/// `_IOWR(ty, nr, T)`: both ways.
pub const fn iowr<T>(ty: u8, nr: u32) -> u32 {
    nix::request_code_readwrite!(ty, nr, arg_size::<T>()) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    fn matches_well_known_numbers() {
        // BLKGETSIZE64 is _IOR(0x12, 114, size_t), FS_IOC_FIEMAP
        // _IOWR('f', 11, struct fiemap) (32 bytes).
        assert_eq!(ior::<u64>(0x12, 114), 0x8008_1272);
        assert_eq!(iowr::<[u8; 32]>(b'f', 11), 0xc020_660b);
    }
}
