// SPDX-License-Identifier: GPL-2.0

//! The module parameters, with the defaults and meanings of the reference
//! design.  Read where used, so that a change through sysfs applies to the
//! next device or snapshot.

use crate::module_parameters as p;

/// log2 of the smallest change-tracking block, in bytes.
pub(crate) fn tracking_block_minimum_shift() -> u32 {
    p::tracking_block_minimum_shift.value()
}

/// log2 of the largest change-tracking block, in bytes.
pub(crate) fn tracking_block_maximum_shift() -> u32 {
    p::tracking_block_maximum_shift.value()
}

/// Most tracking blocks per device, unless the largest block is reached.
pub(crate) fn tracking_block_maximum_count() -> u64 {
    u64::from(p::tracking_block_maximum_count.value())
}

/// log2 of the smallest copy-on-write chunk, in bytes.
pub(crate) fn chunk_minimum_shift() -> u32 {
    p::chunk_minimum_shift.value()
}

/// log2 of the largest copy-on-write chunk, in bytes.
pub(crate) fn chunk_maximum_shift() -> u32 {
    p::chunk_maximum_shift.value()
}

/// Most chunks per device, unless the largest chunk is reached.
pub(crate) fn chunk_maximum_count() -> u64 {
    u64::from(p::chunk_maximum_count.value())
}

/// Sectors of difference storage to ask user space for at a time.
pub(crate) fn diff_storage_minimum() -> u64 {
    u64::from(p::diff_storage_minimum.value())
}

/// Most chunks in memory waiting for their store, per device; the same
/// number bounds the chunks loading.
pub(crate) fn chunk_maximum_in_queue() -> u32 {
    p::chunk_maximum_in_queue.value()
}

/// Chunk buffers a device keeps for reuse.
pub(crate) fn free_diff_buffer_pool_size() -> u32 {
    p::free_diff_buffer_pool_size.value()
}
