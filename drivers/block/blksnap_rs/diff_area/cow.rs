// SPDX-License-Identifier: GPL-2.0

//! Copy-on-write: writes to the original, and the copies they need.
//!
//! A write that touches a chunk not yet copied is taken over in the submit
//! path and queued to the copy worker.  The worker reads the old data of
//! the chunks that the writes queued in a row need, all in parallel, lets
//! the writes go on, and hands the data to the store worker, which writes
//! it to difference storage.  So the original's own writes run in parallel
//! with the stores, and at most `chunk_maximum_in_queue` loaded chunks wait
//! in memory.

use super::{DiffArea, Location};
use crate::{buffers, params};
use core::cell::Cell;
use kernel::{
    block::{
        bdev::OpenedBlockDevice,
        bio::{transfer_pages, transfer_parts, Status, SubmittedBio},
        forward::Paused,
    },
    page::Page,
    prelude::*,
    sync::Arc,
    workqueue::WorkItem,
};

/// The bound on loaded chunks waiting in memory, per device.
fn chunk_limit() -> usize {
    (params::chunk_maximum_in_queue() as usize).clamp(1, MAX_CHUNKS_IN_QUEUE)
}

/// Chunks loaded at a time: half the bound, so that one batch can be read
/// while the one before is stored.
fn load_batch() -> usize {
    (chunk_limit() / 2).max(1)
}

/// Hard cap on loaded chunks waiting in memory, whatever the parameter says.
const MAX_CHUNKS_IN_QUEUE: usize = 256;

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
pub(super) struct StoreQueue {
    queue: KVec<Loaded>,
    /// Queued or being written: what bounds the memory held.
    in_flight: usize,
}

impl DiffArea {
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

    /// Makes room for the old data of chunk `chunk`, never copied: its
    /// place in difference storage and pages to carry it.  The chunk is
    /// `Loading` from here.
    fn prepare(&self, chunk: usize) -> Result<Loaded> {
        let shift = self.chunks.block_shift - kernel::block::SECTOR_SHIFT;
        let start = (chunk as u64) << shift;
        let sectors = (1u64 << shift).min(self.chunks.capacity - start);
        let pages = self.buffer()?;
        let (device, at) = self.storage.lock().alloc(sectors)?;
        self.chunk_states.start_load(chunk)?;
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

    /// Records that the old data of a chunk is in memory, and where it
    /// goes: `InMemory`.  From here on writes to it go straight on.
    ///
    /// Image reads forwarded to the original must end before that, so
    /// this needs forwarding paused: the pause waits for reads in flight,
    /// and reads forwarded after it see the chunk copied.
    fn record(&self, loaded: &Loaded, paused: &Paused<'_>) -> Result {
        self.reads.target().keep(&loaded.device);
        let at = Location {
            device: loaded.device.clone(),
            sector: loaded.at,
        };
        self.chunk_states.loaded(loaded.chunk, at, paused)
    }

    /// Marks the chunks of `loads` failed and breaks the snapshot.
    fn abandon(&self, loads: &[Loaded], err: Error) {
        for l in loads {
            let _ = self.chunk_states.fail(l.chunk);
        }
        self.fail(err);
    }

    /// Copies chunk `chunk` of the original to difference storage, and waits.
    pub(super) fn copy_chunk(&self, chunk: usize) -> Result {
        let l = self.prepare(chunk)?;
        let res = transfer_pages(
            &self.bios,
            self.original().bdev(),
            false,
            l.start,
            &l.pages,
            l.sectors,
        )
        .and_then(|()| self.record(&l, &self.reads.pause()))
        .and_then(|()| transfer_pages(&self.bios, l.device.bdev(), true, l.at, &l.pages, l.sectors))
        .and_then(|()| self.chunk_states.stored(chunk));
        if res.is_err() {
            let _ = self.chunk_states.fail(chunk);
        }
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
                Err(e) => return self.abandon(&loads, e),
            }
        }
        if let Err(e) = self.transfer_loaded(&loads, false) {
            return self.abandon(&loads, e);
        }
        let count = loads.len();
        // Room in the store queue first: a chunk in memory must reach it,
        // or image reads of it would wait for a store that never comes.
        // Held until the chunks are queued; the store worker empties it.
        // Held across the pause too: the pause waits only for forwarded
        // reads, which never take `stores`.
        let mut stores = self.stores.lock();
        if let Err(e) = stores.queue.reserve(count, GFP_NOIO) {
            drop(stores);
            return self.abandon(&loads, e.into());
        }
        let paused = self.reads.pause();
        for l in loads.iter() {
            if let Err(e) = self.record(l, &paused) {
                drop(paused);
                drop(stores);
                return self.abandon(&loads, e);
            }
        }
        drop(paused);
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
            // A chunk with a state is copied, or failed: only the never
            // copied ones are wanted.
            let copied = self.chunk_states.lock().get(chunk).is_some();
            if copied || wanted.contains(&chunk) {
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
    pub(super) fn handle_writes(self: &Arc<Self>, writes: &[SubmittedBio]) {
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
    pub(super) fn release_writes(self: &Arc<Self>, writes: &mut KVec<SubmittedBio>) {
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

    /// Writes `batch` to difference storage, all at once; whether all of
    /// it made it.
    fn store(&self, batch: &[Loaded]) -> bool {
        // After a failure the image is lost: storing more is useless.
        if self.error() != 0 {
            return false;
        }
        match self.transfer_loaded(batch, true) {
            Ok(()) => true,
            Err(e) => {
                self.fail(e);
                false
            }
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

impl WorkItem<1> for DiffArea {
    type Pointer = Arc<DiffArea>;

    /// Writes loaded chunks to difference storage, oldest first.
    fn run(this: Arc<DiffArea>) {
        loop {
            let batch = core::mem::take(&mut this.stores.lock().queue);
            if batch.is_empty() {
                break;
            }
            let stored = this.store(&batch);
            // Before the count below: a reader waiting for one of these
            // chunks looks at its state under `stores`.
            for loaded in batch.iter() {
                let _ = if stored {
                    this.chunk_states.stored(loaded.chunk)
                } else {
                    this.chunk_states.fail(loaded.chunk)
                };
            }
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
