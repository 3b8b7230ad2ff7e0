// SPDX-License-Identifier: GPL-2.0

//! The `BLKFILTER_CTL` commands blksnap answers on a tracked device.

use crate::{
    abi::{self, CbtDirty, CbtInfo, CbtMap, Sectors, SnapshotAdd, SnapshotInfo},
    image, snapshot,
    tracker::Tracker,
};
use core::mem::size_of;
use kernel::{
    prelude::*,
    sync::Arc,
    transmute::{AsBytes, FromBytes},
    uaccess::{UserPtr, UserSlice},
    uapi,
};

/// How many bytes of the change map are copied to user space at a time.
const MAP_PIECE: usize = 4096;

/// How many sector ranges of a `cbtdirty` command are read at a time.
const DIRTY_BATCH: usize = 64;

/// Checks that the caller's buffer holds a `T`: `EINVAL` if it is shorter.
/// A longer one is fine; the rest is not touched.
fn fits<T>(len: u32) -> Result {
    if (len as usize) < size_of::<T>() {
        return Err(EINVAL);
    }
    Ok(())
}

/// Reads a command's argument.
fn read_arg<T: FromBytes>(buf: UserPtr, len: u32) -> Result<T> {
    fits::<T>(len)?;
    abi::read(buf)
}

/// Executes command `cmd` for `tracker`.
pub(crate) fn execute(tracker: &Arc<Tracker>, cmd: u32, buf: UserPtr, len: u32) -> Result<i32> {
    match cmd {
        uapi::blkfilter_ctl_blksnap_blkfilter_ctl_blksnap_cbtinfo => cbtinfo(tracker, buf, len),
        uapi::blkfilter_ctl_blksnap_blkfilter_ctl_blksnap_cbtmap => cbtmap(tracker, buf, len),
        uapi::blkfilter_ctl_blksnap_blkfilter_ctl_blksnap_cbtdirty => cbtdirty(tracker, buf, len),
        uapi::blkfilter_ctl_blksnap_blkfilter_ctl_blksnap_snapshotadd => {
            let SnapshotAdd(uapi::blksnap_snapshotadd { id }) = read_arg(buf, len)?;
            snapshot::add_device(abi::uuid(id), tracker.clone())?;
            Ok(0)
        }
        uapi::blkfilter_ctl_blksnap_blkfilter_ctl_blksnap_snapshotinfo => {
            snapshotinfo(tracker, buf, len)
        }
        _ => Err(ENOTTY),
    }
}

/// Describes the change tracker of the device.
fn cbtinfo(tracker: &Tracker, buf: UserPtr, len: u32) -> Result<i32> {
    fits::<CbtInfo>(len)?;
    let geometry = tracker.geometry();
    let (version, _) = tracker.read_map();
    let info = CbtInfo::new(uapi::blksnap_cbtinfo {
        device_capacity: geometry.capacity << kernel::block::SECTOR_SHIFT,
        block_size: 1 << geometry.block_shift,
        block_count: geometry.block_count,
        generation_id: abi::blksnap_uuid(version.generation),
        changes_number: version.number,
    });
    abi::write(buf, info.bytes())?;
    Ok(0)
}

/// Copies part of the map of the last snapshot; returns the bytes copied.
fn cbtmap(tracker: &Tracker, buf: UserPtr, len: u32) -> Result<i32> {
    let CbtMap(arg) = read_arg(buf, len)?;
    let (offset, length, dest) = (
        arg.offset as usize,
        arg.length as usize,
        arg.buffer as usize,
    );

    let (version, size) = tracker.read_map();
    if offset >= size {
        return Err(EINVAL);
    }
    // The result must fit the return value.
    let count = length.min(size - offset).min(i32::MAX as usize);
    // Copied through a bounce buffer: faulting on user memory with the map
    // locked would order mmap_lock after a lock that taking a snapshot holds
    // with the device's queue frozen.
    let mut bounce = KVec::from_elem(0u8, count.min(MAP_PIECE), GFP_KERNEL)?;
    let mut done = 0;
    while done < count {
        let n = (count - done).min(MAP_PIECE);
        // A snapshot taken meanwhile replaced the map: EAGAIN.
        tracker.copy_read_map(version, offset + done, &mut bounce[..n])?;
        let at = dest.checked_add(done).ok_or(EFAULT)?;
        UserSlice::new(UserPtr::from_addr(at), n)
            .writer()
            .write_slice(&bounce[..n])?;
        done += n;
    }
    Ok(count as i32)
}

/// Marks ranges as changed in both maps.  Every range is checked before
/// any is applied, so a bad range changes nothing.
fn cbtdirty(tracker: &Tracker, buf: UserPtr, len: u32) -> Result<i32> {
    let CbtDirty(arg) = read_arg(buf, len)?;
    let (count, ranges) = (arg.count as usize, arg.dirty_sectors as usize);
    let geometry = tracker.geometry();

    for apply in [false, true] {
        let mut done = 0;
        while done < count {
            let n = (count - done).min(DIRTY_BATCH);
            let mut batch = [Sectors::zeroed(); DIRTY_BATCH];
            let at = ranges
                .checked_add(done * size_of::<Sectors>())
                .ok_or(EFAULT)?;
            UserSlice::new(UserPtr::from_addr(at), n * size_of::<Sectors>())
                .reader()
                .read_slice(batch[..n].as_bytes_mut())?;
            for Sectors(r) in &batch[..n] {
                let (sector, sectors) = (r.offset, r.count);
                if apply {
                    // The maps may have been replaced since the check.
                    tracker.mark_dirty(sector, sectors)?;
                } else {
                    geometry.blocks(sector, sectors)?;
                }
            }
            done += n;
        }
    }
    Ok(0)
}

/// A device in no snapshot, or in one not taken yet, reads as all zeroes: no
/// error and no image, as in v3.
fn snapshotinfo(tracker: &Tracker, buf: UserPtr, len: u32) -> Result<i32> {
    fits::<SnapshotInfo>(len)?;
    let mut info = SnapshotInfo::zeroed();
    if let Some(area) = tracker.diff_area() {
        info.0.error_code = area.error();
        let (major, minor) = tracker.numbers();
        image::name(major, minor, &mut info.0.image);
    }
    abi::write(buf, &info)?;
    Ok(0)
}
