// SPDX-License-Identifier: GPL-2.0

//! Bios: the block layer's I/O units.
//!
//! C header: [`include/linux/blk_types.h`](srctree/include/linux/blk_types.h)

use crate::{bindings, block::bdev::BlockDevice, types::Opaque};

/// What a bio asks the device to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Read data.
    Read,
    /// Write data.
    Write,
    /// Discard a range: its content becomes undefined.
    Discard,
    /// Securely erase a range.
    SecureErase,
    /// Write zeroes to a range.
    WriteZeroes,
    /// A cache flush without data.
    Flush,
    /// Anything else (zone management, driver-private operations).
    Other,
}

impl Operation {
    /// Returns true for operations that change the content of the device.
    pub fn changes_data(self) -> bool {
        matches!(
            self,
            Self::Write | Self::Discard | Self::SecureErase | Self::WriteZeroes
        )
    }
}

/// A bio (`struct bio`) seen by a block device filter while it is submitted.
///
/// # Invariants
///
/// The wrapped `struct bio` is valid and is not completed for as long as the
/// reference exists.
#[repr(transparent)]
pub struct Bio(Opaque<bindings::bio>);

impl Bio {
    /// Borrows a bio from a raw pointer.
    ///
    /// # Safety
    ///
    /// `ptr` must point to a valid bio that is neither completed nor freed
    /// during `'a`.
    pub unsafe fn from_raw<'a>(ptr: *mut bindings::bio) -> &'a Self {
        // SAFETY: `Bio` is `repr(transparent)` over the C struct; validity is
        // guaranteed by the caller.
        unsafe { &*ptr.cast() }
    }

    fn raw(&self) -> *mut bindings::bio {
        self.0.get()
    }

    /// Returns the operation of the bio.
    pub fn operation(&self) -> Operation {
        // SAFETY: The bio is valid by the type invariant.
        let opf = unsafe { (*self.raw()).bi_opf };
        match opf & ((1 << bindings::REQ_OP_BITS) - 1) {
            bindings::req_op_REQ_OP_READ => Operation::Read,
            bindings::req_op_REQ_OP_WRITE => Operation::Write,
            bindings::req_op_REQ_OP_DISCARD => Operation::Discard,
            bindings::req_op_REQ_OP_SECURE_ERASE => Operation::SecureErase,
            bindings::req_op_REQ_OP_WRITE_ZEROES => Operation::WriteZeroes,
            bindings::req_op_REQ_OP_FLUSH => Operation::Flush,
            _ => Operation::Other,
        }
    }

    /// Returns the first sector the bio addresses.
    ///
    /// For a bio submitted to a partition and seen by a filter, this counts
    /// from the start of the whole disk.
    pub fn sector(&self) -> u64 {
        // SAFETY: The bio is valid by the type invariant.
        unsafe { (*self.raw()).bi_iter.bi_sector }
    }

    /// Returns the number of 512-byte sectors the bio addresses.
    pub fn nr_sectors(&self) -> u64 {
        // SAFETY: The bio is valid by the type invariant.
        u64::from(unsafe { (*self.raw()).bi_iter.bi_size }) >> crate::block::SECTOR_SHIFT
    }

    /// Returns the block device the bio was submitted to.
    pub fn device(&self) -> &BlockDevice {
        // SAFETY: A bio in flight holds a valid `bi_bdev`, which outlives it.
        unsafe { BlockDevice::from_raw((*self.raw()).bi_bdev) }
    }
}
