// SPDX-License-Identifier: GPL-2.0

//! The tracker: blksnap's state for one block device it is attached to.
//!
//! The tracker lives as long as the filter stays attached, and longer while a
//! snapshot still refers to it.  It marks every change in the active change
//! map and records which snapshot, if any, the device belongs to.

use crate::{
    cbt_map::{ActiveMap, Geometry, ReadMap},
    params,
};
use kernel::{
    block::{
        bdev::BlockDevice,
        bio::Bio,
        filter::{self, Disposition},
    },
    new_mutex, new_spinlock,
    prelude::*,
    sync::{Arc, Mutex, SpinLock},
    uaccess::UserPtr,
    uuid::Uuid,
};

/// Which snapshot a device belongs to.  A device is in at most one snapshot:
/// joining is a transition of this state under its lock.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Membership {
    Free,
    InSnapshot(Uuid),
}

#[pin_data]
pub(crate) struct Tracker {
    /// Device number of the tracked device.
    pub(crate) major: u32,
    pub(crate) minor: u32,
    /// First sector of the device on its disk: bios reach the filter with
    /// whole-disk sectors.
    start_sector: u64,
    /// Taken on every write: a spinlock, as it sits in the submit path.
    #[pin]
    pub(crate) active: SpinLock<ActiveMap>,
    /// Read by user space, who may fault while copying: a mutex.
    #[pin]
    pub(crate) read: Mutex<ReadMap>,
    #[pin]
    membership: Mutex<Membership>,
}

impl Tracker {
    fn new(bdev: &BlockDevice) -> Result<Arc<Self>> {
        let geometry = Geometry::for_capacity(
            bdev.nr_sectors(),
            params::tracking_block_minimum_shift(),
            params::tracking_block_maximum_shift(),
            params::tracking_block_maximum_count(),
        )?;
        let active = ActiveMap::new(geometry)?;
        let read = ReadMap::new(&active)?;
        Arc::pin_init(
            try_pin_init!(Self {
                major: bdev.major(),
                minor: bdev.minor(),
                start_sector: bdev.start_sector(),
                active <- new_spinlock!(active, "blksnap_tracker_active"),
                read <- new_mutex!(read, "blksnap_tracker_read"),
                membership <- new_mutex!(Membership::Free, "blksnap_tracker_membership"),
            }),
            GFP_KERNEL,
        )
    }

    pub(crate) fn geometry(&self) -> Geometry {
        self.active.lock().geometry
    }

    /// Joins snapshot `id`: `EALREADY` if already in it, `EBUSY` if in
    /// another one.
    pub(crate) fn join(&self, id: Uuid) -> Result {
        let mut m = self.membership.lock();
        match *m {
            Membership::Free => {
                *m = Membership::InSnapshot(id);
                Ok(())
            }
            Membership::InSnapshot(cur) if cur == id => Err(EALREADY),
            Membership::InSnapshot(_) => Err(EBUSY),
        }
    }

    /// Leaves snapshot `id`, if the device is in it.
    pub(crate) fn leave(&self, id: Uuid) {
        let mut m = self.membership.lock();
        if *m == Membership::InSnapshot(id) {
            *m = Membership::Free;
        }
    }

    pub(crate) fn membership(&self) -> Membership {
        *self.membership.lock()
    }
}

/// The `blksnap` block device filter.
pub(crate) struct TrackerFilter;

#[vtable]
impl filter::Operations for TrackerFilter {
    type Attachment = Arc<Tracker>;

    fn attach(bdev: &BlockDevice) -> Result<Arc<Tracker>> {
        let tracker = Tracker::new(bdev)?;
        pr_debug!("tracking {}:{}\n", tracker.major, tracker.minor);
        Ok(tracker)
    }

    fn ctl(tracker: &Arc<Tracker>, cmd: u32, buf: UserPtr, len: &mut u32) -> Result<i32> {
        crate::ctl::execute(tracker, cmd, buf, len)
    }

    fn submit_bio(tracker: &Arc<Tracker>, bio: &Bio) -> Disposition {
        if bio.operation().changes_data() && bio.nr_sectors() != 0 {
            let sector = bio.sector().saturating_sub(tracker.start_sector);
            tracker.active.lock().mark_io(sector, bio.nr_sectors());
        }
        Disposition::Pass
    }
}
