// SPDX-License-Identifier: GPL-2.0
//! The calls into the C library: ioctl(2) and strerror(3).

use nix::errno::Errno;
use nix::libc;
use std::fs::File;
use std::os::fd::AsRawFd;

/// Issues `request` on `file` with `arg`; returns the ioctl's non-negative
/// result (some commands answer with a count) or its errno.
///
/// # Safety
/// `arg` must point to memory laid out as `request` expects, valid for the
/// kernel to read and write for the length its number encodes, and every
/// user address inside it must be valid for the length given beside it.
pub(crate) unsafe fn ioctl<T>(file: &File, request: u32, arg: *mut T) -> Result<i32, Errno> {
    // glibc declares the request as unsigned long; the C macros give an
    // unsigned int that the kernel reads as such.
    let ret = unsafe { libc::ioctl(file.as_raw_fd(), request as libc::c_ulong, arg) };
    Errno::result(ret)
}

/// The C library's words for `errno`, as perror(3) and other tools print
/// them (nix's own table words some differently).
pub(crate) fn strerror(errno: Errno) -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer and its length are valid; the libc crate binds the
    // XSI strerror_r, which fills the buffer and NUL-terminates it.
    let ret = unsafe { libc::strerror_r(errno as i32, buf.as_mut_ptr().cast(), buf.len()) };
    let len = buf.iter().position(|&c| c == 0).unwrap_or(0);
    if ret != 0 || len == 0 {
        return errno.desc().to_string();
    }
    String::from_utf8_lossy(&buf[..len]).into_owned()
}
