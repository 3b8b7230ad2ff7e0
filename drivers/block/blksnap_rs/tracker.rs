// SPDX-License-Identifier: GPL-2.0

//! The tracker: blksnap's state for one block device it is attached to.
//!
//! The tracker lives as long as the filter stays attached, and longer while a
//! snapshot still refers to it.  It marks every change in the active change
//! map and records which snapshot, if any, the device belongs to.

use crate::{
    cbt_map::{ActiveMap, Geometry, MapVersion, ReadMap},
    claims::Claim,
    diff_area::DiffArea,
    params,
};
use kernel::{
    block::{
        bdev::BlockDevice,
        bio::{FilteredBio, Status},
        filter::passed::PassedBios,
    },
    new_mutex, new_spinlock,
    prelude::*,
    sync::{Arc, Mutex, SpinLock},
    uuid::Uuid,
};

/// Which snapshot a device belongs to.  A device is in at most one snapshot:
/// joining is a transition of this state under its lock.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Membership {
    Free,
    InSnapshot(Uuid),
}

/// Whether writes to the device are copied first.
pub(crate) enum Cow {
    /// No snapshot taken: writes go straight on.
    Off,
    /// A snapshot is taken: writes to chunks not yet saved wait for the copy.
    On(Arc<DiffArea>),
    /// The filter was detached: nothing is tracked or copied any more.
    Detached,
}

#[pin_data]
pub(crate) struct Tracker {
    /// Device number of the tracked device.
    devt: u32,
    /// Device number of its whole disk, whose queue a take freezes.
    disk_devt: u32,
    major: u32,
    minor: u32,
    /// First sector of the device on its disk: bios reach the filter with
    /// whole-disk sectors.
    start_sector: u64,
    /// The sectors of its disk it covers (all of them for a whole disk,
    /// which may grow), as storage is checked against them.
    sectors: Claim,
    /// Taken on every write: a spinlock, as it sits in the submit path.
    #[pin]
    active: SpinLock<ActiveMap>,
    /// Read by user space, who may fault while copying: a mutex.
    #[pin]
    read: Mutex<ReadMap>,
    #[pin]
    membership: Mutex<Membership>,
    /// Looked at for every write: a spinlock.
    #[pin]
    cow: SpinLock<Cow>,
    /// On a bio-based disk, the writes passed on and not ended yet: its
    /// driver may hold them without counting them in flight, and a take
    /// must wait for them.
    passed: Option<PassedBios>,
}

impl Tracker {
    pub(crate) fn new(bdev: &BlockDevice) -> Result<Arc<Self>> {
        let geometry = Geometry::for_capacity(
            bdev.nr_sectors(),
            params::tracking_block_minimum_shift(),
            params::tracking_block_maximum_shift(),
            params::tracking_block_maximum_count(),
        )?;
        let active = ActiveMap::new(geometry)?;
        let read = ReadMap::new(&active)?;
        let passed = if bdev.is_bio_based() {
            Some(PassedBios::new()?)
        } else {
            None
        };
        Arc::pin_init(
            try_pin_init!(Self {
                devt: bdev.devt(),
                disk_devt: bdev.disk_devt(),
                major: bdev.major(),
                minor: bdev.minor(),
                start_sector: bdev.start_sector(),
                sectors: Claim {
                    disk: bdev.diskseq(),
                    start: bdev.start_sector(),
                    end: if bdev.devt() == bdev.disk_devt() {
                        u64::MAX
                    } else {
                        bdev.start_sector() + bdev.nr_sectors()
                    },
                },
                active <- new_spinlock!(active, "blksnap_tracker_active"),
                read <- new_mutex!(read, "blksnap_tracker_read"),
                membership <- new_mutex!(Membership::Free, "blksnap_tracker_membership"),
                cow <- new_spinlock!(Cow::Off, "blksnap_tracker_cow"),
                passed,
            }),
            GFP_KERNEL,
        )
    }

    pub(crate) fn devt(&self) -> u32 {
        self.devt
    }

    /// The device's major and minor numbers.
    pub(crate) fn numbers(&self) -> (u32, u32) {
        (self.major, self.minor)
    }

    /// Which change map user space reads now, and its length in blocks.
    pub(crate) fn read_map(&self) -> (MapVersion, usize) {
        let read = self.read.lock();
        (read.version(), read.map.len())
    }

    /// Copies the read map from block `offset` into `out`; `EAGAIN` if it is
    /// no longer the map of `version` (a snapshot was taken, or the device
    /// was resized), `EINVAL` if it has no such blocks.
    pub(crate) fn copy_read_map(
        &self,
        version: MapVersion,
        offset: usize,
        out: &mut [u8],
    ) -> Result {
        let read = self.read.lock();
        if read.version() != version {
            return Err(EAGAIN);
        }
        let end = offset.checked_add(out.len()).ok_or(EINVAL)?;
        out.copy_from_slice(read.map.get(offset..end).ok_or(EINVAL)?);
        Ok(())
    }

    /// Where the device stands in the one order every take freezes devices
    /// in: by disk, then by device, so that two takes never freeze the same
    /// queues in opposite orders.
    pub(crate) fn freeze_order(&self) -> (u32, u32) {
        (self.disk_devt, self.devt)
    }

    /// Starts the change maps over, in a new generation, if the device
    /// changed size since they were made.
    pub(crate) fn resize_if_needed(&self, capacity: u64) -> Result {
        if self.geometry().capacity == capacity {
            return Ok(());
        }
        let geometry = Geometry::for_capacity(
            capacity,
            params::tracking_block_minimum_shift(),
            params::tracking_block_maximum_shift(),
            params::tracking_block_maximum_count(),
        )?;
        let active = ActiveMap::new(geometry)?;
        let fresh = ReadMap::new(&active)?;
        let mut read = self.read.lock();
        // Both maps change under `read`, so that holders of `read` see them
        // alike; the old active map is freed (vfree) out of its spinlock.
        let old = core::mem::replace(&mut *self.active.lock(), active);
        *read = fresh;
        drop(read);
        drop(old);
        Ok(())
    }

    /// The sectors of its disk the device covers.
    pub(crate) fn sectors(&self) -> Claim {
        self.sectors
    }

    pub(crate) fn geometry(&self) -> Geometry {
        self.active.lock().geometry
    }

    /// Marks `count` sectors from `sector` as changed in both maps on
    /// request of user space: `EINVAL` if they are not all on the device.
    /// Checked against the maps as they are now, under `read`, which a
    /// resize holds while it replaces them.
    pub(crate) fn mark_dirty(&self, sector: u64, count: u64) -> Result {
        let mut read = self.read.lock();
        let mut active = self.active.lock();
        let blocks = active.geometry.blocks(sector, count)?;
        read.mark_blocks(blocks.clone());
        active.mark_blocks(blocks);
        Ok(())
    }

    /// Marks a change made to the snapshot image in both maps: the map of
    /// the snapshot taken, and the active one.
    pub(crate) fn mark_both(&self, sector: u64, count: u64) {
        let mut read = self.read.lock();
        let mut active = self.active.lock();
        read.mark_blocks(active.geometry.blocks_clipped(sector, count));
        active.mark_io(sector, count);
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

    /// The difference area while a snapshot is taken.
    pub(crate) fn diff_area(&self) -> Option<Arc<DiffArea>> {
        match &*self.cow.lock() {
            Cow::On(area) => Some(area.clone()),
            _ => None,
        }
    }

    pub(crate) fn is_attached(&self) -> bool {
        !matches!(*self.cow.lock(), Cow::Detached)
    }

    /// Starts the snapshot: called with the device frozen.  The change map
    /// is switched at the same moment, so it describes the same point.
    pub(crate) fn start_cow(&self, area: Arc<DiffArea>) -> Result {
        let mut read = self.read.lock();
        let mut cow = self.cow.lock();
        if !matches!(*cow, Cow::Off) {
            return Err(ENODEV);
        }
        // A write that marks the new map number finds copy-on-write on: it
        // needs the `cow` lock, which is held until both changed.
        self.active.lock().switch_into(&mut read);
        *cow = Cow::On(area);
        Ok(())
    }

    /// Stops copying when the snapshot goes away.
    pub(crate) fn stop_cow(&self) {
        let old = {
            let mut cow = self.cow.lock();
            if !matches!(*cow, Cow::On(_)) {
                return;
            }
            core::mem::replace(&mut *cow, Cow::Off)
        };
        // Out of the spinlock: dropping the last reference to the difference
        // area closes devices and waits for forwarded reads.
        drop(old);
    }

    /// Detaches: nothing is tracked or copied any more.  Writes are no
    /// longer seen, so a snapshot taken of the device cannot stay correct.
    pub(crate) fn detach(&self) {
        // Ended while still here: a destroy that comes meanwhile finds the
        // area, and waits in its own `retire` as this one does, for image
        // reads sent on to a storage file, before the image goes.
        if let Some(area) = self.diff_area() {
            area.fail(ENODEV);
            area.retire();
        }
        let old = core::mem::replace(&mut *self.cow.lock(), Cow::Detached);
        // One switched on meanwhile.
        if let Cow::On(area) = old {
            area.fail(ENODEV);
            area.retire();
        }
    }

    /// The submit path of a bio to the device: marks what it changes, and
    /// returns it if it may go on now (see `DiffArea::write`).
    pub(crate) fn submit_bio(&self, bio: FilteredBio) -> Option<FilteredBio> {
        if let Some((sector, count)) = bio.changed_sectors() {
            let sector = sector.saturating_sub(self.start_sector);
            self.active.lock().mark_io(sector, count);
        }
        let passed = match self.diff_area() {
            Some(area) => {
                let passed = area.write(bio);
                DiffArea::put_in_submit(area);
                passed
            }
            None => Some(bio),
        };
        passed.and_then(|bio| self.count_passed(bio))
    }

    /// Counts a write passed on to a bio-based disk until it ends.
    fn count_passed(&self, mut bio: FilteredBio) -> Option<FilteredBio> {
        let Some(passed) = &self.passed else {
            return Some(bio);
        };
        if bio.changed_sectors().is_none() {
            return Some(bio);
        }
        match passed.count(&mut bio) {
            Ok(()) => Some(bio),
            Err(_) => {
                // Only a write that asked not to wait gets here.
                bio.end(Status::Again);
                None
            }
        }
    }

    /// Writes passed on to the device's bio-based driver that have not
    /// ended; always 0 on a blk-mq disk, whose queue freeze waits for them.
    pub(crate) fn writes_in_flight(&self) -> usize {
        self.passed.as_ref().map_or(0, PassedBios::in_flight)
    }
}
