// SPDX-License-Identifier: GPL-2.0

//! Difference storage: the sector ranges where a snapshot keeps the data
//! that writes to its original devices are about to overwrite.

use crate::{
    claims::{self, Claim},
    event_queue::EventQueue,
};
use kernel::{block::bdev::OpenedBlockDevice, prelude::*, sync::Arc};

/// Most ranges one snapshot can be given, over all appends.
pub(crate) const MAX_EXTENTS: usize = 1 << 16;

/// Sectors in a page: requests are judged in whole pages, as in v3.
const PAGE_SECTORS: u64 = (kernel::page::PAGE_SIZE as u64) >> kernel::block::SECTOR_SHIFT;

/// A range of sectors on a block device.
pub(crate) struct Extent {
    pub(crate) device: Arc<OpenedBlockDevice>,
    pub(crate) start: u64,
    pub(crate) count: u64,
}

impl Extent {
    /// The sectors of the whole disk the extent covers, as recorded across
    /// snapshots: ranges given on a partition and on its disk compare.
    fn claim(&self) -> Claim {
        let bdev = self.device.bdev();
        let start = bdev.start_sector() + self.start;
        Claim {
            disk: bdev.diskseq(),
            start,
            end: start + self.count,
        }
    }

    /// (device, first sector, end): sorts ranges of one device together.
    fn key(&self) -> (u32, u64, u64) {
        // `start + count` was checked when the extent was made.
        (
            self.device.bdev().devt(),
            self.start,
            self.start + self.count,
        )
    }
}

/// Returns true if any two of `extents` share a sector.
fn any_overlap<'a>(extents: impl Iterator<Item = &'a Extent>) -> Result<bool> {
    let mut keys = KVec::new();
    for e in extents {
        keys.push(e.key(), GFP_NOIO)?;
    }
    keys.sort_unstable();
    Ok(keys.windows(2).any(|w| w[0].0 == w[1].0 && w[0].2 > w[1].1))
}

/// What a snapshot was given to store into: one kind or the other, never
/// both, so that the events it gets ask for one kind of answer.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
enum Given {
    /// Nothing yet.
    #[default]
    Nothing,
    /// Sector ranges that user space computed (v3).
    Ranges,
    /// A whole block device the module opened exclusively itself
    /// (`SET_STORAGE`), of which `limit` sectors may be used.  It is the one
    /// extent, claimed whole.
    Device { limit: u64 },
}

/// The storage of one snapshot: what was given and how much of it.  Its
/// ranges stay claimed (see `claims`) until it is dropped, when nothing can
/// write to them any more.
#[derive(Default)]
pub(crate) struct DiffStorage {
    given: Given,
    extents: KVec<Extent>,
    capacity: u64,
    /// Sectors handed out or skipped.
    used: u64,
    /// The range allocations come from, and how much of it is used.
    next: usize,
    used_in_next: u64,
    /// Where low-space events go, and how much storage to ask for.
    events: Option<Arc<EventQueue>>,
    minimum: u64,
    /// Sectors asked for so far, over all low-space events.
    requested: u64,
    /// A request is out and the storage given has not caught up with
    /// `requested`: no new request until it has.
    waiting: bool,
}

impl DiffStorage {
    /// Storage that asks for `minimum` sectors at a time: a snapshot starts
    /// with nothing, so it asks right away.
    ///
    /// The requests follow v3, which user space answers one for one: what is
    /// left is counted against what was asked for, not against what was
    /// given, so a v3 program that appends exactly what each event asks for
    /// sees the events it expects.
    pub(crate) fn new(events: Arc<EventQueue>, minimum: u64) -> Self {
        events.low_free_space(minimum);
        Self {
            given: Given::Nothing,
            extents: KVec::new(),
            capacity: 0,
            used: 0,
            next: 0,
            used_in_next: 0,
            events: Some(events),
            minimum,
            requested: minimum,
            waiting: false,
        }
    }

    /// Asks for `minimum` more once at most half of it (in whole pages) is
    /// left of what was asked for (of the limit, for a device the module
    /// opened), unless a request is still unanswered.
    fn check_free(&mut self) {
        let threshold = (self.minimum / 2) & !(PAGE_SECTORS - 1);
        if let Given::Device { limit } = self.given {
            if !self.waiting && limit.saturating_sub(self.used) <= threshold {
                self.waiting = true;
                if let Some(events) = &self.events {
                    events.no_space(self.minimum);
                }
            }
            return;
        }
        if !self.waiting && self.requested.saturating_sub(self.used) <= threshold {
            self.waiting = true;
            self.requested += self.minimum;
            if let Some(events) = &self.events {
                events.low_free_space(self.minimum);
            }
        }
    }

    /// Checks `(start, count)` ranges against `device` and the ranges given
    /// before, and adds them all or none.  No ranges at all is a valid
    /// answer that adds nothing.
    ///
    /// Runs under the storage mutex of a taken snapshot, which the copy
    /// worker needs: every allocation here is no-I/O, or reclaim writing back
    /// to an original could wait for the worker that waits for us.
    pub(crate) fn append(
        &mut self,
        device: Arc<OpenedBlockDevice>,
        ranges: &[(u64, u64)],
    ) -> Result {
        if let Given::Device { .. } = self.given {
            return Err(EBUSY);
        }
        if ranges.is_empty() {
            self.answered();
            return Ok(());
        }
        let size = device.bdev().nr_sectors();
        if self.extents.len() + ranges.len() > MAX_EXTENTS {
            return Err(EINVAL);
        }
        let mut new = KVec::with_capacity(ranges.len(), GFP_NOIO)?;
        for &(start, count) in ranges {
            let end = start.checked_add(count).ok_or(EINVAL)?;
            if count == 0 || end > size {
                return Err(EINVAL);
            }
            let extent = Extent {
                device: device.clone(),
                start,
                count,
            };
            new.push(extent, GFP_NOIO)?;
        }
        if any_overlap(Iterator::chain(self.extents.iter(), new.iter()))? {
            return Err(EINVAL);
        }
        self.extents.reserve(new.len(), GFP_NOIO)?;
        let mut claims = KVec::with_capacity(new.len(), GFP_NOIO)?;
        for extent in new.iter() {
            claims.push(extent.claim(), GFP_NOIO)?;
        }
        claims::claim(&claims)?;
        for extent in new {
            self.capacity += extent.count;
            // Cannot fail: the room was reserved.
            let _ = self.extents.push(extent, GFP_NOWAIT);
        }
        self.given = Given::Ranges;
        self.answered();
        Ok(())
    }

    /// Stores into the whole of `device`, which the caller opened
    /// exclusively, using at most `limit` sectors of it (0: all).  Refused
    /// with `EBUSY` once the snapshot has storage of either kind.
    pub(crate) fn set_device(&mut self, device: Arc<OpenedBlockDevice>, limit: u64) -> Result {
        if self.given != Given::Nothing {
            return Err(EBUSY);
        }
        let size = device.bdev().nr_sectors();
        if size == 0 || limit > size {
            return Err(EINVAL);
        }
        let extent = Extent {
            device,
            start: 0,
            count: size,
        };
        self.extents.reserve(1, GFP_NOIO)?;
        claims::claim_device(extent.claim())?;
        // Cannot fail: the room was reserved.
        let _ = self.extents.push(extent, GFP_NOWAIT);
        self.given = Given::Device { limit: size };
        self.waiting = false;
        self.set_limit(limit)
    }

    /// Changes how much of the device given with `set_device` may be used
    /// (0: all of it): `EINVAL` without such a device, above its size or
    /// below what is used already.  A limit that leaves little room asks for
    /// more at once, so that the event always comes before the storage runs
    /// out.
    pub(crate) fn set_limit(&mut self, limit: u64) -> Result {
        let Given::Device { .. } = self.given else {
            return Err(EINVAL);
        };
        let size = self.extents.first().map_or(0, |e| e.count);
        let limit = if limit == 0 { size } else { limit };
        if limit > size || limit < self.used {
            return Err(EINVAL);
        }
        self.given = Given::Device { limit };
        self.capacity = limit;
        let threshold = (self.minimum / 2) & !(PAGE_SECTORS - 1);
        if limit - self.used > threshold {
            self.waiting = false;
        }
        self.check_free();
        Ok(())
    }

    /// Closes the open request once all that was asked for is given.
    fn answered(&mut self) {
        if self.capacity >= self.requested {
            self.waiting = false;
        }
    }

    /// Total sectors given to the snapshot.
    pub(crate) fn capacity(&self) -> u64 {
        self.capacity
    }
}

impl DiffStorage {
    /// Hands out `sectors` contiguous sectors, from the ranges in the order
    /// they were given; `ENOSPC` when none is left that is large enough.
    pub(crate) fn alloc(&mut self, sectors: u64) -> Result<(Arc<OpenedBlockDevice>, u64)> {
        if let Given::Device { limit } = self.given {
            if self.used.saturating_add(sectors) > limit {
                return Err(ENOSPC);
            }
        }
        while let Some(extent) = self.extents.get(self.next) {
            if extent.count - self.used_in_next >= sectors {
                let at = extent.start + self.used_in_next;
                let device = extent.device.clone();
                self.used_in_next += sectors;
                self.used += sectors;
                self.check_free();
                return Ok((device, at));
            }
            // The rest of this range is too small for a chunk: skip it.
            self.used += extent.count - self.used_in_next;
            self.next += 1;
            self.used_in_next = 0;
        }
        Err(ENOSPC)
    }
}

impl Drop for DiffStorage {
    fn drop(&mut self) {
        claims::release(self.extents.iter().map(Extent::claim));
    }
}
