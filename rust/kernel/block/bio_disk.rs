// SPDX-License-Identifier: GPL-2.0

//! Bio-based block devices: disks whose driver gets each bio directly, with
//! no request queue in between.
//!
//! C header: [`include/linux/blkdev.h`](srctree/include/linux/blkdev.h)

use crate::{
    bindings,
    block::{bdev::IoGeometry, bio::DiskBio},
    error::{from_err_ptr, to_result},
    fmt::{self, Write},
    module::this_module,
    prelude::*,
    static_lock_class,
    str::NullTerminatedFormatter,
    types::ScopeGuard,
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
    fn submit_bio(data: &Self::Data, bio: DiskBio);
}

/// A builder for [`BioDisk`]: its size and I/O geometry; the name and the
/// driver's data come with [`BioDiskBuilder::build`].
///
/// The disk gets a dynamic device number and no partitions: none are
/// scanned for when it is added, so the block layer itself reads nothing
/// from it.  Others may open it and send I/O as soon as it is added, before
/// `build` returns: its operations and data are in place by then.
///
/// # Examples
///
/// ```
/// use kernel::block::{
///     bio::{DiskBio, Status},
///     bio_disk::{self, BioDisk, BioDiskBuilder},
/// };
///
/// /// A disk that takes every bio and does nothing with it.
/// struct Sink;
///
/// #[vtable]
/// impl bio_disk::Operations for Sink {
///     type Data = ();
///
///     fn submit_bio(_data: &(), bio: DiskBio) {
///         bio.end(Status::Ok);
///     }
/// }
///
/// /// Adds `sink<n>`, of 1 GiB.
/// fn add_sink(n: u32) -> Result<BioDisk<Sink>> {
///     BioDiskBuilder::new()
///         .capacity_sectors(1 << 21)
///         .build(fmt!("sink{n}"), ())
/// }
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct BioDiskBuilder {
    capacity_sectors: u64,
    geometry: IoGeometry,
}

impl BioDiskBuilder {
    /// A builder for an empty disk with the default geometry (512-byte
    /// blocks, no discards).
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the size of the disk, in 512-byte sectors.
    pub fn capacity_sectors(mut self, sectors: u64) -> Self {
        self.capacity_sectors = sectors;
        self
    }

    /// Sets the block sizes, preferred I/O sizes and discard limits the
    /// disk announces; zero fields keep the defaults.  The block layer
    /// checks them when the disk is built.
    pub fn io_geometry(mut self, geometry: IoGeometry) -> Self {
        self.geometry = geometry;
        self
    }

    /// Builds the disk, named `name` (shorter than `DISK_NAME_LEN` bytes),
    /// with `data` for the driver, and adds it to the system.
    pub fn build<T: Operations>(
        self,
        name: fmt::Arguments<'_>,
        data: T::Data,
    ) -> Result<BioDisk<T>> {
        let data = KBox::into_raw(KBox::new(data, GFP_KERNEL)?);
        let data = ScopeGuard::new_with_data(data, |data| {
            // SAFETY: `data` came from `KBox::into_raw` above, and on this
            // path nothing else took it over.
            drop(unsafe { KBox::from_raw(data) });
        });

        let mut lim = self.queue_limits();
        // SAFETY: `lim` is a valid limits structure (zero means default); the
        // lock class key is static.
        let disk = from_err_ptr(unsafe {
            bindings::__blk_alloc_disk(
                &mut lim,
                bindings::NUMA_NO_NODE,
                static_lock_class!().as_ptr(),
            )
        })?;
        let disk = NonNull::new(disk).ok_or(ENOMEM)?;
        // Dropped before `data` on an error: the disk goes first.
        let put = ScopeGuard::new_with_data(disk, |disk| {
            // SAFETY: `disk` came from `__blk_alloc_disk` and, on this path,
            // was not added.
            unsafe { bindings::put_disk(disk.as_ptr()) };
        });
        let disk = disk.as_ptr();

        // SAFETY: `disk` is valid and not added yet: nobody else uses it.
        let disk_name = unsafe { &mut (*disk).disk_name };
        NullTerminatedFormatter::new(disk_name)
            .ok_or(EINVAL)?
            .write_fmt(name)?;
        if disk_name[0] == 0 {
            return Err(EINVAL);
        }

        // SAFETY: As above; `FOPS` is static, and `data` stays valid until
        // `BioDisk::drop` has deleted the disk.
        unsafe {
            (*disk).major = 0;
            (*disk).first_minor = 0;
            (*disk).minors = 0;
            // The enum constant is unsigned, the field a C `int`.
            (*disk).flags |= bindings::GENHD_FL_NO_PART as c_int;
            (*disk).fops = &BioDisk::<T>::FOPS;
            (*disk).private_data = (*data).cast();
        }
        // SAFETY: `disk` is valid and not added yet.
        unsafe { bindings::set_capacity(disk, self.capacity_sectors) };

        // SAFETY: `disk` is set up; on failure it stays ours to put.
        to_result(unsafe {
            bindings::device_add_disk(core::ptr::null_mut(), disk, core::ptr::null_mut())
        })?;

        let disk = put.dismiss();
        data.dismiss();
        // INVARIANT: `disk` was added just above, with the box in
        // `private_data`.
        Ok(BioDisk {
            disk,
            _t: PhantomData,
        })
    }

    /// The queue limits of the disk: the geometry asked for, on top of
    /// limits that let large bios through whole.
    fn queue_limits(&self) -> bindings::queue_limits {
        let mut lim: bindings::queue_limits = pin_init::zeroed();
        // A bio-based disk typically passes its bios on to devices that
        // split them as they need: take large bios, so that a large read
        // stays one bio (zero would mean 127 KiB and 128 segments of 64 KiB
        // at most).
        lim.max_hw_sectors = u32::MAX;
        lim.max_segments = u16::MAX;
        lim.max_segment_size = u32::MAX;
        lim.logical_block_size = self.geometry.logical_block_size;
        lim.physical_block_size = self.geometry.physical_block_size;
        lim.io_min = self.geometry.io_min;
        lim.io_opt = self.geometry.io_opt;
        lim.discard_granularity = self.geometry.discard_granularity;
        lim.max_hw_discard_sectors = self.geometry.max_discard_sectors;
        lim.dma_alignment = self.geometry.dma_alignment;
        lim
    }
}

/// A bio-based disk, visible in the system from [`BioDiskBuilder::build`]
/// until drop.
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
    /// Called by the block layer for a disk made by [`BioDiskBuilder::build`],
    /// with the queue entered.
    unsafe extern "C" fn submit_bio_callback(bio: *mut bindings::bio) {
        // SAFETY: The bio's disk is ours, so its `private_data` is our box,
        // which lives until `drop` has deleted the disk, and deleting the disk
        // waits for every call to return.
        let data = unsafe { &*(*(*(*bio).bi_bdev).bd_disk).private_data.cast::<T::Data>() };
        // SAFETY: The block layer hands us the completion of a bio submitted
        // to our disk.
        let bio = unsafe { DiskBio::from_raw(bio) };
        T::submit_bio(data, bio);
    }
}

impl<T: Operations> Drop for BioDisk<T> {
    fn drop(&mut self) {
        let disk = self.disk.as_ptr();
        // SAFETY: By the type invariant the disk is added and ours to delete.
        // This drains the queue: no `submit_bio` call is running or will
        // come once it returns.
        unsafe { bindings::del_gendisk(disk) };
        // SAFETY: The disk is still valid: only `put_disk` below lets it go.
        let data = unsafe { (*disk).private_data.cast::<T::Data>() };
        // SAFETY: The disk was deleted above; users that still have it open
        // only keep the `gendisk` structure, never our data.
        unsafe { bindings::put_disk(disk) };
        // SAFETY: By the type invariant `data` is the box `build` made, and
        // no callback can reach it any more.
        drop(unsafe { KBox::from_raw(data) });
    }
}
