// SPDX-License-Identifier: GPL-2.0
//! Storage this run finds and appends to a snapshot as sector ranges:
//! new files written in a directory, or ranges of a device from a list.

use super::{Answer, CMD};
use blksnap::fiemap::file_extents;
use blksnap::sectors::total;
use blksnap::uapi::blksnap_sectors;
use blksnap::{Control, Error, Result, Uuid, SECTOR_SIZE};
use nix::errno::Errno;
use std::collections::VecDeque;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Where appended ranges come from.
pub(super) enum Appended {
    /// Files made in a directory, kept until the snapshot is destroyed.
    Files { dir: PathBuf, made: Vec<PathBuf> },
    /// Ranges of one device, handed out in order.
    Pool {
        device: PathBuf,
        ranges: VecDeque<blksnap_sectors>,
    },
}

impl Appended {
    /// New files in `dir`.
    pub(super) fn files_in(dir: &Path) -> Self {
        Appended::Files {
            dir: dir.to_path_buf(),
            made: Vec::new(),
        }
    }

    /// The `ranges` of `device`, in order.
    pub(super) fn pool(device: &Path, ranges: &[blksnap_sectors]) -> Self {
        Appended::Pool {
            device: device.to_path_buf(),
            ranges: ranges.iter().copied().collect(),
        }
    }

    /// Appends up to `want` more sectors to snapshot `id`; `None` when the
    /// source is used up.
    pub(super) fn give(&mut self, ctl: &Control, id: &Uuid, want: u64) -> Result<Option<Answer>> {
        let (device, ranges) = self.next(want)?;
        if ranges.is_empty() {
            return Ok(None);
        }
        if let Err(e) = ctl.append_storage(id, &device, &ranges) {
            // The module takes all the ranges or none: a file it refused
            // is not storage.
            self.remove_last_file();
            return Err(match e.errno() {
                // Or a take is under way, or a range is another
                // snapshot's storage: EBUSY does not tell.
                Some(Errno::EBUSY) => e.with_hint(
                    "storage the module opens is stretched with --setstorage; \
                     ranges are refused while the snapshot is being taken, and where \
                     they are storage of another snapshot",
                ),
                _ => e,
            });
        }
        Ok(Some(Answer {
            place: device,
            sectors: total(&ranges),
        }))
    }

    /// The device and ranges of up to `want` more sectors (none: used up).
    fn next(&mut self, want: u64) -> Result<(PathBuf, Vec<blksnap_sectors>)> {
        match self {
            Appended::Pool { device, ranges } => Ok((device.clone(), take_from_pool(ranges, want))),
            Appended::Files { dir, made } => {
                let path = make_file(dir, made.len(), want)?;
                match file_extents(CMD, &path) {
                    Ok(e) => {
                        made.push(path);
                        // The last block may hold more than was written:
                        // no more than `want` is given, to keep to the limit.
                        let mut extents = VecDeque::from(e.ranges);
                        Ok((e.device, take_from_pool(&mut extents, want)))
                    }
                    Err(e) => {
                        let _ = std::fs::remove_file(&path);
                        Err(e)
                    }
                }
            }
        }
    }

    /// Removes the file made last, which the module did not take.
    fn remove_last_file(&mut self) {
        if let Appended::Files { made, .. } = self {
            if let Some(path) = made.pop() {
                let _ = std::fs::remove_file(path);
            }
        }
    }

    /// Files the kernel may still write to while the snapshot lives.
    pub(super) fn files(&self) -> &[PathBuf] {
        match self {
            Appended::Files { made, .. } => made,
            Appended::Pool { .. } => &[],
        }
    }
}

/// Up to `want` sectors from the front of `pool`, splitting a range if need be.
fn take_from_pool(pool: &mut VecDeque<blksnap_sectors>, want: u64) -> Vec<blksnap_sectors> {
    let mut out = Vec::new();
    let mut left = want;
    while left > 0 {
        let Some(front) = pool.front_mut() else { break };
        if front.count <= left {
            left -= front.count;
            out.push(*front);
            pool.pop_front();
        } else {
            out.push(blksnap_sectors {
                offset: front.offset,
                count: left,
            });
            front.offset += left;
            front.count -= left;
            left = 0;
        }
    }
    out
}

/// Creates a new `dir/diff_storage#N` (the first N not taken, from
/// `first`) holding `sectors` written (zero) sectors.  Written, not
/// fallocated: unwritten extents are unsafe as storage.
fn make_file(dir: &Path, first: usize, sectors: u64) -> Result<PathBuf> {
    let mut n = first;
    let (mut f, path) = loop {
        let path = dir.join(format!("diff_storage#{n}"));
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(f) => break (f, path),
            // Another run's file, perhaps still storage of its snapshot.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => n += 1,
            Err(e) => return Err(Error::io(CMD, path.display(), &e)),
        }
    };
    let what = path.display().to_string();
    let zeros = vec![0u8; 1 << 20];
    let mut left = sectors * SECTOR_SIZE;
    let written = (|| {
        while left > 0 {
            let n = left.min(zeros.len() as u64) as usize;
            f.write_all(&zeros[..n])?;
            left -= n as u64;
        }
        f.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&path);
        return Err(Error::io(CMD, &what, &e));
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(offset: u64, count: u64) -> blksnap_sectors {
        blksnap_sectors { offset, count }
    }

    #[test]
    fn pool_hands_out_in_order_and_splits() {
        let mut pool: VecDeque<_> = [s(0, 100), s(1000, 50)].into_iter().collect();
        assert_eq!(take_from_pool(&mut pool, 60), [s(0, 60)]);
        assert_eq!(take_from_pool(&mut pool, 60), [s(60, 40), s(1000, 20)]);
        assert_eq!(take_from_pool(&mut pool, 100), [s(1020, 30)]);
        assert!(take_from_pool(&mut pool, 10).is_empty());
    }
}
