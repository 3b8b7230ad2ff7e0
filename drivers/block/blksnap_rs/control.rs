// SPDX-License-Identifier: GPL-2.0

//! `/dev/blksnap-control`: the snapshot-wide commands.

use crate::{diff_storage::MAX_EXTENTS, event_queue, snapshot};
use kernel::{
    block::bdev::{Access, OpenedBlockDevice},
    capability::{capable, Capability},
    fs::File,
    ioctl::{_IOC_NR, _IOC_SIZE, _IOC_TYPE},
    miscdevice::{MiscDevice, MiscDeviceRegistration},
    prelude::*,
    sync::Arc,
    uaccess::{UserPtr, UserSlice},
    uapi,
    uuid::{Uuid, UUID_SIZE},
};

/// Version of the interface, as the reference design reports it.
const VERSION: [u16; 4] = [2, 0, 0, 0];

pub(crate) struct Control;

fn read_uuid(arg: usize) -> Result<Uuid> {
    let mut b = [0u8; UUID_SIZE];
    UserSlice::new(UserPtr::from_addr(arg), UUID_SIZE)
        .reader()
        .read_slice(&mut b)?;
    Ok(Uuid::from_bytes(b))
}

fn require_admin() -> Result {
    if capable(Capability::SYS_ADMIN) {
        Ok(())
    } else {
        Err(EPERM)
    }
}

fn version(arg: usize) -> Result<isize> {
    require_admin()?;
    let mut out = [0u8; 8];
    for (i, v) in VERSION.iter().enumerate() {
        out[i * 2..i * 2 + 2].copy_from_slice(&v.to_ne_bytes());
    }
    UserSlice::new(UserPtr::from_addr(arg), out.len())
        .writer()
        .write_slice(&out)?;
    Ok(0)
}

fn create(arg: usize) -> Result<isize> {
    require_admin()?;
    // Check the destination first, so that a bad pointer leaves no orphan.
    let mut probe = [0u8; UUID_SIZE];
    UserSlice::new(UserPtr::from_addr(arg), UUID_SIZE)
        .reader()
        .read_slice(&mut probe)?;
    let id = snapshot::create()?;
    if let Err(e) = UserSlice::new(UserPtr::from_addr(arg), UUID_SIZE)
        .writer()
        .write_slice(id.as_bytes())
    {
        let _ = snapshot::destroy(id);
        return Err(e);
    }
    Ok(0)
}

/// Size of `struct blksnap_snapshot_event`: one page.
const EVENT_SIZE: usize = 4096;

/// `struct blksnap_snapshot_event`: id and timeout in; code, time label and
/// data out.  As in v3 the whole structure is written back, zero-filled
/// past the event's data.
fn wait_event(arg: usize) -> Result<isize> {
    // Taking an event consumes it: only the agent may.
    require_admin()?;
    let mut head = [0u8; 20];
    UserSlice::new(UserPtr::from_addr(arg), head.len())
        .reader()
        .read_slice(&mut head)?;
    let mut id = [0u8; UUID_SIZE];
    id.copy_from_slice(&head[..UUID_SIZE]);
    let timeout_ms = u32_at(&head, 16);
    // Allocated before the wait: an event taken from the queue is never
    // lost to a failed allocation.
    let mut out = KVec::from_elem(0u8, EVENT_SIZE, GFP_KERNEL)?;
    let event = snapshot::wait_event(Uuid::from_bytes(id), timeout_ms)?;
    out[..20].copy_from_slice(&head);
    out[20..24].copy_from_slice(&event.code.to_ne_bytes());
    out[24..32].copy_from_slice(&event.time.to_ne_bytes());
    out[32..32 + event_queue::DATA_MAX].copy_from_slice(&event.data);
    UserSlice::new(UserPtr::from_addr(arg), EVENT_SIZE)
        .writer()
        .write_slice(&out)?;
    Ok(0)
}

fn take(arg: usize) -> Result<isize> {
    require_admin()?;
    snapshot::take(read_uuid(arg)?)?;
    Ok(0)
}

fn destroy(arg: usize) -> Result<isize> {
    require_admin()?;
    snapshot::destroy(read_uuid(arg)?)?;
    Ok(0)
}

/// `struct blksnap_snapshot_collect`: a count and, at offset 8, the array.
///
/// As in v3: without an array (`ids` 0) only the number of snapshots is
/// stored in `count`.  With one, as many identifiers as fit are copied and
/// `count` says how many; `ENODATA` if that was not all of them.
fn collect(arg: usize) -> Result<isize> {
    require_admin()?;
    let mut raw = [0u8; 16];
    UserSlice::new(UserPtr::from_addr(arg), raw.len())
        .reader()
        .read_slice(&mut raw)?;
    let room = u32_at(&raw, 0) as usize;
    let ids_addr = u64_at(&raw, 8) as usize;

    let ids = snapshot::collect()?;
    let copied = if ids_addr == 0 {
        ids.len()
    } else {
        let n = ids.len().min(room);
        let mut out = UserSlice::new(UserPtr::from_addr(ids_addr), n * UUID_SIZE).writer();
        for id in ids.iter().take(n) {
            out.write_slice(id.as_bytes())?;
        }
        n
    };
    let count = u32::try_from(copied).map_err(|_| EOVERFLOW)?;
    UserSlice::new(UserPtr::from_addr(arg), 4)
        .writer()
        .write_slice(&count.to_ne_bytes())?;
    if copied < ids.len() {
        return Err(ENODATA);
    }
    Ok(0)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[at..at + 8]);
    u64::from_ne_bytes(v)
}

/// Longest device path accepted, with its NUL (`PATH_MAX`).
const PATH_MAX: usize = 4096;

/// `struct blksnap_snapshot_append_storage`: the id, the path's address and
/// size, the number of ranges and their address.
fn append_storage(arg: usize) -> Result<isize> {
    require_admin()?;
    let mut raw = [0u8; 40];
    UserSlice::new(UserPtr::from_addr(arg), raw.len())
        .reader()
        .read_slice(&mut raw)?;
    let mut id = [0u8; UUID_SIZE];
    id.copy_from_slice(&raw[..UUID_SIZE]);
    let id = Uuid::from_bytes(id);
    let path_addr = u64_at(&raw, 16) as usize;
    let path_size = u32_at(&raw, 24) as usize;
    let count = u32_at(&raw, 28) as usize;
    let ranges_addr = u64_at(&raw, 32) as usize;

    snapshot::exists(id)?;
    // No ranges is a valid, empty answer to a request, as in v3.
    if path_size == 0 || path_size > PATH_MAX || count > MAX_EXTENTS {
        return Err(EINVAL);
    }

    let mut path = KVec::new();
    UserSlice::new(UserPtr::from_addr(path_addr), path_size).read_all(&mut path, GFP_KERNEL)?;
    let nul = path.iter().position(|&b| b == 0).ok_or(EINVAL)?;
    let path = CStr::from_bytes_with_nul(&path[..=nul]).map_err(|_| EINVAL)?;

    let mut raw_ranges = KVec::new();
    UserSlice::new(UserPtr::from_addr(ranges_addr), count * 16)
        .read_all(&mut raw_ranges, GFP_KERNEL)?;
    let mut ranges = KVec::with_capacity(count, GFP_KERNEL)?;
    for r in raw_ranges.chunks_exact(16) {
        ranges.push((u64_at(r, 0), u64_at(r, 8)), GFP_KERNEL)?;
    }

    let device = Arc::new(
        OpenedBlockDevice::open_by_path(path, Access::ReadWrite)?,
        GFP_KERNEL,
    )?;
    snapshot::append_storage(id, device, &ranges)?;
    Ok(0)
}

#[vtable]
impl MiscDevice for Control {
    type Ptr = ();

    fn open(_file: &File, _misc: &MiscDeviceRegistration<Self>) -> Result<()> {
        Ok(())
    }

    // No `compat_ioctl`: 32-bit programs see the same struct layouts as
    // 64-bit ones (every 64-bit field is 8-byte aligned in the header) and
    // pass addresses as `__u64` fields, so the default, `compat_ptr_ioctl`,
    // passes their calls to `ioctl` unchanged.

    fn ioctl((): (), _file: &File, cmd: u32, arg: usize) -> Result<isize> {
        // As in the reference design, the command is its number; the size
        // must match too, so that a foreign ioctl is not mistaken for ours.
        let expected_size = match _IOC_NR(cmd) {
            uapi::blksnap_ioctl_blksnap_ioctl_version => 8,
            uapi::blksnap_ioctl_blksnap_ioctl_snapshot_create
            | uapi::blksnap_ioctl_blksnap_ioctl_snapshot_destroy
            | uapi::blksnap_ioctl_blksnap_ioctl_snapshot_take
            | uapi::blksnap_ioctl_blksnap_ioctl_snapshot_collect => 16,
            uapi::blksnap_ioctl_blksnap_ioctl_snapshot_append_storage => 40,
            uapi::blksnap_ioctl_blksnap_ioctl_snapshot_wait_event => EVENT_SIZE,
            _ => return Err(ENOTTY),
        };
        if _IOC_SIZE(cmd) != expected_size || _IOC_TYPE(cmd) != u32::from(b'V') {
            return Err(ENOTTY);
        }
        match _IOC_NR(cmd) {
            uapi::blksnap_ioctl_blksnap_ioctl_version => version(arg),
            uapi::blksnap_ioctl_blksnap_ioctl_snapshot_create => create(arg),
            uapi::blksnap_ioctl_blksnap_ioctl_snapshot_destroy => destroy(arg),
            uapi::blksnap_ioctl_blksnap_ioctl_snapshot_collect => collect(arg),
            uapi::blksnap_ioctl_blksnap_ioctl_snapshot_append_storage => append_storage(arg),
            uapi::blksnap_ioctl_blksnap_ioctl_snapshot_take => take(arg),
            uapi::blksnap_ioctl_blksnap_ioctl_snapshot_wait_event => wait_event(arg),
            _ => Err(ENOTTY),
        }
    }
}
