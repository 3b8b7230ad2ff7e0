// SPDX-License-Identifier: GPL-2.0
//! stretch_snapshot: wait for a snapshot's events and answer each request
//! for storage with what it asks for, until a limit: low-space events with
//! new files in a directory or ranges from a list, or, for storage the
//! module opens, the first low-space event by giving it and each no-space
//! event by raising its limit.  Ends when the snapshot is destroyed (0) or
//! corrupted (1).

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
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

const CMD: &str = "stretch_snapshot";
/// Why storage the module opens cannot be stretched by this run.
const GIVEN_BEFORE: &str = "the snapshot had storage before this run: \
    raise its limit with snapshot_setstorage -l";

/// Sectors of the block device `path`, or `None` for a file or directory.
fn device_capacity(path: &Path) -> Result<Option<u64>> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(CMD, path.display(), &e))?;
    if !meta.file_type().is_block_device() {
        return Ok(None);
    }
    // A block device's end is its size.
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(CMD, path.display(), &e))?;
    let bytes = f
        .seek(SeekFrom::End(0))
        .map_err(|e| Error::io(CMD, path.display(), &e))?;
    Ok(Some(bytes / SECTOR_SIZE))
}

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
    /// Storage the module opens and grows itself (`snapshot_setstorage`):
    /// only its limit grows here, up to the size of a device (the module
    /// refuses more), which `capacity` holds in sectors.
    Module {
        path: PathBuf,
        capacity: Option<u64>,
        state: ModuleStorage,
    },
}

/// Whether the module's storage has been given to the snapshot yet.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ModuleStorage {
    NotGiven,
    Given,
}

/// What one answer gave: where, and how many sectors.
struct Answer {
    place: PathBuf,
    sectors: u64,
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
    /// Whether an event asking for storage is one this source answers: a
    /// new snapshot asks with a low-space event, which storage the module
    /// opens answers once, and then asks with no-space events only.
    fn answers(&self, kind: &EventKind) -> bool {
        match (self, kind) {
            (Source::Module { state, .. }, EventKind::LowFreeSpace { .. }) => {
                *state == ModuleStorage::NotGiven
            }
            (Source::Module { state, .. }, EventKind::NoSpace { .. }) => {
                *state == ModuleStorage::Given
            }
            (_, EventKind::LowFreeSpace { .. }) => true,
            _ => false,
        }
    }

    /// Gives snapshot `id` up to `want` more sectors, `so_far` having been
    /// given before; `None` when the source is used up.
    fn give(&mut self, ctl: &Control, id: &Uuid, want: u64, so_far: u64) -> Result<Option<Answer>> {
        if let Source::Module {
            path,
            capacity,
            state,
        } = self
        {
            let want = capacity.map_or(want, |c| want.min(c.saturating_sub(so_far)));
            if want == 0 {
                return Ok(None);
            }
            // The limit is of all of it: what was given, and this.
            let new = (*state == ModuleStorage::NotGiven).then_some(path.as_path());
            ctl.set_storage(id, new, so_far + want)
                .map_err(|e| match e.errno() {
                    Some(Errno::EBUSY) if new.is_some() => e.with_hint(
                        "the snapshot has storage already or is taken, or the storage is in use",
                    ),
                    _ => e,
                })?;
            *state = ModuleStorage::Given;
            return Ok(Some(Answer {
                place: path.clone(),
                sectors: want,
            }));
        }
        let (device, ranges) = self.next(want)?;
        if ranges.is_empty() {
            return Ok(None);
        }
        ctl.append_storage(id, &device, &ranges)
            .map_err(|e| match e.errno() {
                Some(Errno::EBUSY) => {
                    e.with_hint("storage the module opens is stretched with --setstorage")
                }
                _ => e,
            })?;
        Ok(Some(Answer {
            place: device,
            sectors: total(&ranges),
        }))
    }

    /// The device and ranges of up to `want` more sectors (none: used up).
    fn next(&mut self, want: u64) -> Result<(PathBuf, Vec<blksnap_sectors>)> {
        match self {
            Source::Pool { device, ranges } => Ok((device.clone(), take_from_pool(ranges, want))),
            Source::Module { .. } => Ok((PathBuf::new(), Vec::new())),
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
            Source::Pool { .. } | Source::Module { .. } => &[],
        }
    }
}

pub fn run(args: &StretchArgs, out: &Printer) -> Result<()> {
    let id: Uuid = args.id.id;
    let ctl = Control::open(CMD)?;
    let limit = args
        .limit
        .map_or(u64::MAX, |mib| mib.saturating_mul((1 << 20) / SECTOR_SIZE));
    let mut source = match (&args.path, &args.device, &args.setstorage) {
        (Some(dir), _, _) => Source::Files {
            dir: dir.clone(),
            made: Vec::new(),
        },
        (None, Some(device), _) => Source::Pool {
            device: device.clone(),
            ranges: args.ranges.iter().copied().collect(),
        },
        (None, None, Some(path)) => Source::Module {
            path: path.clone(),
            capacity: device_capacity(path)?,
            state: ModuleStorage::NotGiven,
        },
        (None, None, None) => {
            return Err(Error::invalid(
                CMD,
                id,
                "no --path, --device or --setstorage",
            ))
        }
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
        let r = wait_record(&Wait::Event(event.clone()));
        match event.kind {
            EventKind::LowFreeSpace { requested_sectors }
            | EventKind::NoSpace { requested_sectors }
                if source.answers(&event.kind) =>
            {
                let want = requested_sectors.min(limit.saturating_sub(given));
                let answer = if want == 0 {
                    None
                } else {
                    source.give(&ctl, &id, want, given)?
                };
                let Some(answer) = answer else {
                    out.line(&r.num("appended_sectors", 0u64).str("note", "limit reached"));
                    continue;
                };
                given += answer.sectors;
                let key = match source {
                    Source::Module { .. } => "storage",
                    _ => "device",
                };
                out.line(
                    &r.str(key, answer.place.display())
                        .num("appended_sectors", answer.sectors)
                        .num("total_sectors", given),
                );
            }
            // A no-space event for storage this run did not give: it was
            // given before (by hand, or by a run that ended), and its limit
            // is not known here, so no answer can be right.
            EventKind::NoSpace { .. }
                if matches!(
                    source,
                    Source::Module {
                        state: ModuleStorage::NotGiven,
                        ..
                    }
                ) =>
            {
                out.line(&r);
                return Err(Error::invalid(CMD, format!("snapshot {id}"), GIVEN_BEFORE));
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
            // Requests of another source's (a no-space event of storage
            // set by hand, the request of a new snapshot whose storage the
            // module opened), and events this tool does not know.
            _ => out.line(&r),
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

    #[test]
    fn module_storage_answers_the_first_request_then_no_space_events() {
        let low = EventKind::LowFreeSpace {
            requested_sectors: 8,
        };
        let no = EventKind::NoSpace {
            requested_sectors: 8,
        };
        let mut module = Source::Module {
            path: "/var/tmp".into(),
            capacity: None,
            state: ModuleStorage::NotGiven,
        };
        assert!(module.answers(&low) && !module.answers(&no));
        if let Source::Module { state, .. } = &mut module {
            *state = ModuleStorage::Given;
        }
        assert!(!module.answers(&low) && module.answers(&no));
        let pool = Source::Pool {
            device: "/dev/sdc".into(),
            ranges: VecDeque::new(),
        };
        assert!(pool.answers(&low) && !pool.answers(&no));
    }
}
