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
    /// The devices of file systems that hold storage files, once per file:
    /// several snapshots may store into one file system.
    file_systems: KVec<Claim>,
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
            if self.taken(new) {
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
        file_systems: KVec::new(),
        files: KVec::new(),
    };
}

/// Records `ranges`, which do not overlap each other, as difference storage:
/// `EINVAL` if one is on an image, `EBUSY` if one overlaps storage recorded
/// before: another snapshot's, or the same snapshot's given through another
/// device of the same disk (a partition and the whole disk; ranges given
/// through one device were checked against each other before).  Records all
/// or none.
pub(crate) fn claim(ranges: &[Claim]) -> Result {
    CLAIMS.lock().record(ranges)
}

/// Whether one of `devices` shares a sector with a filtered device.
fn any_filtered(claims: &Claims, devices: &[Claim]) -> bool {
    devices
        .iter()
        .any(|d| claims.filtered.iter().any(|f| f.overlaps(d)))
}

/// Records `whole`, a whole device given as storage: `ELOOP` if it, or one
/// of the devices `lower` it is built on, shares a sector with a device the
/// filter is attached to, else as `claim`.
pub(crate) fn claim_device(whole: Claim, lower: &[Claim]) -> Result {
    let mut claims = CLAIMS.lock();
    if any_filtered(&claims, &[whole]) || any_filtered(&claims, lower) {
        return Err(ELOOP);
    }
    claims.devices.reserve(1, GFP_NOIO)?;
    claims.record(&[whole])?;
    // Cannot fail: the room was reserved.
    let _ = claims.devices.push(whole, GFP_NOWAIT);
    Ok(())
}

/// Records `fs`, the device of a file system that a storage file is on,
/// followed by the devices it is built on: `ELOOP` if one of them shares a
/// sector with a device the filter is attached to (the file system's writes
/// would come back to the filter), `EINVAL` if the first is an image.
pub(crate) fn claim_file_system(fs: &[Claim]) -> Result {
    let mut claims = CLAIMS.lock();
    if fs.first().is_some_and(|d| claims.images.contains(&d.disk)) {
        return Err(EINVAL);
    }
    if any_filtered(&claims, fs) {
        return Err(ELOOP);
    }
    claims.file_systems.reserve(fs.len(), GFP_NOIO)?;
    for d in fs {
        // Cannot fail: the room was reserved.
        let _ = claims.file_systems.push(*d, GFP_NOWAIT);
    }
    Ok(())
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

/// Forgets one storage file on the file system on `fs`, as it was
/// claimed.
pub(crate) fn release_file_system(fs: &[Claim]) {
    let mut claims = CLAIMS.lock();
    for d in fs {
        if let Some(i) = claims.file_systems.iter().position(|c| c == d) {
            let _ = claims.file_systems.remove(i);
        }
    }
}

/// Records the sectors of a device the filter is being attached to: `EBUSY`
/// if a whole device given as storage, or a file system holding a storage
/// file or a device it is built on, shares one of them.
pub(crate) fn add_filtered(device: Claim) -> Result {
    let mut claims = CLAIMS.lock();
    let mut stored = Iterator::chain(claims.devices.iter(), claims.file_systems.iter());
    if stored.any(|d| d.overlaps(&device)) {
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
    let file_systems = core::mem::take(&mut claims.file_systems);
    let files = core::mem::take(&mut claims.files);
    drop(claims);
    drop((ranges, images, devices, filtered, file_systems, files));
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
            file_systems: KVec::new(),
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
