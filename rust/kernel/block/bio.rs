// SPDX-License-Identifier: GPL-2.0

//! Bios: the block layer's I/O units.
//!
//! C header: [`include/linux/blk_types.h`](srctree/include/linux/blk_types.h)

use crate::{
    bindings, block::bdev::BlockDevice, error::to_result, page::Page, prelude::*, types::Opaque,
};
use core::ptr::NonNull;

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

    /// Returns true if the submitter asked not to be made to wait.
    pub fn is_nowait(&self) -> bool {
        // SAFETY: The bio is valid by the type invariant.
        let opf = unsafe { (*self.raw()).bi_opf };
        opf & (1 << bindings::req_flag_bits___REQ_NOWAIT) != 0
    }

    /// Reads or writes, for this bio's data, `sectors` sectors starting
    /// `offset` sectors into the bio, at `sector` of `bdev`; waits for the I/O.
    ///
    /// The I/O goes through a clone that shares this bio's pages and never
    /// outlives the call.  It skips the filter of `bdev` once.
    pub fn transfer_part(
        &self,
        offset: u64,
        sectors: u64,
        bdev: &BlockDevice,
        sector: u64,
    ) -> Result {
        if offset.checked_add(sectors).ok_or(EINVAL)? > self.nr_sectors() || sectors == 0 {
            return Err(EINVAL);
        }
        // SAFETY: The source bio is valid; `fs_bio_set` is initialised at
        // boot and never freed.
        let clone = unsafe {
            bindings::bio_alloc_clone(
                bdev.as_raw(),
                self.raw(),
                bindings::GFP_NOIO,
                &raw mut bindings::fs_bio_set,
            )
        };
        let clone = NonNull::new(clone).ok_or(ENOMEM)?;
        let clone = clone.as_ptr();
        // SAFETY: `clone` is a new bio we own until `bio_put` below; its pages
        // belong to `self`, which outlives the synchronous I/O.  The offsets
        // were checked against the bio's size above.
        let ret = unsafe {
            bindings::bio_trim(clone, offset, sectors);
            (*clone).bi_iter.bi_sector = sector;
            (*clone).bi_flags |= 1u16 << bindings::BIO_FILTERED;
            let ret = bindings::submit_bio_wait(clone);
            bindings::bio_put(clone);
            ret
        };
        to_result(ret)
    }

    /// Returns the block device the bio was submitted to.
    pub fn device(&self) -> &BlockDevice {
        // SAFETY: A bio in flight holds a valid `bi_bdev`, which outlives it.
        unsafe { BlockDevice::from_raw((*self.raw()).bi_bdev) }
    }
}

/// How a bio ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Success.
    Ok,
    /// An I/O error (`EIO`).
    IoError,
    /// The bio asked not to wait, and would have had to (`EAGAIN`).
    Again,
}

impl Status {
    fn raw(self) -> bindings::blk_status_t {
        match self {
            Self::Ok => bindings::BLK_STS_OK as bindings::blk_status_t,
            Self::IoError => bindings::BLK_STS_IOERR as bindings::blk_status_t,
            Self::Again => bindings::BLK_STS_AGAIN as bindings::blk_status_t,
        }
    }
}

/// Ends `bio` with `status`.
///
/// # Safety
///
/// The caller must own the completion of `bio`, which must not be used
/// afterwards.
unsafe fn end_bio(bio: *mut bindings::bio, status: Status) {
    // SAFETY: The caller owns the bio's completion.
    unsafe {
        (*bio).bi_status = status.raw();
        bindings::bio_endio(bio);
    }
}

/// A bio in flight that was handed to us, which we must end or pass on.
///
/// Dropping it without doing so ends it with an I/O error, so that nobody
/// waits forever.
///
/// # Invariants
///
/// `bio` is a valid bio whose completion this object owns.
pub struct SubmittedBio {
    bio: NonNull<bindings::bio>,
    /// Whether it came from a filter, and so may go on to its device.
    filtered: bool,
}

// SAFETY: A bio may be completed or resubmitted from any task.
unsafe impl Send for SubmittedBio {}

impl SubmittedBio {
    /// Takes over a bio.
    ///
    /// # Safety
    ///
    /// `bio` must be a bio in flight whose completion the caller hands over.
    /// `filtered` may only be true for a bio that a block device filter got
    /// in its `submit_bio`.
    pub(crate) unsafe fn from_raw(bio: *mut bindings::bio, filtered: bool) -> Self {
        Self {
            // SAFETY: The block layer never hands out a null bio.
            bio: unsafe { NonNull::new_unchecked(bio) },
            filtered,
        }
    }

    pub(crate) fn into_raw(self) -> *mut bindings::bio {
        let bio = self.bio.as_ptr();
        core::mem::forget(self);
        bio
    }

    /// Ends the bio with `status`.
    pub fn end(self, status: Status) {
        // SAFETY: By the type invariant we own the completion; `into_raw` makes
        // sure this happens once.
        unsafe { end_bio(self.into_raw(), status) };
    }

    /// Sends a bio that a filter took over on to its device, past the filter.
    /// A bio that did not come from a filter is ended with an I/O error.
    pub fn resubmit(self) {
        if !self.filtered {
            return self.end(Status::IoError);
        }
        // SAFETY: The bio came from a filter (`filtered`), so it was checked
        // and remapped already, as `blkfilter_resubmit_bio` requires.
        unsafe { bindings::blkfilter_resubmit_bio(self.into_raw()) };
    }
}

impl core::ops::Deref for SubmittedBio {
    type Target = Bio;

    fn deref(&self) -> &Bio {
        // SAFETY: The bio is valid and not completed while we own it.
        unsafe { Bio::from_raw(self.bio.as_ptr()) }
    }
}

impl Drop for SubmittedBio {
    fn drop(&mut self) {
        // SAFETY: We still own the completion: `into_raw` forgets `self`.
        unsafe { end_bio(self.bio.as_ptr(), Status::IoError) };
    }
}

/// Largest number of pages one bio carries.
const BIO_MAX_PAGES: usize = bindings::BIO_MAX_VECS as usize;

/// Reads (`write == false`) or writes the first `sectors` sectors of `pages`
/// at `sector` of `bdev`, and waits for the I/O.  The I/O skips the filter of
/// `bdev`: this is for a filter's own reads and writes.
pub fn transfer_pages(
    bdev: &BlockDevice,
    write: bool,
    sector: u64,
    pages: &[Page],
    sectors: u64,
) -> Result {
    let sectors_per_page = (bindings::PAGE_SIZE >> crate::block::SECTOR_SHIFT) as u64;
    let npages = sectors.div_ceil(sectors_per_page) as usize;
    if npages > pages.len() || sectors == 0 {
        return Err(EINVAL);
    }
    let op = if write {
        bindings::req_op_REQ_OP_WRITE
    } else {
        bindings::req_op_REQ_OP_READ
    };
    let mut done = 0u64;
    for batch in pages[..npages].chunks(BIO_MAX_PAGES) {
        // SAFETY: `bdev` is valid; `fs_bio_set` lives forever.
        let bio = unsafe {
            bindings::bio_alloc_bioset(
                bdev.as_raw(),
                batch.len() as u16,
                op,
                bindings::GFP_NOIO,
                &raw mut bindings::fs_bio_set,
            )
        };
        let bio = NonNull::new(bio).ok_or(ENOMEM)?.as_ptr();
        let mut batch_sectors = 0u64;
        for page in batch {
            let len = (sectors - done - batch_sectors).min(sectors_per_page);
            let bytes = (len << crate::block::SECTOR_SHIFT) as u32;
            // SAFETY: `bio` is ours with room for `batch.len()` pages; `page`
            // outlives the synchronous I/O.
            let added = unsafe { bindings::bio_add_page(bio, page.as_ptr(), bytes, 0) };
            if added != bytes as i32 {
                // SAFETY: `bio` is ours and was never submitted.
                unsafe { bindings::bio_put(bio) };
                return Err(EIO);
            }
            batch_sectors += len;
        }
        // SAFETY: `bio` is ours until `bio_put`; everything it points to
        // outlives the wait.
        let ret = unsafe {
            (*bio).bi_iter.bi_sector = sector + done;
            (*bio).bi_flags |= 1u16 << bindings::BIO_FILTERED;
            let ret = bindings::submit_bio_wait(bio);
            bindings::bio_put(bio);
            ret
        };
        to_result(ret)?;
        done += batch_sectors;
    }
    Ok(())
}
