// SPDX-License-Identifier: GPL-2.0

//! `/dev/blksnap-control`: the snapshot-wide commands.

use crate::{
    abi::{
        self, AppendStorage, BlksnapUuid, BlksnapVersion, Sectors, SnapshotCollect, SnapshotEvent,
        SnapshotStorage,
    },
    diff_storage::MAX_EXTENTS,
    event_queue, snapshot,
};
use core::mem::{offset_of, size_of};
use kernel::{
    bindings,
    block::bdev::{Holder, Mode, OpenedBlockDevice},
    capability::{capable, Capability},
    fs::{open::Kind, File},
    init::InPlaceInit,
    ioctl::{_IOC_NR, _IOC_SIZE, _IOC_TYPE, _IOR, _IOW},
    miscdevice::{MiscDevice, MiscDeviceRegistration},
    prelude::*,
    sync::Arc,
    transmute::AsBytes,
    uaccess::{UserPtr, UserSlice},
    uapi,
    uuid::Uuid,
};

/// Type of the ioctls, `BLKSNAP` in the header.
const BLKSNAP: u32 = uapi::BLKSNAP as u32;

// The numbers of the ioctls, computed as the header computes them.
const IOCTL_BLKSNAP_VERSION: u32 =
    _IOW::<uapi::blksnap_version>(BLKSNAP, uapi::blksnap_ioctl_blksnap_ioctl_version);
const IOCTL_BLKSNAP_SNAPSHOT_CREATE: u32 =
    _IOW::<uapi::blksnap_uuid>(BLKSNAP, uapi::blksnap_ioctl_blksnap_ioctl_snapshot_create);
const IOCTL_BLKSNAP_SNAPSHOT_DESTROY: u32 =
    _IOR::<uapi::blksnap_uuid>(BLKSNAP, uapi::blksnap_ioctl_blksnap_ioctl_snapshot_destroy);
const IOCTL_BLKSNAP_SNAPSHOT_APPEND_STORAGE: u32 = _IOW::<uapi::blksnap_snapshot_append_storage>(
    BLKSNAP,
    uapi::blksnap_ioctl_blksnap_ioctl_snapshot_append_storage,
);
const IOCTL_BLKSNAP_SNAPSHOT_TAKE: u32 =
    _IOR::<uapi::blksnap_uuid>(BLKSNAP, uapi::blksnap_ioctl_blksnap_ioctl_snapshot_take);
const IOCTL_BLKSNAP_SNAPSHOT_COLLECT: u32 = _IOW::<uapi::blksnap_snapshot_collect>(
    BLKSNAP,
    uapi::blksnap_ioctl_blksnap_ioctl_snapshot_collect,
);
const IOCTL_BLKSNAP_SNAPSHOT_WAIT_EVENT: u32 = _IOW::<uapi::blksnap_snapshot_event>(
    BLKSNAP,
    uapi::blksnap_ioctl_blksnap_ioctl_snapshot_wait_event,
);
const IOCTL_BLKSNAP_SNAPSHOT_SET_STORAGE: u32 = _IOW::<uapi::blksnap_snapshot_storage>(
    BLKSNAP,
    uapi::blksnap_ioctl_blksnap_ioctl_snapshot_set_storage,
);

/// Who holds the storage devices the module opens exclusively.
static STORAGE_HOLDER: Holder = Holder::new();

/// Version of the interface, as the reference design reports it.
const VERSION: uapi::blksnap_version = uapi::blksnap_version {
    major: 2,
    minor: 0,
    revision: 0,
    build: 0,
};

pub(crate) struct Control;

fn read_uuid(arg: usize) -> Result<Uuid> {
    let id: BlksnapUuid = abi::read(UserPtr::from_addr(arg))?;
    Ok(abi::uuid(id.0))
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
    abi::write(UserPtr::from_addr(arg), &BlksnapVersion(VERSION))?;
    Ok(0)
}

fn create(arg: usize) -> Result<isize> {
    require_admin()?;
    // Check the destination first, so that a bad pointer leaves no orphan.
    read_uuid(arg)?;
    let id = snapshot::create()?;
    let out = BlksnapUuid(abi::blksnap_uuid(id));
    if let Err(e) = abi::write(UserPtr::from_addr(arg), &out) {
        let _ = snapshot::destroy(id);
        return Err(e);
    }
    Ok(0)
}

/// `struct blksnap_snapshot_event`: id and timeout in; code, time label and
/// data out.  As in v3 the whole structure is written back, zero-filled
/// past the event's data.
fn wait_event(arg: usize) -> Result<isize> {
    // Taking an event consumes it: only the agent may.
    require_admin()?;
    let at = UserPtr::from_addr(arg);
    // Only the fields that are in are read, as in v3.
    let id: BlksnapUuid =
        abi::read(at.wrapping_byte_add(offset_of!(uapi::blksnap_snapshot_event, id)))?;
    let timeout_ms: u32 =
        abi::read(at.wrapping_byte_add(offset_of!(uapi::blksnap_snapshot_event, timeout_ms)))?;
    // Allocated before the wait: an event taken from the queue is never
    // lost to a failed allocation.
    let mut out = KBox::init(pin_init::init_zeroed::<SnapshotEvent>(), GFP_KERNEL)?;
    let event = snapshot::wait_event(abi::uuid(id.0), timeout_ms)?;
    let SnapshotEvent(out_event) = &mut *out;
    out_event.id = id.0;
    out_event.timeout_ms = timeout_ms;
    out_event.code = event.code;
    out_event.time_label = event.time;
    out_event.data[..event_queue::DATA_MAX].copy_from_slice(&event.data);
    abi::write(at, &*out)?;
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

/// `struct blksnap_snapshot_collect`: the room at `ids`, and the array.
///
/// As in v3: without an array (`ids` 0) only the number of snapshots is
/// stored in `count`.  With one, as many identifiers as fit are copied and
/// `count` says how many; `ENODATA` if that was not all of them.
fn collect(arg: usize) -> Result<isize> {
    require_admin()?;
    let SnapshotCollect(req) = abi::read(UserPtr::from_addr(arg))?;
    let (room, ids_addr) = (req.count as usize, req.ids);

    let ids = snapshot::collect()?;
    let copied = if ids_addr == 0 {
        ids.len()
    } else {
        let n = ids.len().min(room);
        let mut out = UserSlice::new(
            UserPtr::from_addr(ids_addr as usize),
            n * size_of::<BlksnapUuid>(),
        )
        .writer();
        for &id in ids.iter().take(n) {
            out.write(&BlksnapUuid(abi::blksnap_uuid(id)))?;
        }
        n
    };
    let count = u32::try_from(copied).map_err(|_| EOVERFLOW)?;
    // Only `count` is written back.
    let at = UserPtr::from_addr(arg)
        .wrapping_byte_add(offset_of!(uapi::blksnap_snapshot_collect, count));
    abi::write(at, &count)?;
    if copied < ids.len() {
        return Err(ENODATA);
    }
    Ok(0)
}

/// Longest device path accepted, with its NUL (`PATH_MAX`).
const PATH_MAX: usize = 4096;

/// Reads a NUL-terminated path of `size` bytes (with the NUL) at `addr`.
fn read_path(addr: u64, size: u32, buf: &mut KVec<u8>) -> Result<&CStr> {
    let size = size as usize;
    if size == 0 || size > PATH_MAX {
        return Err(EINVAL);
    }
    UserSlice::new(UserPtr::from_addr(addr as usize), size).read_all(buf, GFP_KERNEL)?;
    let nul = buf.iter().position(|&b| b == 0).ok_or(EINVAL)?;
    CStr::from_bytes_with_nul(&buf[..=nul]).map_err(|_| EINVAL)
}

/// `struct blksnap_snapshot_storage`: the id, the path (or none, to change
/// only the limit), flags and the limit.
fn set_storage(arg: usize) -> Result<isize> {
    require_admin()?;
    let SnapshotStorage(uapi::blksnap_snapshot_storage {
        id,
        path,
        path_size,
        flags,
        limit_sect,
    }) = abi::read(UserPtr::from_addr(arg))?;
    let id = abi::uuid(id);
    snapshot::exists(id)?;
    if flags != 0 {
        return Err(EINVAL);
    }
    if path == 0 {
        if path_size != 0 {
            return Err(EINVAL);
        }
        snapshot::set_storage(id, None, limit_sect)?;
        return Ok(0);
    }
    let mut buf = KVec::new();
    let path = read_path(path, path_size, &mut buf)?;
    let storage = open_storage(path)?;
    snapshot::set_storage(id, Some(storage), limit_sect)?;
    Ok(0)
}

/// Opens what `path` names as storage: a block device whole and
/// exclusively, a regular file as it is, and in a directory a new unnamed
/// file, which goes away with the snapshot, even after a crash.  Files are
/// opened for direct I/O: `EINVAL` on a file system without it.
fn open_storage(path: &CStr) -> Result<snapshot::NewStorage> {
    // Only to see what it is: `O_PATH` opens no device.
    let kind = File::open(path, bindings::O_PATH, 0)?.kind();
    // `O_NOCTTY`: the path may have become a terminal since it was looked at.
    let direct = bindings::O_RDWR | bindings::O_DIRECT | bindings::O_LARGEFILE | bindings::O_NOCTTY;
    let file = match kind {
        Kind::BlockDevice => {
            // Exclusively: nothing else may mount the device or claim it
            // while the snapshot stores into it.  The I/O goes through a
            // plain open of the same device (see `snapshot::StorageDevice`).
            let held =
                OpenedBlockDevice::open_by_path(path, Mode::ReadWrite, Some(&STORAGE_HOLDER))?;
            let io = OpenedBlockDevice::open_by_devt(held.bdev().devt(), Mode::ReadWrite, None)?;
            return Ok(snapshot::NewStorage::Device(snapshot::StorageDevice {
                held,
                io: Arc::new(io, GFP_KERNEL)?,
            }));
        }
        Kind::Directory => {
            File::open(path, bindings::O_TMPFILE | bindings::O_EXCL | direct, 0o600)?
        }
        Kind::Regular => File::open(path, direct, 0)?,
        Kind::Other => return Err(ENOTBLK),
    };
    // Between the two opens the path may have changed to something else.
    if file.kind() != Kind::Regular {
        return Err(EINVAL);
    }
    Ok(snapshot::NewStorage::File(file))
}

/// `struct blksnap_snapshot_append_storage`: the id, the path's address and
/// size, the number of ranges and their address.
fn append_storage(arg: usize) -> Result<isize> {
    require_admin()?;
    let AppendStorage(uapi::blksnap_snapshot_append_storage {
        id,
        bdev_path,
        bdev_path_size,
        count,
        ranges,
    }) = abi::read(UserPtr::from_addr(arg))?;
    let id = abi::uuid(id);
    let count = count as usize;

    snapshot::exists(id)?;
    // No ranges is a valid, empty answer to a request, as in v3.
    if count > MAX_EXTENTS {
        return Err(EINVAL);
    }
    let mut buf = KVec::new();
    let path = read_path(bdev_path, bdev_path_size, &mut buf)?;

    let mut user_ranges = KVec::from_elem(Sectors::zeroed(), count, GFP_KERNEL)?;
    UserSlice::new(
        UserPtr::from_addr(ranges as usize),
        count * size_of::<Sectors>(),
    )
    .reader()
    .read_slice(user_ranges.as_bytes_mut())?;
    let mut ranges = KVec::with_capacity(count, GFP_KERNEL)?;
    for Sectors(r) in user_ranges.iter() {
        ranges.push((r.offset, r.count), GFP_KERNEL)?;
    }

    let device = Arc::new(
        OpenedBlockDevice::open_by_path(path, Mode::ReadWrite, None)?,
        GFP_KERNEL,
    )?;
    snapshot::append_storage(id, device, &ranges)?;
    Ok(0)
}

/// Whether `cmd` is the ioctl `known`.  As in the reference design, the
/// direction is not looked at; the size must match, so that a foreign
/// ioctl is not mistaken for ours.
fn same_ioctl(cmd: u32, known: u32) -> bool {
    _IOC_TYPE(cmd) == _IOC_TYPE(known)
        && _IOC_NR(cmd) == _IOC_NR(known)
        && _IOC_SIZE(cmd) == _IOC_SIZE(known)
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
        let known = [
            IOCTL_BLKSNAP_VERSION,
            IOCTL_BLKSNAP_SNAPSHOT_CREATE,
            IOCTL_BLKSNAP_SNAPSHOT_DESTROY,
            IOCTL_BLKSNAP_SNAPSHOT_APPEND_STORAGE,
            IOCTL_BLKSNAP_SNAPSHOT_TAKE,
            IOCTL_BLKSNAP_SNAPSHOT_COLLECT,
            IOCTL_BLKSNAP_SNAPSHOT_WAIT_EVENT,
            IOCTL_BLKSNAP_SNAPSHOT_SET_STORAGE,
        ]
        .into_iter()
        .find(|&c| same_ioctl(cmd, c));
        match known {
            Some(IOCTL_BLKSNAP_VERSION) => version(arg),
            Some(IOCTL_BLKSNAP_SNAPSHOT_CREATE) => create(arg),
            Some(IOCTL_BLKSNAP_SNAPSHOT_DESTROY) => destroy(arg),
            Some(IOCTL_BLKSNAP_SNAPSHOT_APPEND_STORAGE) => append_storage(arg),
            Some(IOCTL_BLKSNAP_SNAPSHOT_TAKE) => take(arg),
            Some(IOCTL_BLKSNAP_SNAPSHOT_COLLECT) => collect(arg),
            Some(IOCTL_BLKSNAP_SNAPSHOT_WAIT_EVENT) => wait_event(arg),
            Some(IOCTL_BLKSNAP_SNAPSHOT_SET_STORAGE) => set_storage(arg),
            _ => Err(ENOTTY),
        }
    }
}
