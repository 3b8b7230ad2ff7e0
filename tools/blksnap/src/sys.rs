// SPDX-License-Identifier: GPL-2.0
//! The one place that calls ioctl(2).

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
