// SPDX-License-Identifier: GPL-2.0

//! Freezing an opened block device: its file system, or its disk's queue,
//! until a guard is dropped.
//!
//! A driver that must see a device at rest, such as one taking a snapshot
//! of it, freezes its file system first, so that it is consistent on disk,
//! then its queue, so that no bio is in flight.
//!
//! C header: [`include/linux/blkdev.h`](srctree/include/linux/blkdev.h)

use crate::{bindings, block::bdev::OpenedBlockDevice, error::to_result, prelude::*};
use core::marker::PhantomData;

impl OpenedBlockDevice {
    /// Freezes the file system on the device, if any, or else writes back
    /// its dirty pages; the file system stays frozen, with new writes to it
    /// blocked, until the returned guard is dropped.
    ///
    /// Freezes nest: the device thaws with the last guard, whoever made it.
    /// Fails with `EBUSY` if freezing is refused, as for a device being
    /// removed from its file system.
    ///
    /// # Examples
    ///
    /// ```
    /// use kernel::block::bdev::OpenedBlockDevice;
    ///
    /// /// Runs `f` while the file system on `device`, if any, is consistent
    /// /// on disk and not changing.
    /// fn quiesced(device: &OpenedBlockDevice, f: impl FnOnce()) -> Result {
    ///     let _frozen = device.freeze()?;
    ///     f();
    ///     Ok(())
    /// }
    /// ```
    pub fn freeze(&self) -> Result<Frozen<'_>> {
        // SAFETY: The device is open, hence valid.
        to_result(unsafe { bindings::bdev_freeze(self.bdev().as_raw()) })?;
        // INVARIANT: The freeze just succeeded.
        Ok(Frozen { device: self })
    }

    /// Waits for the I/O in flight on the device's disk to end and holds new
    /// I/O back (in `submit_bio`) until the returned guard is dropped.
    ///
    /// While the guard lives, the caller must neither do I/O to this disk nor
    /// allocate memory in a way that could (only `GFP_NOIO` or `GFP_ATOMIC`).
    /// Freezing the same disk twice, as two partitions of it, is fine.
    pub fn freeze_queue(&self) -> QueueFrozen<'_> {
        // SAFETY: The device is open, so its disk and queue are valid; the
        // queue lives as long as the device.
        let queue = unsafe { (*self.bdev().as_raw()).bd_queue };
        // SAFETY: `queue` is valid; the guard undoes the freeze, in this
        // task since it cannot be sent to another.
        unsafe { bindings::blk_mq_freeze_queue_nomemsave(queue) };
        // INVARIANT: The queue was frozen just above.
        QueueFrozen {
            queue,
            _device: PhantomData,
        }
    }
}

/// A frozen block device, see [`OpenedBlockDevice::freeze`]; thawed when
/// dropped.
///
/// # Invariants
///
/// The guard holds one successful `bdev_freeze()` of `device`.
#[must_use = "the device thaws when the guard is dropped"]
pub struct Frozen<'a> {
    device: &'a OpenedBlockDevice,
}

impl Drop for Frozen<'_> {
    fn drop(&mut self) {
        let bdev = self.device.bdev();
        // SAFETY: The device is open, and by the type invariant frozen by
        // this guard.
        let ret = unsafe { bindings::bdev_thaw(bdev.as_raw()) };
        // A failed thaw leaves the file system frozen, and nothing here can
        // mend it: tell, as the C callers do, and go on.
        if let Err(e) = to_result(ret) {
            pr_warn!(
                "thawing block device {}:{} failed: {e:?}\n",
                bdev.major(),
                bdev.minor()
            );
        }
    }
}

/// A frozen request queue, see [`OpenedBlockDevice::freeze_queue`];
/// unfrozen when dropped.
///
/// The queue must be unfrozen by the task that froze it (lockdep tracks
/// the freeze as a lock it holds), so the guard is neither `Send` nor
/// `Sync`.
///
/// # Invariants
///
/// `queue` is the queue of an open block device that outlives the guard, and
/// this guard holds one freeze of it, made by the current task.
#[must_use = "the queue is unfrozen when the guard is dropped"]
pub struct QueueFrozen<'a> {
    queue: *mut bindings::request_queue,
    _device: PhantomData<&'a OpenedBlockDevice>,
}

impl Drop for QueueFrozen<'_> {
    fn drop(&mut self) {
        // SAFETY: By the type invariant the queue is valid and frozen by this
        // guard, in this task.
        unsafe { bindings::blk_mq_unfreeze_queue_nomemrestore(self.queue) };
    }
}
