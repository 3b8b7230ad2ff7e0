// SPDX-License-Identifier: GPL-2.0

//! Asynchronous I/O of pages that an object owns.
//!
//! A driver that copies data between devices keeps the pages in an object
//! of its own and wants to go on while the I/O runs.  [`submit`] sends the
//! I/O without waiting and keeps the object alive until the I/O ended; then
//! it hands the object back to [`Owner::io_ended`].  The pages, the device
//! and the bio set are borrowed from the object, so none of them can go away
//! while the I/O is in flight.
//!
//! # Examples
//!
//! ```
//! use kernel::block::{bdev::BlockDevice, io::{page_io, BioSet, PageIo}};
//! use kernel::{page::Page, prelude::*, sync::Arc};
//!
//! struct Copy<'d> {
//!     bios: &'d BioSet,
//!     from: &'d BlockDevice,
//!     pages: KVec<Page>,
//! }
//!
//! impl page_io::Owner for Copy<'static> {
//!     fn io_ended(this: Arc<Self>, ok: bool) {
//!         // Possibly in interrupt context: a real owner hands `this` to a
//!         // work item.  Dropping it here is fine: what it borrows is
//!         // `'static`, and its pages can be freed in any context.
//!         pr_info!("read {} pages: {}\n", this.pages.len(), ok);
//!     }
//! }
//!
//! fn start(copy: Arc<Copy<'static>>) {
//!     page_io::submit(copy, |c| PageIo {
//!         bios: c.bios,
//!         bdev: c.from,
//!         write: false,
//!         sector: 0,
//!         pages: &c.pages,
//!         sectors: 8,
//!     });
//! }
//! ```

use super::{set::page_bio, PageIo};
use crate::{bindings, sync::Arc};

/// An object that owns what a [`PageIo`] borrows, and is told when it ended.
///
/// `'static`: what the I/O borrows must not be borrowed from somewhere else,
/// which could go away while the I/O is in flight.
pub trait Owner: Send + Sync + Sized + 'static {
    /// Called once, when every bio of the I/O ended, with whether all of
    /// them succeeded.  It runs in the completion context of the last bio,
    /// which may be interrupt context: it must not sleep, nor drop the last
    /// reference to anything whose drop sleeps (the bio set the I/O used,
    /// for one).  Handing `this` to a work item is the usual way on.
    fn io_ended(this: Arc<Self>, ok: bool);
}

/// Sends `io(&owner)` without waiting, as one bio or as several chained to
/// the last, and keeps `owner` until all of them ended; then calls
/// `T::io_ended` with it.  If the I/O cannot be built, `T::io_ended` is
/// called with `false` (from here, or once the bios already sent ended).
pub fn submit<T: Owner>(owner: Arc<T>, io: for<'a> fn(&'a T) -> PageIo<'a>) {
    let raw_owner = Arc::into_raw(owner);
    // SAFETY: `raw_owner` holds a reference until `page_io_end` or the error
    // path below takes it back, so the borrow lives as long as the bios.
    let req = io(unsafe { &*raw_owner });
    let mut last: Option<*mut bindings::bio> = None;
    let mut done = 0u64;
    let mut failed = req.sectors == 0;
    while done < req.sectors {
        // Each bio takes as many pages as it can carry, from where the
        // last one stopped.
        let Ok((bio, n)) = page_bio(&req, done) else {
            failed = true;
            break;
        };
        if let Some(prev) = last {
            // SAFETY: `prev` and `bio` are ours and not submitted yet; `bio`
            // will not end before `prev` did.
            unsafe { bindings::bio_chain(prev, bio.as_ptr()) };
            // SAFETY: `prev` is ours, complete and not submitted yet.
            unsafe { bindings::submit_bio(prev) };
        }
        last = Some(bio.as_ptr());
        done += n;
    }
    let Some(last) = last else {
        // SAFETY: Nothing was sent: the reference taken above comes back.
        let owner = unsafe { Arc::from_raw(raw_owner) };
        return T::io_ended(owner, false);
    };
    // SAFETY: `last` is ours and not submitted; its end hands the reference
    // in `bi_private` to `page_io_end::<T>`, once every bio chained to it
    // ended.
    unsafe {
        (*last).bi_private = raw_owner.cast_mut().cast();
        (*last).bi_end_io = Some(page_io_end::<T>);
    }
    if failed {
        // Ends once the bios already sent did, as failed.
        // SAFETY: `last` is ours and not submitted.
        unsafe { (*last).bi_status = bindings::BLK_STS_IOERR as bindings::blk_status_t };
        // SAFETY: `last` is ours and not submitted: ending it is ours to do.
        unsafe { bindings::bio_endio(last) };
    } else {
        // SAFETY: `last` is ours and complete.
        unsafe { bindings::submit_bio(last) };
    }
}

/// Ends an I/O of [`submit`].
///
/// # Safety
///
/// `bio` is the last bio of a [`submit`] for a `T`, ending now; its private
/// data is the reference to the owner that `submit` took.
unsafe extern "C" fn page_io_end<T: Owner>(bio: *mut bindings::bio) {
    // SAFETY: `bio` is ending and ours until `bio_put`; its private data is
    // the owner's reference, handed over once, here.
    let (owner, ok) = unsafe {
        let ok = (*bio).bi_status == bindings::BLK_STS_OK as bindings::blk_status_t;
        let owner = Arc::from_raw((*bio).bi_private as *const T);
        bindings::bio_put(bio);
        (owner, ok)
    };
    T::io_ended(owner, ok);
}
