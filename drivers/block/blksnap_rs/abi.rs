// SPDX-License-Identifier: GPL-2.0

//! The structures of `include/uapi/linux/blksnap.h`, as types that are
//! copied from and to user space whole.
//!
//! Each wrapper holds the structure `bindgen` generates from the header, so
//! the layout comes from the header alone.  The wrappers exist because the
//! transmute traits and the generated structures both belong to other
//! crates.

use core::mem::{offset_of, size_of};
use kernel::{
    prelude::*,
    transmute::{AsBytes, FromBytes},
    uaccess::{UserPtr, UserSlice},
    uapi,
    uuid::Uuid,
};

macro_rules! wrappers {
    ($($(#[$doc:meta])* $name:ident($c:ident);)*) => {$(
        $(#[$doc])*
        #[repr(transparent)]
        #[derive(Clone, Copy, Zeroable)]
        pub(crate) struct $name(pub(crate) uapi::$c);
    )*};
}

wrappers! {
    /// `struct blksnap_uuid`: a snapshot's identifier.
    BlksnapUuid(blksnap_uuid);
    /// `struct blksnap_version`.
    BlksnapVersion(blksnap_version);
    /// `struct blksnap_snapshot_append_storage`.
    AppendStorage(blksnap_snapshot_append_storage);
    /// `struct blksnap_snapshot_collect`.
    SnapshotCollect(blksnap_snapshot_collect);
    /// `struct blksnap_snapshot_event`.
    SnapshotEvent(blksnap_snapshot_event);
    /// `struct blksnap_event_low_free_space`: data of an event.
    EventLowFreeSpace(blksnap_event_low_free_space);
    /// `struct blksnap_event_corrupted`: data of an event.
    EventCorrupted(blksnap_event_corrupted);
    /// `struct blksnap_event_no_space`: data of an event.
    EventNoSpace(blksnap_event_no_space);
    /// `struct blksnap_snapshot_storage`.
    SnapshotStorage(blksnap_snapshot_storage);
    /// `struct blksnap_sectors`: a range of sectors.
    Sectors(blksnap_sectors);
    /// `struct blksnap_cbtmap`.
    CbtMap(blksnap_cbtmap);
    /// `struct blksnap_cbtdirty`.
    CbtDirty(blksnap_cbtdirty);
    /// `struct blksnap_snapshotadd`.
    SnapshotAdd(blksnap_snapshotadd);
    /// `struct blksnap_snapshotinfo`.
    SnapshotInfo(blksnap_snapshotinfo);
}

kernel::impl_bytes_for_wrapper! {
    FromBytes + AsBytes for BlksnapUuid => uapi::blksnap_uuid { b };
    FromBytes + AsBytes for BlksnapVersion => uapi::blksnap_version {
        major, minor, revision, build
    };
    FromBytes + AsBytes for AppendStorage => uapi::blksnap_snapshot_append_storage {
        id: uapi::blksnap_uuid { b }, bdev_path, bdev_path_size, count, ranges
    };
    FromBytes + AsBytes for SnapshotEvent => uapi::blksnap_snapshot_event {
        id: uapi::blksnap_uuid { b }, timeout_ms, code, time_label, data
    };
    FromBytes + AsBytes for EventLowFreeSpace => uapi::blksnap_event_low_free_space {
        requested_nr_sect
    };
    FromBytes + AsBytes for EventCorrupted => uapi::blksnap_event_corrupted {
        dev_id_mj, dev_id_mn, err_code
    };
    FromBytes + AsBytes for EventNoSpace => uapi::blksnap_event_no_space { requested_nr_sect };
    FromBytes + AsBytes for SnapshotStorage => uapi::blksnap_snapshot_storage {
        id: uapi::blksnap_uuid { b }, path, path_size, flags, limit_sect
    };
    FromBytes + AsBytes for Sectors => uapi::blksnap_sectors { offset, count };
    FromBytes + AsBytes for CbtMap => uapi::blksnap_cbtmap { offset, length, buffer };
    FromBytes + AsBytes for SnapshotAdd => uapi::blksnap_snapshotadd {
        id: uapi::blksnap_uuid { b }
    };
    FromBytes + AsBytes for SnapshotInfo => uapi::blksnap_snapshotinfo { error_code, image };
    // These two have padding: they are only ever read from user space.
    FromBytes for SnapshotCollect => uapi::blksnap_snapshot_collect { count, ids };
    FromBytes for CbtDirty => uapi::blksnap_cbtdirty { count, dirty_sectors };
}

/// `struct blksnap_cbtinfo`, as the bytes user space gets.  The structure
/// ends in padding, so it is not copied whole: every field is put at its
/// offset into zeroed bytes, and no kernel memory goes with it.
pub(crate) struct CbtInfo([u8; size_of::<uapi::blksnap_cbtinfo>()]);

impl CbtInfo {
    pub(crate) fn new(info: uapi::blksnap_cbtinfo) -> Self {
        let mut bytes = [0; size_of::<uapi::blksnap_cbtinfo>()];
        let mut put = |offset: usize, field: &[u8]| {
            bytes[offset..offset + field.len()].copy_from_slice(field);
        };
        put(
            offset_of!(uapi::blksnap_cbtinfo, device_capacity),
            &info.device_capacity.to_ne_bytes(),
        );
        put(
            offset_of!(uapi::blksnap_cbtinfo, block_size),
            &info.block_size.to_ne_bytes(),
        );
        put(
            offset_of!(uapi::blksnap_cbtinfo, block_count),
            &info.block_count.to_ne_bytes(),
        );
        put(
            offset_of!(uapi::blksnap_cbtinfo, generation_id),
            &info.generation_id.b,
        );
        put(
            offset_of!(uapi::blksnap_cbtinfo, changes_number),
            &[info.changes_number],
        );
        Self(bytes)
    }

    pub(crate) fn bytes(&self) -> &[u8; size_of::<uapi::blksnap_cbtinfo>()] {
        &self.0
    }
}

/// The identifier in `id`.
pub(crate) fn uuid(id: uapi::blksnap_uuid) -> Uuid {
    Uuid::from_bytes(id.b)
}

/// `id` as the header's structure.
pub(crate) fn blksnap_uuid(id: Uuid) -> uapi::blksnap_uuid {
    uapi::blksnap_uuid { b: *id.as_bytes() }
}

/// Reads the `T` at user address `at`.
pub(crate) fn read<T: FromBytes>(at: UserPtr) -> Result<T> {
    UserSlice::new(at, size_of::<T>()).reader().read()
}

/// Writes `value` at user address `at`.
pub(crate) fn write<T: AsBytes>(at: UserPtr, value: &T) -> Result {
    UserSlice::new(at, size_of::<T>()).writer().write(value)
}

#[kunit_tests(blksnap_abi)]
mod tests {
    use super::*;
    use kernel::uuid::UUID_SIZE;

    #[test]
    fn cbtinfo_padding_is_zeroed() {
        let info = CbtInfo::new(uapi::blksnap_cbtinfo {
            device_capacity: u64::MAX,
            block_size: u32::MAX,
            block_count: u32::MAX,
            generation_id: uapi::blksnap_uuid {
                b: [u8::MAX; UUID_SIZE],
            },
            changes_number: u8::MAX,
        });
        let end = offset_of!(uapi::blksnap_cbtinfo, changes_number) + 1;
        let bytes = info.bytes();
        assert!(end < bytes.len());
        assert!(bytes[..end].iter().all(|&b| b == u8::MAX));
        assert!(bytes[end..].iter().all(|&b| b == 0));
    }
}
