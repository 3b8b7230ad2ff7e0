// SPDX-License-Identifier: GPL-2.0

//! Copy-on-write: writes to the original, and the copies they need.
//!
//! A write that touches a chunk not yet copied is taken over in the submit
//! path and queued to the copy worker.  The worker starts loading each chunk
//! the write needs (reading its old data from the original, without
//! waiting) and parks the write on a chunk still loading.  A copy goes on
//! from the end of its I/O: when a load ends, the copies-ended work records
//! the chunk as in memory, lets the writes parked on it go on (or parks
//! each on its next chunk still loading), and starts the store to
//! difference storage: to a device at once, to a file from the module's
//! file queue, which sends the stores queued there in the order of their
//! places, those that follow one another in the file as one write.  When
//! the store ends, the chunk is stored and its buffer goes back to the
//! pool.  So loads and stores of different chunks are in flight at once.
//! The copy worker waits for copies only when `chunk_maximum_in_queue`
//! chunks are already loading, or as many in memory, when no buffer can be
//! had, and before it serves image I/O of chunks on their way to storage.
//!
//! A zoned original keeps its writes in order: there the worker waits for
//! a write's loads and lets the writes go on in the order they came.

use super::DiffArea;
use crate::diff_storage::Place;
use crate::{buffers, params};
use kernel::{
    block::{
        bio::{plug, BioList, Filtered, FilteredBio, Status},
        forward::Paused,
        io::{page_io, transfer_pages, PageIo},
    },
    fs::direct_io::{self, FileIo},
    page::Page,
    prelude::*,
    sync::Arc,
    warn_on,
    workqueue::WorkItem,
};

/// The bound on chunks in memory waiting for their store, per device, and
/// apart from them on chunks loading.
fn chunk_limit() -> usize {
    (params::chunk_maximum_in_queue() as usize).clamp(1, MAX_CHUNKS_IN_QUEUE)
}

/// Hard cap on chunks in each stage, whatever the parameter says.
const MAX_CHUNKS_IN_QUEUE: usize = 256;

/// Loads in flight may hold this many bytes of chunks, if that is more
/// than `chunk_limit()` chunks: with small chunks, the parameter alone
/// would keep fewer loads in flight than the writes that wait for them.
const LOAD_BYTES: usize = 16 << 20;

/// The bound on chunks loading, for chunks of `1 << block_shift` bytes.
fn load_limit(block_shift: u32) -> usize {
    (LOAD_BYTES >> block_shift.min(usize::BITS - 1)).clamp(chunk_limit(), MAX_CHUNKS_IN_QUEUE)
}

/// Room in the lists of ended copies, and of stores queued to a file.  A
/// load starts only while fewer than `load_limit()` chunks are loading and
/// fewer than `chunk_limit()` are in memory, both at most
/// `MAX_CHUNKS_IN_QUEUE`, so at most `2 * MAX_CHUNKS_IN_QUEUE - 1` copies
/// have I/O in flight or wait for it.  (`copy_chunk` does its I/O itself
/// and never comes through the lists.)
pub(super) const MAX_COPIES: usize = 2 * MAX_CHUNKS_IN_QUEUE;
const _: () = assert!(MAX_COPIES >= 2 * MAX_CHUNKS_IN_QUEUE - 1);

/// One chunk on its way from the original to difference storage: its old
/// data and where it goes.  It travels with its load and then its store.
pub(super) struct ChunkCopy {
    area: Arc<DiffArea>,
    chunk: usize,
    /// First sector of the chunk on the original.
    start: u64,
    sectors: u64,
    pages: KVec<Page>,
    /// Where the old data goes.
    place: Place,
}

/// A copy whose load or store just ended, and whether it succeeded.
pub(super) type Ended = (Arc<ChunkCopy>, bool);

/// Where a copy counts against `chunk_limit`.
#[derive(Clone, Copy)]
enum Stage {
    /// From before its load starts until the chunk is in memory.
    Loading,
    /// From then until its store ended.
    InMemory,
}

/// Copies counted against `chunk_limit`, by stage.
#[derive(Default)]
pub(super) struct Copies {
    loading: usize,
    in_memory: usize,
}

impl Copies {
    fn count(&mut self, stage: Stage) -> &mut usize {
        match stage {
            Stage::Loading => &mut self.loading,
            Stage::InMemory => &mut self.in_memory,
        }
    }

    fn total(&self) -> usize {
        self.loading + self.in_memory
    }
}

impl page_io::Owner for ChunkCopy {
    /// Hands the copy to the copies-ended work: the next step needs a lock
    /// that sleeps.  There is room in the list: a copy counts against the
    /// bounds from before its load to after its store, and the list holds
    /// as many as both bounds together allow.
    fn io_ended(this: Arc<Self>, ok: bool) {
        let area = this.area.clone();
        let lost = area.ended.lock().push_within_capacity((this, ok)).is_err();
        // Cannot happen (see above); the copy would be lost, and with it
        // the writes parked on it.
        warn_on!(lost);
        // If the work is pending already, it holds the area too: the
        // reference given back here is not the last.  Nothing else is
        // dropped here: the module's queues must not go in this context.
        let _ = area.queues.store.enqueue::<_, 1>(area.clone());
    }
}

/// The load of `copy`: its chunk of the original into its pages.
fn load(copy: &ChunkCopy) -> PageIo<'_> {
    PageIo {
        bios: &copy.area.bios,
        bdev: copy.area.original().bdev(),
        write: false,
        sector: copy.start,
        pages: &copy.pages,
        sectors: copy.sectors,
    }
}

/// The store of `copy` to a block device: its pages to its place there.
/// A copy that goes to a file stores nothing here, and fails.
fn store(copy: &ChunkCopy) -> PageIo<'_> {
    let (bdev, sector, sectors) = match &copy.place {
        Place::Device(device, at) => (device.bdev(), *at, copy.sectors),
        Place::File(..) => (copy.area.original().bdev(), 0, 0),
    };
    PageIo {
        bios: &copy.area.bios,
        bdev,
        write: true,
        sector,
        pages: &copy.pages,
        sectors,
    }
}

/// The store of `copy` to a file, or `None` if it goes to a block device
/// or past the end of a file cut short (see `Place::check_within`): it
/// fails then.  Checked as late as can be, as the I/O is built; a file cut
/// short while the store is in flight is seen by the image reads of the
/// chunk, which check again.
fn store_to_file(copy: &ChunkCopy) -> Option<FileIo<'_>> {
    let Place::File(file, at) = &copy.place else {
        return None;
    };
    copy.place.check_within(copy.sectors).ok()?;
    Some(FileIo {
        file,
        write: true,
        pos: at << kernel::block::SECTOR_SHIFT,
        pages: &copy.pages,
        bytes: (copy.sectors << kernel::block::SECTOR_SHIFT) as usize,
    })
}

/// Stores `copy` and waits.
fn store_now(copy: &ChunkCopy) -> Result {
    match &copy.place {
        Place::File(..) => direct_io::transfer_pages(store_to_file(copy).ok_or(EIO)?),
        Place::Device(..) => transfer_pages(store(copy)),
    }
}

impl DiffArea {
    /// The submit path of a write to the original: returns the bio if it may
    /// go on now, or keeps it until its chunks are copied.
    pub(crate) fn write(self: &Arc<Self>, bio: FilteredBio) -> Option<FilteredBio> {
        let Some((sector, count)) = bio.changed_sectors() else {
            return Some(bio);
        };
        // On a zoned original, writes queued before the failure must go
        // first: they still go through the worker.
        if self.error() != 0 && !self.zoned {
            return Some(bio);
        }
        let sector = sector.saturating_sub(self.start_sector);
        let range = self.chunks.blocks_clipped(sector, count);
        // A zone is written in order: once one write to it waits for the
        // worker, the ones after it must too, so on a zoned device all do.
        if !self.zoned {
            let states = self.chunk_states.lock();
            if range.clone().all(|c| states.is_copied(c)) {
                return Some(bio);
            }
        }
        if bio.is_nowait() {
            bio.end(Status::Again);
            return None;
        }
        self.queue_write(bio);
        None
    }

    /// The copy worker's part of a queued write: starts the copies it needs
    /// and lets it go on once their loads ended.
    pub(super) fn handle_write(self: &Arc<Self>, bio: FilteredBio) {
        if let Err(e) = self.start_copies(&bio) {
            self.fail(e);
        }
        if self.zoned {
            self.wait_loaded(&bio);
            return bio.resubmit();
        }
        if let Some(bio) = self.go_or_park(bio) {
            bio.resubmit();
        }
    }

    /// Starts copying every chunk that `bio` is about to change and that
    /// was never copied.
    fn start_copies(self: &Arc<Self>, bio: &FilteredBio) -> Result {
        let Some((sector, count)) = bio.changed_sectors() else {
            return Ok(());
        };
        let sector = sector.saturating_sub(self.start_sector);
        for chunk in self.chunks.blocks_clipped(sector, count) {
            // After a failure, writes go on uncopied.
            if self.error() != 0 {
                return Ok(());
            }
            // Only this worker adds states: a chunk without one stays so.
            if self.chunk_states.lock().get(chunk).is_none() {
                self.start_copy(chunk)?;
            }
        }
        Ok(())
    }

    /// Starts the copy of chunk `chunk`, never copied: it is `Loading`
    /// until its load ends.  Waits first until fewer than `chunk_limit`
    /// chunks are loading, and as many in memory: as in v3, the worker
    /// reads no more while the stores lag behind.  The loads in flight
    /// then join those in memory, so up to `2 * chunk_limit() - 1` chunk
    /// buffers are in use.
    fn start_copy(self: &Arc<Self>, chunk: usize) -> Result {
        {
            let mut copies = self.copies.lock();
            let loads = load_limit(self.chunks.block_shift);
            while copies.loading >= loads || copies.in_memory >= chunk_limit() {
                self.settled.wait(&mut copies);
            }
            copies.loading += 1;
        }
        match self.prepare(chunk) {
            Ok(copy) => {
                page_io::submit(copy, load);
                Ok(())
            }
            Err(e) => {
                self.copy_gone(Stage::Loading);
                Err(e)
            }
        }
    }

    /// Makes room for the old data of chunk `chunk`, never copied: its
    /// place in difference storage and pages to carry it.  The chunk is
    /// `Loading` from here.
    fn prepare(self: &Arc<Self>, chunk: usize) -> Result<Arc<ChunkCopy>> {
        let shift = self.chunks.block_shift - kernel::block::SECTOR_SHIFT;
        let start = (chunk as u64) << shift;
        let sectors = (1u64 << shift).min(self.chunks.capacity - start);
        let pages = self.buffer()?;
        // Storage sectors allocated here are not given back on failure:
        // the snapshot of the device breaks then anyway.
        let place = match self.place(sectors) {
            Ok(place) => place,
            Err(e) => {
                self.buffers.lock().give(pages);
                return Err(e);
            }
        };
        let copy = Arc::new(
            ChunkCopy {
                area: self.clone(),
                chunk,
                start,
                sectors,
                pages,
                place,
            },
            GFP_NOIO,
        )?;
        if let Err(e) = self.chunk_states.start_load(chunk) {
            self.finish_unstarted(copy);
            return Err(e);
        }
        Ok(copy)
    }

    /// A chunk buffer: from the pool, or new, or, when memory is short, the
    /// next one a copy gives back.  Fails only if none can come back.
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
            // Copies give their buffers back before they count themselves
            // gone under this lock: a buffer is in the pool by now, or the
            // wait ends when one is.
            let mut copies = self.copies.lock();
            if !self.buffers.lock().is_empty() {
                continue;
            }
            // This copy counts itself already.
            if copies.total() <= 1 {
                return Err(err);
            }
            self.settled.wait(&mut copies);
        }
    }

    /// Counts a copy gone from `stage`, and wakes whoever waits for room
    /// or for chunks to settle.
    fn copy_gone(&self, stage: Stage) {
        *self.copies.lock().count(stage) -= 1;
        self.settled.notify_all();
    }

    /// Counts `n` copies moved from `Loading` to `InMemory`, after their
    /// chunks changed state, and wakes whoever waits for chunks to settle.
    /// Waiters look at states under `copies`: taking it after the change
    /// means each either saw the change or is asleep by now.
    fn copies_loaded(&self, n: usize) {
        {
            let mut copies = self.copies.lock();
            copies.loading -= n;
            copies.in_memory += n;
        }
        self.settled.notify_all();
    }

    /// Waits until no chunk that `bio` is about to change is loading.
    fn wait_loaded(&self, bio: &FilteredBio) {
        let Some((sector, count)) = bio.changed_sectors() else {
            return;
        };
        let range = self
            .chunks
            .blocks_clipped(sector.saturating_sub(self.start_sector), count);
        let mut copies = self.copies.lock();
        while range
            .clone()
            .any(|c| self.chunk_states.lock().is_loading(c))
        {
            self.settled.wait(&mut copies);
        }
    }

    /// Lets `write` go on if its chunks are safe: returns it.  Otherwise
    /// parks it on a chunk of it still loading, or queues it to the worker
    /// if one was never copied.
    fn go_or_park(self: &Arc<Self>, write: FilteredBio) -> Option<FilteredBio> {
        let Some((sector, count)) = write.changed_sectors() else {
            return Some(write);
        };
        if self.error() != 0 {
            return Some(write);
        }
        let range = self
            .chunks
            .blocks_clipped(sector.saturating_sub(self.start_sector), count);
        let mut states = self.chunk_states.lock();
        if let Some(chunk) = range.clone().find(|&c| states.is_loading(c)) {
            return states.park(chunk, write).err();
        }
        // Failed chunks count as safe: the snapshot is broken, and writes
        // go on.  A chunk never copied must be copied first.
        if range.clone().all(|c| states.get(c).is_some()) {
            return Some(write);
        }
        drop(states);
        self.queue_write(write);
        None
    }

    /// Lets the writes of `parked` go on, or parks them again.
    fn release(self: &Arc<Self>, mut parked: BioList<Filtered>) {
        while let Some(write) = parked.pop() {
            if let Some(write) = self.go_or_park(write) {
                write.resubmit();
            }
        }
    }

    /// Records that the old data of a chunk is in memory, and where it
    /// goes: `InMemory`.  From here on writes to it go straight on; returns
    /// those that were parked on it.
    ///
    /// Image reads forwarded to the original must end before that, so
    /// this needs forwarding paused: the pause waits for reads in flight,
    /// and reads forwarded after it see the chunk copied.
    fn record(&self, copy: &ChunkCopy, paused: &Paused<'_>) -> Result<BioList<Filtered>> {
        if let Place::Device(device, _) = &copy.place {
            self.reads.target().keep(device);
        }
        self.chunk_states
            .loaded(copy.chunk, copy.place.clone(), paused)
    }

    /// A copy that did not make it: its chunk fails, and with it the
    /// snapshot of the device; the writes parked on it go on.
    fn abandon(self: &Arc<Self>, copy: Arc<ChunkCopy>, err: Error, stage: Stage) {
        // The snapshot is broken first, so that no write goes on past the
        // failed chunk while an image read forwarded to it is in flight
        // (see `fail`).
        self.fail(err);
        if let Ok(parked) = self.chunk_states.fail(copy.chunk) {
            self.release(parked);
        }
        self.finish(copy, stage);
    }

    /// The end of a copy: its buffer goes back to the pool, then it no
    /// longer counts in `stage`.
    fn finish(&self, copy: Arc<ChunkCopy>, stage: Stage) {
        self.finish_unstarted(copy);
        self.copy_gone(stage);
    }

    /// Gives the buffer of `copy` back to the pool.
    fn finish_unstarted(&self, copy: Arc<ChunkCopy>) {
        // Only the copy's own I/O held it, and that ended.
        if let Some(mut copy) = Arc::into_unique_or_drop(copy) {
            let pages = core::mem::take(&mut copy.pages);
            self.buffers.lock().give(pages);
        }
    }

    /// Goes on with copies whose load ended: records them in memory under
    /// one pause of forwarded reads, releases their writes, starts their
    /// stores.
    fn loads_ended(self: &Arc<Self>, loads: &mut KVec<Arc<ChunkCopy>>) {
        if loads.is_empty() {
            return;
        }
        let mut recorded = KVec::new();
        if recorded.reserve(loads.len(), GFP_NOIO).is_err() {
            // One at a time needs no memory.
            for copy in loads.drain_all() {
                self.load_ended(copy);
            }
            return;
        }
        let paused = self.reads.pause();
        for copy in loads.drain_all() {
            match self.record(&copy, &paused) {
                Ok(parked) => {
                    // Cannot fail: room was reserved.
                    let _ = recorded.push((copy, parked), GFP_NOIO);
                }
                Err(e) => self.abandon(copy, e, Stage::Loading),
            }
        }
        drop(paused);
        self.copies_loaded(recorded.len());
        for (_, parked) in recorded.iter_mut() {
            self.release(parked.take());
        }
        self.start_stores(recorded.into_iter().map(|(copy, _)| copy));
    }

    /// `loads_ended` for one copy.
    fn load_ended(self: &Arc<Self>, copy: Arc<ChunkCopy>) {
        // The pause ends with this statement, not with the match below.
        let recorded = self.record(&copy, &self.reads.pause());
        match recorded {
            Ok(parked) => {
                self.copies_loaded(1);
                self.release(parked);
                self.start_stores(core::iter::once(copy));
            }
            Err(e) => self.abandon(copy, e, Stage::Loading),
        }
    }

    /// Writes the old data of `copies` to difference storage, without
    /// waiting: to a device from here (neighbours merge in the plug), to a
    /// file from the file queue (see `send_file_stores`).  Sending a store
    /// to a file may wait for the file system's lock, which a growth holds
    /// while it waits for the direct I/O in flight on the file: here it
    /// would hold up the writes whose loads end meanwhile.
    fn start_stores(self: &Arc<Self>, copies: impl Iterator<Item = Arc<ChunkCopy>>) {
        let mut queued = false;
        for copy in copies.filter_map(|copy| self.start_store_unless_to_file(copy)) {
            // There is room: the list holds copies in memory, as many as
            // the lists of ended copies hold.
            let pushed = self.file_stores.lock().push_within_capacity(copy);
            if let Err(lost) = pushed {
                warn_on!(true);
                direct_io::submit(lost.0, store_to_file);
                continue;
            }
            queued = true;
        }
        if queued {
            let _ = self.queues.file.enqueue::<_, 4>(self.clone());
        }
    }

    /// Sends the stores to a file that `start_stores` queued, in the order
    /// of their places: those that follow one another in the file go as
    /// one I/O, and the file system then converts its unwritten extents
    /// once for all of them.  After a failure the image is lost: the
    /// stores are dropped instead.
    fn send_file_stores(&self) {
        let mut batch = core::mem::take(&mut *self.file_stores_spare.lock());
        loop {
            core::mem::swap(&mut *self.file_stores.lock(), &mut batch);
            if batch.is_empty() {
                break;
            }
            if self.error() != 0 {
                for copy in batch.drain_all() {
                    let _ = self.chunk_states.fail(copy.chunk);
                    self.finish(copy, Stage::InMemory);
                }
                continue;
            }
            batch.sort_unstable_by_key(|copy| copy.place.sector());
            plug::plugged(|| direct_io::submit_merged(batch.drain_all(), store_to_file));
        }
        *self.file_stores_spare.lock() = batch;
    }

    /// Starts writing the old data of `copy` to a device, or gives it back
    /// if it goes to a file.  After a failure the image is lost: storing
    /// more is useless.
    fn start_store_unless_to_file(
        self: &Arc<Self>,
        copy: Arc<ChunkCopy>,
    ) -> Option<Arc<ChunkCopy>> {
        if self.error() != 0 {
            let _ = self.chunk_states.fail(copy.chunk);
            self.finish(copy, Stage::InMemory);
            return None;
        }
        if matches!(copy.place, Place::File(..)) {
            return Some(copy);
        }
        page_io::submit(copy, store);
        None
    }

    /// Goes on with a copy whose store ended.
    fn store_ended(self: &Arc<Self>, copy: Arc<ChunkCopy>, ok: bool) {
        if !ok {
            return self.abandon(copy, EIO, Stage::InMemory);
        }
        // Before the count goes down in `finish`: a reader waiting for
        // this chunk looks at its state under `copies`.
        if self.chunk_states.stored(copy.chunk).is_err() {
            return self.abandon(copy, EINVAL, Stage::InMemory);
        }
        self.finish(copy, Stage::InMemory);
    }

    /// Copies chunk `chunk` of the original to difference storage, and
    /// waits: for an image write, which the copy worker serves alone.
    pub(super) fn copy_chunk(self: &Arc<Self>, chunk: usize) -> Result {
        // Counted as loading throughout: it is one at a time, and waited
        // for.
        self.copies.lock().loading += 1;
        let copy = match self.prepare(chunk) {
            Ok(copy) => copy,
            Err(e) => {
                self.copy_gone(Stage::Loading);
                return Err(e);
            }
        };
        let res = transfer_pages(load(&copy))
            .and_then(|()| self.record(&copy, &self.reads.pause()))
            .map(|parked| self.release(parked))
            .and_then(|()| store_now(&copy))
            .and_then(|()| self.chunk_states.stored(chunk));
        match res {
            Ok(()) => self.finish(copy, Stage::Loading),
            Err(e) => self.abandon(copy, e, Stage::Loading),
        }
        res
    }
}

impl WorkItem<4> for DiffArea {
    type Pointer = Arc<DiffArea>;

    /// Sends the stores to a file queued by the copies-ended work.
    fn run(this: Arc<DiffArea>) {
        this.send_file_stores();
    }
}

impl WorkItem<1> for DiffArea {
    type Pointer = Arc<DiffArea>;

    /// Goes on with the copies whose load or store ended.
    fn run(this: Arc<DiffArea>) {
        // The vector with room the list gets back, so that the end of an
        // I/O never allocates.
        let mut batch = core::mem::take(&mut *this.ended_spare.lock());
        let mut loads = KVec::new();
        // Without memory, loads go on one at a time.
        let _ = loads.reserve(MAX_COPIES, GFP_NOIO);
        loop {
            core::mem::swap(&mut *this.ended.lock(), &mut batch);
            if batch.is_empty() {
                break;
            }
            // The stores started and the writes let go here are often
            // neighbours: plugged, they merge.
            plug::plugged(|| {
                for (copy, ok) in batch.drain_all() {
                    // The chunk's state tells which I/O ended.
                    let loading = this.chunk_states.lock().is_loading(copy.chunk);
                    if !loading {
                        this.store_ended(copy, ok);
                    } else if !ok {
                        this.abandon(copy, EIO, Stage::Loading);
                    } else if let Err(e) = loads.push_within_capacity(copy) {
                        this.load_ended(e.0);
                    }
                }
                this.loads_ended(&mut loads);
            });
        }
        *this.ended_spare.lock() = batch;
    }
}
