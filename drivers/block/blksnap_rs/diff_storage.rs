// SPDX-License-Identifier: GPL-2.0

//! Difference storage: the sector ranges where a snapshot keeps the data
//! that writes to its original devices are about to overwrite.

use crate::{
    claims::{self, Claim, Via},
    event_queue::EventQueue,
};
use kernel::{
    bindings,
    block::bdev::{BlockDevice, OpenedBlockDevice, Walk},
    fs::{open::Backing, File},
    prelude::*,
    sync::{aref::ARef, Arc},
};

mod shared;

pub(crate) use shared::SharedStorage;

/// Most ranges one snapshot can be given, over all appends.
pub(crate) const MAX_EXTENTS: usize = 1 << 16;

/// Sectors in a page: requests are judged in whole pages, as in v3.
const PAGE_SECTORS: u64 = (kernel::page::PAGE_SIZE as u64) >> kernel::block::SECTOR_SHIFT;

/// Where a chunk's copy lies in difference storage.
#[derive(Clone)]
pub(crate) enum Place {
    /// A sector of a block device.
    Device(Arc<OpenedBlockDevice>, u64),
    /// A sector of a file the module opened, counted from its start.
    File(ARef<File>, u64),
}

impl Place {
    /// The place `sectors` further on.
    pub(crate) fn after(&self, sectors: u64) -> Self {
        match self {
            Self::Device(device, at) => Self::Device(device.clone(), at + sectors),
            Self::File(file, at) => Self::File(file.clone(), at + sectors),
        }
    }

    /// Its sector on its device or in its file.
    pub(crate) fn sector(&self) -> u64 {
        match self {
            Self::Device(_, at) | Self::File(_, at) => *at,
        }
    }

    /// Checks that `sectors` from here are still in storage: a named file
    /// may have been truncated behind the module's back (a directory gives
    /// an unnamed file nobody else can reach), and a direct read of what was
    /// cut off would return zeroes, not the data stored there.  `EIO` then.
    pub(crate) fn check_within(&self, sectors: u64) -> Result {
        match self {
            Self::Device(..) => Ok(()),
            Self::File(file, at) => {
                let end = (at + sectors) << kernel::block::SECTOR_SHIFT;
                if file.size() < end {
                    Err(EIO)
                } else {
                    Ok(())
                }
            }
        }
    }

    /// Whether `next` starts where `len` sectors from `self` end, on the
    /// same device or in the same file.
    pub(crate) fn continued_by(&self, next: &Place, len: u64) -> bool {
        match (self, next) {
            (Self::Device(d, a), Self::Device(e, b)) => Arc::ptr_eq(d, e) && a + len == *b,
            (Self::File(f, a), Self::File(g, b)) => {
                core::ptr::eq::<File>(&**f, &**g) && a + len == *b
            }
            _ => false,
        }
    }
}

/// A file given as storage, and how much of it the module may write.
struct StorageFile {
    file: ARef<File>,
    /// Sectors the file has: the module writes only below this.
    allocated: u64,
    /// A growth is running, without the storage lock.
    growing: bool,
    /// Why the last growth failed: writes past `allocated` fail with it.
    grow_error: Option<Error>,
}

/// A growth of a storage file, which its caller runs without the storage
/// lock: the file system may allocate, wait for its journal, or do I/O.
pub(crate) struct Growth {
    file: ARef<File>,
    from: u64,
    sectors: u64,
}

impl Growth {
    /// Allocates the sectors, as written zeroes where the file system can
    /// (nothing to convert when the data is written), else as unwritten
    /// extents.  Runs without I/O from reclaim: a task that waits for
    /// copy-on-write may be writing back.
    pub(crate) fn run(&self) -> Result {
        let from = self.from << kernel::block::SECTOR_SHIFT;
        let len = self.sectors << kernel::block::SECTOR_SHIFT;
        let _noio = kernel::fs::direct_io::NoIo::new();
        match self
            .file
            .allocate(bindings::FALLOC_FL_WRITE_ZEROES, from, len)
        {
            Err(e) if e == EOPNOTSUPP || e == EINVAL => self.file.allocate(0, from, len),
            result => result,
        }
    }
}

/// The buffer alignment in memory, as a mask, that storage may need at
/// most: a sector.  Image reads are cut at chunk boundaries, a whole number
/// of sectors into a bio, and each piece goes to the storage as it is.
pub(crate) const STORAGE_DMA_ALIGNMENT: u32 = (1 << kernel::block::SECTOR_SHIFT) - 1;

/// `EINVAL` unless `bdev` takes I/O in single sectors, from buffers
/// aligned to a sector: the pieces image reads are cut into.
fn check_takes_sectors(bdev: &BlockDevice) -> Result {
    let geometry = bdev.io_geometry();
    if geometry.logical_block_size > 1 << kernel::block::SECTOR_SHIFT
        || geometry.dma_alignment > STORAGE_DMA_ALIGNMENT
    {
        return Err(EINVAL);
    }
    Ok(())
}

/// `EINVAL` unless `file` takes direct I/O in single sectors, from buffers
/// aligned to a sector, as far as its file system tells: one that takes
/// no direct I/O on the file (ext4 with data journalling, say) would send
/// it through its page cache, and one that needs whole blocks (f2fs, XFS
/// on 4 KiB sectors) would too, or fail image reads of a sector.
fn check_file_takes_sectors(file: &File) -> Result {
    let Some(align) = file.dio_alignment()? else {
        return Ok(());
    };
    let sector = 1 << kernel::block::SECTOR_SHIFT;
    if align.write == 0
        || align.read == 0
        || align.write.max(align.read) > sector
        || align.memory > STORAGE_DMA_ALIGNMENT + 1
    {
        return Err(EINVAL);
    }
    Ok(())
}

/// The sectors of `bdev` on its disk.
fn sectors(bdev: &BlockDevice) -> Claim {
    Claim {
        disk: bdev.diskseq(),
        start: bdev.start_sector(),
        end: bdev.start_sector() + bdev.nr_sectors(),
    }
}

/// The sectors of each device `bdev` is built on through device mapper or
/// md, once each: writes to `bdev` reach all of them.  `EMLINK` if the
/// stack is too deep to follow to the bottom: it cannot be checked.
fn lower_claims(bdev: &BlockDevice) -> Result<KVec<Claim>> {
    let mut lower = KVec::new();
    let walked = bdev.for_each_lower(|d| {
        let c = sectors(d);
        if lower.contains(&c) {
            // Reached along another path: so was all below it.
            return Ok(Walk::Skip);
        }
        lower.push(c, GFP_NOIO)?;
        Ok(Walk::Below)
    });
    match walked {
        Err(e) if e == ELOOP => Err(EMLINK),
        walked => walked.map(|()| lower),
    }
}

/// The devices that writes to `file` reach: its file system's device and
/// those it is built on; none for a file system in memory, or one on no
/// device it was mounted from, which cannot be checked.  `EINVAL` on a
/// device that does not take single sectors (see `check_takes_sectors`):
/// image reads come in sectors, and direct I/O of them needs a device that
/// takes them; so does the file itself, where its file system tells (see
/// `check_file_takes_sectors`).
fn file_claims(file: &File) -> Result<KVec<Claim>> {
    match file.backing() {
        Backing::Device => file.with_fs_device(|bdev| match bdev {
            Some(bdev) => {
                check_file_takes_sectors(file)?;
                check_takes_sectors(bdev)?;
                let mut reached = lower_claims(bdev)?;
                reached.push(sectors(bdev), GFP_NOIO)?;
                Ok(reached)
            }
            None => check_file_takes_sectors(file).map(|()| KVec::new()),
        }),
        Backing::Memory => check_file_takes_sectors(file).map(|()| KVec::new()),
        Backing::Other => Err(EOPNOTSUPP),
    }
}

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
        let whole = sectors(self.device.bdev());
        let start = whole.start + self.start;
        Claim {
            disk: whole.disk,
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
    /// A file the module opened itself (`SET_STORAGE` with a regular file,
    /// or an unnamed one in a directory), which it grows up to `limit`
    /// sectors.
    File { limit: u64 },
}

impl Given {
    /// How the devices that this storage reaches are recorded: below a
    /// whole device, or under a file's file system.
    fn via(&self) -> Via {
        match self {
            Self::Device { .. } => Via::Device,
            _ => Via::File,
        }
    }
}

/// The storage of one snapshot: what was given and how much of it.  Its
/// ranges stay claimed (see `claims`) until it is dropped, when nothing can
/// write to them any more.
#[derive(Default)]
pub(crate) struct DiffStorage {
    given: Given,
    extents: KVec<Extent>,
    file: Option<StorageFile>,
    /// The devices that stores reach past the module (see
    /// `claims::claim_reached`), recorded there: those under a whole
    /// device, or a file's file system device and those under it.
    reached: KVec<Claim>,
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
            file: None,
            reached: KVec::new(),
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
        if let Given::Device { limit } | Given::File { limit } = self.given {
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
        if let Given::Device { .. } | Given::File { .. } = self.given {
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
        check_takes_sectors(device.bdev())?;
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
        check_takes_sectors(device.bdev())?;
        let extent = Extent {
            device,
            start: 0,
            count: size,
        };
        self.extents.reserve(1, GFP_NOIO)?;
        let lower = lower_claims(extent.device.bdev())?;
        claims::claim_device(extent.claim(), &lower)?;
        // Cannot fail: the room was reserved.
        let _ = self.extents.push(extent, GFP_NOWAIT);
        self.reached = lower;
        self.given = Given::Device { limit: size };
        self.waiting = false;
        self.set_limit(limit)
    }

    /// Stores into `file`, which the module opened itself, growing it up to
    /// `limit` sectors (not 0).  Refused with `EBUSY` once the snapshot has
    /// storage of any kind; `ELOOP` if its file system is on a filtered
    /// device.
    pub(crate) fn set_file(&mut self, file: ARef<File>, limit: u64) -> Result {
        if self.given != Given::Nothing {
            return Err(EBUSY);
        }
        if limit == 0 {
            return Err(EINVAL);
        }
        if file.is_swap_file() {
            return Err(ETXTBSY);
        }
        let reached = file_claims(&file)?;
        claims::claim_file(file.identity())?;
        if let Err(e) = claims::claim_reached(&reached) {
            claims::release_file(file.identity());
            return Err(e);
        }
        self.reached = reached;
        // Whole pages: direct I/O at the end of a chunk stays aligned.
        let allocated = (file.size() >> kernel::block::SECTOR_SHIFT) & !(PAGE_SECTORS - 1);
        self.file = Some(StorageFile {
            file,
            allocated,
            growing: false,
            grow_error: None,
        });
        self.given = Given::File { limit };
        self.waiting = false;
        self.set_limit(limit)
    }

    /// Changes how much of the device given with `set_device` may be used
    /// (0: all of it), or how far the file given with `set_file` may grow
    /// (not 0): `EINVAL` without such storage, above the device's size or
    /// below what is used already.  A limit that leaves little room asks for
    /// more at once, so that the event always comes before the storage runs
    /// out.
    pub(crate) fn set_limit(&mut self, limit: u64) -> Result {
        let limit = match self.given {
            Given::Device { .. } => {
                let size = self.extents.first().map_or(0, |e| e.count);
                let limit = if limit == 0 { size } else { limit };
                if limit > size {
                    return Err(EINVAL);
                }
                limit
            }
            Given::File { .. } if limit != 0 => limit,
            _ => return Err(EINVAL),
        };
        if limit < self.used {
            return Err(EINVAL);
        }
        self.given = match self.given {
            Given::File { .. } => Given::File { limit },
            _ => Given::Device { limit },
        };
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
    /// they were given, or from the file; `ENOSPC` when none is left that is
    /// large enough.  `EAGAIN` when the file must grow first: see `growth`.
    pub(crate) fn alloc(&mut self, sectors: u64) -> Result<Place> {
        if let Given::Device { limit } | Given::File { limit } = self.given {
            if self.used.saturating_add(sectors) > limit {
                return Err(ENOSPC);
            }
        }
        if let Some(f) = &self.file {
            if self.used + sectors > f.allocated {
                // `EAGAIN` means "grow first" here: a growth that failed
                // with it (a file system that said so) is an I/O error.
                return Err(match f.grow_error {
                    None => EAGAIN,
                    Some(e) if e == EAGAIN => EIO,
                    Some(e) => e,
                });
            }
            let at = self.used;
            self.used += sectors.next_multiple_of(PAGE_SECTORS);
            let place = Place::File(f.file.clone(), at);
            self.check_free();
            return Ok(place);
        }
        while let Some(extent) = self.extents.get(self.next) {
            if extent.count - self.used_in_next >= sectors {
                let at = extent.start + self.used_in_next;
                let device = extent.device.clone();
                self.used_in_next += sectors;
                self.used += sectors;
                self.check_free();
                return Ok(Place::Device(device, at));
            }
            // The rest of this range is too small for a chunk: skip it.
            self.used += extent.count - self.used_in_next;
            self.next += 1;
            self.used_in_next = 0;
        }
        Err(ENOSPC)
    }
}

impl DiffStorage {
    /// A growth of the storage file to run now, if it has less than half of
    /// `minimum` left (or less than `needed`), can grow, and is not growing
    /// already.  The caller runs it without the lock and reports with
    /// `SharedStorage::grown`, which wakes the copies waiting for it.
    pub(crate) fn growth(&mut self, needed: u64) -> Option<Growth> {
        let Given::File { limit } = self.given else {
            return None;
        };
        let threshold = (self.minimum / 2).max(needed);
        let f = self.file.as_mut()?;
        let free = f.allocated.saturating_sub(self.used);
        if f.growing || f.grow_error.is_some() || free > threshold || f.allocated >= limit {
            return None;
        }
        let sectors = self.minimum.max(needed).min(limit - f.allocated);
        let sectors = sectors.next_multiple_of(PAGE_SECTORS);
        if sectors == 0 {
            return None;
        }
        f.growing = true;
        Some(Growth {
            file: f.file.clone(),
            from: f.allocated,
            sectors,
        })
    }

    /// Records how `growth` ended.  A file system that is full fails the
    /// writes that needed the room (the snapshot breaks with `ENOSPC`);
    /// a limit raised later does not bring it back.
    ///
    /// Private: once the storage is shared, only `SharedStorage::grown`
    /// reports, so that no end of a growth goes without its wake-up.
    fn grown(&mut self, growth: Growth, result: Result) {
        if let Some(f) = &mut self.file {
            f.growing = false;
            match result {
                Ok(()) => f.allocated = f.allocated.max(growth.from + growth.sectors),
                Err(e) => {
                    // A file system that ran out part-way may have grown
                    // the file some: what it has is usable.
                    let size = (f.file.size() >> kernel::block::SECTOR_SHIFT) & !(PAGE_SECTORS - 1);
                    f.allocated = f.allocated.max(size.min(growth.from + growth.sectors));
                    f.grow_error = Some(e);
                }
            }
        }
    }

    /// Gives a storage file its first room before the take, so that the
    /// first writes after it do not wait for the file system.  A failure is
    /// not recorded: the growth after the take meets it again and breaks
    /// the snapshot with it, as it would have without this.
    pub(crate) fn grow_before_take(&mut self) {
        let Some(growth) = self.growth(0) else {
            return;
        };
        let result = growth.run();
        let failed = result.is_err();
        self.grown(growth, result);
        if let (true, Some(f)) = (failed, &mut self.file) {
            f.grow_error = None;
        }
    }

    /// Walks the stack under the storage again before the take: a table
    /// loaded since `SET_STORAGE` (a volume grown or moved) may have put a
    /// filtered device or an image below it.  Fails as `SET_STORAGE` would
    /// have; else what it found replaces what was recorded.  Stacks made
    /// later still, and those of drivers that record none (loop), are not
    /// seen.
    pub(crate) fn check_stack(&mut self) -> Result {
        let reached = match (&self.given, self.extents.first(), &self.file) {
            (Given::Device { .. }, Some(whole), _) => {
                check_takes_sectors(whole.device.bdev())?;
                lower_claims(whole.device.bdev())?
            }
            (Given::File { .. }, _, Some(f)) => file_claims(&f.file)?,
            _ => return Ok(()),
        };
        claims::reclaim_reached(&self.reached, &reached, self.given.via())?;
        self.reached = reached;
        Ok(())
    }

    /// Whether a growth is running: a caller that got `EAGAIN` waits.
    pub(crate) fn growing(&self) -> bool {
        self.file.as_ref().is_some_and(|f| f.growing)
    }
}

impl Drop for DiffStorage {
    fn drop(&mut self) {
        claims::release(self.extents.iter().map(Extent::claim));
        claims::release_reached(&self.reached, self.given.via());
        if let Some(f) = &self.file {
            claims::release_file(f.file.identity());
        }
    }
}
