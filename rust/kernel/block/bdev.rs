// SPDX-License-Identifier: GPL-2.0

//! Block devices: whole disks and partitions.
//!
//! C header: [`include/linux/blk_types.h`](srctree/include/linux/blk_types.h)

use crate::{
    bindings,
    error::{from_err_ptr, to_result},
    prelude::*,
    types::Opaque,
};
use core::{marker::PhantomData, ptr::NonNull};

/// A block device (`struct block_device`): a whole disk or a partition.
///
/// Only ever used by reference: the block layer owns the object.
///
/// # Invariants
///
/// The wrapped `struct block_device` is valid, and its disk is attached to it,
/// for as long as the reference exists.
#[repr(transparent)]
pub struct BlockDevice(Opaque<bindings::block_device>);

// SAFETY: The accessors only read fields that are set once when the device is
// created, or that the block layer updates with its own synchronisation.
unsafe impl Send for BlockDevice {}
// SAFETY: See `Send`; no method mutates through a shared reference.
unsafe impl Sync for BlockDevice {}

impl BlockDevice {
    /// Borrows a block device from a raw pointer.
    ///
    /// # Safety
    ///
    /// `ptr` must point to a valid `struct block_device` that stays valid for
    /// the lifetime `'a`.
    pub unsafe fn from_raw<'a>(ptr: *mut bindings::block_device) -> &'a Self {
        // SAFETY: `BlockDevice` is `repr(transparent)` over the C struct, and the
        // caller guarantees validity for `'a`.
        unsafe { &*ptr.cast() }
    }

    /// Returns the raw pointer, for abstractions that call into C.
    pub fn as_raw(&self) -> *mut bindings::block_device {
        self.0.get()
    }

    /// Returns the device number (`dev_t`).
    pub fn devt(&self) -> u32 {
        // SAFETY: `bd_dev` is set before the device is visible and never changes.
        unsafe { (*self.as_raw()).bd_dev }
    }

    /// Returns the major number of the device.
    pub fn major(&self) -> u32 {
        self.devt() >> bindings::MINORBITS
    }

    /// Returns the minor number of the device.
    pub fn minor(&self) -> u32 {
        self.devt() & ((1 << bindings::MINORBITS) - 1)
    }

    /// Returns the current size of the device in 512-byte sectors.
    pub fn nr_sectors(&self) -> u64 {
        // SAFETY: The pointer is valid by the type invariant; the size is read
        // with a single load, as `bdev_nr_sectors()` does.
        unsafe { core::ptr::read_volatile(&raw const (*self.as_raw()).bd_nr_sectors) }
    }

    /// Returns the first sector of a partition on its disk, or 0 for a disk.
    pub fn start_sector(&self) -> u64 {
        // SAFETY: `bd_start_sect` is set when the partition is created; a
        // partition that moves is a new `struct block_device`.
        unsafe { (*self.as_raw()).bd_start_sect }
    }

    /// Returns the device number of the whole disk: the device's own for a
    /// disk, its disk's for a partition.
    pub fn disk_devt(&self) -> u32 {
        // SAFETY: `bd_disk` and the disk's `part0` are set before the device is
        // visible and stay until it is freed; `bd_dev` never changes.
        unsafe { (*(*(*self.as_raw()).bd_disk).part0).bd_dev }
    }

    /// Returns the sequence number of the device's disk.  Unlike a device
    /// number, which a disk made later may get while this one is still held
    /// open, no other disk ever has it; a disk's partitions share it.
    pub fn diskseq(&self) -> u64 {
        // SAFETY: `bd_disk` is set before the device is visible and stays
        // until it is freed; `diskseq` is set when the disk is allocated.
        unsafe { (*(*self.as_raw()).bd_disk).diskseq }
    }

    /// Returns true if this is a partition rather than a whole disk.
    pub fn is_partition(&self) -> bool {
        // SAFETY: `bd_disk` and the disk's `part0` are set before the device is
        // visible and stay until it is freed.
        unsafe { (*(*self.as_raw()).bd_disk).part0 != self.as_raw() }
    }

    /// Returns the number of bios in flight on the device, as a bio-based
    /// driver that accounts its I/O (device mapper, md) counts them; always
    /// 0 for other drivers, whose requests are not counted here.
    pub fn bios_in_flight(&self) -> u32 {
        // SAFETY: The device is valid by the type invariant.
        unsafe { bindings::bdev_count_inflight(self.as_raw()) }
    }

    /// Returns true if the device is zoned: each of its zones is written in
    /// order, at its write pointer.
    pub fn is_zoned(&self) -> bool {
        // SAFETY: `bd_queue` is set when the device is created and the queue
        // lives as long as the device; being zoned is set up before the disk
        // is added and never changes.
        let features = unsafe { (*(*self.as_raw()).bd_queue).limits.features };
        features & bindings::BLK_FEAT_ZONED != 0
    }

    /// Returns the I/O geometry of the device's disk, as its queue limits
    /// hold it now.
    pub fn io_geometry(&self) -> IoGeometry {
        // SAFETY: `bd_queue` is set when the device is created and the queue
        // lives as long as the device.  The limits change only under a queue
        // freeze; each field is read once, as the `bdev_*()` helpers do.
        let lim = unsafe { &raw const (*(*self.as_raw()).bd_queue).limits };
        // SAFETY: `lim` points at the live limits, see above.
        unsafe {
            IoGeometry {
                logical_block_size: (*lim).logical_block_size,
                physical_block_size: (*lim).physical_block_size,
                io_min: (*lim).io_min,
                io_opt: (*lim).io_opt,
                discard_granularity: (*lim).discard_granularity,
                max_discard_sectors: (*lim).max_discard_sectors,
            }
        }
    }
}

/// How a disk is best read and written: the part of its queue limits that
/// a disk showing the same data (a snapshot image, say) announces too, so
/// that its users see the same constraints.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoGeometry {
    /// Smallest unit the disk can address, in bytes.
    pub logical_block_size: u32,
    /// Smallest unit the disk writes without a read-modify-write, in bytes.
    pub physical_block_size: u32,
    /// Preferred minimum I/O size, in bytes.
    pub io_min: u32,
    /// Optimal I/O size, in bytes.
    pub io_opt: u32,
    /// Unit of discards, in bytes.
    pub discard_granularity: u32,
    /// Largest discard, in 512-byte sectors; 0 if the disk takes none.
    pub max_discard_sectors: u32,
}

/// What an [`OpenedBlockDevice`] is opened for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Access {
    /// Reading only: the open also succeeds where writers are refused, such
    /// as on a mounted file system's device with `bdev_allow_write_mounted=0`.
    Read,
    /// Reading and writing.
    ReadWrite,
}

impl Access {
    fn mode(self) -> bindings::blk_mode_t {
        match self {
            Access::Read => bindings::BLK_OPEN_READ,
            Access::ReadWrite => bindings::BLK_OPEN_READ | bindings::BLK_OPEN_WRITE,
        }
    }
}

/// A block device this module opened, by path; closed when dropped.
///
/// The open is not exclusive: the device may be in use by others, mounted
/// or even filtered by the same module.
///
/// # Invariants
///
/// `file` was returned by `bdev_file_open_by_path()` and is released only by
/// `drop`.
pub struct OpenedBlockDevice {
    file: NonNull<bindings::file>,
}

// SAFETY: The open file may be used and released from any thread.
unsafe impl Send for OpenedBlockDevice {}
// SAFETY: Only shared access to the block device is handed out.
unsafe impl Sync for OpenedBlockDevice {}

impl OpenedBlockDevice {
    /// Opens the block device at `path` with `access`.
    ///
    /// Fails with `ENOENT` if there is no such file and `ENOTBLK` if it is not
    /// a block device.
    pub fn open_by_path(path: &CStr, access: Access) -> Result<Self> {
        // SAFETY: `path` is NUL-terminated.  A non-exclusive open takes no
        // holder and no holder operations.
        let file = from_err_ptr(unsafe {
            bindings::bdev_file_open_by_path(
                path.as_char_ptr(),
                access.mode(),
                core::ptr::null_mut(),
                core::ptr::null(),
            )
        })?;
        // INVARIANT: `file` comes from `bdev_file_open_by_path()`.
        Ok(Self {
            file: NonNull::new(file).ok_or(EINVAL)?,
        })
    }

    /// Opens the block device with device number `devt` with `access`;
    /// `ENODEV` if there is none.
    pub fn open_by_devt(devt: u32, access: Access) -> Result<Self> {
        // SAFETY: A non-exclusive open takes no holder and no holder
        // operations.
        let file = from_err_ptr(unsafe {
            bindings::bdev_file_open_by_dev(
                devt,
                access.mode(),
                core::ptr::null_mut(),
                core::ptr::null(),
            )
        })?;
        // INVARIANT: `file` comes from `bdev_file_open_by_dev()`.
        Ok(Self {
            file: NonNull::new(file).ok_or(EINVAL)?,
        })
    }

    /// Freezes the file system on the device, if any, and blocks new writes
    /// until [`OpenedBlockDevice::thaw`].
    pub fn freeze(&self) -> Result {
        // SAFETY: The device is open, hence valid.
        to_result(unsafe { bindings::bdev_freeze(self.bdev().as_raw()) })
    }

    /// Undoes [`OpenedBlockDevice::freeze`].
    pub fn thaw(&self) -> Result {
        // SAFETY: The device is open, hence valid.
        to_result(unsafe { bindings::bdev_thaw(self.bdev().as_raw()) })
    }

    /// Waits for the I/O in flight on the device's disk to end and holds new
    /// I/O back (in `submit_bio`) until the returned guard is dropped.
    ///
    /// While the guard lives, the caller must neither do I/O to this disk nor
    /// allocate memory in a way that could (only `GFP_NOIO` or `GFP_ATOMIC`).
    /// Freezing the same disk twice, as two partitions of it, is fine.
    pub fn freeze_queue(&self) -> QueueFrozen<'_> {
        // SAFETY: The device is open, so its disk and queue are valid.
        let queue = unsafe { (*self.bdev().as_raw()).bd_queue };
        // SAFETY: `queue` is valid; every freeze is undone by the guard.
        unsafe { bindings::blk_mq_freeze_queue_nomemsave(queue) };
        // INVARIANT: The queue was frozen just above.
        QueueFrozen {
            queue,
            _device: PhantomData,
        }
    }

    /// Returns the opened block device.
    pub fn bdev(&self) -> &BlockDevice {
        // SAFETY: The file is open by the type invariant, so its block device
        // stays valid as long as `self` does.
        unsafe { BlockDevice::from_raw(bindings::file_bdev(self.file.as_ptr())) }
    }
}

/// A frozen request queue, see [`OpenedBlockDevice::freeze_queue`].
///
/// # Invariants
///
/// `queue` is the queue of an open block device that outlives the guard, and
/// this guard holds one freeze of it.
pub struct QueueFrozen<'a> {
    queue: *mut bindings::request_queue,
    _device: PhantomData<&'a OpenedBlockDevice>,
}

impl Drop for QueueFrozen<'_> {
    fn drop(&mut self) {
        // SAFETY: By the type invariant the queue is valid and frozen by us.
        unsafe { bindings::blk_mq_unfreeze_queue_nomemrestore(self.queue) };
    }
}

impl Drop for OpenedBlockDevice {
    fn drop(&mut self) {
        // SAFETY: By the type invariant the file is open and this is the only
        // place that releases it.
        unsafe { bindings::fput(self.file.as_ptr()) };
    }
}
