// SPDX-License-Identifier: GPL-2.0

//! blksnap: point-in-time snapshots of block devices in use, and tracking of
//! the blocks changed between them, for backup programs.
//!
//! See `Documentation/block/blksnap.rst`.

use kernel::{
    block::filter,
    c_str,
    miscdevice::{MiscDeviceOptions, MiscDeviceRegistration},
    prelude::*,
};

mod abi;
mod blkfilter_ctl;
mod buffers;
mod cbt_map;
mod claims;
mod control_device;
mod device_filter;
mod diff_area;
mod diff_storage;
mod event_queue;
mod image;
mod live_areas;
mod params;
mod snapshot;
mod tracker;
mod workers;

module! {
    type: Blksnap,
    name: "blksnap",
    authors: ["blksnap-rs developers"],
    description: "Block device snapshots and changed block tracking",
    license: "GPL",
    params: {
        tracking_block_minimum_shift: u32 {
            default: 16,
            description: "log2 of the smallest change-tracking block in bytes",
            perm: 0o644,
        },
        tracking_block_maximum_count: u32 {
            default: 2097152,
            description: "Most change-tracking blocks per device",
            perm: 0o644,
        },
        tracking_block_maximum_shift: u32 {
            default: 26,
            description: "log2 of the largest change-tracking block in bytes",
            perm: 0o644,
        },
        chunk_minimum_shift: u32 {
            default: 18,
            description: "log2 of the smallest copy-on-write chunk in bytes",
            perm: 0o644,
        },
        chunk_maximum_count: u32 {
            default: 2097152,
            description: "Most copy-on-write chunks per device",
            perm: 0o644,
        },
        chunk_maximum_shift: u32 {
            default: 26,
            description: "log2 of the largest copy-on-write chunk in bytes",
            perm: 0o644,
        },
        chunk_maximum_in_queue: u32 {
            default: 16,
            description: "Most chunks held in memory waiting to be stored (and being read)",
            perm: 0o644,
        },
        free_diff_buffer_pool_size: u32 {
            default: 128,
            description: "Chunk buffers kept for reuse",
            perm: 0o644,
        },
        diff_storage_minimum: u32 {
            default: 2097152,
            description: "Sectors of difference storage requested at a time",
            perm: 0o644,
        },
    },
}

#[pin_data(PinnedDrop)]
struct Blksnap {
    #[pin]
    filter: filter::Registration<device_filter::TrackerFilter>,
    #[pin]
    control: MiscDeviceRegistration<control_device::Control>,
    /// Last: goes once nothing can queue work any more.
    workers: workers::Workers,
}

impl kernel::InPlaceModule for Blksnap {
    fn init(module: &'static ThisModule) -> impl PinInit<Self, Error> {
        // SAFETY: Called once, before the filter and the control device that
        // use the registries are registered.
        unsafe { snapshot::SNAPSHOTS.init() };
        // SAFETY: As above.
        unsafe { claims::CLAIMS.init() };
        // SAFETY: As above.
        unsafe { workers::QUEUE.init() };
        try_pin_init!(Self {
            workers: workers::Workers::start()?,
            filter <- filter::Registration::new(c_str!("blksnap"), module),
            control <- MiscDeviceRegistration::register(MiscDeviceOptions {
                name: c_str!("blksnap-control"),
            }),
        })
    }
}

#[pinned_drop]
impl PinnedDrop for Blksnap {
    fn drop(self: Pin<&mut Self>) {
        snapshot::destroy_all();
        claims::clear();
    }
}
