// SPDX-License-Identifier: GPL-2.0
//! Commands on one block device, through its filter: attach and detach the
//! blksnap filter, read and mark its change tracker, add it to a snapshot,
//! read the state of its snapshot (BLKFILTER_* ioctls, linux/blk-filter.h).

use crate::error::{Error, Result};
use crate::sys::ioctl;
use crate::uapi::{self, blkfilter_ctl, blkfilter_name, blksnap_sectors};
use crate::uuid::Uuid;
use nix::errno::Errno;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// A block device open for filter commands.
pub struct Device {
    file: File,
    path: PathBuf,
    /// The command of the user's that opened it: errors name it, not the
    /// ioctl it failed in (`cbt changed` fails in `cbtinfo`, say).
    command: String,
}

/// The change tracker of a device (`struct blksnap_cbtinfo`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CbtInfo {
    /// Bytes.
    pub device_capacity: u64,
    /// Bytes per tracking block.
    pub block_size: u32,
    pub block_count: u32,
    pub generation_id: Uuid,
    pub changes_number: u8,
}

/// The state of the device's snapshot (`struct blksnap_snapshotinfo`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// 0, or the negative errno that broke the snapshot.
    pub error_code: i32,
    /// "blksnap-image_MAJ:MIN" once taken, empty before.
    pub image: String,
}

impl Device {
    /// Opens `path` read-only: filter commands need no write access, and a
    /// kernel that refuses writers to mounted devices would refuse one.
    pub fn open(command: &str, path: &Path) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| Error::io(command, path.display(), &e))?;
        Ok(Device {
            file,
            path: path.to_path_buf(),
            command: command.into(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn fail(&self, errno: Errno) -> Error {
        let e = Error::os(&self.command, self.path.display(), errno);
        // BLKFILTER_CTL and BLKFILTER_DETACH say ENOENT when the device has
        // no filter of that name, which reads like a missing file.
        match errno {
            Errno::ENOENT => e.with_hint("is the blksnap filter attached?"),
            _ => e,
        }
    }

    fn filter_op(&self, request: u32) -> std::result::Result<(), Errno> {
        let mut arg = blkfilter_name {
            name: uapi::filter_name(),
        };
        // SAFETY: `arg` is a blkfilter_name, what the request encodes.
        unsafe { ioctl(&self.file, request, &mut arg) }.map(drop)
    }

    /// Attaches the blksnap filter, which starts change tracking.  Already
    /// attached counts as done (the kernel says EALREADY), so that scripts
    /// can attach before every snapshot.
    pub fn attach(&self) -> Result<()> {
        match self.filter_op(uapi::BLKFILTER_ATTACH) {
            Ok(()) | Err(Errno::EALREADY) => Ok(()),
            Err(e) => Err(self.fail(e)),
        }
    }

    pub fn detach(&self) -> Result<()> {
        self.filter_op(uapi::BLKFILTER_DETACH)
            .map_err(|e| self.fail(e))
    }

    /// A blksnap command through BLKFILTER_CTL; returns the filter's answer.
    ///
    /// # Safety
    /// `opt` must be the structure `cmd` takes, and the user addresses in it
    /// valid for the lengths beside them.
    unsafe fn ctl<T>(&self, cmd: u32, opt: &mut T) -> std::result::Result<i32, Errno> {
        let mut arg = blkfilter_ctl {
            name: uapi::filter_name(),
            cmd,
            optlen: core::mem::size_of::<T>() as u32,
            opt: opt as *mut T as u64,
        };
        // SAFETY: `arg` is a blkfilter_ctl; `opt` is the caller's promise.
        unsafe { ioctl(&self.file, uapi::BLKFILTER_CTL, &mut arg) }
    }

    pub fn cbtinfo(&self) -> Result<CbtInfo> {
        let mut raw = uapi::blksnap_cbtinfo::default();
        // SAFETY: cbtinfo takes a blksnap_cbtinfo, with no addresses in it.
        unsafe { self.ctl(uapi::BLKFILTER_CTL_BLKSNAP_CBTINFO, &mut raw) }
            .map_err(|e| self.fail(e))?;
        Ok(CbtInfo {
            device_capacity: raw.device_capacity.0,
            block_size: raw.block_size,
            block_count: raw.block_count,
            generation_id: Uuid::from_raw(&raw.generation_id),
            changes_number: raw.changes_number,
        })
    }

    /// Copies map bytes from index `offset` into `buf`; returns how many.
    fn read_cbtmap_at(&self, offset: u32, buf: &mut [u8]) -> std::result::Result<usize, Errno> {
        let mut arg = uapi::blksnap_cbtmap {
            offset,
            length: u32::try_from(buf.len()).unwrap_or(u32::MAX),
            buffer: uapi::aligned_u64(buf.as_mut_ptr() as u64),
        };
        // SAFETY: the buffer address and length describe `buf`.
        let n = unsafe { self.ctl(uapi::BLKFILTER_CTL_BLKSNAP_CBTMAP, &mut arg) }?;
        Ok(n as usize)
    }

    /// The whole change map of the last snapshot, with the tracker facts it
    /// belongs to.  A snapshot taken while reading replaces the map (the
    /// kernel says EAGAIN, or the facts differ after): then it starts over.
    pub fn read_cbtmap(&self) -> Result<(CbtInfo, Vec<u8>)> {
        const PIECE: usize = 1 << 20;
        'again: loop {
            let info = self.cbtinfo()?;
            let mut map = vec![0u8; info.block_count as usize];
            let mut done = 0;
            while done < map.len() {
                let end = (done + PIECE).min(map.len());
                match self.read_cbtmap_at(done as u32, &mut map[done..end]) {
                    Ok(0) => {
                        return Err(Error::invalid(
                            &self.command,
                            self.path.display(),
                            "the map ended early",
                        ))
                    }
                    Ok(n) => done += n,
                    Err(Errno::EAGAIN) => continue 'again,
                    Err(e) => return Err(self.fail(e)),
                }
            }
            if self.cbtinfo()? == info {
                return Ok((info, map));
            }
        }
    }

    /// Marks `ranges` (sectors) as changed in the tracker.
    pub fn mark_dirty(&self, ranges: &[blksnap_sectors]) -> Result<()> {
        let mut arg = uapi::blksnap_cbtdirty {
            count: u32::try_from(ranges.len()).map_err(|_| {
                Error::invalid(&self.command, self.path.display(), "too many ranges")
            })?,
            dirty_sectors: uapi::aligned_u64(ranges.as_ptr() as u64),
        };
        // SAFETY: the array address and count describe `ranges`.
        unsafe { self.ctl(uapi::BLKFILTER_CTL_BLKSNAP_CBTDIRTY, &mut arg) }
            .map(drop)
            .map_err(|e| self.fail(e))
    }

    /// Adds the device to snapshot `id`.  A device without the filter gets
    /// it attached first (ENOENT: no filter of that name on the device).
    pub fn snapshot_add(&self, id: &Uuid) -> Result<()> {
        let mut arg = uapi::blksnap_snapshotadd { id: id.to_raw() };
        // SAFETY: snapshotadd takes a blksnap_snapshotadd, no addresses.
        let mut ret = unsafe { self.ctl(uapi::BLKFILTER_CTL_BLKSNAP_SNAPSHOTADD, &mut arg) };
        if ret == Err(Errno::ENOENT) {
            self.attach()?;
            // SAFETY: as above.
            ret = unsafe { self.ctl(uapi::BLKFILTER_CTL_BLKSNAP_SNAPSHOTADD, &mut arg) };
        }
        ret.map(drop).map_err(|e| self.fail(e))
    }

    pub fn snapshot_info(&self) -> Result<SnapshotInfo> {
        let mut raw = uapi::blksnap_snapshotinfo::default();
        // SAFETY: snapshotinfo takes a blksnap_snapshotinfo, no addresses.
        unsafe { self.ctl(uapi::BLKFILTER_CTL_BLKSNAP_SNAPSHOTINFO, &mut raw) }
            .map_err(|e| self.fail(e))?;
        let len = raw
            .image
            .iter()
            .position(|&c| c == 0)
            .unwrap_or(raw.image.len());
        Ok(SnapshotInfo {
            error_code: raw.error_code,
            image: String::from_utf8_lossy(&raw.image[..len]).into_owned(),
        })
    }
}
