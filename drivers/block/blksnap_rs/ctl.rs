// SPDX-License-Identifier: GPL-2.0

//! The `BLKFILTER_CTL` commands blksnap answers on a tracked device.

use crate::{image, snapshot, tracker::Tracker};
use kernel::{
    prelude::*,
    sync::Arc,
    uaccess::{UserPtr, UserSlice},
    uapi,
    uuid::{Uuid, UUID_SIZE},
};

/// How many bytes of the change map are copied to user space at a time.
const MAP_PIECE: usize = 4096;

/// How many sector ranges of a `cbtdirty` command are read at a time.
const DIRTY_BATCH: usize = 64;

/// Reads exactly `N` bytes of a command's argument.
fn read_arg<const N: usize>(buf: UserPtr, len: u32) -> Result<[u8; N]> {
    if (len as usize) < N {
        return Err(EINVAL);
    }
    let mut arg = [0u8; N];
    UserSlice::new(buf, N).reader().read_slice(&mut arg)?;
    Ok(arg)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[at..at + 8]);
    u64::from_ne_bytes(v)
}

/// Executes command `cmd` for `tracker`.
pub(crate) fn execute(tracker: &Arc<Tracker>, cmd: u32, buf: UserPtr, len: u32) -> Result<i32> {
    match cmd {
        uapi::blkfilter_ctl_blksnap_blkfilter_ctl_blksnap_cbtinfo => cbtinfo(tracker, buf, len),
        uapi::blkfilter_ctl_blksnap_blkfilter_ctl_blksnap_cbtmap => cbtmap(tracker, buf, len),
        uapi::blkfilter_ctl_blksnap_blkfilter_ctl_blksnap_cbtdirty => cbtdirty(tracker, buf, len),
        uapi::blkfilter_ctl_blksnap_blkfilter_ctl_blksnap_snapshotadd => {
            let id = Uuid::from_bytes(read_arg::<UUID_SIZE>(buf, len)?);
            snapshot::add_device(id, tracker.clone())?;
            Ok(0)
        }
        uapi::blkfilter_ctl_blksnap_blkfilter_ctl_blksnap_snapshotinfo => {
            snapshotinfo(tracker, buf, len)
        }
        _ => Err(ENOTTY),
    }
}

/// `struct blksnap_cbtinfo`: 8 + 4 + 4 + 16 + 1 bytes, padded to 40.
const CBTINFO_SIZE: usize = 40;

fn cbtinfo(tracker: &Tracker, buf: UserPtr, len: u32) -> Result<i32> {
    if (len as usize) < CBTINFO_SIZE {
        return Err(EINVAL);
    }
    let geometry = tracker.geometry();
    let (number, generation) = {
        let read = tracker.read.lock();
        (read.number, read.generation)
    };
    let mut out = [0u8; CBTINFO_SIZE];
    out[0..8].copy_from_slice(&(geometry.capacity << kernel::block::SECTOR_SHIFT).to_ne_bytes());
    out[8..12].copy_from_slice(&(1u32 << geometry.block_shift).to_ne_bytes());
    out[12..16].copy_from_slice(&geometry.block_count.to_ne_bytes());
    out[16..32].copy_from_slice(generation.as_bytes());
    out[32] = number;
    UserSlice::new(buf, CBTINFO_SIZE)
        .writer()
        .write_slice(&out)?;
    Ok(0)
}

/// Copies part of the map of the last snapshot; returns the bytes copied.
fn cbtmap(tracker: &Tracker, buf: UserPtr, len: u32) -> Result<i32> {
    let arg = read_arg::<16>(buf, len)?;
    let offset = u32_at(&arg, 0) as usize;
    let length = u32_at(&arg, 4) as usize;
    let dest = u64_at(&arg, 8) as usize;

    let (size, number, generation) = {
        let read = tracker.read.lock();
        (read.map.len(), read.number, read.generation)
    };
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
        {
            let read = tracker.read.lock();
            // A snapshot taken meanwhile replaced the map.
            if read.number != number || read.generation != generation {
                return Err(EAGAIN);
            }
            bounce[..n].copy_from_slice(&read.map[offset + done..offset + done + n]);
        }
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
    let arg = read_arg::<16>(buf, len)?;
    let count = u32_at(&arg, 0) as usize;
    let ranges = u64_at(&arg, 8) as usize;
    let geometry = tracker.geometry();

    for apply in [false, true] {
        let mut done = 0;
        while done < count {
            let n = (count - done).min(DIRTY_BATCH);
            let mut raw = [0u8; DIRTY_BATCH * 16];
            let at = ranges.checked_add(done * 16).ok_or(EFAULT)?;
            UserSlice::new(UserPtr::from_addr(at), n * 16)
                .reader()
                .read_slice(&mut raw[..n * 16])?;
            for r in raw[..n * 16].chunks_exact(16) {
                let (sector, sectors) = (u64_at(r, 0), u64_at(r, 8));
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

/// `struct blksnap_snapshotinfo`: a 4-byte error code and a 32-byte name.
const SNAPSHOTINFO_SIZE: usize = 36;

/// A device in no snapshot, or in one not taken yet, reads as all zeroes: no
/// error and no image, as in v3.
fn snapshotinfo(tracker: &Tracker, buf: UserPtr, len: u32) -> Result<i32> {
    if (len as usize) < SNAPSHOTINFO_SIZE {
        return Err(EINVAL);
    }
    let mut out = [0u8; SNAPSHOTINFO_SIZE];
    if let Some(area) = tracker.diff_area() {
        out[0..4].copy_from_slice(&area.error().to_ne_bytes());
        let mut name = [0u8; 32];
        let len = image::name(tracker.major, tracker.minor, &mut name);
        out[4..4 + len].copy_from_slice(&name[..len]);
    }
    UserSlice::new(buf, SNAPSHOTINFO_SIZE)
        .writer()
        .write_slice(&out)?;
    Ok(0)
}
