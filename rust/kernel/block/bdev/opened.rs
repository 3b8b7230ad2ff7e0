// SPDX-License-Identifier: GPL-2.0

//! Block devices a module opens itself, as `bdev_file_open_by_path()` and
//! `bdev_file_open_by_dev()` do.
//!
//! C header: [`include/linux/blkdev.h`](srctree/include/linux/blkdev.h)

use super::BlockDevice;
use crate::{bindings, error::from_err_ptr, prelude::*, types::Opaque};
use core::ptr::NonNull;

/// What a block device is opened for: the access bits of `blk_mode_t`.
///
/// Whether the open is exclusive is not part of it: that follows from the
/// [`Holder`] passed along, as `BLK_OPEN_EXCL` follows from the holder in C.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    /// Reading only: the open also succeeds where writers are refused, such
    /// as on a mounted file system's device with `bdev_allow_write_mounted=0`.
    Read,
    /// Reading and writing.
    ReadWrite,
}

impl Mode {
    fn as_raw(self) -> bindings::blk_mode_t {
        match self {
            Mode::Read => bindings::BLK_OPEN_READ,
            Mode::ReadWrite => bindings::BLK_OPEN_READ | bindings::BLK_OPEN_WRITE,
        }
    }
}

/// What an exclusive claim on a block device is held by.
///
/// While a device is open with a holder, opens with any other holder fail
/// with `EBUSY`; the same holder may open it again.  Opens without a holder
/// are not affected.  The block layer tells holders apart by address only,
/// and never reads or writes through it (no holder operations are passed),
/// so a holder is a `static` of the module: its address is unique and
/// outlives every device opened with it.  The opaque content keeps two
/// holders from ever being merged into one constant.
///
/// # Examples
///
/// ```
/// use kernel::block::bdev::{Holder, Mode, OpenedBlockDevice};
///
/// static HOLDER: Holder = Holder::new();
///
/// /// Opens `path` so that no other module can open it exclusively until
/// /// the returned device is dropped.
/// fn claim(path: &CStr) -> Result<OpenedBlockDevice> {
///     OpenedBlockDevice::open_by_path(path, Mode::ReadWrite, Some(&HOLDER))
/// }
/// ```
pub struct Holder(Opaque<u8>);

// SAFETY: Nothing reads or writes a holder: only its address is used.
unsafe impl Sync for Holder {}

impl Holder {
    /// A new holder, to be stored in a `static`.
    pub const fn new() -> Self {
        Self(Opaque::uninit())
    }

    fn as_raw(holder: Option<&'static Self>) -> *mut c_void {
        holder.map_or(core::ptr::null_mut(), |h| h.0.get().cast())
    }
}

impl Default for Holder {
    fn default() -> Self {
        Self::new()
    }
}

/// A block device this module opened; closed, and its claim if any
/// released, when dropped.
///
/// # Examples
///
/// ```
/// use kernel::block::bdev::{Mode, OpenedBlockDevice};
///
/// /// Returns the size in sectors of the device at `path`, which others
/// /// may be using, even writing to.
/// fn device_size(path: &CStr) -> Result<u64> {
///     let device = OpenedBlockDevice::open_by_path(path, Mode::Read, None)?;
///     Ok(device.bdev().nr_sectors())
/// }
/// ```
///
/// # Invariants
///
/// `file` is an open block device file returned by
/// `bdev_file_open_by_path()` or `bdev_file_open_by_dev()`, released only by
/// `drop`.
pub struct OpenedBlockDevice {
    file: NonNull<bindings::file>,
}

// SAFETY: The open file may be used and released from any thread.
unsafe impl Send for OpenedBlockDevice {}
// SAFETY: Only shared access to the block device is handed out.
unsafe impl Sync for OpenedBlockDevice {}

impl OpenedBlockDevice {
    /// Opens the block device at `path` for `mode`, claimed by `holder` if
    /// one is given (see [`Holder`]).
    ///
    /// Fails with `ENOENT` if there is no such file, `ENOTBLK` if it is not
    /// a block device, `ENXIO` if the device is gone, `EACCES` if it is
    /// read-only and `mode` writes, and `EBUSY` if another holder has
    /// claimed it or, for a writer, a file system on it does not allow
    /// writers.
    pub fn open_by_path(path: &CStr, mode: Mode, holder: Option<&'static Holder>) -> Result<Self> {
        // SAFETY: `path` is NUL-terminated.  A holder is `'static`, so it
        // outlives the claim; no holder operations are passed.
        let file = from_err_ptr(unsafe {
            bindings::bdev_file_open_by_path(
                path.as_char_ptr(),
                mode.as_raw(),
                Holder::as_raw(holder),
                core::ptr::null(),
            )
        })?;
        Self::from_file(file)
    }

    /// Opens the block device with device number `devt` for `mode`, claimed
    /// by `holder` if one is given (see [`Holder`]).
    ///
    /// Fails with `ENXIO` if there is no such device, and otherwise as
    /// [`Self::open_by_path`].
    pub fn open_by_devt(devt: u32, mode: Mode, holder: Option<&'static Holder>) -> Result<Self> {
        // SAFETY: A holder is `'static`, so it outlives the claim; no holder
        // operations are passed.
        let file = from_err_ptr(unsafe {
            bindings::bdev_file_open_by_dev(
                devt,
                mode.as_raw(),
                Holder::as_raw(holder),
                core::ptr::null(),
            )
        })?;
        Self::from_file(file)
    }

    /// Takes over `file`, just returned by a successful open.
    fn from_file(file: *mut bindings::file) -> Result<Self> {
        // INVARIANT: `file` was just opened; `from_err_ptr` let no error
        // through, and the C functions never return null.
        Ok(Self {
            file: NonNull::new(file).ok_or(EINVAL)?,
        })
    }

    /// Returns the opened block device.
    pub fn bdev(&self) -> &BlockDevice {
        // SAFETY: The file is open by the type invariant.
        let bdev = unsafe { bindings::file_bdev(self.file.as_ptr()) };
        // SAFETY: An open file holds its block device, which thus stays
        // valid as long as `self` does.
        unsafe { BlockDevice::from_raw(bdev) }
    }
}

impl Drop for OpenedBlockDevice {
    fn drop(&mut self) {
        // `bdev_fput` rather than `fput`: the claim and the write access
        // end now, not when the file's last reference goes, which `fput`
        // may defer to a work item.
        // SAFETY: By the type invariant the file is open and this is the only
        // place that releases it.
        unsafe { bindings::bdev_fput(self.file.as_ptr()) };
    }
}
