// SPDX-License-Identifier: GPL-2.0
//! Sector ranges of a file on its block device, from FS_IOC_FIEMAP: how a
//! file becomes difference storage.  blksnap then writes those sectors
//! directly, below the file system, for as long as the snapshot lives; so
//! every extent must be plain data at a fixed place that nothing else
//! reads or writes.  Extents with a flag that breaks this are refused.

use crate::error::{Error, Result};
use crate::sys::ioctl;
use crate::uapi::{self, blksnap_sectors, fiemap, fiemap_extent};
use crate::SECTOR_SIZE;
use std::fs::File;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Extent flags that make an extent unusable as storage, and why.
pub const UNSAFE_FLAGS: &[(u32, &str, &str)] = &[
    (
        uapi::FIEMAP_EXTENT_UNKNOWN,
        "UNKNOWN",
        "its location is not known",
    ),
    (
        uapi::FIEMAP_EXTENT_DELALLOC,
        "DELALLOC",
        "it has no blocks yet (delayed allocation); the file system will place it later",
    ),
    (
        uapi::FIEMAP_EXTENT_ENCODED,
        "ENCODED",
        "its data is stored encoded (compressed); the sectors are not the file's bytes",
    ),
    (
        uapi::FIEMAP_EXTENT_DATA_ENCRYPTED,
        "DATA_ENCRYPTED",
        "its data is encrypted by the file system, which may move or re-encrypt it",
    ),
    (
        uapi::FIEMAP_EXTENT_NOT_ALIGNED,
        "NOT_ALIGNED",
        "its data is not block aligned, so it shares blocks with other data",
    ),
    (
        uapi::FIEMAP_EXTENT_DATA_INLINE,
        "DATA_INLINE",
        "its data sits inside file system metadata, which writing there would corrupt",
    ),
    (
        uapi::FIEMAP_EXTENT_DATA_TAIL,
        "DATA_TAIL",
        "its data is packed into a block with other files' tails",
    ),
    (
        uapi::FIEMAP_EXTENT_UNWRITTEN,
        "UNWRITTEN",
        "it is allocated but unwritten (fallocate); the file system may zero it out \
         when it converts the extent, over the snapshot's data: write the file first",
    ),
    (
        uapi::FIEMAP_EXTENT_SHARED,
        "SHARED",
        "its blocks are shared with another file or snapshot (reflink), whose data \
         writing there would change",
    ),
];

/// Checks one extent's flags; the error names the first unsafe flag.
pub fn check_flags(flags: u32) -> std::result::Result<(), String> {
    match UNSAFE_FLAGS.iter().find(|(bit, _, _)| flags & bit != 0) {
        Some((_, name, why)) => Err(format!("extent flag FIEMAP_EXTENT_{name}: {why}")),
        None => Ok(()),
    }
}

/// The sectors of one extent, refused if unsafe or not whole sectors.
pub fn extent_sectors(e: &fiemap_extent) -> std::result::Result<blksnap_sectors, String> {
    check_flags(e.fe_flags)?;
    if e.fe_physical % SECTOR_SIZE != 0 || e.fe_length % SECTOR_SIZE != 0 {
        return Err(format!(
            "extent at byte {} of {} bytes is not whole sectors",
            e.fe_physical, e.fe_length
        ));
    }
    if e.fe_length == 0 {
        return Err("empty extent".into());
    }
    Ok(blksnap_sectors {
        offset: e.fe_physical / SECTOR_SIZE,
        count: e.fe_length / SECTOR_SIZE,
    })
}

/// A file's place on its device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileExtents {
    /// The block device holding the file (the partition, if on one).
    pub device: PathBuf,
    pub ranges: Vec<blksnap_sectors>,
}

/// The device node of `major:minor`: the name sysfs gives it under /dev,
/// which exists with devtmpfs; /dev/block/MAJ:MIN (udev) otherwise.
pub fn device_path(major: u32, minor: u32) -> PathBuf {
    let uevent = format!("/sys/dev/block/{major}:{minor}/uevent");
    if let Ok(text) = std::fs::read_to_string(uevent) {
        if let Some(name) = text.lines().find_map(|l| l.strip_prefix("DEVNAME=")) {
            return Path::new("/dev").join(name);
        }
    }
    PathBuf::from(format!("/dev/block/{major}:{minor}"))
}

/// Extents asked for per FIEMAP call.
const EXTENTS_PER_CALL: usize = 256;

#[repr(C)]
struct FiemapBuffer {
    head: fiemap,
    extents: [fiemap_extent; EXTENTS_PER_CALL],
}

/// The sector ranges of regular file `path` on its block device, after
/// flushing it (FIEMAP_FLAG_SYNC) so that no extent is left delayed.
/// Holes are left out; `command` names the failure.
pub fn file_extents(command: &str, path: &Path) -> Result<FileExtents> {
    let what = path.display();
    let file = File::open(path).map_err(|e| Error::io(command, &what, &e))?;
    let meta = file.metadata().map_err(|e| Error::io(command, &what, &e))?;
    if !meta.file_type().is_file() {
        let kind = if meta.file_type().is_block_device() {
            "a block device"
        } else {
            "not"
        };
        return Err(Error::invalid(
            command,
            &what,
            format!("{kind} a regular file (use --device and --range for a device)"),
        ));
    }
    let dev = meta.dev();
    let device = device_path(
        nix::sys::stat::major(dev) as u32,
        nix::sys::stat::minor(dev) as u32,
    );
    let size = meta.len();
    let mut ranges: Vec<blksnap_sectors> = Vec::new();
    let mut buf = Box::new(FiemapBuffer {
        head: fiemap::default(),
        extents: [fiemap_extent::default(); EXTENTS_PER_CALL],
    });
    let mut start = 0u64;
    while start < size {
        buf.head = fiemap {
            fm_start: start,
            fm_length: size - start,
            fm_flags: uapi::FIEMAP_FLAG_SYNC,
            fm_extent_count: EXTENTS_PER_CALL as u32,
            ..Default::default()
        };
        // SAFETY: the buffer holds the head and fm_extent_count extents.
        unsafe { ioctl(&file, uapi::FS_IOC_FIEMAP, &mut *buf) }
            .map_err(|e| Error::os(command, &what, e))?;
        let n = buf.head.fm_mapped_extents as usize;
        if n == 0 {
            break;
        }
        for e in &buf.extents[..n.min(EXTENTS_PER_CALL)] {
            let r = extent_sectors(e).map_err(|why| {
                Error::invalid(command, &what, format!("{why}; not usable as storage"))
            })?;
            push_merged(&mut ranges, r);
            start = e.fe_logical + e.fe_length;
        }
        if buf.extents[n - 1].fe_flags & uapi::FIEMAP_EXTENT_LAST != 0 {
            break;
        }
    }
    if ranges.is_empty() {
        return Err(Error::invalid(
            command,
            &what,
            "the file has no data blocks",
        ));
    }
    Ok(FileExtents { device, ranges })
}

/// Appends `r`, joined to the last range when physically contiguous.
fn push_merged(ranges: &mut Vec<blksnap_sectors>, r: blksnap_sectors) {
    match ranges.last_mut() {
        Some(last) if last.offset + last.count == r.offset => last.count += r.count,
        _ => ranges.push(r),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn extent(physical: u64, length: u64, flags: u32) -> fiemap_extent {
        fiemap_extent {
            fe_physical: physical,
            fe_length: length,
            fe_flags: flags,
            ..Default::default()
        }
    }

    #[test]
    fn refuses_every_unsafe_flag() {
        for (bit, name, _) in UNSAFE_FLAGS {
            let err = extent_sectors(&extent(4096, 4096, *bit)).unwrap_err();
            assert!(err.contains(name), "{name}: {err}");
            // Also when it comes with harmless flags.
            let with = bit | uapi::FIEMAP_EXTENT_LAST | uapi::FIEMAP_EXTENT_MERGED;
            assert!(extent_sectors(&extent(4096, 4096, with)).is_err());
        }
        assert_eq!(UNSAFE_FLAGS.len(), 9);
    }

    #[test]
    fn accepts_plain_extents() {
        let flags = uapi::FIEMAP_EXTENT_LAST | uapi::FIEMAP_EXTENT_MERGED;
        assert_eq!(
            extent_sectors(&extent(1 << 20, 8192, flags)).unwrap(),
            blksnap_sectors {
                offset: 2048,
                count: 16
            }
        );
    }

    #[test]
    fn refuses_partial_sectors() {
        assert!(extent_sectors(&extent(100, 4096, 0)).is_err());
        assert!(extent_sectors(&extent(4096, 100, 0)).is_err());
        assert!(extent_sectors(&extent(4096, 0, 0)).is_err());
    }

    #[test]
    fn merges_contiguous_extents() {
        let mut v = Vec::new();
        push_merged(
            &mut v,
            blksnap_sectors {
                offset: 8,
                count: 8,
            },
        );
        push_merged(
            &mut v,
            blksnap_sectors {
                offset: 16,
                count: 8,
            },
        );
        push_merged(
            &mut v,
            blksnap_sectors {
                offset: 64,
                count: 8,
            },
        );
        assert_eq!(
            v,
            [
                blksnap_sectors {
                    offset: 8,
                    count: 16
                },
                blksnap_sectors {
                    offset: 64,
                    count: 8
                }
            ]
        );
    }
}
