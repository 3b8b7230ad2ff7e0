// SPDX-License-Identifier: GPL-2.0

//! Snapshot images: read-only block devices `blksnap-image_MAJ:MIN` that
//! show an original device as it was when the snapshot was taken.

use crate::diff_area::DiffArea;
use kernel::{
    block::{
        bio::{Operation, Status, SubmittedBio},
        bio_disk::{self, BioDisk},
    },
    prelude::*,
    sync::Arc,
};

pub(crate) struct ImageOps;

#[vtable]
impl bio_disk::Operations for ImageOps {
    type Data = Arc<DiffArea>;

    fn submit_bio(area: &Arc<DiffArea>, bio: SubmittedBio) {
        match bio.operation() {
            Operation::Read if bio.nr_sectors() != 0 => area.image_read(bio),
            Operation::Read | Operation::Flush => bio.end(Status::Ok),
            // Read-only until writable images exist.
            _ => bio.end(Status::IoError),
        }
    }
}

pub(crate) type Image = BioDisk<ImageOps>;

/// Writes the image name of device `major:minor` into `buf`; returns its
/// length.
pub(crate) fn name(major: u32, minor: u32, buf: &mut [u8; 32]) -> usize {
    let mut w = Writer { buf, len: 0 };
    let _ = core::fmt::write(&mut w, format_args!("blksnap-image_{major}:{minor}"));
    w.len
}

struct Writer<'a> {
    buf: &'a mut [u8; 32],
    len: usize,
}

impl core::fmt::Write for Writer<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        // Keep one byte for the NUL of the C side.
        let room = self.buf.len() - 1 - self.len;
        let n = s.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// Creates the image of the device behind `area`.
pub(crate) fn create(major: u32, minor: u32, area: Arc<DiffArea>) -> Result<Image> {
    let mut buf = [0u8; 32];
    let len = name(major, minor, &mut buf);
    let sectors = area.capacity();
    BioDisk::new(&buf[..len], sectors, true, area)
}
