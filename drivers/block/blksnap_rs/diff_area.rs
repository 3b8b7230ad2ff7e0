// SPDX-License-Identifier: GPL-2.0

//! The difference area of one device in a taken snapshot: which chunks of
//! the original were copied to difference storage, and the work that copies
//! them and serves I/O to the snapshot image.
//!
//! Writes that touch a chunk not yet copied are taken over in the submit path
//! and queued, like image I/O, to the copy worker of the device.  The worker
//! reads the old data of the chunks into memory, lets the write go on at
//! once, and hands the data to the store worker, which writes it to
//! difference storage.  So the original's own write runs in parallel with the
//! store, and at most `chunk_maximum_in_queue` loaded chunks wait in memory.
//!
//! The copy worker handles image I/O and writes in order, and lets image I/O
//! start only once every loaded chunk is stored: an image read of the
//! original always completes before a later write to the same chunk reaches
//! the device, and an image write to a chunk not copied yet copies it first.
//! The submit path itself never waits for I/O.

use crate::{cbt_map::Geometry, diff_storage::DiffStorage, event_queue::EventQueue, params};
use kernel::{
    block::{
        bdev::OpenedBlockDevice,
        bio::{transfer_pages, Status, SubmittedBio},
    },
    new_condvar, new_mutex, new_spinlock,
    page::Page,
    prelude::*,
    sync::{
        atomic::{Atomic, Full, Relaxed},
        Arc, CondVar, Mutex, SpinLock,
    },
    workqueue::{self, impl_has_work, new_work, Work, WorkItem},
    xarray::{AllocKind, XArray},
};

/// Hard cap on loaded chunks waiting in memory, whatever the parameter says.
const MAX_CHUNKS_IN_QUEUE: usize = 256;

/// Where a copied chunk lives in difference storage.
struct Location {
    device: Arc<OpenedBlockDevice>,
    sector: u64,
}

/// The old data of one chunk, read from the original, on its way to
/// difference storage.
struct Loaded {
    pages: KVec<Page>,
    sectors: u64,
    device: Arc<OpenedBlockDevice>,
    at: u64,
}

/// Chunks handed to the store worker and not yet stored.
#[derive(Default)]
struct StoreQueue {
    queue: KVec<Loaded>,
    /// Queued or being written: what bounds the memory held.
    in_flight: usize,
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
    work: Work<DiffArea, 0>,
    #[pin]
    stores: Mutex<StoreQueue>,
    /// Signalled each time a chunk leaves `stores`.
    #[pin]
    stored: CondVar,
    #[pin]
    store_work: Work<DiffArea, 1>,
}

impl_has_work! {
    impl HasWork<Self, 0> for DiffArea { self.work }
    impl HasWork<Self, 1> for DiffArea { self.store_work }
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
                stores <- new_mutex!(StoreQueue::default(), "blksnap_diff_area_stores"),
                stored <- new_condvar!("blksnap_diff_area_stored"),
                store_work <- new_work!("blksnap_diff_area_store"),
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
        let _ = workqueue::system_unbound().enqueue::<_, 0>(self.clone());
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

    /// Reads the old data of chunk `chunk` and gives it its place in
    /// difference storage.  From here on the chunk counts as copied: writes
    /// to it go straight on, as its old data is safe in memory.
    fn load_chunk(&self, chunk: usize) -> Result<Loaded> {
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

        let location = KBox::new(
            Location {
                device: device.clone(),
                sector: at,
            },
            GFP_NOIO,
        )?;
        self.copied.lock().store(chunk, location, GFP_NOIO)?;
        Ok(Loaded {
            pages,
            sectors,
            device,
            at,
        })
    }

    fn store_chunk(&self, chunk: Loaded) -> Result {
        transfer_pages(
            chunk.device.bdev(),
            true,
            chunk.at,
            &chunk.pages,
            chunk.sectors,
        )
    }

    /// Copies chunk `chunk` of the original to difference storage, and waits.
    fn copy_chunk(&self, chunk: usize) -> Result {
        let loaded = self.load_chunk(chunk)?;
        self.store_chunk(loaded)
    }

    /// Waits until fewer than `limit` loaded chunks wait to be stored.
    fn wait_stores_below(&self, limit: usize) {
        let mut stores = self.stores.lock();
        while stores.in_flight >= limit {
            self.stored.wait(&mut stores);
        }
    }

    /// Hands a loaded chunk to the store worker.
    fn queue_store(self: &Arc<Self>, chunk: Loaded) -> Result {
        {
            let mut stores = self.stores.lock();
            stores.queue.push(chunk, GFP_NOIO)?;
            stores.in_flight += 1;
        }
        let _ = workqueue::system_unbound().enqueue::<_, 1>(self.clone());
        Ok(())
    }

    /// Loads the chunks a queued write is about to change, lets the write
    /// go on, and leaves the stores to the store worker.
    fn handle_write(self: &Arc<Self>, bio: SubmittedBio) {
        let limit = (params::chunk_maximum_in_queue() as usize).clamp(1, MAX_CHUNKS_IN_QUEUE);
        let sector = bio.sector().saturating_sub(self.start_sector);
        for chunk in self.chunks.blocks_clipped(sector, bio.nr_sectors()) {
            if self.error() != 0 {
                break;
            }
            if self.is_copied(chunk) {
                continue;
            }
            self.wait_stores_below(limit);
            let res = self
                .load_chunk(chunk)
                .and_then(|loaded| self.queue_store(loaded));
            if let Err(e) = res {
                self.fail(e);
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
        // The data of chunks still being stored is not in storage yet.
        self.wait_stores_below(1);
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

impl WorkItem<0> for DiffArea {
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

impl WorkItem<1> for DiffArea {
    type Pointer = Arc<DiffArea>;

    /// Writes loaded chunks to difference storage, oldest first.
    fn run(this: Arc<DiffArea>) {
        loop {
            let batch = core::mem::take(&mut this.stores.lock().queue);
            if batch.is_empty() {
                break;
            }
            for chunk in batch {
                // After a failure the image is lost: storing more is useless.
                if this.error() == 0 {
                    if let Err(e) = this.store_chunk(chunk) {
                        this.fail(e);
                    }
                }
                this.stores.lock().in_flight -= 1;
                this.stored.notify_all();
            }
        }
    }
}

/// Creates the shared storage of a snapshot being taken.
pub(crate) fn shared_storage(storage: DiffStorage) -> Result<Arc<Mutex<DiffStorage>>> {
    Arc::pin_init(new_mutex!(storage, "blksnap_diff_storage"), GFP_KERNEL)
}
