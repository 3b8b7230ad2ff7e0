// SPDX-License-Identifier: GPL-2.0

//! What the module writes to, across all snapshots: the sector ranges given
//! as difference storage and the image devices; and what it filters.
//!
//! One snapshot's storage must never be another's (each would overwrite
//! the other's copies), nor an image (storing a chunk would write to the
//! image, which stores chunks).  A whole device given as storage
//! (`SET_STORAGE`) must share no sector with a device the filter is attached
//! to: storing skips the filter, so an original's snapshot would read the
//! stored chunks as its own data, and a tracker would miss those writes.
//! V3 ranges keep v3's rule, which allows them there.  The checks within one snapshot are
//! `DiffStorage`'s; these are the ones across snapshots, made and recorded
//! in one step under one lock, so that two appends cannot both pass.

use kernel::prelude::*;

/// A range of sectors `start..end` of a whole disk.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Claim {
    /// The disk's sequence number: unlike its device number, which a disk
    /// made later may get while the first is still held open, no other
    /// disk ever has it.
    pub(crate) disk: u64,
    pub(crate) start: u64,
    pub(crate) end: u64,
}

impl Claim {
    fn overlaps(&self, other: &Claim) -> bool {
        self.disk == other.disk && self.start < other.end && other.start < self.end
    }
}

pub(crate) struct Claims {
    /// Sorted, and disjoint: a claim is checked with its neighbours only.
    ranges: KVec<Claim>,
    /// Image disks, by sequence number.
    images: KVec<u64>,
    /// The whole devices among `ranges`.
    devices: KVec<Claim>,
    /// The sectors of the devices the filter is attached to.
    filtered: KVec<Claim>,
    /// The devices that stores to files reach without passing the module,
    /// once per file (several snapshots may store into one file system):
    /// the device of its file system and those that one is built on.
    reached: KVec<Claim>,
    /// The devices that whole devices among `devices` are built on: their
    /// sectors are storage too.
    below: KVec<Claim>,
    /// Storage files, by file system device and inode number: one file is
    /// storage of one snapshot, through any of its names.
    files: KVec<(u32, u64)>,
}

impl Claims {
    /// See `claim`.
    fn record(&mut self, ranges: &[Claim]) -> Result {
        for new in ranges {
            if self.images.contains(&new.disk) {
                return Err(EINVAL);
            }
            if self.taken(new) || self.below.iter().any(|b| b.overlaps(new)) {
                return Err(EBUSY);
            }
        }
        self.ranges.reserve(ranges.len(), GFP_NOIO)?;
        for new in ranges {
            // Cannot fail: the room was reserved.
            let _ = self.ranges.push(*new, GFP_NOWAIT);
        }
        self.ranges.sort_unstable();
        Ok(())
    }

    /// Whether `new` overlaps a recorded range.
    fn taken(&self, new: &Claim) -> bool {
        // The first recorded range that starts at or after `new`, and the
        // one before it: being disjoint and sorted, only they can overlap.
        let at = self.ranges.partition_point(|c| c < new);
        let before = at.checked_sub(1).and_then(|i| self.ranges.get(i));
        [before, self.ranges.get(at)]
            .into_iter()
            .flatten()
            .any(|c| c.overlaps(new))
    }
}

// The registry is updated under the storage mutex of a taken snapshot, and
// released from the copy path: it allocates only with GFP_NOIO.
kernel::sync::global_lock! {
    // SAFETY: Initialised in the module's init function before anything else
    // can reach it.
    pub(crate) unsafe(uninit) static CLAIMS: Mutex<Claims> = Claims {
        ranges: KVec::new(),
        images: KVec::new(),
        devices: KVec::new(),
        filtered: KVec::new(),
        reached: KVec::new(),
        below: KVec::new(),
        files: KVec::new(),
    };
}

/// Records `ranges`, which do not overlap each other, as difference storage:
/// `EINVAL` if one is on an image, `EBUSY` if one overlaps storage recorded
/// before: another snapshot's (a whole device given as storage, or one it
/// is built on, included), or the same snapshot's given through another
/// device of the same disk (a partition and the whole disk; ranges given
/// through one device were checked against each other before).  Records all
/// or none.
pub(crate) fn claim(ranges: &[Claim]) -> Result {
    CLAIMS.lock().record(ranges)
}

impl Claims {
    /// Whether stores may reach `devices`: `EINVAL` if one is an image (a
    /// store would write to an image, which stores chunks), `ELOOP` if one
    /// shares a sector with a device the filter is attached to (every store
    /// would come back to the filter).
    fn check_reachable(&self, devices: &[Claim]) -> Result {
        if devices.iter().any(|d| self.images.contains(&d.disk)) {
            return Err(EINVAL);
        }
        let filtered = |d: &Claim| self.filtered.iter().any(|f| f.overlaps(d));
        if devices.iter().any(filtered) {
            return Err(ELOOP);
        }
        Ok(())
    }

    /// Whether the devices `lower` that a whole storage device is built on
    /// may be storage: as `check_reachable`, and `EBUSY` if one shares a
    /// sector with storage recorded (another snapshot's ranges).
    fn check_below(&self, lower: &[Claim]) -> Result {
        self.check_reachable(lower)?;
        if lower.iter().any(|l| self.taken(l)) {
            return Err(EBUSY);
        }
        Ok(())
    }

    /// The list that devices reached `via` storage of a kind are kept in.
    fn reached_via(&mut self, via: Via) -> &mut KVec<Claim> {
        match via {
            Via::Device => &mut self.below,
            Via::File => &mut self.reached,
        }
    }

    /// Records `devices` as reached `via`, once more each.
    fn add_reached(&mut self, devices: &[Claim], via: Via) -> Result {
        let list = self.reached_via(via);
        list.reserve(devices.len(), GFP_NOIO)?;
        for d in devices {
            // Cannot fail: the room was reserved.
            let _ = list.push(*d, GFP_NOWAIT);
        }
        Ok(())
    }

    /// Forgets `devices` as reached `via`, once each.
    fn remove_reached(&mut self, devices: &[Claim], via: Via) {
        let list = self.reached_via(via);
        for d in devices {
            if let Some(i) = list.iter().position(|c| c == d) {
                let _ = list.remove(i);
            }
        }
    }
}

/// The kind of storage whose stores reach devices past the module.
#[derive(Clone, Copy)]
pub(crate) enum Via {
    /// A whole device, which reaches those it is built on.
    Device,
    /// A file, which reaches its file system's device and those below.
    File,
}

/// Records `whole`, a whole device given as storage, and `lower`, the
/// devices it is built on: `ELOOP` if one of them shares a sector with a
/// device the filter is attached to, `EINVAL` if one of `lower` is an
/// image, `EBUSY` if one shares a sector with storage recorded, else as
/// `claim`.
pub(crate) fn claim_device(whole: Claim, lower: &[Claim]) -> Result {
    let mut claims = CLAIMS.lock();
    claims.check_below(lower)?;
    if claims.filtered.iter().any(|f| f.overlaps(&whole)) {
        return Err(ELOOP);
    }
    claims.devices.reserve(1, GFP_NOIO)?;
    claims.below.reserve(lower.len(), GFP_NOIO)?;
    claims.record(&[whole])?;
    // Cannot fail: the room was reserved.
    let _ = claims.devices.push(whole, GFP_NOWAIT);
    claims.add_reached(lower, Via::Device)
}

/// Records `devices`, which the stores of a storage file reach (the device
/// of its file system and those it is built on): `EINVAL` if one is an
/// image, `ELOOP` if one shares a sector with a device the filter is
/// attached to.
pub(crate) fn claim_reached(devices: &[Claim]) -> Result {
    let mut claims = CLAIMS.lock();
    claims.check_reachable(devices)?;
    claims.add_reached(devices, Via::File)
}

/// Replaces `old`, recorded `via` `claim_device` or `claim_reached`, by
/// `new`, found walking the same stack again: fails as they would, and
/// then `old` stays recorded.
pub(crate) fn reclaim_reached(old: &[Claim], new: &[Claim], via: Via) -> Result {
    let mut claims = CLAIMS.lock();
    match via {
        Via::Device => claims.check_below(new)?,
        Via::File => claims.check_reachable(new)?,
    }
    claims.reached_via(via).reserve(new.len(), GFP_NOIO)?;
    claims.remove_reached(old, via);
    // Cannot fail: the room was reserved.
    claims.add_reached(new, via)
}

/// Forgets `devices`, recorded `via` `claim_device` or `claim_reached`.
pub(crate) fn release_reached(devices: &[Claim], via: Via) {
    CLAIMS.lock().remove_reached(devices, via);
}

/// Records storage file `file` (see `Claims::files`): `EBUSY` if it is
/// storage already.
pub(crate) fn claim_file(file: (u32, u64)) -> Result {
    let mut claims = CLAIMS.lock();
    if claims.files.contains(&file) {
        return Err(EBUSY);
    }
    claims.files.push(file, GFP_NOIO)?;
    Ok(())
}

/// Forgets storage file `file`.
pub(crate) fn release_file(file: (u32, u64)) {
    let mut claims = CLAIMS.lock();
    if let Some(i) = claims.files.iter().position(|f| *f == file) {
        let _ = claims.files.remove(i);
    }
}

/// Records the sectors of a device the filter is being attached to: `EBUSY`
/// if a whole device given as storage, or a device that stores reach,
/// shares one of them.
pub(crate) fn add_filtered(device: Claim) -> Result {
    let mut claims = CLAIMS.lock();
    let stored = [&claims.devices, &claims.reached, &claims.below];
    if stored.into_iter().flatten().any(|d| d.overlaps(&device)) {
        return Err(EBUSY);
    }
    claims.filtered.push(device, GFP_NOIO)?;
    Ok(())
}

/// Forgets a device the filter was detached from.
pub(crate) fn remove_filtered(device: &Claim) {
    let mut claims = CLAIMS.lock();
    if let Some(i) = claims.filtered.iter().position(|f| f == device) {
        let _ = claims.filtered.remove(i);
    }
}

/// Forgets `ranges`, once nothing writes to them any more.
pub(crate) fn release(ranges: impl ExactSizeIterator<Item = Claim>) {
    if ranges.len() == 0 {
        return;
    }
    let mut gone = KVec::new();
    if gone.reserve(ranges.len(), GFP_NOIO).is_err() {
        // One search and removal each: slower, but it needs no memory.
        let mut claims = CLAIMS.lock();
        for c in ranges {
            if let Ok(i) = claims.ranges.binary_search(&c) {
                let _ = claims.ranges.remove(i);
            }
            if let Some(i) = claims.devices.iter().position(|d| *d == c) {
                let _ = claims.devices.remove(i);
            }
        }
        return;
    }
    for c in ranges {
        // Cannot fail: the room was reserved.
        let _ = gone.push(c, GFP_NOWAIT);
    }
    gone.sort_unstable();
    let mut claims = CLAIMS.lock();
    claims.ranges.retain(|c| gone.binary_search(c).is_err());
    claims.devices.retain(|c| gone.binary_search(c).is_err());
}

/// Frees the registry's memory when the module goes (a static is never
/// dropped); every snapshot, and so every claim and image, is gone by then.
pub(crate) fn clear() {
    let mut claims = CLAIMS.lock();
    let ranges = core::mem::take(&mut claims.ranges);
    let images = core::mem::take(&mut claims.images);
    let devices = core::mem::take(&mut claims.devices);
    let filtered = core::mem::take(&mut claims.filtered);
    let reached = core::mem::take(&mut claims.reached);
    let below = core::mem::take(&mut claims.below);
    let files = core::mem::take(&mut claims.files);
    drop(claims);
    drop((ranges, images, devices, filtered, reached, below, files));
}

/// Records image disk `disk` (its sequence number), which storage may not
/// be on: `EBUSY` if storage was claimed on it while it was being added.
pub(crate) fn add_image(disk: u64) -> Result {
    let mut claims = CLAIMS.lock();
    let all = Claim {
        disk,
        start: 0,
        end: u64::MAX,
    };
    if claims.taken(&all) {
        return Err(EBUSY);
    }
    claims.images.push(disk, GFP_NOIO)?;
    Ok(())
}

/// Whether `disk` (a sequence number) is an image.
pub(crate) fn is_image(disk: u64) -> bool {
    CLAIMS.lock().images.contains(&disk)
}

/// Forgets image disk `disk`, once it is gone.
pub(crate) fn remove_image(disk: u64) {
    let mut claims = CLAIMS.lock();
    if let Some(i) = claims.images.iter().position(|&d| d == disk) {
        let _ = claims.images.remove(i);
    }
}

#[kunit_tests(blksnap_claims)]
mod tests {
    use super::*;

    fn c(disk: u64, start: u64, end: u64) -> Claim {
        Claim { disk, start, end }
    }

    #[test]
    fn the_two_neighbours_decide() -> Result {
        let mut claims = Claims {
            ranges: KVec::new(),
            images: KVec::new(),
            devices: KVec::new(),
            filtered: KVec::new(),
            reached: KVec::new(),
            below: KVec::new(),
            files: KVec::new(),
        };
        for r in [c(2, 5, 6), c(1, 20, 30), c(1, 0, 10)] {
            claims.ranges.push(r, GFP_NOIO)?;
        }
        claims.ranges.sort_unstable();
        // Inside, across and between recorded ranges.
        assert!(claims.taken(&c(1, 5, 6)));
        assert!(claims.taken(&c(1, 0, 1)));
        assert!(claims.taken(&c(1, 9, 21)));
        assert!(!claims.taken(&c(1, 10, 20)));
        assert!(claims.taken(&c(1, 25, 26)));
        assert!(!claims.taken(&c(1, 30, 40)));
        // Other disks do not count; a whole disk overlaps all of it.
        assert!(!claims.taken(&c(2, 0, 5)));
        assert!(claims.taken(&c(2, 0, u64::MAX)));
        assert!(!claims.taken(&c(3, 0, u64::MAX)));
        Ok(())
    }
}
