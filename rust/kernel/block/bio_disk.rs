// SPDX-License-Identifier: GPL-2.0

//! Bio-based block devices: disks whose driver gets each bio directly, with
//! no request queue in between.
//!
//! C header: [`include/linux/blkdev.h`](srctree/include/linux/blkdev.h)

use crate::{
    bindings,
    block::{bdev::IoGeometry, bio::SubmittedBio},
    error::{from_err_ptr, to_result},
    module::this_module,
    prelude::*,
    static_lock_class,
};
use core::{marker::PhantomData, ptr::NonNull};

/// The operations of a bio-based disk.
#[vtable]
pub trait Operations: Sized + 'static {
    /// What the driver keeps for the disk.
    type Data: Send + Sync;

    /// Handles a bio sent to the disk: the driver must end it eventually.
    ///
    /// Runs in the submitter's context; must not wait for bios it submits
    /// itself, which are only dispatched after it returns.
    fn submit_bio(data: &Self::Data, bio: SubmittedBio);
}

/// A bio-based disk, visible in the system from creation until drop.
///
/// # Invariants
///
/// `disk` was added with `device_add_disk()` and is deleted and put only by
/// `drop`.  Its `private_data` is a `KBox<T::Data>` turned into a raw pointer,
/// freed only by `drop`.
pub struct BioDisk<T: Operations> {
    disk: NonNull<bindings::gendisk>,
    _t: PhantomData<T>,
}

// SAFETY: The disk may be deleted from any task; `T::Data` is `Send`.
unsafe impl<T: Operations> Send for BioDisk<T> {}
// SAFETY: No method gives access to the disk through `&self`.
unsafe impl<T: Operations> Sync for BioDisk<T> {}

impl<T: Operations> BioDisk<T> {
    const FOPS: bindings::block_device_operations = bindings::block_device_operations {
        submit_bio: Some(Self::submit_bio_callback),
        owner: this_module::<T::OwnerModule>().as_ptr(),
        ..pin_init::zeroed()
    };

    /// Creates and adds a disk called `name` (without a NUL, shorter than
    /// `DISK_NAME_LEN`) of `sectors` 512-byte sectors with `geometry`, with a
    /// dynamic device number and no partitions: none are scanned for when it
    /// is added, so no I/O reaches it before its creator returns.
    pub fn new(
        name: &[u8],
        sectors: u64,
        read_only: bool,
        geometry: &IoGeometry,
        data: T::Data,
    ) -> Result<Self> {
        if name.is_empty() || name.len() >= bindings::DISK_NAME_LEN as usize {
            return Err(EINVAL);
        }
        let data = KBox::new(data, GFP_KERNEL)?;
        let mut lim: bindings::queue_limits = pin_init::zeroed();
        // The disk passes its bios on to devices that split them as they
        // need: take large bios, so that a large read stays one bio (zero
        // would mean 127 KiB and 128 segments of 64 KiB at most).
        lim.max_hw_sectors = u32::MAX;
        lim.max_segments = u16::MAX;
        lim.max_segment_size = u32::MAX;
        lim.logical_block_size = geometry.logical_block_size;
        lim.physical_block_size = geometry.physical_block_size;
        lim.io_min = geometry.io_min;
        lim.io_opt = geometry.io_opt;
        lim.discard_granularity = geometry.discard_granularity;
        lim.max_hw_discard_sectors = geometry.max_discard_sectors;
        // SAFETY: `lim` is a valid limits structure (zero means default); the
        // lock class key is static.
        let disk = from_err_ptr(unsafe {
            bindings::__blk_alloc_disk(
                &mut lim,
                bindings::NUMA_NO_NODE,
                static_lock_class!().as_ptr(),
            )
        })?;
        // SAFETY: `disk` is a new, not yet added disk that we own.
        unsafe {
            (*disk).major = 0;
            (*disk).first_minor = 0;
            (*disk).minors = 0;
            // The enum constant is unsigned, the field a C `int`.
            (*disk).flags |= bindings::GENHD_FL_NO_PART as crate::ffi::c_int;
            (*disk).fops = &Self::FOPS;
            for (i, &b) in name.iter().enumerate() {
                (*disk).disk_name[i] = b as crate::ffi::c_char;
            }
            (*disk).disk_name[name.len()] = 0;
            (*disk).private_data = KBox::into_raw(data).cast();
            bindings::set_capacity(disk, sectors);
            if read_only {
                bindings::set_disk_ro(disk, true);
            }
        }
        // SAFETY: The disk is fully set up.
        let ret = unsafe {
            bindings::device_add_disk(core::ptr::null_mut(), disk, core::ptr::null_mut())
        };
        if let Err(e) = to_result(ret) {
            // SAFETY: The disk was never added; `private_data` is the box set
            // above and nothing else refers to it.
            unsafe {
                let data = (*disk).private_data.cast::<T::Data>();
                bindings::put_disk(disk);
                drop(KBox::from_raw(data));
            }
            return Err(e);
        }
        // INVARIANT: Added above, with the box in `private_data`.
        Ok(Self {
            // SAFETY: `from_err_ptr` returned a valid pointer.
            disk: unsafe { NonNull::new_unchecked(disk) },
            _t: PhantomData,
        })
    }

    /// Returns the device number of the disk.
    pub fn devt(&self) -> u32 {
        // SAFETY: The disk is live by the type invariant.
        unsafe { (*(*self.disk.as_ptr()).part0).bd_dev }
    }

    /// Returns the disk's sequence number, which no other disk ever gets
    /// (see [`BlockDevice::diskseq`]).
    ///
    /// [`BlockDevice::diskseq`]: crate::block::bdev::BlockDevice::diskseq
    pub fn diskseq(&self) -> u64 {
        // SAFETY: The disk is live by the type invariant; `diskseq` is set
        // when it is allocated.
        unsafe { (*self.disk.as_ptr()).diskseq }
    }

    /// # Safety
    ///
    /// Called by the block layer for a disk made by [`BioDisk::new`], with
    /// the queue entered.
    unsafe extern "C" fn submit_bio_callback(bio: *mut bindings::bio) {
        // SAFETY: The bio's disk is ours, so its `private_data` is our box,
        // which lives until `drop` has deleted the disk, and deleting the disk
        // waits for every call to return.
        let data = unsafe { &*(*(*(*bio).bi_bdev).bd_disk).private_data.cast::<T::Data>() };
        // SAFETY: The block layer hands us the bio's completion.
        let bio = unsafe { SubmittedBio::from_raw(bio, false) };
        T::submit_bio(data, bio);
    }
}

impl<T: Operations> Drop for BioDisk<T> {
    fn drop(&mut self) {
        let disk = self.disk.as_ptr();
        // SAFETY: By the type invariant the disk is added and ours to delete.
        // `del_gendisk` drains the queue, so no `submit_bio` call is running
        // or will come when the data is freed.  Users that still have the
        // disk open only keep the `gendisk` structure, not our data.
        unsafe {
            bindings::del_gendisk(disk);
            let data = (*disk).private_data.cast::<T::Data>();
            (*disk).private_data = core::ptr::null_mut();
            bindings::put_disk(disk);
            drop(KBox::from_raw(data));
        }
    }
}
