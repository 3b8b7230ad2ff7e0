// SPDX-License-Identifier: GPL-2.0
//! stretch_snapshot: wait for a snapshot's events and answer each request
//! for storage with what it asks for, until a limit: low-space events with
//! new files in a directory or ranges from a list, or, for storage the
//! module opens, the first low-space event by giving it and each no-space
//! event by raising its limit.  Ends when the snapshot is destroyed (0) or
//! corrupted (1).

mod appended;
mod module_storage;

use crate::cli::StretchArgs;
use crate::events::wait_record;
use crate::output::{Printer, Record};
use appended::Appended;
use blksnap::control::{EventKind, Wait};
use blksnap::{Control, Error, Result, Uuid, SECTOR_SIZE};
use module_storage::ModuleStorage;
use nix::errno::Errno;
use std::path::PathBuf;

const CMD: &str = "stretch_snapshot";
/// Why storage the module opens cannot be stretched by this run.
const GIVEN_BEFORE: &str = "the snapshot had storage before this run: \
    raise its limit with snapshot_setstorage -l";

/// What one answer gave: where, and how many sectors.
struct Answer {
    place: PathBuf,
    sectors: u64,
}

/// Where new storage comes from.
enum Source {
    /// Ranges this run finds and appends.
    Appended(Appended),
    /// Storage the module opens; this run raises its limit.
    Module(ModuleStorage),
}

impl Source {
    /// Whether an event asking for storage is one this source answers.
    fn answers(&self, kind: &EventKind) -> bool {
        match self {
            Source::Appended(_) => matches!(kind, EventKind::LowFreeSpace { .. }),
            Source::Module(m) => m.answers(kind),
        }
    }

    /// Whether `kind` asks more of storage this run cannot stretch.
    fn given_before(&self, kind: &EventKind) -> bool {
        matches!(self, Source::Module(m) if m.given_before(kind))
    }

    /// Gives snapshot `id` up to `want` more sectors, `so_far` having been
    /// given before; `None` when the source is used up.
    fn give(&mut self, ctl: &Control, id: &Uuid, want: u64, so_far: u64) -> Result<Option<Answer>> {
        match self {
            Source::Appended(a) => a.give(ctl, id, want),
            Source::Module(m) => m.give(ctl, id, want, so_far),
        }
    }

    /// The key naming an answer's place in the output.
    fn place_key(&self) -> &'static str {
        match self {
            Source::Appended(_) => "device",
            Source::Module(_) => "storage",
        }
    }

    /// Files the kernel may still write to while the snapshot lives.
    fn files(&self) -> &[PathBuf] {
        match self {
            Source::Appended(a) => a.files(),
            Source::Module(_) => &[],
        }
    }
}

/// Ends the run on a destroyed snapshot: its storage is released, so the
/// files made for it can go.
fn end_destroyed(source: &Source, given: u64, out: &Printer) {
    for f in source.files() {
        let _ = std::fs::remove_file(f);
    }
    out.line(
        &Record::new()
            .str("result", "destroyed")
            .num("appended_sectors", given),
    );
}

pub fn run(args: &StretchArgs, out: &Printer) -> Result<()> {
    let id: Uuid = args.id.id;
    let ctl = Control::open(CMD)?;
    let limit = args
        .limit
        .map_or(u64::MAX, |mib| mib.saturating_mul((1 << 20) / SECTOR_SIZE));
    let mut source = match (&args.path, &args.device, &args.setstorage) {
        (Some(dir), _, _) => Source::Appended(Appended::files_in(dir)),
        (None, Some(device), _) => Source::Appended(Appended::pool(device, &args.ranges)),
        (None, None, Some(path)) => Source::Module(ModuleStorage::new(path)?),
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
            Err(e) if e.errno() == Some(Errno::ESRCH) => {
                end_destroyed(&source, given, out);
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
                    match source.give(&ctl, &id, want, given) {
                        // Destroyed since the event.
                        Err(e) if e.errno() == Some(Errno::ESRCH) => {
                            out.line(&r);
                            end_destroyed(&source, given, out);
                            return Ok(());
                        }
                        answer => answer?,
                    }
                };
                let Some(answer) = answer else {
                    out.line(&r.num("appended_sectors", 0u64).str("note", "limit reached"));
                    continue;
                };
                given += answer.sectors;
                out.line(
                    &r.str(source.place_key(), answer.place.display())
                        .num("appended_sectors", answer.sectors)
                        .num("total_sectors", given),
                );
            }
            // Storage given before this run: its limit is not known here.
            EventKind::NoSpace { .. } if source.given_before(&event.kind) => {
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
            // Requests this run does not answer (with appended storage, a
            // no-space event of storage set by hand; with storage the
            // module opens, a low-space event once it is given), and
            // events this tool does not know.
            _ => out.line(&r),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn appended_storage_answers_low_space_events_only() {
        let pool = Source::Appended(Appended::pool(Path::new("/dev/sdc"), &[]));
        let low = EventKind::LowFreeSpace {
            requested_sectors: 8,
        };
        let no = EventKind::NoSpace {
            requested_sectors: 8,
        };
        assert!(pool.answers(&low) && !pool.answers(&no));
        assert!(!pool.given_before(&no));
    }
}
