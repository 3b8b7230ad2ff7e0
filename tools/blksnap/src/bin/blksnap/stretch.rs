// SPDX-License-Identifier: GPL-2.0
//! stretch_snapshot: wait for a snapshot's events and answer each
//! low-space event with the storage it asks for, from new files in a
//! directory or from a list of device ranges, until a limit.  Ends when
//! the snapshot is destroyed (0) or corrupted (1).

use crate::cli::StretchArgs;
use crate::events::wait_record;
use crate::output::{Printer, Record};
use blksnap::control::{EventKind, Wait};
use blksnap::fiemap::file_extents;
use blksnap::sectors::total;
use blksnap::uapi::blksnap_sectors;
use blksnap::{Control, Error, Result, Uuid, SECTOR_SIZE};
use nix::errno::Errno;
use std::collections::VecDeque;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

const CMD: &str = "stretch_snapshot";

/// Up to `want` sectors from the front of `pool`, splitting a range if need be.
pub fn take_from_pool(pool: &mut VecDeque<blksnap_sectors>, want: u64) -> Vec<blksnap_sectors> {
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

/// Where new storage comes from.
enum Source {
    /// Files made in a directory, kept until the snapshot is destroyed.
    Files { dir: PathBuf, made: Vec<PathBuf> },
    /// Ranges of one device, handed out in order.
    Pool {
        device: PathBuf,
        ranges: VecDeque<blksnap_sectors>,
    },
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

impl Source {
    /// The device and ranges of up to `want` more sectors (none: used up).
    fn next(&mut self, want: u64) -> Result<(PathBuf, Vec<blksnap_sectors>)> {
        match self {
            Source::Pool { device, ranges } => Ok((device.clone(), take_from_pool(ranges, want))),
            Source::Files { dir, made } => {
                let path = make_file(dir, made.len(), want)?;
                made.push(path.clone());
                match file_extents(CMD, &path) {
                    Ok(e) => Ok((e.device, e.ranges)),
                    Err(e) => {
                        let _ = std::fs::remove_file(made.pop().unwrap_or_default());
                        Err(e)
                    }
                }
            }
        }
    }

    /// Files the kernel may still write to while the snapshot lives.
    fn files(&self) -> &[PathBuf] {
        match self {
            Source::Files { made, .. } => made,
            Source::Pool { .. } => &[],
        }
    }
}

pub fn run(args: &StretchArgs, out: &Printer) -> Result<()> {
    let id: Uuid = args.id.id;
    let ctl = Control::open(CMD)?;
    let limit = args
        .limit
        .map_or(u64::MAX, |mib| mib.saturating_mul((1 << 20) / SECTOR_SIZE));
    let mut source = match (&args.path, &args.device) {
        (Some(dir), _) => Source::Files {
            dir: dir.clone(),
            made: Vec::new(),
        },
        (None, Some(device)) => Source::Pool {
            device: device.clone(),
            ranges: args.ranges.iter().copied().collect(),
        },
        (None, None) => return Err(Error::invalid(CMD, id, "no --path or --device")),
    };
    let mut given = 0u64;
    out.line(&Record::new().str("result", "started").str("id", id));
    loop {
        let event = match ctl.wait_event(&id, args.timeout) {
            Ok(Wait::Event(e)) => e,
            Ok(Wait::Timeout | Wait::Interrupted) => continue,
            // Destroyed: its storage is released, the files can go.
            Err(e) if e.errno() == Some(Errno::ESRCH) => {
                for f in source.files() {
                    let _ = std::fs::remove_file(f);
                }
                out.line(
                    &Record::new()
                        .str("result", "destroyed")
                        .num("appended_sectors", given),
                );
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let mut r = wait_record(&Wait::Event(event.clone()));
        match event.kind {
            EventKind::LowFreeSpace { requested_sectors } => {
                let want = requested_sectors.min(limit - given);
                let (device, ranges) = if want == 0 {
                    (PathBuf::new(), Vec::new())
                } else {
                    source.next(want)?
                };
                if ranges.is_empty() {
                    out.line(&r.num("appended_sectors", 0u64).str("note", "limit reached"));
                    continue;
                }
                ctl.append_storage(&id, &device, &ranges)?;
                given += total(&ranges);
                r = r
                    .str("device", device.display())
                    .num("appended_sectors", total(&ranges));
                out.line(&r.num("total_sectors", given));
            }
            EventKind::Corrupted { .. } => {
                out.line(&r);
                // The files stay: only destroying the snapshot releases them.
                let kept: Vec<String> = source
                    .files()
                    .iter()
                    .map(|f| f.display().to_string())
                    .collect();
                let mut why = "the snapshot is corrupted".to_string();
                if !kept.is_empty() {
                    why += &format!(
                        "; storage files kept until it is destroyed: {}",
                        kept.join(" ")
                    );
                }
                return Err(Error::invalid(CMD, format!("snapshot {id}"), why));
            }
            // Storage the module opened: its limit is raised with
            // snapshot_setstorage, not with ranges.
            EventKind::NoSpace { .. } | EventKind::Unknown { .. } => out.line(&r),
        }
    }
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
