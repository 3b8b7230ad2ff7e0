// SPDX-License-Identifier: GPL-2.0

//! Snapshot images: block devices `blksnap-image_MAJ:MIN` that show an
//! original device as it was when the snapshot was taken.
//!
//! Images are writable, so that a backup agent can for example delete
//! files it does not want before reading the image.  What is written lands
//! in difference storage only, and marks the change map.

use crate::{claims, diff_area::DiffArea, diff_storage::STORAGE_DMA_ALIGNMENT, tracker::Tracker};
use kernel::{
    block::{
        bio::{DiskBio, Operation, Status},
        bio_disk::{self, BioDisk, BioDiskBuilder},
    },
    fmt::{self, Write},
    prelude::*,
    str::NullTerminatedFormatter,
    sync::Arc,
};

/// What an image shows: the difference area of one device, and the tracker
/// whose change map records writes to the image.
pub(crate) struct Target {
    tracker: Arc<Tracker>,
    area: Arc<DiffArea>,
}

pub(crate) struct ImageOps;

#[vtable]
impl bio_disk::Operations for ImageOps {
    type Data = Target;

    fn submit_bio(target: &Target, bio: DiskBio) {
        if bio.nr_sectors() == 0 {
            // A flush: our own writes are waited for as they are made.
            return bio.end(Status::Ok);
        }
        match bio.operation() {
            Operation::Read => target.area.image_io(bio),
            Operation::Write => {
                // The image now differs from the original's point in time:
                // an incremental backup from either map must read it again.
                target.tracker.mark_both(bio.sector(), bio.nr_sectors());
                target.area.image_io(bio)
            }
            // The image announces the original's discard limits, so that
            // tools see the same device; a discard leaves the data as it is,
            // which is one of the outcomes it allows.
            Operation::Discard => bio.end(Status::Ok),
            // The image offers no write-zeroes.
            _ => bio.end(Status::IoError),
        }
    }
}

/// An image disk.  While it exists it is recorded in `claims`, so that no
/// snapshot takes it as difference storage: from before anyone can claim
/// storage on it until after it is gone.
pub(crate) struct Image {
    /// `None` only while it is dropped.
    disk: Option<BioDisk<ImageOps>>,
    /// The disk's sequence number, under which `claims` knows it.
    diskseq: u64,
}

impl Drop for Image {
    fn drop(&mut self) {
        drop(self.disk.take());
        claims::remove_image(self.diskseq);
    }
}

/// The name of the image of device `major:minor`.
struct ImageName {
    major: u32,
    minor: u32,
}

impl fmt::Display for ImageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "blksnap-image_{}:{}", self.major, self.minor)
    }
}

/// Writes the image name of device `major:minor` into `buf`, NUL-terminated.
pub(crate) fn name(major: u32, minor: u32, buf: &mut [u8; 32]) {
    // Cannot fail: the longest name, of the largest numbers, takes 26 bytes.
    if let Some(mut w) = NullTerminatedFormatter::new(buf) {
        let _ = w.write_fmt(fmt!("{}", ImageName { major, minor }));
    }
}

/// Creates the image of the device `tracker` tracks, whose snapshot lives
/// in `area`.  Only once copy-on-write is on: from the moment the image
/// exists, what it shows must be the point in time.
pub(crate) fn create(tracker: Arc<Tracker>, area: Arc<DiffArea>) -> Result<Image> {
    let (major, minor) = tracker.numbers();
    // The original's geometry: a program that reads the image as it would
    // the original meets the same block size and alignment.  Buffers are
    // aligned to a sector at least, which storage needs (see
    // `diff_storage::STORAGE_DMA_ALIGNMENT`): image bios go on to it in
    // pieces cut at chunk boundaries, and direct I/O from a file system
    // checks only the first piece of a bio.
    let mut geometry = area.original().bdev().io_geometry();
    geometry.dma_alignment = geometry.dma_alignment.max(STORAGE_DMA_ALIGNMENT);
    let disk = BioDiskBuilder::new()
        .capacity_sectors(area.capacity())
        .io_geometry(geometry)
        .build(
            fmt!("{}", ImageName { major, minor }),
            Target { tracker, area },
        )?;
    let diskseq = disk.diskseq();
    // Storage claimed on it in the moment since it was added: fail the take.
    claims::add_image(diskseq)?;
    Ok(Image {
        disk: Some(disk),
        diskseq,
    })
}
