// SPDX-License-Identifier: GPL-2.0

//! Parts of bios sent at once and waited for together.
//!
//! A driver that serves a bio from several places (some sectors from one
//! device, some from another) sends each stretch as a part: a clone of the
//! bio, trimmed to the stretch and aimed at its device.  The parts of a
//! [`Batch`] all run in parallel, and [`Batch::run`] returns once every part
//! ended.  Each part carries a tag the caller chooses, and comes back with it
//! and its own result, so the caller learns which of its bios failed without
//! keeping a table of part numbers.
//!
//! The bios and devices a part uses are borrowed for the whole run (`'b` is
//! invariant, so the closure cannot shorten it to lend something of its
//! own), so nothing they own can go away while a part is in flight.  The
//! batch is only lent to the caller's closure, and only by shared reference,
//! so it can neither be forgotten with parts in flight nor swapped with the
//! batch of another run.
//!
//! [`Batch::run`] waits for I/O: it must not be called where a bio is being
//! submitted (a filter's or a disk's `submit_bio`), only from a task that
//! may sleep, such as a work item.
//!
//! # Examples
//!
//! Reads the first half of `bio`'s sectors from `a` and the second half from
//! `b`, and tells whether each half succeeded:
//!
//! ```
//! use kernel::block::{bdev::BlockDevice, bio::Bio, io::{batch::Batch, BioSet}};
//! use kernel::prelude::*;
//!
//! #[derive(Debug)]
//! enum Half {
//!     First,
//!     Second,
//! }
//!
//! fn read_halves(bios: &BioSet, bio: &Bio, a: &BlockDevice, b: &BlockDevice) -> Result {
//!     let half = bio.nr_sectors() / 2;
//!     let ended = Batch::run(bios, 2, |batch| {
//!         // A part that cannot even be recorded is not sent.
//!         let _ = batch.add(Half::First, bio, 0, half, a, 0);
//!         let _ = batch.add(Half::Second, bio, half, bio.nr_sectors() - half, b, 0);
//!     })?;
//!     for part in ended {
//!         if let Err(e) = part.result {
//!             pr_warn!("{:?} half failed: {:?}\n", part.tag, e);
//!         }
//!     }
//!     Ok(())
//! }
//! ```
//!
//! C header: [`include/linux/bio.h`](srctree/include/linux/bio.h)

use super::BioSet;
use crate::{
    alloc::{allocator::Kmalloc, IntoIter},
    bindings,
    block::{bdev::BlockDevice, bio::Bio},
    error::to_result,
    prelude::*,
    sync::{
        atomic::{Atomic, Full, Relaxed},
        Completion,
    },
};
use core::{cell::RefCell, marker::PhantomData, pin::Pin, ptr::NonNull};

/// What the parts of one run share while in flight: how many have not
/// ended, and what the runner sleeps on until none is left.
#[pin_data]
pub(crate) struct InFlight {
    /// Parts not ended yet, plus one while parts are being added.
    remaining: Atomic<usize>,
    #[pin]
    done: Completion,
}

impl InFlight {
    /// A run with no part yet, still adding.
    pub(crate) fn new() -> impl PinInit<Self> {
        pin_init!(Self {
            remaining: Atomic::new(1),
            done <- Completion::new(),
        })
    }

    /// Counts a part about to be sent.
    pub(crate) fn started(&self) {
        self.remaining.add(1, Relaxed);
    }

    /// Counts a part that ended, or was not sent after [`Self::started`];
    /// the last one wakes the runner.  May be called in interrupt context.
    pub(crate) fn ended(&self) {
        if self.remaining.fetch_sub(1, Full) == 1 {
            self.done.complete_all();
        }
    }

    /// Ends the adding and waits until every part ended.
    pub(crate) fn wait(&self) {
        if self.remaining.fetch_sub(1, Full) != 1 {
            self.done.wait_for_completion();
        }
    }
}

/// The parts of one run and the count they share: what [`Batch`] and the
/// file batch of [`direct_io`](crate::fs::direct_io) have in common.
///
/// # Invariants
///
/// `state` stays in its box, where the parts in `parts` point to it, until
/// [`PartList::finish`] waited for all of them.
pub(crate) struct PartList<P> {
    state: Pin<KBox<InFlight>>,
    parts: RefCell<KVec<P>>,
}

impl<P> PartList<P> {
    /// A list with room for `expected` parts, so that adding that many
    /// cannot fail.
    pub(crate) fn new(expected: usize) -> Result<Self> {
        let state = KBox::pin_init(InFlight::new(), GFP_NOIO)?;
        let mut parts = KVec::new();
        parts.reserve(expected, GFP_NOIO)?;
        // INVARIANT: The state is boxed and pinned, and no part points to it
        // yet.
        Ok(Self {
            state,
            parts: RefCell::new(parts),
        })
    }

    /// Records the part that `send` makes, and sends with the count it is
    /// given.  `ENOMEM`, with `send` not called, if there is no room for
    /// one more part (and `EBUSY`, which cannot happen, if the list were in
    /// use).
    pub(crate) fn add(&self, send: impl FnOnce(&InFlight) -> P) -> Result {
        // Only `add` borrows, and `send` cannot reach it: this cannot fail,
        // and `try_` keeps panics out of the I/O path.
        let mut parts = self.parts.try_borrow_mut().map_err(|_| EBUSY)?;
        parts.reserve(1, GFP_NOIO)?;
        let part = send(&self.state);
        // Cannot fail: room was reserved above.
        let _ = parts.push(part, GFP_NOIO);
        Ok(())
    }

    /// Waits until every part ended, and gives them back in the order they
    /// were added.
    pub(crate) fn finish(self) -> KVec<P> {
        self.state.wait();
        self.parts.into_inner()
    }
}

/// One part of a batch: how it ended, once it did, and its clone until then.
struct Part<T> {
    ended: Ended<T>,
    /// The clone in flight, or `None` if the part was not sent.
    clone: Option<NonNull<bindings::bio>>,
}

/// A part of a batch once every part ended.
pub struct Ended<T> {
    /// The tag the part was added with.
    pub tag: T,
    /// Whether the part's I/O succeeded, or why it failed or was not sent.
    pub result: Result,
}

/// The parts of a batch once every part ended, in the order they were added.
///
/// It borrows nothing of the batch: the parts' I/O is over.
pub struct EndedParts<T>(IntoIter<Part<T>, Kmalloc>);

impl<T> Iterator for EndedParts<T> {
    type Item = Ended<T>;

    fn next(&mut self) -> Option<Ended<T>> {
        self.0.next().map(|part| part.ended)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl<T> ExactSizeIterator for EndedParts<T> {}

/// Parts of bios in flight together; see the [module documentation](self).
///
/// # Invariants
///
/// Each clone in `parts` was submitted with the list's `InFlight` as its
/// private data and is put only by [`Batch::run`], after all parts ended.
pub struct Batch<'b, T> {
    bios: &'b BioSet,
    parts: PartList<Part<T>>,
    /// Makes `'b` invariant: a covariant `'b` would let the closure shrink it
    /// and add a part with a bio or a device that dies before the part
    /// ended.
    _borrows: PhantomData<fn(&'b Bio) -> &'b Bio>,
}

impl<'b, T> Batch<'b, T> {
    /// Runs `send`, which adds parts to a new batch with bios from `bios`,
    /// waits until every part ended, and returns the parts in the order they
    /// were added.
    ///
    /// Room for `expected` parts is made before `send` runs, so adding that
    /// many cannot fail.  Fails with `ENOMEM`, before anything is sent, if
    /// that room cannot be had.
    pub fn run(
        bios: &'b BioSet,
        expected: usize,
        send: impl FnOnce(&Self),
    ) -> Result<EndedParts<T>> {
        let batch = Self {
            bios,
            parts: PartList::new(expected)?,
            _borrows: PhantomData,
        };
        // INVARIANT: No part yet; the clones `send` adds are put below, once
        // `finish` waited for all of them.
        send(&batch);
        let mut parts = batch.parts.finish();
        for part in parts.iter_mut() {
            if let Some(clone) = part.clone.take() {
                let c = clone.as_ptr();
                // SAFETY: Every part ended; the clone is still ours.
                let status = unsafe { (*c).bi_status };
                // SAFETY: Maps any status to an errno.
                let errno = unsafe { bindings::blk_status_to_errno(status) };
                // SAFETY: The clone is ours and not used afterwards.
                unsafe { bindings::bio_put(c) };
                part.ended.result = to_result(errno);
            }
        }
        Ok(EndedParts(parts.into_iter()))
    }

    /// Sends `sectors` sectors of `bio`'s data, from `offset` sectors into
    /// it, to or from `sector` of `bdev`, without waiting; the I/O skips the
    /// filter of `bdev` once.
    ///
    /// The part comes back from [`Batch::run`] with `tag` and its result;
    /// a part that cannot be sent (a range outside the bio, no memory for the
    /// clone) comes back with the error.  Fails with `ENOMEM`, dropping `tag`
    /// and sending nothing, only if more parts than expected are added and
    /// there is no memory to record one more (and with `EBUSY`, which cannot
    /// happen, if the batch's list of parts were in use).
    pub fn add(
        &self,
        tag: T,
        bio: &'b Bio,
        offset: u64,
        sectors: u64,
        bdev: &'b BlockDevice,
        sector: u64,
    ) -> Result {
        self.parts.add(|state| {
            let sent = self.send(state, bio, offset, sectors, bdev, sector);
            Part {
                clone: sent.as_ref().ok().copied(),
                ended: Ended {
                    tag,
                    result: sent.map(|_| ()),
                },
            }
        })
    }

    /// Clones the stretch of `bio` and submits the clone as a part.
    fn send(
        &self,
        state: &InFlight,
        bio: &'b Bio,
        offset: u64,
        sectors: u64,
        bdev: &'b BlockDevice,
        sector: u64,
    ) -> Result<NonNull<bindings::bio>> {
        if offset.checked_add(sectors).ok_or(EINVAL)? > bio.nr_sectors() || sectors == 0 {
            return Err(EINVAL);
        }
        // SAFETY: The source bio is valid for `'b`; the bio set outlives the
        // clone, which `run` puts before it returns.
        let clone = NonNull::new(unsafe {
            bindings::bio_alloc_clone(
                bdev.as_raw(),
                bio.raw(),
                bindings::GFP_NOIO,
                self.bios.as_raw(),
            )
        })
        .ok_or(ENOMEM)?;
        let c = clone.as_ptr();
        state.started();
        // SAFETY: `c` is a new clone we own, not submitted; the range was
        // checked against the bio's size above.
        unsafe { bindings::bio_trim(c, offset, sectors) };
        // SAFETY: As above.
        unsafe {
            (*c).bi_iter.bi_sector = sector;
            (*c).bi_flags |= 1u16 << bindings::BIO_FILTERED;
            (*c).bi_private = core::ptr::from_ref(state).cast_mut().cast();
            (*c).bi_end_io = Some(part_end_io);
        }
        // SAFETY: The clone is set up.  `state` stays until the list waited
        // for this part (its invariant), in the `run` call; what the clone
        // points to is borrowed for `'b`, which outlasts that call.
        unsafe { bindings::submit_bio(c) };
        Ok(clone)
    }
}

/// Ends one part of a batch.
///
/// # Safety
///
/// `bio` is a clone sent by [`Batch::add`], ending now.
unsafe extern "C" fn part_end_io(bio: *mut bindings::bio) {
    // SAFETY: The private data is the `InFlight` of the run, which waits for
    // this part before it goes away.
    let state = unsafe { &*((*bio).bi_private as *const InFlight) };
    state.ended();
}
