// SPDX-License-Identifier: GPL-2.0

//! The difference area of one device in a taken snapshot: which chunks of
//! the original were copied to difference storage, and the work that copies
//! them and serves I/O to the snapshot image.
//!
//! Writes that touch a chunk not yet copied are taken over in the submit path
//! and queued, like image I/O, to the copy worker of the device.  The worker
//! reads the old data of the chunks that the writes queued in a row need,
//! all in parallel, lets the writes go on, and hands the data to the store
//! worker, which writes it to difference storage.  So the original's own
//! writes run in parallel with the stores, and at most
//! `chunk_maximum_in_queue` loaded chunks wait in memory.
//!
//! The copy worker takes what was queued, serves the image I/O first and
//! then the writes, each in the order queued, and lets image I/O start only
//! once every loaded chunk is stored.  Image reads queued in a row go out in
//! parallel, and the worker waits for them before it goes on: an image read
//! of the original always completes before a write it took along reaches
//! the device.  An image write is served alone, and copies the chunks it
//! touches first.  The queues are linked through the bios: the submit path
//! never allocates to queue, so it never fails for want of memory.
//!
//! Image reads whose data lies in one place skip the worker: the submit
//! path forwards them to the original if none of their chunks was copied,
//! or to difference storage if all were, contiguously, and every recorded
//! chunk is stored.  A chunk is recorded as copied only while forwarding is
//! paused, and the pause waits for forwarded reads in flight, so a read of
//! the original always ends before a write to its chunk is let go.
//! The submit path itself never waits for I/O.

use crate::{
    buffers::{self, BufferPool},
    cbt_map::Geometry,
    diff_storage::DiffStorage,
    event_queue::EventQueue,
    live_areas::LiveArea,
    params, workers,
};
use core::cell::{Cell, RefCell};
use kernel::{
    block::{
        bdev::{BlockDevice, OpenedBlockDevice},
        bio::{
            transfer_pages, transfer_parts, Bio, BioList, BioSet, Operation, Status, SubmittedBio,
        },
        forward::{Forwarder, Paused},
    },
    new_condvar, new_mutex, new_spinlock,
    page::Page,
    prelude::*,
    sync::{
        atomic::{Acquire, Atomic, Full, Relaxed, Release},
        Arc, CondVar, Mutex, SetOnce, SpinLock,
    },
    workqueue::{impl_has_work, new_work, Work, WorkItem},
    xarray::{AllocKind, XArray},
};

/// Most image reads, or writes to the original, that the copy worker
/// handles together.
const MAX_TOGETHER: usize = 64;

/// The bound on loaded chunks waiting in memory, per device.
fn chunk_limit() -> usize {
    (params::chunk_maximum_in_queue() as usize).clamp(1, MAX_CHUNKS_IN_QUEUE)
}

/// Chunks loaded at a time: half the bound, so that one batch can be read
/// while the one before is stored.
fn load_batch() -> usize {
    (chunk_limit() / 2).max(1)
}

/// A batch of one bio.  Without memory the bio is dropped, which ends it
/// with an error, and the batch is empty.
fn single(bio: SubmittedBio) -> KVec<SubmittedBio> {
    let mut v = KVec::new();
    let _ = v.push(bio, GFP_NOIO);
    v
}

/// Bios each device keeps for its copies, stores and image I/O when memory
/// is short.
const BIO_RESERVE: u32 = 16;

/// Hard cap on loaded chunks waiting in memory, whatever the parameter says.
const MAX_CHUNKS_IN_QUEUE: usize = 256;

/// Storage devices whose chunks image reads can be forwarded to, per area.
const FORWARD_DEVICES: usize = 4;

/// What image reads can be forwarded to: the original, and the first few
/// storage devices this area's chunks were copied to.  A device is kept
/// here until the area goes away, so forwarded reads can borrow it.
struct ReadTargets {
    original: OpenedBlockDevice,
    storage: [SetOnce<Arc<OpenedBlockDevice>>; FORWARD_DEVICES],
}

impl ReadTargets {
    /// The kept storage device `device`, if it is one.
    fn storage(&self, device: &Arc<OpenedBlockDevice>) -> Option<&BlockDevice> {
        self.storage
            .iter()
            .filter_map(|slot| slot.as_ref())
            .find(|kept| Arc::ptr_eq(kept, device))
            .map(|kept| kept.bdev())
    }

    /// Keeps `device` for forwarded reads if there is room left.
    fn keep(&self, device: &Arc<OpenedBlockDevice>) {
        for slot in &self.storage {
            let kept = slot.as_ref().is_some_and(|kept| Arc::ptr_eq(kept, device));
            if kept || slot.populate(device.clone()) {
                return;
            }
        }
    }
}

/// Where a copied chunk lives in difference storage.
struct Location {
    device: Arc<OpenedBlockDevice>,
    sector: u64,
}

/// The old data of one chunk, read from the original, on its way to
/// difference storage.
struct Loaded {
    chunk: usize,
    /// First sector of the chunk on the original.
    start: u64,
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

/// The queues of the copy worker: writes to the original that wait for
/// their chunks, and image I/O.  Linked through the bios, so queueing in a
/// submit path never allocates and never fails.
///
/// The worker serves the image I/O queued before the writes.  Either order
/// gives the image its point-in-time data: a write goes on only once its
/// chunks are copied, and an image read reads a chunk from the original
/// only while it is not.  Writes keep their order, which a zoned original
/// needs.
struct PendingQueue {
    writes: BioList,
    images: BioList,
}

impl PendingQueue {
    const fn new() -> Self {
        Self {
            writes: BioList::new(true),
            images: BioList::new(false),
        }
    }
}

#[pin_data]
pub(crate) struct DiffArea {
    /// The original device, open for copying and for image reads, and the
    /// devices image reads are forwarded to.
    #[pin]
    reads: Forwarder<ReadTargets>,
    /// First sector of the original on its disk: filtered bios carry disk
    /// sectors.
    start_sector: u64,
    /// The original is zoned: its writes must stay in order.
    zoned: bool,
    /// Chunk geometry: `block_shift` is the chunk size.
    chunks: Geometry,
    storage: Arc<Mutex<DiffStorage>>,
    events: Arc<EventQueue>,
    #[pin]
    copied: XArray<KBox<Location>>,
    /// Chunks recorded as copied whose data is not in storage yet.
    unstored: Atomic<usize>,
    /// 0 while the snapshot of this device is intact, else the negative
    /// errno that broke it.  Set once.
    error: Atomic<i32>,
    #[pin]
    pending: SpinLock<PendingQueue>,
    #[pin]
    work: Work<DiffArea, 0>,
    #[pin]
    stores: Mutex<StoreQueue>,
    /// Signalled each time a chunk leaves `stores`.
    #[pin]
    stored: CondVar,
    /// Chunk buffers for copies, see `buffers`.
    #[pin]
    buffers: Mutex<BufferPool>,
    /// Bios for copies, stores and image I/O: the module's own, so that
    /// they come back to it when memory is short.
    #[pin]
    bios: BioSet,
    #[pin]
    store_work: Work<DiffArea, 1>,
    /// Drops the last reference in a worker, see `DiffArea::put_in_submit`.
    #[pin]
    last_put: Work<DiffArea, 2>,
    /// Where the work above runs: the module's queues, which the module
    /// destroys only once every area is gone.
    queues: Arc<workers::Queues>,
    /// Counts this area among its snapshot's until it is gone.  Last, so
    /// that it goes after everything else.
    _live: LiveArea,
}

impl_has_work! {
    impl HasWork<Self, 0> for DiffArea { self.work }
    impl HasWork<Self, 1> for DiffArea { self.store_work }
    impl HasWork<Self, 2> for DiffArea { self.last_put }
}

impl DiffArea {
    pub(crate) fn new(
        original: OpenedBlockDevice,
        storage: Arc<Mutex<DiffStorage>>,
        events: Arc<EventQueue>,
        live: LiveArea,
    ) -> Result<Arc<Self>> {
        let bdev = original.bdev();
        let chunks = Geometry::for_capacity(
            bdev.nr_sectors(),
            params::chunk_minimum_shift(),
            params::chunk_maximum_shift(),
            params::chunk_maximum_count(),
        )?;
        let start_sector = bdev.start_sector();
        let zoned = bdev.is_zoned();
        let sectors_per_page = (kernel::page::PAGE_SIZE >> kernel::block::SECTOR_SHIFT) as u64;
        let chunk_sectors = 1u64 << (chunks.block_shift - kernel::block::SECTOR_SHIFT);
        let chunk_pages = chunk_sectors.div_ceil(sectors_per_page) as usize;
        Arc::pin_init(
            try_pin_init!(Self {
                reads <- Forwarder::new(ReadTargets {
                    original,
                    storage: Default::default(),
                }),
                start_sector,
                zoned,
                chunks,
                storage,
                events,
                copied <- XArray::new(AllocKind::Alloc),
                unstored: Atomic::new(0),
                error: Atomic::new(0),
                pending <- new_spinlock!(PendingQueue::new(), "blksnap_diff_area_pending"),
                work <- new_work!("blksnap_diff_area"),
                stores <- new_mutex!(StoreQueue::default(), "blksnap_diff_area_stores"),
                stored <- new_condvar!("blksnap_diff_area_stored"),
                buffers <- new_mutex!(BufferPool::new(chunk_pages)?, "blksnap_diff_area_buffers"),
                bios <- BioSet::new(BIO_RESERVE),
                store_work <- new_work!("blksnap_diff_area_store"),
                last_put <- new_work!("blksnap_diff_area_last_put"),
                queues: workers::queues()?,
                _live: live,
            }),
            GFP_KERNEL,
        )
    }

    pub(crate) fn original(&self) -> &OpenedBlockDevice {
        &self.reads.target().original
    }

    /// Drops a reference taken in the original's submit path, where the
    /// queue is entered.  If it is the last one, the area goes in a worker:
    /// going waits for reads forwarded to the original, which may wait
    /// behind a freeze of that queue, which waits for this submitter.
    pub(crate) fn put_in_submit(this: Arc<Self>) {
        if let Some(last) = Arc::into_unique_or_drop(this) {
            let queues = last.queues.clone();
            let _ = queues.store.enqueue::<_, 2>(Arc::from(last));
        }
    }

    pub(crate) fn capacity(&self) -> u64 {
        self.chunks.capacity
    }

    /// The errno that broke this device's snapshot, or 0.
    pub(crate) fn error(&self) -> i32 {
        self.error.load(Relaxed)
    }

    /// Marks the snapshot of this device broken; the first error stays.
    /// From then on writes go on without copies, so this waits for the
    /// image reads forwarded to the original: one still in flight must not
    /// see such a write.  Later ones are not forwarded (see `route`).
    pub(crate) fn fail(&self, err: Error) {
        // Paused before the error is seen: a write that sees it goes on
        // uncopied, and no read forwarded to the original may still be on
        // its way then.  Later reads see the error and are not forwarded.
        let paused = self.reads.pause();
        if self.error.cmpxchg(0, err.to_errno(), Full).is_ok() {
            drop(paused);
            let bdev = self.original().bdev();
            self.events.corrupted(bdev.major(), bdev.minor(), err);
            pr_warn!(
                "snapshot of {}:{} is corrupted: error {}\n",
                self.original().bdev().major(),
                self.original().bdev().minor(),
                err.to_errno()
            );
        }
    }

    /// Ends the snapshot of this device on purpose (destroyed, detached):
    /// queued image I/O fails, queued writes go on without copying, once
    /// the image reads forwarded to the original have ended (see `fail`).
    pub(crate) fn retire(&self) {
        let _paused = self.reads.pause();
        let _ = self.error.cmpxchg(0, ENODEV.to_errno(), Full);
    }

    fn is_copied(&self, chunk: usize) -> bool {
        self.copied.lock().get(chunk).is_some()
    }

    /// Queues a write to the original for the worker.
    fn queue_write(self: &Arc<Self>, bio: SubmittedBio) {
        self.pending.lock().writes.push(bio);
        let _ = self.queues.copy.enqueue::<_, 0>(self.clone());
    }

    /// Queues image I/O for the worker.
    fn queue_image(self: &Arc<Self>, bio: SubmittedBio) {
        self.pending.lock().images.push(bio);
        let _ = self.queues.copy.enqueue::<_, 0>(self.clone());
    }

    /// The submit path of a write to the original: returns the bio if it may
    /// go on now, or keeps it until its chunks are copied.
    pub(crate) fn write(self: &Arc<Self>, bio: SubmittedBio) -> Option<SubmittedBio> {
        let Some((sector, count)) = bio.changed_sectors() else {
            return Some(bio);
        };
        if self.error() != 0 {
            return Some(bio);
        }
        let sector = sector.saturating_sub(self.start_sector);
        let range = self.chunks.blocks_clipped(sector, count);
        // A zone is written in order: once one write to it waits for the
        // worker, the ones after it must too, so on a zoned device all do.
        if !self.zoned && range.clone().all(|c| self.is_copied(c)) {
            return Some(bio);
        }
        if bio.is_nowait() {
            bio.end(Status::Again);
            return None;
        }
        self.queue_write(bio);
        None
    }

    /// Where a forwarded image read of `bio` goes: the original if no
    /// chunk it touches was copied, or one stretch of difference storage if
    /// all were, contiguously, and are stored.  `None` sends it to the
    /// worker.  Runs while the read counts as forwarded, so no chunk is
    /// recorded as copied meanwhile.
    fn route<'t>(&self, to: &'t ReadTargets, bio: &Bio) -> Option<(&'t BlockDevice, u64)> {
        if self.error() != 0 {
            return None;
        }
        let sector = bio.sector();
        let chunks = self.chunks.blocks_clipped(sector, bio.nr_sectors());
        let shift = self.chunks.block_shift - kernel::block::SECTOR_SHIFT;
        let copied = self.copied.lock();
        let Some(first) = copied.get(chunks.start) else {
            let untouched = chunks.clone().all(|c| copied.get(c).is_none());
            return untouched.then(|| (to.original.bdev(), sector));
        };
        if self.unstored.load(Acquire) != 0 {
            return None;
        }
        let at = first.sector + (sector - ((chunks.start as u64) << shift));
        let contiguous = chunks.clone().skip(1).all(|c| {
            copied.get(c).is_some_and(|l| {
                Arc::ptr_eq(&l.device, &first.device)
                    && l.sector == at + (((c as u64) << shift) - sector)
            })
        });
        contiguous
            .then(|| to.storage(&first.device))
            .flatten()
            .map(|bdev| (bdev, at))
    }

    /// The submit path of a read or write of the image.  A read whose data
    /// lies in one place goes straight there; the rest is queued.
    pub(crate) fn image_io(self: &Arc<Self>, bio: SubmittedBio) {
        let bio = if bio.operation() == Operation::Read {
            // A pause while chunks are recorded as copied orders this
            // against writes to them: see `record`.
            match self.reads.forward(bio, |to, bio| self.route(to, bio)) {
                Ok(()) => return,
                Err(bio) => bio,
            }
        } else {
            bio
        };
        self.queue_image(bio);
    }

    /// Makes room for the old data of chunk `chunk`: its place in
    /// difference storage and pages to carry it.
    fn prepare(&self, chunk: usize) -> Result<Loaded> {
        let shift = self.chunks.block_shift - kernel::block::SECTOR_SHIFT;
        let start = (chunk as u64) << shift;
        let sectors = (1u64 << shift).min(self.chunks.capacity - start);
        let pages = self.buffer()?;
        let (device, at) = self.storage.lock().alloc(sectors)?;
        Ok(Loaded {
            chunk,
            start,
            pages,
            sectors,
            device,
            at,
        })
    }

    /// A chunk buffer: from the pool, or new, or, when memory is short, the
    /// next one a store gives back.  Fails only if none can come back.
    fn buffer(&self) -> Result<KVec<Page>> {
        loop {
            if let Some(buffer) = self.buffers.lock().take() {
                return Ok(buffer);
            }
            let pages = self.buffers.lock().pages();
            let err = match buffers::alloc(pages, GFP_NOIO | __GFP_NOWARN) {
                Ok(buffer) => return Ok(buffer),
                Err(e) => e,
            };
            // Stores give their buffers back before they count themselves
            // done under this lock: a buffer is in the pool by now, or the
            // wait ends when one is.
            let mut stores = self.stores.lock();
            if !self.buffers.lock().is_empty() {
                continue;
            }
            if stores.in_flight == 0 {
                return Err(err);
            }
            self.stored.wait(&mut stores);
        }
    }

    /// Records where a chunk whose old data is in memory goes.  From here on
    /// the chunk counts as copied: writes to it go straight on.
    ///
    /// Image reads forwarded to the original must end before that, so
    /// this needs forwarding paused: the pause waits for reads in flight,
    /// and reads forwarded after it see the chunk copied.
    fn record(&self, loaded: &Loaded, _paused: &Paused<'_>) -> Result {
        self.reads.target().keep(&loaded.device);
        let location = KBox::new(
            Location {
                device: loaded.device.clone(),
                sector: loaded.at,
            },
            GFP_NOIO,
        )?;
        self.copied.lock().store(loaded.chunk, location, GFP_NOIO)?;
        Ok(())
    }

    /// Copies chunk `chunk` of the original to difference storage, and waits.
    fn copy_chunk(&self, chunk: usize) -> Result {
        let l = self.prepare(chunk)?;
        transfer_pages(
            &self.bios,
            self.original().bdev(),
            false,
            l.start,
            &l.pages,
            l.sectors,
        )?;
        let paused = self.reads.pause();
        self.unstored.add(1, Relaxed);
        let res = self.record(&l, &paused).and_then(|()| {
            drop(paused);
            transfer_pages(&self.bios, l.device.bdev(), true, l.at, &l.pages, l.sectors)
        });
        self.unstored.fetch_sub(1, Release);
        res
    }

    /// Waits until fewer than `limit` loaded chunks wait to be stored.
    fn wait_stores_below(&self, limit: usize) {
        let mut stores = self.stores.lock();
        while stores.in_flight >= limit {
            self.stored.wait(&mut stores);
        }
    }

    /// Reads the old data of `chunks` from the original, all at once, and
    /// hands it to the store worker.  Waits first until the chunks fit in
    /// the bound on chunks held in memory.
    fn load_chunks(self: &Arc<Self>, chunks: &[usize]) {
        if chunks.is_empty() {
            return;
        }
        self.wait_stores_below((chunk_limit() + 1).saturating_sub(chunks.len()).max(1));
        let mut loads = KVec::new();
        if let Err(e) = loads.reserve(chunks.len(), GFP_NOIO) {
            return self.fail(e.into());
        }
        for &chunk in chunks {
            match self.prepare(chunk) {
                Ok(l) => {
                    // Cannot fail: room was reserved.
                    let _ = loads.push(l, GFP_NOIO);
                }
                Err(e) => return self.fail(e),
            }
        }
        if let Err(e) = self.transfer_loaded(&loads, false) {
            return self.fail(e);
        }
        let count = loads.len();
        let paused = self.reads.pause();
        // Before the chunks count as copied: a read forwarded to storage
        // must not find them there yet.
        self.unstored.add(count, Relaxed);
        for l in loads.iter() {
            if let Err(e) = self.record(l, &paused) {
                self.unstored.fetch_sub(count, Release);
                return self.fail(e);
            }
        }
        drop(paused);
        let mut stores = self.stores.lock();
        if let Err(e) = stores.queue.reserve(count, GFP_NOIO) {
            drop(stores);
            self.unstored.fetch_sub(count, Release);
            return self.fail(e.into());
        }
        for l in loads {
            // Cannot fail: room was reserved.
            let _ = stores.queue.push(l, GFP_NOIO);
        }
        stores.in_flight += count;
        drop(stores);
        let _ = self.queues.store.enqueue::<_, 1>(self.clone());
    }

    /// Adds the chunks that `bio` is about to change, and that are neither
    /// copied nor wanted yet, to `wanted`, which has room for `batch`.
    /// Whenever `wanted` is full, its chunks are loaded, then `loaded` is
    /// called and `wanted` starts over.
    fn want_chunks(
        self: &Arc<Self>,
        bio: &SubmittedBio,
        wanted: &mut KVec<usize>,
        batch: usize,
        loaded: &mut impl FnMut(),
    ) {
        let Some((sector, count)) = bio.changed_sectors() else {
            return;
        };
        let sector = sector.saturating_sub(self.start_sector);
        for chunk in self.chunks.blocks_clipped(sector, count) {
            if self.error() != 0 {
                return;
            }
            if self.is_copied(chunk) || wanted.contains(&chunk) {
                continue;
            }
            if wanted.len() >= batch {
                self.load_chunks(wanted);
                wanted.clear();
                loaded();
            }
            // Cannot fail: room for `batch` was reserved.
            let _ = wanted.push(chunk, GFP_NOIO);
        }
    }

    /// Loads the chunks that `writes` are about to change, without letting
    /// them go on.
    fn handle_writes(self: &Arc<Self>, writes: &[SubmittedBio]) {
        let batch = load_batch();
        let mut wanted = KVec::new();
        if wanted.reserve(batch, GFP_NOIO).is_err() {
            return self.fail(ENOMEM);
        }
        for bio in writes {
            self.want_chunks(bio, &mut wanted, batch, &mut || {});
        }
        self.load_chunks(&wanted);
    }

    /// Loads the chunks that `writes` are about to change, in batches, and
    /// lets each write go on as soon as its chunks are loaded.
    fn release_writes(self: &Arc<Self>, writes: &mut KVec<SubmittedBio>) {
        if writes.is_empty() {
            return;
        }
        let batch = load_batch();
        let mut wanted = KVec::new();
        let mut held: KVec<SubmittedBio> = KVec::new();
        if wanted.reserve(batch, GFP_NOIO).is_err() || held.reserve(writes.len(), GFP_NOIO).is_err()
        {
            // One at a time needs no memory.
            for bio in writes.drain_all() {
                self.handle_writes(core::slice::from_ref(&bio));
                bio.resubmit();
            }
            return;
        }
        for bio in writes.drain_all() {
            // The writes held so far have all their chunks in `wanted`.
            self.want_chunks(&bio, &mut wanted, batch, &mut || {
                for held in held.drain_all() {
                    held.resubmit();
                }
            });
            // Cannot fail: room was reserved.
            let _ = held.push(bio, GFP_NOIO);
        }
        self.load_chunks(&wanted);
        for bio in held.drain_all() {
            bio.resubmit();
        }
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

    /// Works out where the data of image bio number `index` lives, as
    /// transfers appended to `plan`.  Reads come from difference storage
    /// where a chunk was copied and from the original where it was not;
    /// neighbouring chunks that continue each other on the same device make
    /// one transfer.  Writes only ever go to difference storage: a chunk not
    /// copied yet is copied first, so the original never sees them.
    fn plan_image_io(&self, index: usize, bio: &SubmittedBio, plan: &mut KVec<Transfer>) -> Result {
        let write = bio.operation().changes_data();
        let shift = self.chunks.block_shift - kernel::block::SECTOR_SHIFT;
        let total = bio.nr_sectors();
        let mut run: Option<Transfer> = None;
        let mut done = 0;
        while done < total {
            if self.error() != 0 {
                return Err(EIO);
            }
            let sector = bio.sector() + done;
            let chunk = (sector >> shift) as usize;
            let chunk_start = (chunk as u64) << shift;
            let n = (total - done).min(chunk_start + (1 << shift) - sector);
            let mut stored = self.stored(chunk, chunk_start, sector);
            if stored.is_none() && write {
                if let Err(e) = self.copy_chunk(chunk) {
                    self.fail(e);
                    return Err(EIO);
                }
                stored = self.stored(chunk, chunk_start, sector);
            }
            let source = match stored {
                Some((device, at)) => Source::Stored(device, at),
                None => Source::Original(sector),
            };
            match &mut run {
                Some(last) if last.source.continued_by(&source, last.len) => last.len += n,
                _ => {
                    let next = Transfer {
                        bio: index,
                        offset: done,
                        len: n,
                        source,
                    };
                    if let Some(last) = run.replace(next) {
                        plan.push(last, GFP_NOIO)?;
                    }
                }
            }
            done += n;
        }
        if let Some(last) = run {
            plan.push(last, GFP_NOIO)?;
        }
        Ok(())
    }

    /// Serves image bios: all their transfers go out in parallel, and each
    /// bio ends once its own are done.  The caller batches only bios that
    /// may run in any order: reads, or a single write.
    fn handle_image_io(&self, bios: KVec<SubmittedBio>) {
        if bios.is_empty() {
            return;
        }
        // The data of chunks still being stored is not in storage yet.
        self.wait_stores_below(1);
        let mut failed = KVec::new();
        let mut plan = KVec::new();
        if failed.reserve(bios.len(), GFP_NOIO).is_err() {
            return end_all(bios, Status::IoError);
        }
        for (i, bio) in bios.iter().enumerate() {
            let res = self.plan_image_io(i, bio, &mut plan);
            // Cannot fail: room was reserved.
            let _ = failed.push(Cell::new(res.is_err()), GFP_NOIO);
        }
        // Which bio each part sent belongs to.
        let mut owners = KVec::new();
        if owners.reserve(plan.len(), GFP_NOIO).is_err() {
            return end_all(bios, Status::IoError);
        }
        let owners = RefCell::new(owners);
        let sent = transfer_parts(
            &self.bios,
            |parts| {
                for t in plan.iter().filter(|t| !failed[t.bio].get()) {
                    let (bdev, at) = match &t.source {
                        Source::Stored(device, at) => (device.bdev(), *at),
                        Source::Original(at) => (self.original().bdev(), *at),
                    };
                    match parts.add(&bios[t.bio], t.offset, t.len, bdev, at) {
                        Ok(_) => {
                            // Cannot fail: room was reserved.
                            if let Ok(mut owners) = owners.try_borrow_mut() {
                                let _ = owners.push(t.bio, GFP_NOIO);
                            }
                        }
                        Err(_) => failed[t.bio].set(true),
                    }
                }
            },
            |part, good| {
                let owner = owners.try_borrow().ok().and_then(|o| o.get(part).copied());
                if let Some(bio) = owner {
                    if !good {
                        failed[bio].set(true);
                    }
                }
            },
        );
        if sent.is_err() {
            return end_all(bios, Status::IoError);
        }
        // A failure meanwhile lets writes go on uncopied: one may have
        // reached a chunk these reads took from the original.
        if self.error.load(Acquire) != 0 {
            for t in plan
                .iter()
                .filter(|t| matches!(t.source, Source::Original(_)))
            {
                failed[t.bio].set(true);
            }
        }
        for (bio, failed) in bios.into_iter().zip(failed.iter()) {
            bio.end(if failed.get() {
                Status::IoError
            } else {
                Status::Ok
            });
        }
    }
}

impl DiffArea {
    /// Serves the image reads gathered in `reads`, keeping the vector.
    fn serve_reads(&self, reads: &mut KVec<SubmittedBio>) {
        if reads.is_empty() {
            return;
        }
        let mut batch = KVec::new();
        if batch.reserve(reads.len(), GFP_NOIO).is_err() {
            for bio in reads.drain_all() {
                self.handle_image_io(single(bio));
            }
            return;
        }
        for bio in reads.drain_all() {
            // Cannot fail: room was reserved.
            let _ = batch.push(bio, GFP_NOIO);
        }
        self.handle_image_io(batch);
    }
}

fn end_all(bios: KVec<SubmittedBio>, status: Status) {
    for bio in bios {
        bio.end(status);
    }
}

/// One transfer of image data: a stretch of an image bio, and where its data
/// lives.
struct Transfer {
    /// Which bio of the batch.
    bio: usize,
    /// Sectors into the bio, and how many.
    offset: u64,
    len: u64,
    source: Source,
}

/// Where image data lives: on the original, or copied to difference storage.
enum Source {
    Original(u64),
    Stored(Arc<OpenedBlockDevice>, u64),
}

impl Source {
    /// Whether `next` starts where `len` sectors from `self` end.
    fn continued_by(&self, next: &Source, len: u64) -> bool {
        match (self, next) {
            (Self::Original(a), Self::Original(b)) => a + len == *b,
            (Self::Stored(d, a), Self::Stored(e, b)) => Arc::ptr_eq(d, e) && a + len == *b,
            _ => false,
        }
    }
}

impl DiffArea {
    /// Writes `batch` to difference storage, all at once.
    fn store(&self, batch: &[Loaded]) {
        // After a failure the image is lost: storing more is useless.
        if self.error() != 0 {
            return;
        }
        if let Err(e) = self.transfer_loaded(batch, true) {
            self.fail(e);
        }
    }

    /// Reads the old data of `batch` from the original (`store == false`)
    /// or writes it to difference storage, all chunks at once.
    fn transfer_loaded(&self, batch: &[Loaded], store: bool) -> Result {
        let error = Cell::new(None);
        transfer_parts(
            &self.bios,
            |parts| {
                for l in batch {
                    let (bdev, at) = if store {
                        (l.device.bdev(), l.at)
                    } else {
                        (self.original().bdev(), l.start)
                    };
                    if let Err(e) = parts.add_pages(bdev, store, at, &l.pages, l.sectors) {
                        error.set(Some(e));
                    }
                }
            },
            |_, ok| {
                if !ok {
                    error.set(Some(EIO));
                }
            },
        )?;
        error.get().map_or(Ok(()), Err)
    }
}

impl WorkItem<0> for DiffArea {
    type Pointer = Arc<DiffArea>;

    /// Handles queued image I/O, then queued writes, each in order.  Image
    /// reads in a row, and writes in a row, are handled together; an image
    /// write alone.
    fn run(this: Arc<DiffArea>) {
        // Without memory for these, everything goes one at a time.
        let mut reads = KVec::with_capacity(MAX_TOGETHER, GFP_NOIO).unwrap_or_default();
        let mut writes = KVec::with_capacity(MAX_TOGETHER, GFP_NOIO).unwrap_or_default();
        loop {
            let (mut images, mut queued) = {
                let mut pending = this.pending.lock();
                (pending.images.take(), pending.writes.take())
            };
            if images.is_empty() && queued.is_empty() {
                break;
            }
            while let Some(bio) = images.pop() {
                if bio.operation() != Operation::Read {
                    this.serve_reads(&mut reads);
                    this.handle_image_io(single(bio));
                    continue;
                }
                if reads.len() == reads.capacity() {
                    this.serve_reads(&mut reads);
                }
                if let Err(e) = reads.push_within_capacity(bio) {
                    this.handle_image_io(single(e.0));
                }
            }
            this.serve_reads(&mut reads);
            while let Some(bio) = queued.pop() {
                if writes.len() == writes.capacity() {
                    this.release_writes(&mut writes);
                }
                if let Err(e) = writes.push_within_capacity(bio) {
                    let bio = e.0;
                    this.handle_writes(core::slice::from_ref(&bio));
                    bio.resubmit();
                }
            }
            this.release_writes(&mut writes);
        }
    }
}

impl WorkItem<2> for DiffArea {
    type Pointer = Arc<DiffArea>;

    /// Nothing to do: the last reference goes when this returns.
    fn run(_this: Arc<DiffArea>) {}
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
            this.store(&batch);
            this.unstored.fetch_sub(batch.len(), Release);
            let count = batch.len();
            {
                let mut pool = this.buffers.lock();
                for loaded in batch {
                    pool.give(loaded.pages);
                }
            }
            this.stores.lock().in_flight -= count;
            this.stored.notify_all();
        }
    }
}

/// Creates the shared storage of a snapshot being taken.
pub(crate) fn shared_storage(storage: DiffStorage) -> Result<Arc<Mutex<DiffStorage>>> {
    Arc::pin_init(new_mutex!(storage, "blksnap_diff_storage"), GFP_KERNEL)
}
