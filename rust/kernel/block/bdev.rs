// SPDX-License-Identifier: GPL-2.0

//! Block devices: whole disks and partitions.
//!
//! C header: [`include/linux/blk_types.h`](srctree/include/linux/blk_types.h)

use crate::{bindings, error::Result, types::Opaque};

mod opened;

pub use opened::{Holder, Mode, OpenedBlockDevice};

/// A block device (`struct block_device`): a whole disk or a partition.
///
/// Only ever used by reference: the block layer owns the object.
///
/// # Examples
///
/// ```
/// use kernel::block::bdev::BlockDevice;
///
/// /// Returns where sector `sector` of `bdev` lies on its whole disk.
/// fn disk_sector(bdev: &BlockDevice, sector: u64) -> Option<u64> {
///     (sector < bdev.nr_sectors()).then(|| bdev.start_sector() + sector)
/// }
/// ```
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
    pub(crate) unsafe fn from_raw<'a>(ptr: *mut bindings::block_device) -> &'a Self {
        // SAFETY: `BlockDevice` is `repr(transparent)` over the C struct, and the
        // caller guarantees validity for `'a`.
        unsafe { &*ptr.cast() }
    }

    /// Returns the raw pointer, for abstractions that call into C.
    pub(crate) fn as_raw(&self) -> *mut bindings::block_device {
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

    /// Returns true if the device's disk is bio-based: its driver takes
    /// bios itself (device mapper, md) instead of requests through blk-mq.
    pub fn is_bio_based(&self) -> bool {
        // SAFETY: `bd_disk` is set before the device is visible and stays
        // until it is freed; a disk's operations never change.
        unsafe { (*(*(*self.as_raw()).bd_disk).fops).submit_bio.is_some() }
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
                dma_alignment: (*lim).dma_alignment,
            }
        }
    }

    /// Calls `f` with each device this one is built on, as the stacking
    /// drivers (device mapper, md) record it, down to the bottom of the
    /// stack, depth first; below a device only if `f` returned
    /// [`Walk::Below`] for it (a device reached along two paths comes once
    /// per path).  Stops at the first error `f` returns and returns it.
    /// `ELOOP` if the stack is deeper than the block layer follows.
    ///
    /// `f` runs under the block layer's holder mutex: it may not make or
    /// undo a stack, and the devices it sees are borrowed for the call only.
    /// Drivers that record nothing (loop) end the walk.
    ///
    /// # Examples
    ///
    /// ```
    /// use kernel::{block::bdev::BlockDevice, prelude::*};
    ///
    /// use kernel::block::bdev::Walk;
    ///
    /// /// Whether `upper` is built, directly or not, on the disk `diskseq`.
    /// fn built_on(upper: &BlockDevice, diskseq: u64) -> Result<bool> {
    ///     let mut found = false;
    ///     upper.for_each_lower(|lower| {
    ///         found |= lower.diskseq() == diskseq;
    ///         Ok(if found { Walk::Skip } else { Walk::Below })
    ///     })?;
    ///     Ok(found)
    /// }
    /// ```
    pub fn for_each_lower<F: FnMut(&BlockDevice) -> Result<Walk>>(&self, f: F) -> Result {
        #[cfg(CONFIG_BLOCK_HOLDER_DEPRECATED)]
        {
            /// Calls the `F` that `data` points to with `lower`.
            ///
            /// # Safety
            ///
            /// `data` points to an `F` that nothing else uses during the
            /// call, and `lower` to a device valid during it.
            unsafe extern "C" fn visit<F: FnMut(&BlockDevice) -> Result<Walk>>(
                lower: *mut bindings::block_device,
                data: *mut crate::ffi::c_void,
            ) -> crate::ffi::c_int {
                // SAFETY: See the contract.
                let (f, lower) = unsafe { (&mut *data.cast::<F>(), BlockDevice::from_raw(lower)) };
                match f(lower) {
                    Ok(Walk::Below) => 0,
                    Ok(Walk::Skip) => 1,
                    Err(e) => e.to_errno(),
                }
            }
            let mut f = f;
            // SAFETY: The device is valid (type invariant); `visit::<F>`
            // matches `f`, which lives across the walk and is used by it
            // alone.
            crate::error::to_result(unsafe {
                bindings::bdev_walk_lower(self.as_raw(), Some(visit::<F>), (&raw mut f).cast())
            })
        }
        #[cfg(not(CONFIG_BLOCK_HOLDER_DEPRECATED))]
        {
            // No stacking driver is built, so nothing is stacked.
            let _ = f;
            Ok(())
        }
    }
}

/// Where [`BlockDevice::for_each_lower`] goes on after a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Walk {
    /// To the devices it is built on.
    Below,
    /// Not below it: it was seen before, or what is below does not matter.
    Skip,
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
    /// The alignment a data buffer needs in memory, as a mask of the low
    /// bits of its address and length that must be clear.  A disk that
    /// passes its bios on announces at least that of the disks below: the
    /// block layer checks a bio against the disk it is submitted to.
    pub dma_alignment: u32,
}
