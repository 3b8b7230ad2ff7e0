// SPDX-License-Identifier: GPL-2.0

//! The difference area of one device in a taken snapshot: which chunks of
//! the original were copied to difference storage, and the work that copies
//! them and serves I/O to the snapshot image.
//!
//! Writes that touch a chunk not yet copied are taken over in the submit path
//! and queued, like image I/O, to one work item per device.  The worker
//! copies the chunks (read the original, write the storage), then passes the
//! write on.  As the worker handles image I/O and copies one at a time, an
//! image read of the original always completes before a queued write to the
//! same chunk reaches the device, and an image write to a chunk not copied
//! yet copies it first.  The submit path itself never waits for I/O.

use crate::{cbt_map::Geometry, diff_storage::DiffStorage, event_queue::EventQueue, params};
use kernel::{
    block::{
        bdev::OpenedBlockDevice,
        bio::{transfer_pages, Status, SubmittedBio},
    },
    new_mutex, new_spinlock,
    page::Page,
    prelude::*,
    sync::{
        atomic::{Atomic, Full, Relaxed},
        Arc, Mutex, SpinLock,
    },
    workqueue::{self, impl_has_work, new_work, Work, WorkItem},
    xarray::{AllocKind, XArray},
};

/// Where a copied chunk lives in difference storage.
struct Location {
    device: Arc<OpenedBlockDevice>,
    sector: u64,
}

enum Pending {
    /// A write to the original that needs chunks copied first.
    Write(SubmittedBio),
    /// A read or write of the snapshot image.
    Image(SubmittedBio),
}

impl Pending {
    fn into_bio(self) -> SubmittedBio {
        match self {
            Self::Write(bio) | Self::Image(bio) => bio,
        }
    }
}

#[pin_data]
pub(crate) struct DiffArea {
    /// The original device, open for copying and for image reads.
    original: OpenedBlockDevice,
    /// First sector of the original on its disk: filtered bios carry disk
    /// sectors.
    start_sector: u64,
    /// Chunk geometry: `block_shift` is the chunk size.
    chunks: Geometry,
    storage: Arc<Mutex<DiffStorage>>,
    events: Arc<EventQueue>,
    #[pin]
    copied: XArray<KBox<Location>>,
    /// 0 while the snapshot of this device is intact, else the negative
    /// errno that broke it.  Set once.
    error: Atomic<i32>,
    #[pin]
    pending: SpinLock<KVec<Pending>>,
    #[pin]
    work: Work<DiffArea>,
}

impl_has_work! {
    impl HasWork<Self> for DiffArea { self.work }
}

impl DiffArea {
    pub(crate) fn new(
        original: OpenedBlockDevice,
        storage: Arc<Mutex<DiffStorage>>,
        events: Arc<EventQueue>,
    ) -> Result<Arc<Self>> {
        let bdev = original.bdev();
        let chunks = Geometry::for_capacity(
            bdev.nr_sectors(),
            params::chunk_minimum_shift(),
            params::chunk_maximum_shift(),
            params::chunk_maximum_count(),
        )?;
        let start_sector = bdev.start_sector();
        Arc::pin_init(
            try_pin_init!(Self {
                original,
                start_sector,
                chunks,
                storage,
                events,
                copied <- XArray::new(AllocKind::Alloc),
                error: Atomic::new(0),
                pending <- new_spinlock!(KVec::new(), "blksnap_diff_area_pending"),
                work <- new_work!("blksnap_diff_area"),
            }),
            GFP_KERNEL,
        )
    }

    pub(crate) fn original(&self) -> &OpenedBlockDevice {
        &self.original
    }

    pub(crate) fn capacity(&self) -> u64 {
        self.chunks.capacity
    }

    /// The errno that broke this device's snapshot, or 0.
    pub(crate) fn error(&self) -> i32 {
        self.error.load(Relaxed)
    }

    /// Marks the snapshot of this device broken; the first error stays.
    pub(crate) fn fail(&self, err: Error) {
        if self.error.cmpxchg(0, err.to_errno(), Full).is_ok() {
            let bdev = self.original.bdev();
            self.events
                .corrupted(bdev.major(), bdev.minor(), err.to_errno());
            pr_warn!(
                "snapshot of {}:{} is corrupted: error {}\n",
                self.original.bdev().major(),
                self.original.bdev().minor(),
                err.to_errno()
            );
        }
    }

    /// Ends the snapshot of this device on purpose (destroyed, detached):
    /// queued image I/O fails, queued writes go on without copying.
    pub(crate) fn retire(&self) {
        let _ = self.error.cmpxchg(0, ENODEV.to_errno(), Full);
    }

    fn is_copied(&self, chunk: usize) -> bool {
        self.copied.lock().get(chunk).is_some()
    }

    /// Queues `item` for the worker.  Gives the bio back if that is
    /// impossible.
    fn queue(self: &Arc<Self>, item: Pending) -> core::result::Result<(), Pending> {
        {
            let mut pending = self.pending.lock();
            if pending.reserve(1, GFP_NOWAIT).is_err() {
                return Err(item);
            }
            // Cannot fail: room was reserved.
            let _ = pending.push(item, GFP_NOWAIT);
        }
        let _ = workqueue::system_unbound().enqueue(self.clone());
        Ok(())
    }

    /// The submit path of a write to the original: returns the bio if it may
    /// go on now, or keeps it until its chunks are copied.
    pub(crate) fn write(self: &Arc<Self>, bio: SubmittedBio) -> Option<SubmittedBio> {
        if !bio.operation().changes_data() || bio.nr_sectors() == 0 || self.error() != 0 {
            return Some(bio);
        }
        let sector = bio.sector().saturating_sub(self.start_sector);
        let range = self.chunks.blocks_clipped(sector, bio.nr_sectors());
        if range.clone().all(|c| self.is_copied(c)) {
            return Some(bio);
        }
        if bio.is_nowait() {
            bio.end(Status::Again);
            return None;
        }
        match self.queue(Pending::Write(bio)) {
            Ok(()) => None,
            Err(item) => {
                // The write must go on even if its old data cannot be saved.
                self.fail(ENOMEM);
                Some(item.into_bio())
            }
        }
    }

    /// The submit path of a read or write of the image.
    pub(crate) fn image_io(self: &Arc<Self>, bio: SubmittedBio) {
        if let Err(item) = self.queue(Pending::Image(bio)) {
            item.into_bio().end(Status::IoError);
        }
    }

    /// Copies chunk `chunk` of the original to difference storage.
    fn copy_chunk(&self, chunk: usize) -> Result {
        let shift = self.chunks.block_shift - kernel::block::SECTOR_SHIFT;
        let start = (chunk as u64) << shift;
        let sectors = (1u64 << shift).min(self.chunks.capacity - start);
        let (device, at) = self.storage.lock().alloc(sectors)?;

        let sectors_per_page = (kernel::page::PAGE_SIZE >> kernel::block::SECTOR_SHIFT) as u64;
        let mut pages = KVec::new();
        for _ in 0..sectors.div_ceil(sectors_per_page) {
            pages.push(Page::alloc_page(GFP_NOIO)?, GFP_NOIO)?;
        }
        transfer_pages(self.original.bdev(), false, start, &pages, sectors)?;
        transfer_pages(device.bdev(), true, at, &pages, sectors)?;

        let location = KBox::new(Location { device, sector: at }, GFP_NOIO)?;
        self.copied.lock().store(chunk, location, GFP_NOIO)?;
        Ok(())
    }

    /// Saves the chunks a queued write is about to change, then lets it go.
    fn handle_write(&self, bio: SubmittedBio) {
        if self.error() == 0 {
            let sector = bio.sector().saturating_sub(self.start_sector);
            for chunk in self.chunks.blocks_clipped(sector, bio.nr_sectors()) {
                if self.is_copied(chunk) {
                    continue;
                }
                if let Err(e) = self.copy_chunk(chunk) {
                    self.fail(e);
                    break;
                }
            }
        }
        bio.resubmit();
    }

    /// Where the image data of `sector`, in chunk `chunk` starting at
    /// `chunk_start`, is kept in difference storage, if the chunk was copied.
    fn stored(
        &self,
        chunk: usize,
        chunk_start: u64,
        sector: u64,
    ) -> Option<(Arc<OpenedBlockDevice>, u64)> {
        self.copied
            .lock()
            .get(chunk)
            .map(|l| (l.device.clone(), l.sector + (sector - chunk_start)))
    }

    /// Serves image I/O chunk by chunk.  Reads come from difference storage
    /// where a chunk was copied and from the original where it was not.
    /// Writes only ever go to difference storage: a chunk not copied yet is
    /// copied first, so the original never sees them.
    fn handle_image_io(&self, bio: SubmittedBio) {
        let write = bio.operation().changes_data();
        let shift = self.chunks.block_shift - kernel::block::SECTOR_SHIFT;
        let total = bio.nr_sectors();
        let mut done = 0;
        while done < total {
            if self.error() != 0 {
                return bio.end(Status::IoError);
            }
            let sector = bio.sector() + done;
            let chunk = (sector >> shift) as usize;
            let chunk_start = (chunk as u64) << shift;
            let n = (total - done).min(chunk_start + (1 << shift) - sector);
            let mut stored = self.stored(chunk, chunk_start, sector);
            if stored.is_none() && write {
                if let Err(e) = self.copy_chunk(chunk) {
                    self.fail(e);
                    return bio.end(Status::IoError);
                }
                stored = self.stored(chunk, chunk_start, sector);
            }
            let res = match stored {
                Some((device, at)) => bio.transfer_part(done, n, device.bdev(), at),
                None => bio.transfer_part(done, n, self.original.bdev(), sector),
            };
            if res.is_err() {
                return bio.end(Status::IoError);
            }
            done += n;
        }
        bio.end(Status::Ok);
    }
}

impl WorkItem for DiffArea {
    type Pointer = Arc<DiffArea>;

    fn run(this: Arc<DiffArea>) {
        loop {
            let batch = core::mem::take(&mut *this.pending.lock());
            if batch.is_empty() {
                break;
            }
            for item in batch {
                match item {
                    Pending::Write(bio) => this.handle_write(bio),
                    Pending::Image(bio) => this.handle_image_io(bio),
                }
            }
        }
    }
}

/// Creates the shared storage of a snapshot being taken.
pub(crate) fn shared_storage(storage: DiffStorage) -> Result<Arc<Mutex<DiffStorage>>> {
    Arc::pin_init(new_mutex!(storage, "blksnap_diff_storage"), GFP_KERNEL)
}
