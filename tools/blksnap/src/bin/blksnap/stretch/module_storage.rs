// SPDX-License-Identifier: GPL-2.0
//! Storage the module opens and grows itself (`snapshot_setstorage`): this
//! run gives it at a new snapshot's first request, with a limit of what was
//! asked (as far as the run's limit and a device's size allow), and then
//! only raises the limit, at each no-space event.

use super::{Answer, CMD};
use blksnap::control::EventKind;
use blksnap::{Control, Error, Result, Uuid, SECTOR_SIZE};
use nix::errno::Errno;
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

/// Whether this run has given the storage to the snapshot yet.
#[derive(PartialEq, Eq)]
enum State {
    NotGiven,
    Given,
}

/// A device, directory or file for the module to open as a snapshot's
/// storage, and whether this run has given it.
pub(super) struct ModuleStorage {
    /// What `snapshot_setstorage` would be given.
    path: PathBuf,
    /// The size of a device in sectors: the module refuses a limit over it.
    capacity: Option<u64>,
    state: State,
}

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

impl ModuleStorage {
    /// Storage at `path`, not given yet; a device's size is read now.
    pub(super) fn new(path: &Path) -> Result<Self> {
        Ok(Self {
            path: path.to_path_buf(),
            capacity: device_capacity(path)?,
            state: State::NotGiven,
        })
    }

    /// Whether this run answers `kind`: a new snapshot asks with a
    /// low-space event, answered once by giving the storage, and then asks
    /// with no-space events only.
    pub(super) fn answers(&self, kind: &EventKind) -> bool {
        match kind {
            EventKind::LowFreeSpace { .. } => self.state == State::NotGiven,
            EventKind::NoSpace { .. } => self.state == State::Given,
            _ => false,
        }
    }

    /// Whether `kind` asks more of storage given before this run (by hand,
    /// or by a run that ended): its limit is not known here, so no answer
    /// can be right.
    pub(super) fn given_before(&self, kind: &EventKind) -> bool {
        matches!(kind, EventKind::NoSpace { .. }) && self.state == State::NotGiven
    }

    /// Gives snapshot `id` up to `want` more sectors, `so_far` having been
    /// given before; `None` when a device's size is reached.
    pub(super) fn give(
        &mut self,
        ctl: &Control,
        id: &Uuid,
        want: u64,
        so_far: u64,
    ) -> Result<Option<Answer>> {
        let want = self
            .capacity
            .map_or(want, |c| want.min(c.saturating_sub(so_far)));
        if want == 0 {
            return Ok(None);
        }
        // The limit is of all of it: what was given, and this.
        let new = (self.state == State::NotGiven).then_some(self.path.as_path());
        ctl.set_storage(id, new, so_far + want)
            .map_err(|e| match e.errno() {
                Some(Errno::EBUSY) if new.is_some() => e.with_hint(
                    "the snapshot has storage already or is taken, or the storage is in use",
                ),
                _ => e,
            })?;
        self.state = State::Given;
        Ok(Some(Answer {
            place: self.path.clone(),
            sectors: want,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_the_first_request_then_no_space_events() {
        let low = EventKind::LowFreeSpace {
            requested_sectors: 8,
        };
        let no = EventKind::NoSpace {
            requested_sectors: 8,
        };
        let mut module = ModuleStorage {
            path: "/var/tmp".into(),
            capacity: None,
            state: State::NotGiven,
        };
        assert!(module.answers(&low) && !module.answers(&no));
        assert!(module.given_before(&no) && !module.given_before(&low));
        module.state = State::Given;
        assert!(!module.answers(&low) && module.answers(&no));
        assert!(!module.given_before(&no));
    }
}
