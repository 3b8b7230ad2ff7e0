// SPDX-License-Identifier: GPL-2.0

//! The structures of `include/uapi/linux/blksnap.h`, as types that are
//! copied from and to user space whole.
//!
//! Each wrapper holds the structure `bindgen` generates from the header, so
//! the layout comes from the header alone.  The wrappers exist because the
//! transmute traits and the generated structures both belong to other
//! crates.

use core::mem::{size_of, MaybeUninit};
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

macro_rules! impl_from_bytes {
    ($($name:ident,)*) => {
        // SAFETY: Safety comments written in the macro invocation.
        $(unsafe impl FromBytes for $name {})*
    };
}

impl_from_bytes! {
    // SAFETY: The fields of these structures are integers, arrays of bytes
    // and `blksnap_uuid`s (an array of bytes): any bit pattern is a valid
    // value.  They have no interior mutability.
    BlksnapUuid,
    AppendStorage,
    SnapshotCollect,
    Sectors,
    CbtMap,
    CbtDirty,
    SnapshotAdd,
}

/// Size of the field of `S` that `field` borrows.
const fn field_size<S, F>(_field: fn(&S) -> &F) -> usize {
    size_of::<F>()
}

macro_rules! impl_as_bytes {
    ($($name:ident { $($field:ident),+ },)*) => {$(
        // No padding: the fields fill the structure.
        const _: () = assert!(
            size_of::<$name>() == 0 $(+ field_size(|s: &$name| &s.0.$field))+
        );
        // SAFETY: Safety comments written in the macro invocation.
        unsafe impl AsBytes for $name {}
    )*};
}

impl_as_bytes! {
    // SAFETY: The fields of these structures are integers, arrays of bytes
    // and `blksnap_uuid`s (an array of bytes), none with padding, and the
    // assertion above proves the structures have none either: every byte
    // of a value is initialised.  They have no interior mutability.
    BlksnapUuid { b },
    BlksnapVersion { major, minor, revision, build },
    SnapshotEvent { id, timeout_ms, code, time_label, data },
    EventLowFreeSpace { requested_nr_sect },
    EventCorrupted { dev_id_mj, dev_id_mn, err_code },
    Sectors { offset, count },
    SnapshotInfo { error_code, image },
}

/// `struct blksnap_cbtinfo`, which ends in padding: built zeroed, so that
/// copying it whole to user space shows no kernel memory.
#[repr(transparent)]
pub(crate) struct CbtInfo(MaybeUninit<uapi::blksnap_cbtinfo>);

impl CbtInfo {
    pub(crate) fn new(info: uapi::blksnap_cbtinfo) -> Self {
        let mut out = MaybeUninit::<uapi::blksnap_cbtinfo>::zeroed();
        // SAFETY: All zeroes is a valid `blksnap_cbtinfo`: its fields are
        // integers and arrays of bytes.
        let fields = unsafe { out.assume_init_mut() };
        // One field at a time: storing the whole structure would leave its
        // padding undefined.
        let uapi::blksnap_cbtinfo {
            device_capacity,
            block_size,
            block_count,
            generation_id,
            changes_number,
        } = info;
        fields.device_capacity = device_capacity;
        fields.block_size = block_size;
        fields.block_count = block_count;
        fields.generation_id = generation_id;
        fields.changes_number = changes_number;
        Self(out)
    }
}

// SAFETY: `new`, the only way to make a `CbtInfo`, zeroes every byte and
// then stores the fields one by one, which leaves the padding zeroed; a
// `MaybeUninit` keeps all its bytes when it is moved.  No interior
// mutability.
unsafe impl AsBytes for CbtInfo {}

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
    use core::mem::offset_of;
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
        let bytes = info.as_bytes();
        assert!(end < bytes.len());
        assert!(bytes[..end].iter().all(|&b| b == u8::MAX));
        assert!(bytes[end..].iter().all(|&b| b == 0));
    }
}
