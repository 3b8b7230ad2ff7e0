// SPDX-License-Identifier: GPL-2.0

//! The difference area of one device in a taken snapshot: which chunks of
//! the original were copied to difference storage, and the work that copies
//! them and serves I/O to the snapshot image.
//!
//! Writes that touch a chunk not yet copied, and image I/O that cannot be
//! forwarded, are queued to the copy worker of the device.  The worker
//! takes what was queued, serves the image I/O first and then the writes,
//! each in the order queued; copies go on from the end of their I/O.  The
//! queues are linked through the bios: the submit path never allocates to
//! queue, so it never fails for want of memory, and it never waits for I/O.
//!
//! - [`chunks`]: where each chunk stands: never copied, loading, in memory,
//!   stored, failed.
//! - [`cow`]: writes to the original, and the copies they need.
//! - [`growth`]: room in difference storage for them, and a storage file
//!   grown ahead of need.
//! - [`image_io`]: reads and writes of the snapshot image.

mod chunks;
mod cow;
mod growth;
mod image_io;

use crate::{
    buffers::BufferPool,
    cbt_map::Geometry,
    diff_storage::{Growth, Place, SharedStorage},
    event_queue::EventQueue,
    live_areas::LiveArea,
    params, workers,
};
use chunks::ChunkTable;
use cow::{ChunkCopy, Copies, Ended, MAX_COPIES};
use kernel::{
    block::{
        bdev::{BlockDevice, OpenedBlockDevice},
        bio::{plug, BioList, Disk, DiskBio, Filtered, FilteredBio, Operation},
        forward::Forwarder,
        io::BioSet,
    },
    new_condvar, new_mutex, new_spinlock,
    prelude::*,
    sync::{
        atomic::{Acquire, Atomic, Full},
        new_spinlock_irq, Arc, CondVar, Mutex, SetOnce, SpinLock, SpinLockIrq,
    },
    workqueue::{impl_has_work, new_work, Work, WorkItem},
};

/// Most image reads that the copy worker serves together.
const MAX_TOGETHER: usize = 64;

/// A batch of one bio.  Without memory the bio is dropped, which ends it
/// with an error, and the batch is empty.
fn single(bio: DiskBio) -> KVec<DiskBio> {
    let mut v = KVec::new();
    let _ = v.push(bio, GFP_NOIO);
    v
}

/// Bios each device keeps for its copies, stores and image I/O when memory
/// is short.
const BIO_RESERVE: u32 = 16;

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
    writes: BioList<Filtered>,
    images: BioList<Disk>,
}

impl PendingQueue {
    const fn new() -> Self {
        Self {
            writes: BioList::new(),
            images: BioList::new(),
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
    storage: Arc<SharedStorage>,
    events: Arc<EventQueue>,
    /// Where each chunk stands in copy-on-write, see `chunks`.
    #[pin]
    chunk_states: ChunkTable<Place>,
    /// 0 while the snapshot of this device is intact, else the negative
    /// errno that broke it.  Set once.
    error: Atomic<i32>,
    #[pin]
    pending: SpinLock<PendingQueue>,
    #[pin]
    work: Work<DiffArea, 0>,
    /// Copies counted against the bound on chunks loading or in memory.
    #[pin]
    copies: Mutex<Copies>,
    /// Signalled when a copy goes, and when a chunk leaves `Loading`.
    #[pin]
    settled: CondVar,
    /// Copies whose load or store ended, for `copies_ended`.  Filled where
    /// the I/O ends, which may be interrupt context: never allocates, its
    /// room is reserved.
    #[pin]
    ended: SpinLockIrq<KVec<Ended>>,
    /// The vector with room that `copies_ended` swaps with `ended`.
    #[pin]
    ended_spare: Mutex<KVec<Ended>>,
    /// Chunk buffers for copies, see `buffers`.
    #[pin]
    buffers: Mutex<BufferPool>,
    /// Bios for copies, stores and image I/O: the module's own, so that
    /// they come back to it when memory is short.
    #[pin]
    bios: BioSet,
    /// Goes on with the copies in `ended`.
    #[pin]
    copies_ended: Work<DiffArea, 1>,
    /// Drops the last reference in a worker, see `DiffArea::put_in_submit`.
    #[pin]
    last_put: Work<DiffArea, 2>,
    /// Grows the storage file ahead of need, see `growth`.
    #[pin]
    grow_ahead: Work<DiffArea, 3>,
    /// The growth that `grow_ahead` runs next.
    #[pin]
    growth: Mutex<Option<Growth>>,
    /// Copies in memory whose stores go to a file, for `send_stores`; room
    /// for all copies in memory is reserved.
    #[pin]
    file_stores: Mutex<KVec<Arc<ChunkCopy>>>,
    /// The vector with room that `send_stores` swaps with `file_stores`.
    #[pin]
    file_stores_spare: Mutex<KVec<Arc<ChunkCopy>>>,
    /// Sends the stores in `file_stores`, on the module's file queue.
    #[pin]
    send_stores: Work<DiffArea, 4>,
    /// Where the work above runs: the module's queues, which the module
    /// destroys only once every area is gone.
    queues: Arc<workers::Queues>,
    /// Counts this area among its snapshot's until it is gone.  Last, so
    /// that it goes after everything else.
    _live: LiveArea,
}

impl_has_work! {
    impl HasWork<Self, 0> for DiffArea { self.work }
    impl HasWork<Self, 1> for DiffArea { self.copies_ended }
    impl HasWork<Self, 2> for DiffArea { self.last_put }
    impl HasWork<Self, 3> for DiffArea { self.grow_ahead }
    impl HasWork<Self, 4> for DiffArea { self.send_stores }
}

impl DiffArea {
    pub(crate) fn new(
        original: OpenedBlockDevice,
        storage: Arc<SharedStorage>,
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
                chunk_states <- ChunkTable::new(),
                error: Atomic::new(0),
                pending <- new_spinlock!(PendingQueue::new(), "blksnap_diff_area_pending"),
                work <- new_work!("blksnap_diff_area"),
                copies <- new_mutex!(Copies::default(), "blksnap_diff_area_copies"),
                settled <- new_condvar!("blksnap_diff_area_settled"),
                ended <- new_spinlock_irq!(
                    KVec::with_capacity(MAX_COPIES, GFP_KERNEL)?,
                    "blksnap_diff_area_ended"
                ),
                ended_spare <- new_mutex!(
                    KVec::with_capacity(MAX_COPIES, GFP_KERNEL)?,
                    "blksnap_diff_area_ended_spare"
                ),
                buffers <- new_mutex!(BufferPool::new(chunk_pages)?, "blksnap_diff_area_buffers"),
                bios <- BioSet::new(BIO_RESERVE),
                copies_ended <- new_work!("blksnap_diff_area_copies_ended"),
                last_put <- new_work!("blksnap_diff_area_last_put"),
                grow_ahead <- new_work!("blksnap_diff_area_grow_ahead"),
                growth <- new_mutex!(None, "blksnap_diff_area_growth"),
                file_stores <- new_mutex!(
                    KVec::with_capacity(MAX_COPIES, GFP_KERNEL)?,
                    "blksnap_diff_area_file_stores"
                ),
                file_stores_spare <- new_mutex!(
                    KVec::with_capacity(MAX_COPIES, GFP_KERNEL)?,
                    "blksnap_diff_area_file_stores_spare"
                ),
                send_stores <- new_work!("blksnap_diff_area_send_stores"),
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
        self.error.load(Acquire)
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
    /// Reads sent on to a storage file end first too: the image goes next.
    pub(crate) fn retire(&self) {
        let _paused = self.reads.drain();
        let _ = self.error.cmpxchg(0, ENODEV.to_errno(), Full);
    }

    /// Queues a write to the original for the worker.
    fn queue_write(self: &Arc<Self>, bio: FilteredBio) {
        self.pending.lock().writes.push(bio);
        let _ = self.queues.copy.enqueue::<_, 0>(self.clone());
    }

    /// Queues image I/O for the worker.
    fn queue_image(self: &Arc<Self>, bio: DiskBio) {
        self.pending.lock().images.push(bio);
        let _ = self.queues.copy.enqueue::<_, 0>(self.clone());
    }
}

impl WorkItem<0> for DiffArea {
    type Pointer = Arc<DiffArea>;

    /// Handles queued image I/O, then queued writes, each in order.  Image
    /// reads in a row are served together; an image write alone.  A write
    /// only starts the copies it needs, and is let go when they are loaded
    /// (see `cow`).
    fn run(this: Arc<DiffArea>) {
        // Without memory for this, image reads go one at a time.
        let mut reads = KVec::with_capacity(MAX_TOGETHER, GFP_NOIO).unwrap_or_default();
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
            // The loads a write needs are neighbours: plugged, they merge.
            plug::plugged(|| {
                while let Some(bio) = queued.pop() {
                    this.handle_write(bio);
                }
            });
        }
    }
}

impl WorkItem<2> for DiffArea {
    type Pointer = Arc<DiffArea>;

    /// Nothing to do: the last reference goes when this returns.
    fn run(_this: Arc<DiffArea>) {}
}
