// SPDX-License-Identifier: GPL-2.0

//! A driver's own pool of bios, and synchronous I/O of pages with it.
//!
//! C header: [`include/linux/bio.h`](srctree/include/linux/bio.h)

use crate::{
    bindings, block::bdev::BlockDevice, error::to_result, page::Page, prelude::*, types::Opaque,
};
use core::ptr::NonNull;

/// A driver's own pool of bios (`struct bio_set`), for the I/O it makes:
/// [`transfer_pages`], [`super::batch::Batch`] and [`super::page_io`]
/// take their bios from it.  With
/// `GFP_NOIO` an allocation waits for a bio of the pool to come back rather
/// than fail, so the driver's I/O goes on when memory is short, without
/// taking from a pool that other code counts on, such as `fs_bio_set`.
///
/// # Examples
///
/// ```
/// use kernel::block::{bdev::BlockDevice, io::{transfer_pages, BioSet, PageIo}};
/// use kernel::{page::Page, prelude::*};
///
/// /// A driver's pool, with two bios kept for when memory is short.
/// fn pool() -> impl PinInit<BioSet, Error> {
///     BioSet::new(2)
/// }
///
/// /// Reads the first 4 KiB of `bdev` into `page`, and waits.
/// fn read_head(bios: &BioSet, bdev: &BlockDevice, page: &Page) -> Result {
///     transfer_pages(PageIo {
///         bios,
///         bdev,
///         write: false,
///         sector: 0,
///         pages: core::slice::from_ref(page),
///         sectors: 8,
///     })
/// }
/// ```
///
/// # Invariants
///
/// `set` is initialised with bio vectors, and is exited only by `drop`,
/// after every bio from it was put: [`transfer_pages`] and
/// [`super::batch::Batch`] put theirs before they return, and
/// [`super::page_io`] borrows the set from an owner it keeps until its I/O
/// ended.
#[pin_data(PinnedDrop)]
pub struct BioSet {
    #[pin]
    set: Opaque<bindings::bio_set>,
}

// SAFETY: A bio set is used through the C API, which locks as it needs.
unsafe impl Send for BioSet {}
// SAFETY: As for `Send`.
unsafe impl Sync for BioSet {}

impl BioSet {
    /// A bio set that keeps `reserve` bios for when memory is short.
    pub fn new(reserve: u32) -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            set <- Opaque::try_ffi_init(move |slot: *mut bindings::bio_set| {
                // INVARIANT: Initialised with bio vectors here; only `drop`
                // exits it.
                // SAFETY: `slot` is valid, uninitialised memory for a bio set,
                // which `bioset_init` expects zeroed.
                to_result(unsafe {
                    core::ptr::write_bytes(slot, 0, 1);
                    // The enum constant is unsigned, the argument a C `int`.
                    let flags = bindings::BIOSET_NEED_BVECS as crate::ffi::c_int;
                    bindings::bioset_init(slot, reserve, 0, flags)
                })
            }),
        })
    }

    pub(super) fn as_raw(&self) -> *mut bindings::bio_set {
        self.set.get()
    }
}

#[pinned_drop]
impl PinnedDrop for BioSet {
    fn drop(self: Pin<&mut Self>) {
        // SAFETY: Initialised by the type invariant, and no bio from it is in
        // use any more.
        unsafe { bindings::bioset_exit(self.set.get()) };
    }
}

/// Largest number of pages one bio carries.
pub(super) const BIO_MAX_PAGES: usize = bindings::BIO_MAX_VECS as usize;

/// Sectors in a page.
pub(super) const SECTORS_PER_PAGE: u64 = (bindings::PAGE_SIZE >> crate::block::SECTOR_SHIFT) as u64;

/// I/O of a driver's own pages: the first `sectors` sectors of `pages`,
/// read from (`write == false`) or written to `sector` of `bdev`, with bios
/// from `bios`.  It skips the filter of `bdev` once: this is for a filter's
/// own reads and writes.
pub struct PageIo<'a> {
    /// Where the bios come from.
    pub bios: &'a BioSet,
    /// The device the I/O goes to.
    pub bdev: &'a BlockDevice,
    /// Whether the pages are written to the device, or read into.
    pub write: bool,
    /// First sector on the device.
    pub sector: u64,
    /// The pages; the I/O uses as many as `sectors` needs.
    pub pages: &'a [Page],
    /// How many sectors move.
    pub sectors: u64,
}

/// Builds the bio of `io` that starts `done` sectors into it: as many of
/// the remaining pages as one bio carries.  Returns the bio, not yet
/// submitted, and the number of sectors it moves.
///
/// The caller must keep what `io` borrows alive until the bio ends.
pub(super) fn page_bio(io: &PageIo<'_>, done: u64) -> Result<(NonNull<bindings::bio>, u64)> {
    let first = usize::try_from(done / SECTORS_PER_PAGE).map_err(|_| EINVAL)?;
    let pages = io.pages.get(first..).ok_or(EINVAL)?;
    let sectors = io.sectors.checked_sub(done).ok_or(EINVAL)?;
    let npages = (sectors.div_ceil(SECTORS_PER_PAGE) as usize).min(BIO_MAX_PAGES);
    if npages > pages.len() || sectors == 0 || done % SECTORS_PER_PAGE != 0 {
        return Err(EINVAL);
    }
    let op = if io.write {
        bindings::req_op_REQ_OP_WRITE
    } else {
        bindings::req_op_REQ_OP_READ
    };
    // SAFETY: `bdev` is valid; `bios` outlives the bio, which the callers
    // put before they return.
    let bio = NonNull::new(unsafe {
        bindings::bio_alloc_bioset(
            io.bdev.as_raw(),
            npages as u16,
            op,
            bindings::GFP_NOIO,
            io.bios.as_raw(),
        )
    })
    .ok_or(ENOMEM)?;
    let raw = bio.as_ptr();
    let mut moved = 0u64;
    for page in &pages[..npages] {
        let len = (sectors - moved).min(SECTORS_PER_PAGE);
        let bytes = (len << crate::block::SECTOR_SHIFT) as u32;
        // SAFETY: `raw` is ours, with room for `npages` pages; the caller
        // keeps `page` alive until the bio ends.
        let added = unsafe { bindings::bio_add_page(raw, page.as_ptr(), bytes, 0) };
        if added != bytes as i32 {
            // SAFETY: `raw` is ours and was never submitted.
            unsafe { bindings::bio_put(raw) };
            return Err(EIO);
        }
        moved += len;
    }
    // SAFETY: `raw` is ours and not submitted yet.
    unsafe {
        (*raw).bi_iter.bi_sector = io.sector + done;
        (*raw).bi_flags |= 1u16 << bindings::BIO_FILTERED;
    }
    Ok((bio, moved))
}

/// Does `io` and waits for it.
pub fn transfer_pages(io: PageIo<'_>) -> Result {
    let mut done = 0u64;
    while done < io.sectors {
        let (bio, n) = page_bio(&io, done)?;
        // SAFETY: `bio` is ours; its pages and device outlive the wait.
        let ret = unsafe { bindings::submit_bio_wait(bio.as_ptr()) };
        // SAFETY: The I/O ended; the bio is ours and not used afterwards.
        unsafe { bindings::bio_put(bio.as_ptr()) };
        to_result(ret)?;
        done += n;
    }
    Ok(())
}
