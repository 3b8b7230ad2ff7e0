// SPDX-License-Identifier: GPL-2.0

//! Reads and writes of the snapshot image.
//!
//! Image reads whose data lies in one place skip the worker: the submit
//! path forwards them to the original if all their chunks are there
//! (never copied, or loading), or to difference storage if all are stored
//! there, contiguously.  A chunk leaves the original (goes to `InMemory`)
//! only while forwarding is paused, and the pause waits for forwarded
//! reads in flight, so a read of the original always ends before a write
//! to its chunk is let go.
//!
//! The rest goes to the copy worker, and so does every read of a chunk
//! stored in a file: the submit path does not enter a file system.  A read
//! whose chunks are all stored in a file goes on to the file, and the
//! worker does not wait for it: stored chunks stay where they are.  Other
//! image reads queued in a row go out in parallel, and the worker waits for
//! them before it goes on: an image read of the original always completes
//! before a write it took along reaches the device.  An image write is
//! served alone, and copies the chunks it touches first.

use super::{chunks::Chunk, single, DiffArea, ReadTargets};
use crate::diff_storage::Place;
use core::cell::Cell;
use kernel::{
    block::{
        bdev::BlockDevice,
        bio::{Bio, DiskBio, Operation, Status},
        io::batch::Batch,
    },
    fs::direct_io::{self, FileBatch, FileStretch},
    prelude::*,
    sync::Arc,
};

impl DiffArea {
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
        let states = self.chunk_states.lock();
        if states.is_on_original(chunks.start) {
            let untouched = chunks.clone().all(|c| states.is_on_original(c));
            return untouched.then(|| (to.original.bdev(), sector));
        }
        // Stored chunks only, on a block device: one in memory is not in
        // storage yet, and a file is read through its file system.
        let Place::Device(device, first) = states.stored_at(chunks.start)? else {
            return None;
        };
        let at = first + (sector - ((chunks.start as u64) << shift));
        let contiguous = chunks.clone().skip(1).all(|c| {
            states.stored_at(c).is_some_and(|l| {
                matches!(l, Place::Device(d, s)
                    if Arc::ptr_eq(d, device) && *s == at + (((c as u64) << shift) - sector))
            })
        });
        contiguous
            .then(|| to.storage(device))
            .flatten()
            .map(|bdev| (bdev, at))
    }

    /// The submit path of a read or write of the image.  A read whose data
    /// lies in one place goes straight there; the rest is queued.
    pub(crate) fn image_io(self: &Arc<Self>, bio: DiskBio) {
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
    /// Where the image data of `sector`, in chunk `chunk` starting at
    /// `chunk_start`, lives: `None` for the original, else the place in
    /// difference storage.  `EIO` if the chunk failed, or is in memory
    /// (its readers wait for the store first, see `wait_settled`).
    fn location(&self, chunk: usize, chunk_start: u64, sector: u64) -> Result<Option<Place>> {
        match self.chunk_states.lock().get(chunk) {
            None | Some(Chunk::Loading(_)) => Ok(None),
            Some(Chunk::Stored(l)) => Ok(Some(l.after(sector - chunk_start))),
            Some(Chunk::InMemory(_) | Chunk::Failed) => Err(EIO),
        }
    }

    /// Waits until no chunk that `bios` touch is loading or in memory:
    /// their data is then on the original, unchanged until this worker
    /// starts a copy, or in difference storage.  A read of a chunk still
    /// loading must not go to the original: the load can end, and a write
    /// parked on the chunk go on, while the read is in flight.  Copies
    /// change a chunk's state before they take `copies` to wake waiters, so
    /// looking under `copies` misses no wake-up.
    fn wait_settled(&self, bios: &[DiskBio]) {
        let mut copies = self.copies.lock();
        while bios.iter().any(|bio| self.touches_moving(bio)) {
            self.settled.wait(&mut copies);
        }
    }

    /// Whether `bio` touches a chunk loading or in memory.
    fn touches_moving(&self, bio: &Bio) -> bool {
        let chunks = self.chunks.blocks_clipped(bio.sector(), bio.nr_sectors());
        let states = self.chunk_states.lock();
        chunks.into_iter().any(|c| states.is_moving(c))
    }

    /// Works out where the data of image bio number `index` lives, as
    /// transfers appended to `plan`.  Reads come from difference storage
    /// where a chunk was copied and from the original where it was not;
    /// neighbouring chunks that continue each other on the same device make
    /// one transfer.  Writes only ever go to difference storage: a chunk not
    /// copied yet is copied first, so the original never sees them.
    fn plan_image_io(
        self: &Arc<Self>,
        index: usize,
        bio: &DiskBio,
        plan: &mut KVec<Transfer>,
    ) -> Result {
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
            let mut stored = self.location(chunk, chunk_start, sector)?;
            if stored.is_none() && write {
                if let Err(e) = self.copy_chunk(chunk) {
                    self.fail(e);
                    return Err(EIO);
                }
                stored = self.location(chunk, chunk_start, sector)?;
            }
            let source = match stored {
                Some(place) => Source::Stored(place),
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
    pub(super) fn handle_image_io(self: &Arc<Self>, bios: KVec<DiskBio>) {
        if bios.is_empty() {
            return;
        }
        // The data of chunks on their way to storage is not there yet.
        self.wait_settled(&bios);
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
        // Each part is tagged with the failure flag of the bio it serves.
        // Parts in files and on devices go out together: the device batch
        // runs while the file parts are in flight.
        let files = plan
            .iter()
            .filter(|t| matches!(t.source, Source::Stored(Place::File(..))))
            .count();
        let ended = FileBatch::run(files, |in_files| {
            for t in plan.iter().filter(|t| !failed[t.bio].get()) {
                let Source::Stored(place @ Place::File(file, at)) = &t.source else {
                    continue;
                };
                let flag = &failed[t.bio];
                let added = place
                    .check_within(t.len)
                    .and_then(|()| in_files.add(flag, &bios[t.bio], t.offset, t.len, file, *at));
                if added.is_err() {
                    flag.set(true);
                }
            }
            Batch::run(&self.bios, plan.len() - files, |batch| {
                for t in plan.iter().filter(|t| !failed[t.bio].get()) {
                    let (bdev, at) = match &t.source {
                        Source::Stored(Place::Device(device, at)) => (device.bdev(), *at),
                        Source::Stored(Place::File(..)) => continue,
                        Source::Original(at) => (self.original().bdev(), *at),
                    };
                    let flag = &failed[t.bio];
                    if batch
                        .add(flag, &bios[t.bio], t.offset, t.len, bdev, at)
                        .is_err()
                    {
                        flag.set(true);
                    }
                }
            })
        });
        match ended {
            Ok((Ok(on_devices), in_files)) => Iterator::chain(on_devices, in_files)
                .filter(|part| part.result.is_err())
                .for_each(|part| part.tag.set(true)),
            _ => return end_all(bios, Status::IoError),
        }
        // A failure meanwhile lets writes go on uncopied: one may have
        // reached a chunk these reads took from the original.
        if self.error() != 0 {
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

    /// Sends an image read whose data lies all in stored chunks in a file
    /// on to the file, without waiting: returns the bio if it is not one.
    ///
    /// A stored chunk stays where it is, so such a read needs no ordering
    /// against copies, and the worker does not wait for it.  It holds the
    /// forwarder until it ended: the area, and the file, outlive it, and
    /// `retire` waits for it before the image goes.
    fn read_from_file(self: &Arc<Self>, bio: DiskBio) -> Option<DiskBio> {
        if bio.operation() != Operation::Read {
            return Some(bio);
        }
        let mut plan = KVec::new();
        let all_in_files = self.plan_image_io(0, &bio, &mut plan).is_ok()
            && plan.iter().all(|t| match &t.source {
                Source::Stored(place @ Place::File(..)) => place.check_within(t.len).is_ok(),
                _ => false,
            });
        if !all_in_files {
            return Some(bio);
        }
        // Held before the error is looked at: `retire` drains holds before
        // it sets it, so a read that saw none is waited for.
        let Some(held) = self.reads.hold() else {
            return Some(bio);
        };
        if self.error() != 0 {
            return Some(bio);
        }
        let stretches = plan.iter().filter_map(|t| match &t.source {
            Source::Stored(Place::File(file, at)) => Some(FileStretch {
                offset: t.offset,
                sectors: t.len,
                file,
                sector: *at,
            }),
            _ => None,
        });
        direct_io::read_from_files(bio, held, stretches);
        None
    }

    /// Serves the image reads gathered in `reads`, keeping the vector.
    /// Those whose data lies in a file go straight there; the rest are
    /// served together.
    pub(super) fn serve_reads(self: &Arc<Self>, reads: &mut KVec<DiskBio>) {
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
            if let Some(bio) = self.read_from_file(bio) {
                // Cannot fail: room was reserved.
                let _ = batch.push(bio, GFP_NOIO);
            }
        }
        self.handle_image_io(batch);
    }
}

fn end_all(bios: KVec<DiskBio>, status: Status) {
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
    Stored(Place),
}

impl Source {
    /// Whether `next` starts where `len` sectors from `self` end.
    fn continued_by(&self, next: &Source, len: u64) -> bool {
        match (self, next) {
            (Self::Original(a), Self::Original(b)) => a + len == *b,
            (Self::Stored(p), Self::Stored(q)) => p.continued_by(q, len),
            _ => false,
        }
    }
}
