// SPDX-License-Identifier: GPL-2.0
//! Snapshot-wide commands, ioctls on /dev/blksnap-control: version,
//! create, append or set storage, take, wait for events, list and destroy.

use crate::error::{Error, Result};
use crate::sys::ioctl;
use crate::uapi::{self, blksnap_sectors};
use crate::uuid::Uuid;
use nix::errno::Errno;
use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

pub const CONTROL_PATH: &str = "/dev/blksnap-control";

/// The open control device.
pub struct Control {
    file: File,
    /// The command of the user's that opened it, which errors name.
    command: String,
}

/// `struct blksnap_version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version {
    pub major: u16,
    pub minor: u16,
    pub revision: u16,
    pub build: u16,
}

/// What an event reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// The difference storage runs low; this many more sectors are wanted.
    LowFreeSpace { requested_sectors: u64 },
    /// Storage the module opened is running out within its limit; this many
    /// more sectors are wanted.
    NoSpace { requested_sectors: u64 },
    /// The snapshot of device `major:minor` broke with errno `errno`.
    Corrupted { major: u32, minor: u32, errno: i32 },
    /// A code this tool does not know (a newer module).
    Unknown { code: u32 },
}

/// One event of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Nanoseconds of CLOCK_MONOTONIC when the event was queued.
    pub time_label: i64,
    pub kind: EventKind,
}

/// How a wait for an event ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wait {
    Event(Event),
    /// The timeout passed (ENOENT).
    Timeout,
    /// A signal interrupted the wait (EINTR).
    Interrupted,
}

fn read_at<T: Copy + Default>(data: &[u8]) -> T {
    let mut out = T::default();
    let n = core::mem::size_of::<T>().min(data.len());
    // SAFETY: `out` is plain data of at least `n` bytes; `data` has `n`.
    unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), &mut out as *mut T as *mut u8, n) };
    out
}

impl Event {
    /// Decodes the event part of a `struct blksnap_snapshot_event`.
    pub fn from_raw(raw: &uapi::blksnap_snapshot_event) -> Self {
        let kind = match raw.code {
            uapi::BLKSNAP_EVENT_CODE_LOW_FREE_SPACE => {
                let d: uapi::blksnap_event_low_free_space = read_at(&raw.data);
                EventKind::LowFreeSpace {
                    requested_sectors: d.requested_nr_sect,
                }
            }
            uapi::BLKSNAP_EVENT_CODE_NO_SPACE => {
                let d: uapi::blksnap_event_no_space = read_at(&raw.data);
                EventKind::NoSpace {
                    requested_sectors: d.requested_nr_sect,
                }
            }
            uapi::BLKSNAP_EVENT_CODE_CORRUPTED => {
                let d: uapi::blksnap_event_corrupted = read_at(&raw.data);
                EventKind::Corrupted {
                    major: d.dev_id_mj,
                    minor: d.dev_id_mn,
                    errno: d.err_code,
                }
            }
            code => EventKind::Unknown { code },
        };
        Event {
            time_label: raw.time_label,
            kind,
        }
    }
}

impl Control {
    pub fn open(command: &str) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(nix::libc::O_CLOEXEC)
            .open(CONTROL_PATH)
            .map_err(|e| Error::io(command, CONTROL_PATH, &e))?;
        Ok(Control {
            file,
            command: command.into(),
        })
    }

    fn fail(&self, id: Option<&Uuid>, errno: Errno) -> Error {
        match id {
            Some(id) => Error::os(
                &self.command,
                format!("{CONTROL_PATH}: snapshot {id}"),
                errno,
            ),
            None => Error::os(&self.command, CONTROL_PATH, errno),
        }
    }

    pub fn version(&self) -> Result<Version> {
        let mut v = uapi::blksnap_version::default();
        // SAFETY: the request takes a blksnap_version.
        unsafe { ioctl(&self.file, uapi::IOCTL_BLKSNAP_VERSION, &mut v) }
            .map_err(|e| self.fail(None, e))?;
        Ok(Version {
            major: v.major,
            minor: v.minor,
            revision: v.revision,
            build: v.build,
        })
    }

    pub fn create(&self) -> Result<Uuid> {
        let mut id = uapi::blksnap_uuid::default();
        // SAFETY: the request takes a blksnap_uuid.
        unsafe { ioctl(&self.file, uapi::IOCTL_BLKSNAP_SNAPSHOT_CREATE, &mut id) }
            .map_err(|e| self.fail(None, e))?;
        Ok(Uuid::from_raw(&id))
    }

    fn by_id(&self, request: u32, id: &Uuid) -> Result<()> {
        let mut raw = id.to_raw();
        // SAFETY: destroy and take take a blksnap_uuid.
        unsafe { ioctl(&self.file, request, &mut raw) }
            .map(drop)
            .map_err(|e| self.fail(Some(id), e))
    }

    pub fn destroy(&self, id: &Uuid) -> Result<()> {
        self.by_id(uapi::IOCTL_BLKSNAP_SNAPSHOT_DESTROY, id)
    }

    pub fn take(&self, id: &Uuid) -> Result<()> {
        self.by_id(uapi::IOCTL_BLKSNAP_SNAPSHOT_TAKE, id)
    }

    /// Gives snapshot `id` the sector `ranges` of block device `bdev` as
    /// difference storage.
    pub fn append_storage(&self, id: &Uuid, bdev: &Path, ranges: &[blksnap_sectors]) -> Result<()> {
        let cmd = &self.command;
        let what = || format!("{CONTROL_PATH}: snapshot {id}: {}", bdev.display());
        let path = CString::new(bdev.as_os_str().as_bytes())
            .map_err(|_| Error::invalid(cmd, what(), "a NUL in the device path"))?;
        let path = path.as_bytes_with_nul();
        let mut arg = uapi::blksnap_snapshot_append_storage {
            id: id.to_raw(),
            bdev_path: uapi::aligned_u64(path.as_ptr() as u64),
            bdev_path_size: u32::try_from(path.len())
                .map_err(|_| Error::invalid(cmd, what(), "device path too long"))?,
            count: u32::try_from(ranges.len())
                .map_err(|_| Error::invalid(cmd, what(), "too many ranges"))?,
            ranges: uapi::aligned_u64(ranges.as_ptr() as u64),
        };
        // SAFETY: the path and the ranges are described by address and size.
        unsafe {
            ioctl(
                &self.file,
                uapi::IOCTL_BLKSNAP_SNAPSHOT_APPEND_STORAGE,
                &mut arg,
            )
        }
        .map(drop)
        .map_err(|e| Error::os(cmd, what(), e))
    }

    /// Gives snapshot `id` storage the module opens itself (a whole block
    /// device, held exclusively; an unnamed file in a directory; a regular
    /// file) with at most `limit` sectors used (0: all of a device; a file
    /// needs a limit); with `path` `None`, sets a new limit for the storage
    /// given before.
    pub fn set_storage(&self, id: &Uuid, path: Option<&Path>, limit: u64) -> Result<()> {
        let cmd = &self.command;
        let shown = path.map_or_else(|| "limit".into(), |p| p.display().to_string());
        let what = || format!("{CONTROL_PATH}: snapshot {id}: {shown}");
        let path = path
            .map(|p| CString::new(p.as_os_str().as_bytes()))
            .transpose()
            .map_err(|_| Error::invalid(cmd, what(), "a NUL in the path"))?;
        let bytes = path.as_ref().map_or(&[][..], |p| p.as_bytes_with_nul());
        let mut arg = uapi::blksnap_snapshot_storage {
            id: id.to_raw(),
            path: uapi::aligned_u64(if bytes.is_empty() {
                0
            } else {
                bytes.as_ptr() as u64
            }),
            path_size: u32::try_from(bytes.len())
                .map_err(|_| Error::invalid(cmd, what(), "path too long"))?,
            flags: 0,
            limit_sect: uapi::aligned_u64(limit),
        };
        // SAFETY: the path is described by address and size, and lives
        // until the call returns.
        unsafe {
            ioctl(
                &self.file,
                uapi::IOCTL_BLKSNAP_SNAPSHOT_SET_STORAGE,
                &mut arg,
            )
        }
        .map(drop)
        .map_err(|e| Error::os(cmd, what(), e))
    }

    /// Identifiers of all snapshots.  Asks for the count, then for the ids;
    /// a snapshot created between the two (ENODATA) means asking again.
    pub fn collect(&self) -> Result<Vec<Uuid>> {
        loop {
            let mut arg = uapi::blksnap_snapshot_collect::default();
            // SAFETY: with ids 0 the kernel only writes the count.
            unsafe { ioctl(&self.file, uapi::IOCTL_BLKSNAP_SNAPSHOT_COLLECT, &mut arg) }
                .map_err(|e| self.fail(None, e))?;
            if arg.count == 0 {
                return Ok(Vec::new());
            }
            let mut ids = vec![uapi::blksnap_uuid::default(); arg.count as usize];
            arg.ids = uapi::aligned_u64(ids.as_mut_ptr() as u64);
            // SAFETY: `ids` holds `count` elements.
            match unsafe { ioctl(&self.file, uapi::IOCTL_BLKSNAP_SNAPSHOT_COLLECT, &mut arg) } {
                Ok(_) => {
                    ids.truncate(arg.count as usize);
                    return Ok(ids.iter().map(Uuid::from_raw).collect());
                }
                Err(Errno::ENODATA) => continue,
                Err(e) => return Err(self.fail(None, e)),
            }
        }
    }

    /// Waits up to `timeout_ms` for the next event of snapshot `id`.
    pub fn wait_event(&self, id: &Uuid, timeout_ms: u32) -> Result<Wait> {
        let mut raw = Box::new(uapi::blksnap_snapshot_event {
            id: id.to_raw(),
            timeout_ms,
            code: 0,
            time_label: 0,
            data: [0; uapi::EVENT_DATA_SIZE],
        });
        // SAFETY: the request takes a blksnap_snapshot_event.
        match unsafe {
            ioctl(
                &self.file,
                uapi::IOCTL_BLKSNAP_SNAPSHOT_WAIT_EVENT,
                &mut *raw,
            )
        } {
            Ok(_) => Ok(Wait::Event(Event::from_raw(&raw))),
            Err(Errno::ENOENT) => Ok(Wait::Timeout),
            Err(Errno::EINTR) => Ok(Wait::Interrupted),
            Err(e) => Err(self.fail(Some(id), e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw_event(code: u32, data: &[u8]) -> uapi::blksnap_snapshot_event {
        let mut raw = uapi::blksnap_snapshot_event {
            id: Default::default(),
            timeout_ms: 0,
            code,
            time_label: 42,
            data: [0; uapi::EVENT_DATA_SIZE],
        };
        raw.data[..data.len()].copy_from_slice(data);
        raw
    }

    #[test]
    fn decodes_events() {
        let low = raw_event(0, &4096u64.to_ne_bytes());
        assert_eq!(
            Event::from_raw(&low),
            Event {
                time_label: 42,
                kind: EventKind::LowFreeSpace {
                    requested_sectors: 4096
                }
            }
        );
        let mut d = Vec::new();
        for v in [252u32, 3, 28] {
            d.extend_from_slice(&v.to_ne_bytes());
        }
        assert_eq!(
            Event::from_raw(&raw_event(1, &d)).kind,
            EventKind::Corrupted {
                major: 252,
                minor: 3,
                errno: 28
            }
        );
        assert_eq!(
            Event::from_raw(&raw_event(9, &[])).kind,
            EventKind::Unknown { code: 9 }
        );
    }
}
