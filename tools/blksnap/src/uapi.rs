// SPDX-License-Identifier: GPL-2.0
//! The structures and request numbers of `linux/blksnap.h`,
//! `linux/blk-filter.h` and the part of `linux/fiemap.h` the tool uses,
//! laid out as the C compiler lays them out.  Names are the C names, so
//! that each can be found in the header; `tests/layout.rs` checks sizes,
//! field offsets and request numbers against gcc's reading of the header.
#![allow(non_camel_case_types)]

use crate::ioctl_number::{ior, iow, iowr};

/// `__aligned_u64`: a 64-bit field aligned to 8 bytes even where `u64` is
/// not (i386), which is what keeps 32-bit and 64-bit layouts equal.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct aligned_u64(pub u64);

pub const BLKSNAP_CTL: &str = "blksnap-control";
pub const BLKSNAP_IMAGE_NAME: &str = "blksnap-image";
pub const BLKSNAP: u8 = b'V';
pub const UUID_SIZE: usize = 16;
pub const IMAGE_DISK_NAME_LEN: usize = 32;
pub const BLKFILTER_NAME_LENGTH: usize = 32;
/// The name blksnap registers its filter under.
pub const BLKSNAP_FILTER_NAME: &str = "blksnap";

// enum blkfilter_ctl_blksnap
pub const BLKFILTER_CTL_BLKSNAP_CBTINFO: u32 = 0;
pub const BLKFILTER_CTL_BLKSNAP_CBTMAP: u32 = 1;
pub const BLKFILTER_CTL_BLKSNAP_CBTDIRTY: u32 = 2;
pub const BLKFILTER_CTL_BLKSNAP_SNAPSHOTADD: u32 = 3;
pub const BLKFILTER_CTL_BLKSNAP_SNAPSHOTINFO: u32 = 4;

// enum blksnap_event_codes
pub const BLKSNAP_EVENT_CODE_LOW_FREE_SPACE: u32 = 0;
pub const BLKSNAP_EVENT_CODE_CORRUPTED: u32 = 1;
pub const BLKSNAP_EVENT_CODE_NO_SPACE: u32 = 2;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct blksnap_uuid {
    pub b: [u8; UUID_SIZE],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct blksnap_cbtinfo {
    pub device_capacity: aligned_u64,
    pub block_size: u32,
    pub block_count: u32,
    pub generation_id: blksnap_uuid,
    pub changes_number: u8,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct blksnap_cbtmap {
    pub offset: u32,
    pub length: u32,
    pub buffer: aligned_u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct blksnap_sectors {
    pub offset: u64,
    pub count: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct blksnap_cbtdirty {
    pub count: u32,
    pub dirty_sectors: aligned_u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct blksnap_snapshotadd {
    pub id: blksnap_uuid,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct blksnap_snapshotinfo {
    pub error_code: i32,
    pub image: [u8; IMAGE_DISK_NAME_LEN],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct blksnap_version {
    pub major: u16,
    pub minor: u16,
    pub revision: u16,
    pub build: u16,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct blksnap_snapshot_append_storage {
    pub id: blksnap_uuid,
    pub bdev_path: aligned_u64,
    pub bdev_path_size: u32,
    pub count: u32,
    pub ranges: aligned_u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct blksnap_snapshot_collect {
    pub count: u32,
    pub ids: aligned_u64,
}

/// Bytes of event details in [`blksnap_snapshot_event`].
pub const EVENT_DATA_SIZE: usize = 4096 - 32;

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct blksnap_snapshot_event {
    pub id: blksnap_uuid,
    pub timeout_ms: u32,
    pub code: u32,
    pub time_label: i64,
    pub data: [u8; EVENT_DATA_SIZE],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct blksnap_event_low_free_space {
    pub requested_nr_sect: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct blksnap_snapshot_storage {
    pub id: blksnap_uuid,
    pub path: aligned_u64,
    pub path_size: u32,
    pub flags: u32,
    pub limit_sect: aligned_u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct blksnap_event_no_space {
    pub requested_nr_sect: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct blksnap_event_corrupted {
    pub dev_id_mj: u32,
    pub dev_id_mn: u32,
    pub err_code: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct blkfilter_name {
    pub name: [u8; BLKFILTER_NAME_LENGTH],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct blkfilter_ctl {
    pub name: [u8; BLKFILTER_NAME_LENGTH],
    pub cmd: u32,
    pub optlen: u32,
    pub opt: u64,
}

/// The head of `struct fiemap` (linux/fiemap.h); the extents follow it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct fiemap {
    pub fm_start: u64,
    pub fm_length: u64,
    pub fm_flags: u32,
    pub fm_mapped_extents: u32,
    pub fm_extent_count: u32,
    pub fm_reserved: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct fiemap_extent {
    pub fe_logical: u64,
    pub fe_physical: u64,
    pub fe_length: u64,
    pub fe_reserved64: [u64; 2],
    pub fe_flags: u32,
    pub fe_reserved: [u32; 3],
}

pub const FIEMAP_FLAG_SYNC: u32 = 0x0000_0001;
pub const FIEMAP_EXTENT_LAST: u32 = 0x0000_0001;
pub const FIEMAP_EXTENT_UNKNOWN: u32 = 0x0000_0002;
pub const FIEMAP_EXTENT_DELALLOC: u32 = 0x0000_0004;
pub const FIEMAP_EXTENT_ENCODED: u32 = 0x0000_0008;
pub const FIEMAP_EXTENT_DATA_ENCRYPTED: u32 = 0x0000_0080;
pub const FIEMAP_EXTENT_NOT_ALIGNED: u32 = 0x0000_0100;
pub const FIEMAP_EXTENT_DATA_INLINE: u32 = 0x0000_0200;
pub const FIEMAP_EXTENT_DATA_TAIL: u32 = 0x0000_0400;
pub const FIEMAP_EXTENT_UNWRITTEN: u32 = 0x0000_0800;
pub const FIEMAP_EXTENT_MERGED: u32 = 0x0000_1000;
pub const FIEMAP_EXTENT_SHARED: u32 = 0x0000_2000;

pub const BLKFILTER_ATTACH: u32 = iowr::<blkfilter_name>(0x12, 143);
pub const BLKFILTER_DETACH: u32 = iowr::<blkfilter_name>(0x12, 144);
pub const BLKFILTER_CTL: u32 = iowr::<blkfilter_ctl>(0x12, 145);

pub const IOCTL_BLKSNAP_VERSION: u32 = iow::<blksnap_version>(BLKSNAP, 0);
pub const IOCTL_BLKSNAP_SNAPSHOT_CREATE: u32 = iow::<blksnap_uuid>(BLKSNAP, 1);
pub const IOCTL_BLKSNAP_SNAPSHOT_DESTROY: u32 = ior::<blksnap_uuid>(BLKSNAP, 2);
pub const IOCTL_BLKSNAP_SNAPSHOT_APPEND_STORAGE: u32 =
    iow::<blksnap_snapshot_append_storage>(BLKSNAP, 3);
pub const IOCTL_BLKSNAP_SNAPSHOT_TAKE: u32 = ior::<blksnap_uuid>(BLKSNAP, 4);
pub const IOCTL_BLKSNAP_SNAPSHOT_COLLECT: u32 = iow::<blksnap_snapshot_collect>(BLKSNAP, 5);
pub const IOCTL_BLKSNAP_SNAPSHOT_WAIT_EVENT: u32 = iow::<blksnap_snapshot_event>(BLKSNAP, 6);
pub const IOCTL_BLKSNAP_SNAPSHOT_SET_STORAGE: u32 = iow::<blksnap_snapshot_storage>(BLKSNAP, 7);

pub const FS_IOC_FIEMAP: u32 = iowr::<fiemap>(b'f', 11);

/// A NUL-terminated name in a fixed array, as the filter ioctls want it.
pub fn filter_name() -> [u8; BLKFILTER_NAME_LENGTH] {
    let mut name = [0u8; BLKFILTER_NAME_LENGTH];
    name[..BLKSNAP_FILTER_NAME.len()].copy_from_slice(BLKSNAP_FILTER_NAME.as_bytes());
    name
}
